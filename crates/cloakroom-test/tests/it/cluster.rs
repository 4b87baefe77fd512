//! The conformance suite over a three-primary, three-replica Redis Cluster reached through one
//! node's URL, plain and with TLS plus a least-privilege ACL user; and what cluster mode must
//! guarantee beyond it: sessions spread over every primary, one slot per operation, detection
//! from the URL alone.

use cloakroom_test::{redis_cluster_fixture, redis_cluster_tls_acl_fixture};

cloakroom_test::store_conformance!(redis_cluster_fixture());

mod tls_acl {
    use super::*;

    cloakroom_test::store_conformance!(redis_cluster_tls_acl_fixture());
}
