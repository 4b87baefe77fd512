//! Hostile cookies, one named test per shape.
//!
//! Every shape must be treated as no cookie at all: the handle is anonymous, a bad cookie of our
//! name is cleared, writes are refused, and, checked through a counting store, nothing reaches
//! the store.

use std::time::{Duration, SystemTime};

use anyhow::ensure;
use cloakroom_core::adapter;
use cloakroom_core::{CookieSigner, CookieState, SessionConfig, SessionToken};
use cloakroom_test::StoreFixture;

use super::{SECRET, counted};

const RETIRED: &[u8] = b"hostile-input-retired-0123456789abcdef012";
const NAME: &str = "__Host-cloakroom";

/// What a shape is expected to be taken for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Taken {
    /// A cookie of our name that is not one validly signed token: cleared.
    Forged,
    /// Not a cookie of our name at all: left alone.
    NotOurs,
}

fn signed(secret: &[u8]) -> anyhow::Result<String> {
    Ok(CookieSigner::new(secret)?.sign(&SessionToken::generate()?))
}

fn ours(value: &str) -> String {
    format!("{NAME}={value}")
}

// Builds the header for a shape, given one genuinely signed value.
async fn check(
    f: StoreFixture,
    header: impl Fn(&str) -> anyhow::Result<String>,
    taken: Taken,
) -> anyhow::Result<()> {
    let config = SessionConfig::new(SECRET)?
        // A key that retired an hour ago still names the cookies it signed: they must fail.
        .with_previous_secret(RETIRED, SystemTime::now() - Duration::from_secs(3600))?;
    let (manager, counts) = counted(f.store.clone(), config)?;
    let header = header(&signed(SECRET)?)?;
    let session = adapter::session_from_cookie_headers(&manager, [header.as_bytes()]);
    let expected = match taken {
        Taken::Forged => CookieState::Invalid,
        Taken::NotOurs => CookieState::Absent,
    };
    ensure!(
        session.cookie_state() == expected,
        "{header:.80}: {:?}",
        session.cookie_state()
    );
    ensure!(!session.exists().await?, "a session was found");
    ensure!(
        session.incr("visits", 1).await?.is_none(),
        "an increment counted"
    );
    ensure!(session.insert("x", 1).is_err(), "a write was accepted");
    let finished = adapter::finish(&session).await?;
    let cleared = finished
        .set_cookie
        .as_ref()
        .is_some_and(|c| c.header_value().starts_with(&format!("{NAME}=;")));
    ensure!(
        cleared == (taken == Taken::Forged),
        "cleared: {cleared}, {finished:?}"
    );
    ensure!(counts.total() == 0, "{} store calls", counts.total());
    Ok(())
}

macro_rules! hostile {
    ($($name:ident: $taken:ident, $header:expr;)*) => {
        $(
            async fn $name(f: StoreFixture) -> anyhow::Result<()> {
                check(f, $header, Taken::$taken).await
            }
        )*
        cloakroom_test::test_over_memory_and_redis!($($name),*);
    };
}

hostile! {
    empty_value: Forged, |_: &str| Ok(ours(""));
    name_without_equals: NotOurs, |_: &str| Ok(NAME.to_owned());
    same_cookie_twice: Forged, |v: &str| Ok(format!("{}; {}", ours(v), ours(v)));
    two_different_cookies_of_our_name: Forged, |v: &str| Ok(format!("{}; {}", ours(v), ours(&signed(SECRET)?)));
    one_character_short: Forged, |v: &str| Ok(ours(&v[..v.len() - 1]));
    one_character_long: Forged, |v: &str| Ok(ours(&format!("{v}A")));
    token_only: Forged, |v: &str| Ok(ours(&v[..43]));
    signature_only: Forged, |v: &str| Ok(ours(&v[44..]));
    token_and_signature_swapped: Forged, |v: &str| Ok(ours(&format!("{}.{}", &v[44..], &v[..43])));
    two_separators: Forged, |v: &str| Ok(ours(&format!("{}..{}", &v[..43], &v[45..])));
    standard_base64_alphabet: Forged, |v: &str| Ok(ours(&format!("+/{}", &v[2..])));
    padding_added: Forged, |v: &str| Ok(ours(&format!("{v}=")));
    non_canonical_trailing_bits: Forged, |v: &str| {
        // The token's last character carries 2 bits that must be zero: set them.
        let mut chars: Vec<char> = v.chars().collect();
        chars[42] = if chars[42] == 'B' { 'C' } else { 'B' };
        Ok(ours(&chars.into_iter().collect::<String>()))
    };
    percent_encoded_separator: Forged, |v: &str| Ok(ours(&v.replace('.', "%2E")));
    double_quoted: Forged, |v: &str| Ok(ours(&format!("\"{v}\"")));
    upper_cased: Forged, |v: &str| Ok(ours(&v.to_uppercase()));
    lower_cased: Forged, |v: &str| Ok(ours(&v.to_lowercase()));
    control_bytes: Forged, |v: &str| Ok(ours(&format!("{}\u{1}\u{7f}", &v[..85])));
    nul_byte: Forged, |v: &str| Ok(ours(&format!("{}\u{0}", &v[..86])));
    unicode_lookalikes: Forged, |v: &str| Ok(ours(&format!("Αо{}", &v[2..])));
    ten_kilobytes: Forged, |_: &str| Ok(ours(&"A".repeat(10_240)));
    glob_characters: Forged, |v: &str| Ok(ours(&format!("{}*?[a-z]", &v[..82])));
    hash_tag_characters: Forged, |v: &str| Ok(ours(&format!("{{{}}}", &v[..85])));
    signed_by_an_unknown_key: Forged, |_: &str| Ok(ours(&signed(b"somebody-else-secret-0123456789abcdef01")?));
    signed_by_a_retired_key: Forged, |_: &str| Ok(ours(&signed(RETIRED)?));
    a_thousand_cookies_of_our_name: Forged, |v: &str| Ok(vec![ours(v); 1000].join("; "));
    our_name_in_another_case: NotOurs, |v: &str| Ok(format!("__host-cloakroom={v}"));
    our_name_inside_another_value: NotOurs, |v: &str| Ok(format!("other=\"{NAME}={v}\""));
    our_name_with_a_prefix: NotOurs, |v: &str| Ok(format!("x{NAME}={v}"));
}
