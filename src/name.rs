//! A file name a client may show and save: from the server's Content-Disposition (parsed in
//! [`crate::response`]) or else from the last path segment of the URL the occupant shared,
//! made [`safe`]: one name with no path, nothing invisible or reordering, at most 255 bytes.

use url::Url;

/// The longest name kept, in bytes (what most file systems take).
pub const MAX_NAME_BYTES: usize = 255;

/// The longest tail after the last `.` that counts as an extension kept when a name is cut.
const MAX_EXTENSION_BYTES: usize = 32;

/// `raw` as a safe file name, or `None` when nothing usable is left. Only what follows the
/// last `/` or `\` is kept (`../../x` is `x`); C0 and C1 controls, DEL and the bidi controls
/// (which can make `gpj.exe` look like `exe.jpg`) are removed; surrounding white space is
/// trimmed; `.` and `..` are refused; a longer name is cut at a character boundary to
/// [`MAX_NAME_BYTES`], keeping its extension.
pub fn safe(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|&c| !hidden(c)).collect();
    let name = cleaned.trim();
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let name = cut(name);
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

/// Characters a name must not carry: controls (C0, DEL, C1) and bidi controls.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `name` cut to at most [`MAX_NAME_BYTES`] at a character boundary, its extension kept.
fn cut(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_owned();
    }
    let ext = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXTENSION_BYTES => &name[dot..],
        _ => "",
    };
    let stem = &name[..name.len() - ext.len()];
    let mut end = MAX_NAME_BYTES - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", stem[..end].trim_end())
}

/// The safe name in `url`'s last path segment, percent-decoded (it must then be UTF-8).
pub fn from_url(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    safe(&String::from_utf8(percent_decode(segment)).ok()?)
}

/// `%XX` sequences to their bytes; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let pair = (bytes[i] == b'%').then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?))).flatten();
        match pair {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_safe_or_none() {
        assert_eq!(safe("../../x").as_deref(), Some("x"));
        assert_eq!(safe("..\\..\\boot.ini").as_deref(), Some("boot.ini"));
        assert_eq!(safe("C:\\Users\\me\\photo.jpg").as_deref(), Some("photo.jpg"));
        assert_eq!(safe("a\0b.jpg").as_deref(), Some("ab.jpg"));
        assert_eq!(safe("evil\u{202E}gpj.exe").as_deref(), Some("evilgpj.exe"));
        assert_eq!(safe("\u{2066}a\u{2069}\u{200E}\u{200F}\u{061C}.png").as_deref(), Some("a.png"));
        assert_eq!(safe("tab\there\u{7f}\u{85}\u{9f}.txt").as_deref(), Some("tabhere.txt"));
        assert_eq!(safe("  spaced name.pdf \n").as_deref(), Some("spaced name.pdf"));
        for none in ["", " ", ".", "..", " .. ", "../", "a/..", "\u{202E}", "\0\0", "x\\ "] {
            assert_eq!(safe(none), None, "{none:?}");
        }
    }

    #[test]
    fn long_names_are_cut_at_a_char_boundary_keeping_the_extension() {
        let long = "a".repeat(10_000) + ".jpg";
        let s = safe(&long).unwrap();
        assert_eq!(s.len(), MAX_NAME_BYTES);
        assert!(s.ends_with("a.jpg"));
        // Three-byte characters: 251 is not a boundary, the cut steps back to one.
        let wide = "\u{20ac}".repeat(100) + ".jpeg";
        let s = safe(&wide).unwrap();
        assert!(s.len() <= MAX_NAME_BYTES && s.len() > MAX_NAME_BYTES - 3 && s.ends_with("\u{20ac}.jpeg"), "{s}");
        // No extension to keep (the dot is too far from the end): a plain cut.
        let s = safe(&("b.".to_owned() + &"c".repeat(300))).unwrap();
        assert_eq!(s.len(), MAX_NAME_BYTES);
        assert!(s.starts_with("b.c"));
        // 10 KB of text with spaces: cut, trimmed, still a name.
        let prose = "lorem ipsum ".repeat(900);
        assert!(safe(&prose).is_some_and(|s| s.len() <= MAX_NAME_BYTES && !s.ends_with(' ')));
    }

    #[test]
    fn names_from_urls_are_the_decoded_last_segment() {
        let name = |u: &str| from_url(&Url::parse(u).unwrap());
        assert_eq!(name("https://h/a/b/photo%20one.jpg?x=1").as_deref(), Some("photo one.jpg"));
        assert_eq!(name("https://h/caf%C3%A9.png").as_deref(), Some("café.png"));
        assert_eq!(name("https://h/a/..%2F..%2Fx").as_deref(), Some("x"));
        assert_eq!(name("https://h/a%00b.gif").as_deref(), Some("ab.gif"));
        assert_eq!(name("https://h/%E2%80%AEgpj.exe").as_deref(), Some("gpj.exe"));
        assert_eq!(name("https://h/100%.txt").as_deref(), Some("100%.txt"));
        for none in ["https://h/", "https://h/dir/", "https://h/%FF%FE.jpg", "https://h/%2e%2e", "https://h/%20"] {
            assert_eq!(name(none), None, "{none}");
        }
    }
}
