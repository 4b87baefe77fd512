//! Redis errors as cloakroom errors.

use cloakroom_core::{Error, ErrorKind};

pub(crate) fn map_error(e: redis::RedisError) -> Error {
    let kind = if e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
    {
        ErrorKind::Unavailable
    } else {
        match e.code() {
            Some("NOTINT") => ErrorKind::NotAnInteger,
            Some("RANGE") => ErrorKind::OutOfRange,
            Some("TOOLARGE") => ErrorKind::TooLarge,
            Some("WRONGTYPE" | "CORRUPT") => ErrorKind::Corrupt,
            _ => match e.kind() {
                redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
                    ErrorKind::Config
                }
                redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                | redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
                | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                // Cluster mode: no connection to the node owning the slot (it is down, or the
                // slot map is being refreshed after a failover).
                | redis::ErrorKind::ClusterConnectionNotFound => {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Backend,
            },
        }
    };
    let message = match kind {
        ErrorKind::NotAnInteger => "session field does not hold an integer",
        ErrorKind::OutOfRange => "session counter would leave ±(2^53 − 1)",
        ErrorKind::Corrupt => "a session key holds data cloakroom did not write",
        ErrorKind::Unavailable => "Redis is unavailable",
        ErrorKind::Config => "Redis refused the connection settings",
        _ => "Redis returned an error",
    };
    // A command that timed out or whose connection dropped may have run; one refused before it
    // was sent, or answered with an error, did not.
    let unknown = (e.is_timeout() || e.is_connection_dropped() || e.is_io_error())
        && !e.is_connection_refusal();
    let error = Error::with_source(kind, message, e);
    if unknown {
        error.with_unknown_outcome()
    } else {
        error
    }
}

pub(crate) fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("unexpected reply from Redis: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> redis::RedisError {
        redis::RedisError::from(std::io::Error::from(kind))
    }

    #[test]
    fn only_a_command_that_may_have_run_has_an_unknown_outcome() {
        let refused = map_error(io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert!(!refused.is_outcome_unknown());
        for kind in [
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::ConnectionReset,
        ] {
            let error = map_error(io(kind));
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{kind:?}");
            assert!(error.is_outcome_unknown(), "{kind:?}");
        }
        let rejected = map_error(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "NOTINT",
        )));
        assert!(!rejected.is_outcome_unknown());
    }
}
