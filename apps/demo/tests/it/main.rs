//! HTTP tests of the demo through the session layer, over the memory store and real Redis.

mod support;

mod bad_input;
mod flow;
mod redis_down;
mod round_trips;
