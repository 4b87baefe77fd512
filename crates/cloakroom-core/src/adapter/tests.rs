use std::sync::Arc;

use super::*;

fn finished(accessed: bool) -> Finished {
    Finished {
        set_cookie: None,
        accessed,
        vary: Arc::from("Cookie"),
    }
}

#[test]
fn only_a_bare_private_or_no_store_is_kept() {
    let used = finished(true);
    let marks = |cache_control: &str| used.cache_marks(false, Some(cache_control.as_bytes()));
    for kept in [
        "private",
        "no-store",
        "Private, max-age=60",
        "max-age=0, NO-STORE",
    ] {
        assert_eq!(marks(kept).cache_control, None, "{kept}");
    }
    // Field-scoped `private` lets shared caches keep the rest; `public` overrides; look-alike
    // extensions are not `private`.
    for replaced in [
        "private=\"Set-Cookie\"",
        "public, private",
        "x-private",
        "max-age=600",
        "no-storey",
    ] {
        assert_eq!(
            marks(replaced).cache_control,
            Some("no-store"),
            "{replaced}"
        );
    }
    assert_eq!(used.cache_marks(false, None).vary, Some("Cookie"));
    // A response that sets a cookie is never stored, whatever the handler said.
    assert_eq!(
        used.cache_marks(true, Some(b"private")).cache_control,
        Some("no-store")
    );
    // A response that did not use the session is left alone.
    let unused = finished(false);
    assert_eq!(unused.cache_marks(false, None).cache_control, None);
    assert_eq!(unused.cache_marks(false, None).vary, None);
}
