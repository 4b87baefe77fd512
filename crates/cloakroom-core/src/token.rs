//! Session tokens (what the browser holds) and session keys (what the store sees).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

pub(crate) const TOKEN_BYTES: usize = 32;
pub(crate) const TOKEN_TEXT_LEN: usize = 43;

/// A session token: 256 random bits from the operating system's CSPRNG.
///
/// The token is the bearer secret that the cookie carries. It never reaches the store: the store
/// only sees [`SessionKey`], a SHA-256 hash of it, so a leaked dump of the store cannot be
/// replayed as cookies. Comparison is constant-time and `Debug` shows only a short hash prefix.
#[derive(Clone)]
pub struct SessionToken([u8; TOKEN_BYTES]);

// `N` bytes from the operating system's random number generator: tokens and generated secrets.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::new(
            ErrorKind::Random,
            format!("the OS random generator failed: {e}"),
        )
    })?;
    Ok(bytes)
}

impl SessionToken {
    /// A fresh token from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        random_bytes().map(Self)
    }

    /// Parses the canonical base64url text of a token; anything else (wrong length, wrong
    /// alphabet, padding, non-canonical trailing bits) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != TOKEN_TEXT_LEN {
            return None;
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        // The decoder rejects padding and non-zero trailing bits, so each token has exactly one
        // accepted spelling.
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(TOKEN_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// The canonical base64url text of the token (43 characters).
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// A token with these bytes, for tests that generate inputs.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for signing.
    pub(crate) fn as_bytes(&self) -> &[u8; TOKEN_BYTES] {
        &self.0
    }

    /// The store key derived from this token.
    pub fn key(&self) -> SessionKey {
        let digest = Sha256::digest(self.0);
        SessionKey(URL_SAFE_NO_PAD.encode(digest))
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        // Constant time: fold every byte difference before deciding.
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl Eq for SessionToken {}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken({}…)", self.key().short())
    }
}

/// The name of a session in the store: base64url of SHA-256 of the token (43 characters).
///
/// Stores add their own prefix. A key cannot be turned back into a token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(String);

impl SessionKey {
    /// The key's text, without any store prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as a store lists it (in a user's index), if it is one.
    pub fn from_stored(text: &str) -> Option<Self> {
        crate::users::is_digest_text(text).then(|| Self(text.to_owned()))
    }

    /// A short prefix of the key, safe for logs.
    pub fn short(&self) -> &str {
        self.0.get(..8).unwrap_or(&self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({}…)", self.short())
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// The constants, with the type they belong to.
impl SessionToken {
    /// Bytes of entropy in a token: 256 bits.
    pub const BYTES: usize = TOKEN_BYTES;

    /// Length of a token in canonical unpadded base64url.
    pub const TEXT_LEN: usize = TOKEN_TEXT_LEN;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_is_canonical() -> Result<()> {
        let token = SessionToken::generate()?;
        let text = token.to_text();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        let parsed = SessionToken::parse(&text);
        assert!(parsed.as_ref() == Some(&token));
        assert_eq!(parsed.map(|t| t.to_text()), Some(text));
        Ok(())
    }

    #[test]
    fn rejects_non_canonical_and_foreign_spellings() {
        // 43 chars whose last one carries non-zero trailing bits.
        let mut s = "A".repeat(42);
        s.push('B');
        assert!(SessionToken::parse(&s).is_none());
        assert!(SessionToken::parse(&"A".repeat(43)).is_some());
        assert!(SessionToken::parse(&"A".repeat(44)).is_none());
        assert!(SessionToken::parse(&"A".repeat(42)).is_none());
        assert!(SessionToken::parse(&format!("{}=", "A".repeat(42))).is_none());
        assert!(SessionToken::parse(&format!("{}+", "A".repeat(42))).is_none());
        assert!(SessionToken::parse(&format!("{}/", "A".repeat(42))).is_none());
        assert!(SessionToken::parse("").is_none());
    }

    #[test]
    fn key_is_a_hash_not_the_token() -> Result<()> {
        let token = SessionToken::generate()?;
        let key = token.key();
        assert_ne!(key.as_str(), token.to_text());
        assert_eq!(key.as_str().len(), 43);
        assert_eq!(key, token.key());
        assert!(!format!("{token:?}").contains(&token.to_text()));
        Ok(())
    }

    #[test]
    fn tokens_differ() -> Result<()> {
        assert!(SessionToken::generate()? != SessionToken::generate()?);
        Ok(())
    }
}

/// Properties over generated inputs (proptest), run with the normal tests on stable.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every token prints to one text, and that text parses back to the same token.
        #[test]
        fn print_then_parse_is_identity(bytes in any::<[u8; TOKEN_BYTES]>()) {
            let token = SessionToken(bytes);
            let text = token.to_text();
            prop_assert_eq!(text.len(), TOKEN_TEXT_LEN);
            prop_assert!(SessionToken::parse(&text) == Some(token));
        }

        /// Whatever text is accepted is canonical: parsing then printing gives it back.
        #[test]
        fn parse_then_print_is_identity(text in "[A-Za-z0-9_=+/.-]{40,46}|\\PC{0,60}") {
            if let Some(token) = SessionToken::parse(&text) {
                prop_assert_eq!(token.to_text(), text);
            }
        }
    }
}
