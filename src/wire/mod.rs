//! Wire formats, pure: bytes in, values out, no sockets, no files, no tokio.
//! Uses nothing of the crate but the limits each codec owns; every codec is fuzzed.

pub mod ipp;
pub mod lpd;
pub mod proxy;
pub mod sniff;

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
