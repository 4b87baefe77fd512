//! Signed cookie values: `TOKEN.SIGNATURE`, both canonical base64url.
//!
//! The token is already unguessable; the signature exists so that a forged or garbled cookie is
//! recognised by arithmetic alone, before any store access: a flood of random cookies costs the
//! store nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, ErrorKind, Result};
use crate::token::{SessionToken, TOKEN_TEXT_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret key accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
const SIGNATURE_TEXT_LEN: usize = 43;
/// Exact length of a signed cookie value.
pub const SIGNED_VALUE_LEN: usize = TOKEN_TEXT_LEN + 1 + SIGNATURE_TEXT_LEN;
// Domain separation: the secret may be shared with other parts of an app.
const CONTEXT: &[u8] = b"cloakroom session cookie v1\0";

/// Signs and verifies cookie values with HMAC-SHA256 under the configured secret.
#[derive(Clone)]
pub struct CookieSigner {
    mac: HmacSha256,
}

impl CookieSigner {
    /// A signer for `secret`, which must be at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the secret key has {} bytes; at least {MIN_SECRET_LEN} are required",
                    secret.len()
                ),
            ));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|_| Error::new(ErrorKind::Config, "the secret key was refused by HMAC"))?;
        Ok(Self { mac })
    }

    fn mac_for(&self, token: &SessionToken) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(token.as_bytes());
        mac
    }

    /// The cookie value for `token`.
    pub fn sign(&self, token: &SessionToken) -> String {
        let tag = self.mac_for(token).finalize().into_bytes();
        let mut out = token.to_text();
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(tag));
        out
    }

    /// The token inside a cookie value, if the value is exactly one canonical signed token.
    ///
    /// Anything else (wrong length, a missing or extra separator, another alphabet, a
    /// non-canonical spelling, a signature from another key) is `None`.
    pub fn verify(&self, value: &str) -> Option<SessionToken> {
        if value.len() != SIGNED_VALUE_LEN {
            return None;
        }
        let (token_text, rest) = value.split_at_checked(TOKEN_TEXT_LEN)?;
        let signature_text = rest.strip_prefix('.')?;
        let token = SessionToken::parse(token_text)?;
        let mut signature = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(signature_text.as_bytes(), &mut signature) {
            Ok(32) => {}
            _ => return None,
        }
        // `verify_slice` compares in constant time.
        self.mac_for(&token).verify_slice(&signature).ok()?;
        Some(token)
    }
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSigner(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(byte: u8) -> Result<CookieSigner> {
        CookieSigner::new(&[byte; 32])
    }

    #[test]
    fn signed_value_verifies() -> Result<()> {
        let s = signer(1)?;
        let token = SessionToken::generate()?;
        let value = s.sign(&token);
        assert_eq!(value.len(), SIGNED_VALUE_LEN);
        assert!(s.verify(&value) == Some(token));
        Ok(())
    }

    #[test]
    fn tampering_is_rejected() -> Result<()> {
        let s = signer(1)?;
        let value = s.sign(&SessionToken::generate()?);
        assert!(signer(2)?.verify(&value).is_none(), "another key");
        assert!(s.verify(&format!("{value}x")).is_none(), "appended byte");
        assert!(s.verify(&value[..value.len() - 1]).is_none(), "truncated");
        assert!(s.verify(&value.to_uppercase()).is_none(), "case changed");
        assert!(
            s.verify(&value.replacen('.', "!", 1)).is_none(),
            "separator"
        );
        let mut flipped = value.clone().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped)
            .map_err(|e| Error::with_source(ErrorKind::Decode, "utf8", e))?;
        assert!(s.verify(&flipped).is_none(), "token byte changed");
        Ok(())
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            CookieSigner::new(b"short")
                .map(|_| ())
                .map_err(|e| e.kind()),
            Err(ErrorKind::Config)
        );
    }
}
