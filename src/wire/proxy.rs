//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy
//! specifies it (doc/proxy-protocol.txt): a load balancer in front of a
//! listener prepends one header carrying the client's address, and routing
//! uses that address instead of the balancer's.
//!
//! [`decode`] is a pure parser over a byte prefix; `intake::proxy` reads a
//! header off a socket with it, without consuming a single byte of the
//! payload that follows, so the listener's protocol starts on its first byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The twelve bytes that open a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest version 1 header, CR LF included (the specification's bound).
pub const V1_MAX_LEN: usize = 107;

/// Longest version 2 header printroute accepts, fixed part and TLVs included.
/// The format allows 16 + 65,535 bytes; a balancer sending addresses and a
/// few TLVs needs far less.
pub const V2_MAX_LEN: usize = 16 + 1024;

/// What a valid header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied connection: the client's and the address it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the balancer's frontend).
        destination: SocketAddr,
    },
    /// The balancer speaks for itself (v2 LOCAL, e.g. a health check), or
    /// the client's address is not an IP one (v1 UNKNOWN, v2 UNSPEC or
    /// UNIX): the connection's own addresses stand.
    Local,
}

/// Why a header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// A version 1 header that breaks the grammar.
    #[error("bad PROXY v1 header: {0}")]
    BadV1(&'static str),
    /// A version 2 header that breaks the format.
    #[error("bad PROXY v2 header: {0}")]
    BadV2(&'static str),
    /// A header longer than printroute accepts.
    #[error("PROXY header longer than {0} bytes")]
    TooLong(usize),
    /// The connection ended or failed before the header was complete.
    #[error("connection ended inside the PROXY header: {0}")]
    Io(String),
    /// The header did not arrive in time (`intake::proxy::HEADER_TIMEOUT`).
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
}

/// Parses a header at the start of `buf`.
///
/// `Ok(Some((header, n)))`: a complete header of `n` bytes. `Ok(None)`:
/// `buf` is a valid beginning, more bytes are needed. `Err`: not a header,
/// or a broken one; per the specification the connection must be dropped.
pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig] == V2_SIGNATURE[..sig] {
        return decode_v2(buf);
    }
    let v1 = b"PROXY ";
    let n = buf.len().min(v1.len());
    if buf[..n] == v1[..n] {
        return decode_v1(buf);
    }
    Err(ProxyError::Missing)
}

fn decode_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    let Some(lf) = buf.iter().take(V1_MAX_LEN).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::TooLong(V1_MAX_LEN))
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(ProxyError::BadV1("line does not end in CR LF"));
    }
    let line = std::str::from_utf8(&buf[..lf - 1]).map_err(|_| ProxyError::BadV1("not ASCII"))?;
    let mut words = line.split(' ');
    let _proxy = words.next();
    let header = match words.next() {
        // Whatever follows UNKNOWN is ignored (the specification's rule).
        Some("UNKNOWN") => Header::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let mut next = |what| words.next().ok_or(ProxyError::BadV1(what));
            let src = next("no source address")?;
            let dst = next("no destination address")?;
            let sport = next("no source port")?;
            let dport = next("no destination port")?;
            if words.next().is_some() {
                return Err(ProxyError::BadV1("extra fields"));
            }
            let ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip = if family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| ProxyError::BadV1("address does not match its family"))
            };
            let port = |s: &str| -> Result<u16, ProxyError> {
                // Decimal, no sign, no leading zeros (the specification's grammar).
                if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
                    return Err(ProxyError::BadV1("bad port"));
                }
                if !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ProxyError::BadV1("bad port"));
                }
                s.parse().map_err(|_| ProxyError::BadV1("bad port"))
            };
            Header::Proxied {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(ProxyError::BadV1("unknown protocol family")),
    };
    Ok(Some((header, lf + 1)))
}

fn decode_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(ProxyError::BadV2("version is not 2"));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let total = 16 + len;
    if total > V2_MAX_LEN {
        return Err(ProxyError::TooLong(V2_MAX_LEN));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    let header = match command {
        0x0 => Header::Local,
        0x1 => match buf[13] {
            // TCP over IPv4 (0x11) or UDP over IPv4 (0x12): 4 + 4 + 2 + 2 bytes.
            0x11 | 0x12 => {
                if body.len() < 12 {
                    return Err(ProxyError::BadV2("IPv4 address block too short"));
                }
                let a = |i: usize| Ipv4Addr::new(body[i], body[i + 1], body[i + 2], body[i + 3]);
                let p = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
                Header::Proxied {
                    source: SocketAddr::new(IpAddr::V4(a(0)), p(8)),
                    destination: SocketAddr::new(IpAddr::V4(a(4)), p(10)),
                }
            }
            // TCP or UDP over IPv6: 16 + 16 + 2 + 2 bytes.
            0x21 | 0x22 => {
                if body.len() < 36 {
                    return Err(ProxyError::BadV2("IPv6 address block too short"));
                }
                let a = |i: usize| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&body[i..i + 16]);
                    Ipv6Addr::from(o)
                };
                let p = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
                Header::Proxied {
                    source: SocketAddr::new(IpAddr::V6(a(0)), p(32)),
                    destination: SocketAddr::new(IpAddr::V6(a(16)), p(34)),
                }
            }
            // UNSPEC and UNIX sockets carry no IP address.
            0x00 | 0x31 | 0x32 => Header::Local,
            _ => return Err(ProxyError::BadV2("unknown address family")),
        },
        _ => return Err(ProxyError::BadV2("unknown command")),
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | command);
        b.push(family);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 9100\r\nDATA";
        let (header, n) = decode(h).unwrap().unwrap();
        assert_eq!(n, h.len() - 4);
        assert_eq!(
            header,
            Header::Proxied {
                source: "192.0.2.7:56324".parse().unwrap(),
                destination: "198.51.100.1:9100".parse().unwrap(),
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 631\r\n";
        let (header, _) = decode(h).unwrap().unwrap();
        assert_eq!(
            header,
            Header::Proxied {
                source: "[2001:db8::7]:4000".parse().unwrap(),
                destination: "[2001:db8::1]:631".parse().unwrap(),
            }
        );
        assert_eq!(
            decode(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((Header::Local, 15))
        );
    }

    #[test]
    fn v1_refusals() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 9100\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 9100\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 0123 9100\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 9100\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(b"PROXY TCP4 192.0.2"), Ok(None));
        assert_eq!(decode(b"PRO"), Ok(None));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(decode(&long), Err(ProxyError::TooLong(V1_MAX_LEN)));
    }

    #[test]
    fn v2_families_and_commands() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&9100u16.to_be_bytes());
        // A TLV after the addresses is skipped.
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'a', b'b']);
        let h = v2(1, 0x11, &body);
        let (header, n) = decode(&h).unwrap().unwrap();
        assert_eq!(n, h.len());
        assert_eq!(
            header,
            Header::Proxied {
                source: "192.0.2.7:56324".parse().unwrap(),
                destination: "198.51.100.1:9100".parse().unwrap(),
            }
        );
        for cut in 0..h.len() {
            assert_eq!(decode(&h[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        let mut body6 = Vec::new();
        body6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body6.extend_from_slice(&[0x0f, 0xa0, 0x02, 0x77]);
        let (header, _) = decode(&v2(1, 0x21, &body6)).unwrap().unwrap();
        assert_eq!(
            header,
            Header::Proxied {
                source: "[2001:db8::7]:4000".parse().unwrap(),
                destination: "[2001:db8::1]:631".parse().unwrap(),
            }
        );
        assert_eq!(decode(&v2(0, 0x00, &[])).unwrap().unwrap().0, Header::Local);
        assert_eq!(decode(&v2(1, 0x00, &[])).unwrap().unwrap().0, Header::Local);
        assert!(decode(&v2(1, 0x11, &body[..8])).is_err());
        assert!(decode(&v2(1, 0x21, &body6[..30])).is_err());
        assert!(decode(&v2(2, 0x11, &body)).is_err());
        assert!(decode(&v2(1, 0x41, &body)).is_err());
        let mut v3 = v2(1, 0x11, &body);
        v3[12] = 0x31;
        assert!(decode(&v3).is_err());
        let big = v2(1, 0x11, &vec![0u8; V2_MAX_LEN]);
        assert_eq!(decode(&big), Err(ProxyError::TooLong(V2_MAX_LEN)));
    }
}
