use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::*;

// AWS's published example of a presigned URL ("Authenticating Requests: Using Query Parameters
// (AWS Signature Version 4)", Amazon S3 API Reference): its keys, time and signature.
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EXAMPLE_SIGNATURE: &str = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

fn example_time() -> SystemTime {
    // 2013-05-24T00:00:00Z
    UNIX_EPOCH + Duration::from_secs(1_369_353_600)
}

fn example_credentials() -> AwsCredentials {
    AwsCredentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test")
}

fn signature_of(presigned: &str) -> Option<&str> {
    presigned.split("X-Amz-Signature=").nth(1)
}

#[test]
fn presigning_gives_the_documented_example_signature() -> Result<()> {
    let credentials = example_credentials();
    let url = presign(&Presign {
        host: "examplebucket.s3.amazonaws.com",
        path: "/test.txt",
        query: &[],
        service: "s3",
        region: "us-east-1",
        credentials: &credentials,
        time: example_time(),
        expires_in: Duration::from_secs(86_400),
        unsigned_payload: true,
    })?;
    assert_eq!(signature_of(&url), Some(EXAMPLE_SIGNATURE), "{url}");
    assert!(
        url.starts_with("examplebucket.s3.amazonaws.com/test.txt?"),
        "{url}"
    );
    // The reference below computes the same documented value, so it can judge other requests.
    let reference = reference_signature(
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        &[],
        "s3",
        86_400,
        "UNSIGNED-PAYLOAD",
    );
    assert_eq!(reference, EXAMPLE_SIGNATURE);
    Ok(())
}

#[test]
fn a_token_names_the_cache_and_the_user_and_lasts_fifteen_minutes() -> Result<()> {
    let credentials = example_credentials();
    let iam = ElastiCacheIam::new("app-user", "My-Cache", "us-east-1");
    let token = iam.token(&credentials, example_time())?;
    let expected_prefix = "my-cache/?Action=connect&User=app-user&X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Felasticache%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=";
    assert!(token.starts_with(expected_prefix), "{token}");
    let empty_body = hex(&Sha256::digest(b""));
    let expected = reference_signature(
        "my-cache",
        "/",
        &[("Action", "connect"), ("User", "app-user")],
        "elasticache",
        900,
        &empty_body,
    );
    assert_eq!(signature_of(&token), Some(expected.as_str()), "{token}");

    let serverless = iam.serverless().token(&credentials, example_time())?;
    assert!(
        serverless
            .starts_with("my-cache/?Action=connect&User=app-user&ResourceType=ServerlessCache&"),
        "{serverless}"
    );
    let expected = reference_signature(
        "my-cache",
        "/",
        &[
            ("Action", "connect"),
            ("ResourceType", "ServerlessCache"),
            ("User", "app-user"),
        ],
        "elasticache",
        900,
        &empty_body,
    );
    assert_eq!(signature_of(&serverless), Some(expected.as_str()));
    Ok(())
}

#[test]
fn a_session_token_is_carried_and_signed() -> Result<()> {
    let credentials = AwsCredentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        Some("a/session+token".into()),
        None,
        "test",
    );
    let token = ElastiCacheIam::new("u", "c", "eu-west-1").token(&credentials, example_time())?;
    assert!(
        token.contains("X-Amz-Security-Token=a%2Fsession%2Btoken"),
        "{token}"
    );
    Ok(())
}

// SigV4 written out from AWS's description, for GET requests signed in the query with the host
// header alone: the oracle the presigner is checked against. `query` is sorted by name.
fn reference_signature(
    host: &str,
    path: &str,
    query: &[(&str, &str)],
    service: &str,
    expires: u64,
    payload_hash: &str,
) -> String {
    let date = "20130524";
    let stamp = "20130524T000000Z";
    let scope = format!("{date}/us-east-1/{service}/aws4_request");
    let mut params: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    params.extend([
        ("X-Amz-Algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        (
            "X-Amz-Credential".to_owned(),
            format!("{ACCESS_KEY}/{scope}"),
        ),
        ("X-Amz-Date".to_owned(), stamp.to_owned()),
        ("X-Amz-Expires".to_owned(), expires.to_string()),
        ("X-Amz-SignedHeaders".to_owned(), "host".to_owned()),
    ]);
    params.sort();
    let canonical_query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let canonical = format!(
        "GET\n{path}\n{}\nhost:{host}\n\nhost\n{payload_hash}",
        canonical_query.join("&")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = format!("AWS4{SECRET_KEY}").into_bytes();
    for part in [date, "us-east-1", service, "aws4_request", to_sign.as_str()] {
        key = hmac(&key, part.as_bytes());
    }
    hex(&key)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: the error cannot happen.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_token_is_renewed_before_its_aws_credentials_expire() {
    let now = example_time();
    let lasting = example_credentials();
    assert_eq!(next_refresh(&lasting, now), ElastiCacheIam::REFRESH_EVERY);
    let expiring = |in_secs| {
        AwsCredentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            None,
            Some(now + Duration::from_secs(in_secs)),
            "test",
        )
    };
    assert_eq!(
        next_refresh(&expiring(3600), now),
        ElastiCacheIam::REFRESH_EVERY
    );
    assert_eq!(next_refresh(&expiring(300), now), Duration::from_secs(240));
    assert_eq!(next_refresh(&expiring(30), now), RETRY_AFTER);
}
