//! Reading one cookie out of a request's `Cookie` headers, as bytes.
//!
//! A browser sends every cookie of the site in one header, whoever set them: a page script, a
//! sibling subdomain writing to the parent domain, another app on the same host. Some of those
//! hold bytes that are not ASCII (`city=Zürich` in UTF-8, or Latin-1). Such a header is not a
//! valid `str` for `http`'s `HeaderValue::to_str`, and a reader that gives up on the whole header
//! loses our cookie with it: the user looks logged out, and a logout deletes nothing. So headers
//! are split as bytes, and only the value of the cookie asked for must be text.

/// The values of every cookie called `name` in these `Cookie` header values, in order, as
/// sent (not percent-decoded, surrounding whitespace removed).
///
/// Pairs are separated by `;`; a pair without `=` is skipped, as browsers do. Other cookies'
/// bytes are never read beyond their names, so a neighbour of any encoding cannot hide ours.
pub fn values_named<'h, 'n, I>(
    headers: I,
    name: &'n str,
) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n, I>
where
    I: IntoIterator<Item = &'h [u8]>,
{
    let name = name.as_bytes();
    headers
        .into_iter()
        .flat_map(|header| header.split(|&b| b == b';'))
        .filter_map(move |pair| {
            let at = pair.iter().position(|&b| b == b'=')?;
            // Whitespace around names and values is not theirs, as the `cookie` crate reads it.
            let (found, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
            (found == name).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<'a>(headers: &[&'a [u8]], name: &'a str) -> Vec<&'a [u8]> {
        values_named(headers.iter().copied(), name).collect()
    }

    #[test]
    fn neighbours_of_any_encoding_do_not_hide_a_cookie() {
        let utf8 = "city=Zürich; id=abc; lang=fr".as_bytes();
        assert_eq!(named(&[utf8], "id"), [b"abc"]);
        let latin1: &[u8] = b"city=Z\xfcrich;id=abc";
        assert_eq!(named(&[latin1], "id"), [b"abc"]);
        let garbage: &[u8] = b"\xff\xfe=\x00; id = abc ;x";
        assert_eq!(named(&[garbage], "id"), [b"abc"]);
    }

    #[test]
    fn every_occurrence_is_reported_in_order() {
        let headers: [&[u8]; 2] = [b"id=1; other=2", b"id=; id=3=4"];
        assert_eq!(named(&headers, "id"), [&b"1"[..], b"", b"3=4"]);
        assert!(named(&[b"ids=1; xid=2; id"], "id").is_empty());
        assert!(named(&[b""], "id").is_empty());
    }
}
