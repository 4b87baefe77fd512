//! ElastiCache IAM authentication (feature `iam`): the Redis user logs in with a short-lived
//! token made from the application's AWS credentials instead of a stored password.
//!
//! The token is a SigV4-presigned request, as AWS documents it for ElastiCache: a `GET` of
//! `http://CACHE/?Action=connect&User=USER` (plus `&ResourceType=ServerlessCache` for a
//! serverless cache), signed for the service `elasticache` in the cache's region, valid 15
//! minutes, with the `http://` left off. ElastiCache also closes an IAM-authenticated connection
//! after 12 hours unless it authenticates again. So a task makes a new token every
//! [`ElastiCacheIam::REFRESH_EVERY`] (well within both limits) and hands it to [`Credentials`]:
//! new connections log in with it, and every live connection sends `AUTH` with it, which also
//! restarts ElastiCache's 12-hour clock.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as AwsCredentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use cloakroom_core::{Error, ErrorKind, Result};

use crate::credentials::Credentials;

/// How long a token is valid: the most ElastiCache accepts.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// How long before temporary AWS credentials expire a token is renewed with fresh ones.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The wait before trying again after a failed renewal (the last token stays in use), and the
/// shortest wait between renewals.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The user, cache and region an ElastiCache IAM token is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElastiCacheIam {
    user_id: String,
    cache_name: String,
    region: String,
    serverless: bool,
}

impl ElastiCacheIam {
    /// How often a new token is made: tokens last 15 minutes, and each new token also renews
    /// the 12-hour limit on a connection.
    pub const REFRESH_EVERY: Duration = Duration::from_secs(10 * 60);

    /// Tokens for the ElastiCache user `user_id` (with IAM authentication on) of the
    /// replication group or cache `cache_name` (its id, in lower case, not its endpoint), in
    /// `region`.
    pub fn new(
        user_id: impl Into<String>,
        cache_name: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            cache_name: cache_name.into().to_ascii_lowercase(),
            region: region.into(),
            serverless: false,
        }
    }

    /// For an ElastiCache Serverless cache (its tokens name the resource type).
    pub fn serverless(mut self) -> Self {
        self.serverless = true;
        self
    }

    /// The token for `credentials`, signed at `time`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the request cannot be signed (an empty region, say).
    pub fn token(&self, credentials: &AwsCredentials, time: SystemTime) -> Result<String> {
        let mut query = vec![("Action", "connect"), ("User", self.user_id.as_str())];
        if self.serverless {
            query.push(("ResourceType", "ServerlessCache"));
        }
        presign(&Presign {
            host: &self.cache_name,
            path: "/",
            query: &query,
            service: "elasticache",
            region: &self.region,
            credentials,
            time,
            expires_in: TOKEN_LIFETIME,
            unsigned_payload: false,
        })
    }

    /// Credentials for the store ([`RedisStoreBuilder::with_credentials`](crate::RedisStoreBuilder::with_credentials))
    /// that log in as the user with a token made now from `aws`, then renewed every
    /// [`ElastiCacheIam::REFRESH_EVERY`] (sooner when the AWS credentials expire first) by a task
    /// that runs while the credentials are in use. A refresh that fails is retried every 10
    /// seconds; the last token stays in use meanwhile.
    ///
    /// # Errors
    ///
    /// The AWS credentials cannot be had, or the first token cannot be made.
    pub async fn credentials(self, aws: SharedCredentialsProvider) -> Result<Credentials> {
        let (token, mut wait) = self.fresh_token(&aws).await?;
        let credentials = Credentials::new(self.user_id.clone(), token);
        let handle = credentials.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                let Some(credentials) = handle.upgrade() else {
                    return;
                };
                wait = match self.fresh_token(&aws).await {
                    Ok((token, next)) => {
                        credentials.update(self.user_id.clone(), token);
                        next
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an ElastiCache IAM token could not be renewed");
                        RETRY_AFTER
                    }
                };
            }
        });
        Ok(credentials)
    }

    // A token made now, and when to make the next: after `REFRESH_EVERY`, or sooner when the
    // AWS credentials it was signed with (temporary ones: a role's, a container's) expire
    // first, since a token signed with expired credentials is refused.
    async fn fresh_token(&self, aws: &SharedCredentialsProvider) -> Result<(String, Duration)> {
        let credentials = aws.provide_credentials().await.map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                "no AWS credentials for IAM authentication",
                e,
            )
        })?;
        let now = SystemTime::now();
        Ok((
            self.token(&credentials, now)?,
            next_refresh(&credentials, now),
        ))
    }
}

// When to renew a token signed at `now` with `credentials`.
fn next_refresh(credentials: &AwsCredentials, now: SystemTime) -> Duration {
    credentials
        .expiry()
        .and_then(|expiry| expiry.duration_since(now).ok())
        .map_or(ElastiCacheIam::REFRESH_EVERY, |left| {
            left.saturating_sub(EXPIRY_MARGIN)
                .clamp(RETRY_AFTER, ElastiCacheIam::REFRESH_EVERY)
        })
}

/// One SigV4 presigned `GET`, as a URL without its scheme.
struct Presign<'a> {
    host: &'a str,
    path: &'a str,
    query: &'a [(&'a str, &'a str)],
    service: &'a str,
    region: &'a str,
    credentials: &'a AwsCredentials,
    time: SystemTime,
    expires_in: Duration,
    // S3 signs `UNSIGNED-PAYLOAD`; every other service the hash of the (empty) body.
    unsigned_payload: bool,
}

fn presign(request: &Presign<'_>) -> Result<String> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Config,
            format!("cannot sign the IAM authentication request: {e}"),
        )
    };
    let query: Vec<String> = request
        .query
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect();
    let url = format!(
        "http://{}{}?{}",
        request.host,
        request.path,
        query.join("&")
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(request.expires_in);
    let identity = request.credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(request.region)
        .name(request.service)
        .time(request.time)
        .settings(settings)
        .build()
        .map_err(|e| fail(&e))?
        .into();
    let body = if request.unsigned_payload {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(&[])
    };
    let headers = [("host", request.host)];
    let signable =
        SignableRequest::new("GET", &url, headers.into_iter(), body).map_err(|e| fail(&e))?;
    let (instructions, _signature) = sign(signable, &params).map_err(|e| fail(&e))?.into_parts();
    let mut signed = url;
    for (name, value) in instructions.params() {
        signed.push('&');
        signed.push_str(&encode(name));
        signed.push('=');
        signed.push_str(&encode(value));
    }
    Ok(signed.strip_prefix("http://").unwrap_or(&signed).to_owned())
}

// Percent-encoding as SigV4 wants it: everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
