//! Wire formats, pure: bytes in, values out, no sockets, no files, no tokio.
//! Uses nothing of the crate but the limits each codec owns; every codec is fuzzed.

pub mod ipp;
pub mod lpd;
pub mod proxy;
pub mod sniff;

/// Text from the wire as printroute keeps it: printable characters only
/// (control characters, escape sequences' among them, removed), white space
/// trimmed at both ends, cut at `max` bytes on a character boundary.
/// Cleaning a cleaned text changes nothing.
pub fn clean_text(s: &str, max: usize) -> String {
    let out: String = s.chars().filter(|c| !c.is_control()).collect();
    // Trim again after the cut: it may fall just after a space.
    truncate_str(out.trim(), max).trim_end().to_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary: protocol fields have byte limits (RFC 8010 5.1,
/// RFC 1179 7), and cutting inside a UTF-8 sequence would corrupt them.
pub fn truncate_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
