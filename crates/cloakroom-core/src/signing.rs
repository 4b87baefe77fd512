//! Signed cookie values: `TOKEN.SIGNATURE`, both canonical base64url.
//!
//! The token is already unguessable; the signature exists so that a forged or garbled cookie is
//! recognised by arithmetic alone, before any store access: a flood of random cookies costs the
//! store nothing.
//!
//! Keys rotate: the current key signs, and previous keys still verify until the time each one
//! retires. A cookie whose session started before the rotation keeps working until then; once
//! the last session that key signed has reached its absolute lifetime, the key can go. A cookie
//! signed by a retired key is treated as forged.
//!
//! A key can also be announced before it signs: a *next* key verifies but never signs. With
//! several instances, a rotation is then done in two phases so that no instance meets a cookie
//! signed by a key it does not know yet: first every instance gets the new key as next, then
//! the new key becomes current and the old one previous.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, ErrorKind, Result};
use crate::token::{SessionToken, TOKEN_TEXT_LEN};

type HmacSha256 = Hmac<Sha256>;

pub(crate) const MIN_SECRET_LEN: usize = 32;
const SIGNATURE_TEXT_LEN: usize = 43;
pub(crate) const SIGNED_VALUE_LEN: usize = TOKEN_TEXT_LEN + 1 + SIGNATURE_TEXT_LEN;
// Domain separation: the secret may be shared with other parts of an app.
const CONTEXT: &[u8] = b"cloakroom session cookie v1\0";

pub(crate) const MAX_PREVIOUS_KEYS: usize = 4;

pub(crate) const MAX_NEXT_KEYS: usize = 1;

/// Signs cookie values with HMAC-SHA256 under the current secret, and verifies them under the
/// current secret, a next one, or a previous one that has not retired yet.
#[derive(Clone)]
pub struct CookieSigner {
    current: HmacSha256,
    // Keys that verify but do not sign yet: they become current in the next phase of a rotation.
    next: Vec<HmacSha256>,
    // Previous keys and when each retires (Unix milliseconds).
    previous: Vec<(HmacSha256, u64)>,
}

fn keyed_mac(secret: &[u8]) -> Result<HmacSha256> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "the secret key has {} bytes; at least {MIN_SECRET_LEN} are required",
                secret.len()
            ),
        ));
    }
    HmacSha256::new_from_slice(secret)
        .map_err(|_| Error::new(ErrorKind::Config, "the secret key was refused by HMAC"))
}

fn mac_for(key: &HmacSha256, token: &SessionToken) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(CONTEXT);
    mac.update(token.as_bytes());
    mac
}

impl CookieSigner {
    /// A fresh secret of [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN) bytes from the OS random generator, for an
    /// application that has none configured: its sessions do not survive a restart and are not
    /// shared between processes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Random`] when the operating system cannot give randomness.
    pub fn random_secret() -> Result<[u8; MIN_SECRET_LEN]> {
        crate::token::random_bytes()
    }

    /// A signer for `secret`, which must be at least [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN) bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        Ok(Self {
            current: keyed_mac(secret)?,
            next: Vec::new(),
            previous: Vec::new(),
        })
    }

    /// Also verifies cookies signed with `secret` (a key that signed before the current one)
    /// until `retire_at_ms` (Unix milliseconds). At most [`CookieSigner::MAX_PREVIOUS_KEYS`](crate::CookieSigner::MAX_PREVIOUS_KEYS).
    pub fn add_previous(&mut self, secret: &[u8], retire_at_ms: u64) -> Result<()> {
        if self.previous.len() >= MAX_PREVIOUS_KEYS {
            return Err(Error::new(
                ErrorKind::Config,
                format!("at most {MAX_PREVIOUS_KEYS} previous secret keys are kept"),
            ));
        }
        self.previous.push((keyed_mac(secret)?, retire_at_ms));
        Ok(())
    }

    /// Also verifies cookies signed with `secret`, a key that does not sign here yet: during a
    /// rolling rotation, instances that already sign with it may have issued them. At most
    /// [`CookieSigner::MAX_NEXT_KEYS`](crate::CookieSigner::MAX_NEXT_KEYS).
    pub fn add_next(&mut self, secret: &[u8]) -> Result<()> {
        if self.next.len() >= MAX_NEXT_KEYS {
            return Err(Error::new(
                ErrorKind::Config,
                format!("at most {MAX_NEXT_KEYS} next secret key is kept"),
            ));
        }
        self.next.push(keyed_mac(secret)?);
        Ok(())
    }

    /// The cookie value for `token`, signed with the current key.
    pub fn sign(&self, token: &SessionToken) -> String {
        let tag = mac_for(&self.current, token).finalize().into_bytes();
        let mut out = token.to_text();
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(tag));
        out
    }

    /// The token inside a cookie value, if the value is exactly one canonical signed token,
    /// signed by the current key, a next key, or a previous key not retired at `now_ms`.
    ///
    /// Anything else (wrong length, a missing or extra separator, another alphabet, a
    /// non-canonical spelling, a signature from an unknown or retired key) is `None`.
    pub fn verify(&self, value: &str, now_ms: u64) -> Option<SessionToken> {
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
        let live_previous = self
            .previous
            .iter()
            .filter(|(_, retire_at_ms)| now_ms < *retire_at_ms)
            .map(|(key, _)| key);
        std::iter::once(&self.current)
            .chain(&self.next)
            .chain(live_previous)
            .any(|key| mac_for(key, &token).verify_slice(&signature).is_ok())
            .then_some(token)
    }
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSigner(..)")
    }
}

// The constants, with the type they belong to.
impl CookieSigner {
    /// Shortest secret key accepted, in bytes.
    pub const MIN_SECRET_LEN: usize = MIN_SECRET_LEN;

    /// Exact length of a signed cookie value.
    pub const SIGNED_VALUE_LEN: usize = SIGNED_VALUE_LEN;

    /// Most previous keys kept at once: each one costs a forged cookie one more HMAC.
    pub const MAX_PREVIOUS_KEYS: usize = MAX_PREVIOUS_KEYS;

    /// Most next keys (accepted, not yet signing) kept at once: one rotation in flight. A forged
    /// cookie costs at most `1 + MAX_PREVIOUS_KEYS + MAX_NEXT_KEYS` HMACs, six.
    pub const MAX_NEXT_KEYS: usize = MAX_NEXT_KEYS;
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn signer(byte: u8) -> Result<CookieSigner> {
        CookieSigner::new(&[byte; 32])
    }

    #[test]
    fn signed_value_verifies() -> Result<()> {
        let s = signer(1)?;
        let token = SessionToken::generate()?;
        let value = s.sign(&token);
        assert_eq!(value.len(), SIGNED_VALUE_LEN);
        assert!(s.verify(&value, NOW) == Some(token));
        Ok(())
    }

    // Every way of bending a signed value that must fail, for a signer that otherwise accepts
    // `value`.
    fn assert_tampering_fails(s: &CookieSigner, value: &str) -> Result<()> {
        assert!(
            s.verify(&format!("{value}x"), NOW).is_none(),
            "appended byte"
        );
        assert!(s.verify(&format!("{value}="), NOW).is_none(), "padding");
        assert!(
            s.verify(&value[..value.len() - 1], NOW).is_none(),
            "truncated"
        );
        assert!(
            s.verify(&value.to_uppercase(), NOW).is_none(),
            "case changed"
        );
        assert!(
            s.verify(&value.to_lowercase(), NOW).is_none(),
            "case changed"
        );
        assert!(
            s.verify(&value.replacen('.', "!", 1), NOW).is_none(),
            "separator"
        );
        for at in [5, SIGNED_VALUE_LEN - 5] {
            let mut flipped = value.to_owned().into_bytes();
            flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(flipped)
                .map_err(|e| Error::with_source(ErrorKind::Decode, "utf8", e))?;
            assert!(s.verify(&flipped, NOW).is_none(), "byte {at} changed");
        }
        Ok(())
    }

    #[test]
    fn tampering_is_rejected() -> Result<()> {
        let s = signer(1)?;
        let value = s.sign(&SessionToken::generate()?);
        assert!(signer(2)?.verify(&value, NOW).is_none(), "another key");
        assert_tampering_fails(&s, &value)
    }

    #[test]
    fn previous_keys_verify_until_they_retire() -> Result<()> {
        let old = signer(1)?;
        let token = SessionToken::generate()?;
        let old_value = old.sign(&token);
        let mut rotated = signer(2)?;
        rotated.add_previous(&[1; 32], NOW + 1_000)?;
        // The current key signs; the previous one still verifies its cookies.
        assert!(rotated.sign(&token) != old_value);
        assert!(rotated.verify(&rotated.sign(&token), NOW) == Some(token.clone()));
        assert!(rotated.verify(&old_value, NOW) == Some(token.clone()));
        assert!(rotated.verify(&old_value, NOW + 999) == Some(token));
        assert_tampering_fails(&rotated, &old_value)?;
        // Retired: the old key's cookies are forgeries now.
        assert!(rotated.verify(&old_value, NOW + 1_000).is_none());
        assert!(rotated.verify(&old_value, NOW + 86_400_000).is_none());
        // The new key's cookies are untouched by the retirement.
        let fresh = rotated.sign(&SessionToken::generate()?);
        assert!(rotated.verify(&fresh, NOW + 86_400_000).is_some());
        Ok(())
    }

    #[test]
    fn previous_keys_are_bounded_and_checked() -> Result<()> {
        let mut s = signer(1)?;
        assert_eq!(
            s.add_previous(b"short", NOW).map_err(|e| e.kind()),
            Err(ErrorKind::Config)
        );
        for byte in 0..MAX_PREVIOUS_KEYS {
            s.add_previous(&[u8::try_from(byte).unwrap_or(0) + 10; 32], NOW)?;
        }
        assert_eq!(
            s.add_previous(&[99; 32], NOW).map_err(|e| e.kind()),
            Err(ErrorKind::Config)
        );
        Ok(())
    }

    #[test]
    fn next_keys_verify_but_never_sign() -> Result<()> {
        // An instance that already signs with the new key (the old one kept as previous)...
        let rotated = {
            let mut s = signer(2)?;
            s.add_previous(&[1; 32], NOW + 1_000)?;
            s
        };
        let token = SessionToken::generate()?;
        let fresh = rotated.sign(&token);
        // ...issues a cookie that an instance knowing only the old key takes for a forgery,
        let old = signer(1)?;
        assert!(old.verify(&fresh, NOW).is_none());
        // but that one announcing the new key as next accepts, at any time.
        let mut announced = signer(1)?;
        announced.add_next(&[2; 32])?;
        assert!(announced.verify(&fresh, NOW) == Some(token.clone()));
        assert!(announced.verify(&fresh, u64::MAX) == Some(token.clone()));
        assert_tampering_fails(&announced, &fresh)?;
        // It still signs with the old key, which every instance knows.
        let own = announced.sign(&token);
        assert!(own == old.sign(&token) && own != fresh);
        assert!(rotated.verify(&own, NOW) == Some(token));
        // A key it was not told about is still refused.
        assert!(
            announced
                .verify(&signer(3)?.sign(&SessionToken::generate()?), NOW)
                .is_none()
        );
        Ok(())
    }

    #[test]
    fn next_keys_are_bounded_and_checked() -> Result<()> {
        let mut s = signer(1)?;
        assert_eq!(
            s.add_next(b"short").map_err(|e| e.kind()),
            Err(ErrorKind::Config)
        );
        for byte in 0..MAX_NEXT_KEYS {
            s.add_next(&[u8::try_from(byte).unwrap_or(0) + 10; 32])?;
        }
        assert_eq!(
            s.add_next(&[99; 32]).map_err(|e| e.kind()),
            Err(ErrorKind::Config)
        );
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

/// Properties over generated inputs (proptest), run with the normal tests on stable.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn signer() -> CookieSigner {
        let mut signer = CookieSigner::new(&[7; 32]).unwrap_or_else(|_| unreachable!());
        let _ = signer.add_previous(&[8; 32], NOW + 1);
        let _ = signer.add_next(&[9; 32]);
        signer
    }

    proptest! {
        /// Only exactly what the signer wrote verifies: any accepted text is the signature of
        /// the token it names, under the current key, the next one or a live previous one.
        #[test]
        fn accepted_values_are_exactly_signed_tokens(value in "[A-Za-z0-9_.=-]{85,89}|\\PC{0,100}") {
            let s = signer();
            if let Some(token) = s.verify(&value, NOW) {
                let old = CookieSigner::new(&[8; 32]).unwrap_or_else(|_| unreachable!());
                let next = CookieSigner::new(&[9; 32]).unwrap_or_else(|_| unreachable!());
                prop_assert!(
                    value == s.sign(&token) || value == old.sign(&token) || value == next.sign(&token)
                );
            }
        }

        /// Changing any one character of a signed value makes it fail.
        #[test]
        fn any_one_changed_character_fails(
            bytes in any::<[u8; 32]>(),
            at in 0..SIGNED_VALUE_LEN,
            replacement in proptest::char::any(),
        ) {
            let s = signer();
            let value = s.sign(&SessionToken::from_bytes(bytes));
            let mut changed: Vec<char> = value.chars().collect();
            prop_assume!(changed[at] != replacement);
            changed[at] = replacement;
            let changed: String = changed.into_iter().collect();
            prop_assert!(s.verify(&changed, NOW).is_none());
        }
    }
}
