//! ElastiCache IAM settings the binaries refuse before connecting anywhere, with a message that
//! names what is missing. (The tokens themselves are tested against AWS's published SigV4
//! example in `cloakroom-redis`; logging in to a real ElastiCache needs AWS.)

use anyhow::ensure;

use crate::process::{Binary, run_to_exit};

#[test]
fn incomplete_iam_settings_are_refused_with_a_clear_message() -> anyhow::Result<()> {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("REDIS_URL", "rediss://127.0.0.1:1"),
                ("REDIS_IAM_USER", "app"),
            ],
            "AWS_REGION",
        ),
        (
            &[
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("REDIS_IAM_USER", "app"),
                ("AWS_REGION", "us-east-1"),
            ],
            "rediss://",
        ),
        (
            &[
                ("REDIS_URL", "rediss://redis.internal.example:6379"),
                ("REDIS_IAM_USER", "app"),
                ("AWS_REGION", "us-east-1"),
            ],
            "REDIS_IAM_CACHE_NAME",
        ),
    ];
    for binary in Binary::BOTH {
        for (environment, named) in cases {
            let (status, stderr) = run_to_exit(binary, environment)?;
            ensure!(
                !status.success(),
                "{}: {environment:?} was accepted",
                binary.name()
            );
            ensure!(stderr.contains(named), "{}: {stderr}", binary.name());
        }
    }
    Ok(())
}
