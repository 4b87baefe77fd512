//! What the demo accepts as a username.

/// Longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Checks a username; the error is a message for the user.
pub fn validate_username(raw: &str) -> Result<&str, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Please enter a username.");
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err("That username is too long (64 characters at most).");
    }
    if name.chars().any(char::is_control) {
        return Err("Usernames cannot contain control characters.");
    }
    if name.chars().any(is_invisible_format) {
        return Err("Usernames cannot contain invisible or text-direction characters.");
    }
    // The form decoder replaces bytes that are not UTF-8 with U+FFFD: refuse rather than store
    // a name the user did not type.
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return Err("Usernames must be valid UTF-8 text.");
    }
    Ok(name)
}

/// Characters that change how the text around them is shown without being seen: direction
/// overrides and isolates (which can make `admin\u{202e}txt` read as another name) and
/// zero-width characters (which make two different names look alike).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}
