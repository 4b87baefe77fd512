//! HTTP tests of the demo through the session layer, over the memory store, real Redis servers
//! and clusters; and the binary itself against a cluster.

mod support;

mod account;
mod api;
mod bad_input;
mod binaries;
mod cluster;
mod corrupt_records;
mod flow;
mod hostile;
mod iam;
mod observability;
mod process;
mod redis_down;
mod round_trips;
mod sentinel;
