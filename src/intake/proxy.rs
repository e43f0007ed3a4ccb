//! Reads a PROXY protocol header ([`crate::wire::proxy`]) off an accepted
//! socket, consuming exactly its bytes.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::wire::proxy::{decode, Header, ProxyError, V2_SIGNATURE};

/// Time a trusted balancer has to send the whole header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one header off `stream`, consuming exactly its bytes, within
/// [`HEADER_TIMEOUT`].
pub async fn read_header<S>(stream: &mut S) -> Result<Header, ProxyError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    match tokio::time::timeout(HEADER_TIMEOUT, read_exactly_header(stream)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout(HEADER_TIMEOUT)),
    }
}

async fn read_exactly_header<S>(stream: &mut S) -> Result<Header, ProxyError>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let io = |e: std::io::Error| ProxyError::Io(e.to_string());
    // Twelve bytes are safe to read whatever the version: the shortest v1
    // header ("PROXY UNKNOWN\r\n") is fifteen.
    let mut buf = vec![0u8; 12];
    stream.read_exact(&mut buf).await.map_err(io)?;
    loop {
        match decode(&buf)? {
            Some((header, n)) => {
                debug_assert_eq!(n, buf.len());
                return Ok(header);
            }
            None => {
                // v2 states its length up front, so it is read in at most
                // two more reads; v1 has no length and is read a byte at a
                // time so that nothing past its LF is consumed.
                let more = if buf[..12] == V2_SIGNATURE {
                    if buf.len() < 16 {
                        16 - buf.len()
                    } else {
                        16 + u16::from_be_bytes([buf[14], buf[15]]) as usize - buf.len()
                    }
                } else {
                    1
                };
                let at = buf.len();
                buf.resize(at + more, 0);
                stream.read_exact(&mut buf[at..]).await.map_err(io)?;
            }
        }
    }
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

    #[tokio::test]
    async fn read_header_stops_at_the_payload() {
        let mut input: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 9100\r\n\x02lp\n";
        let header = read_header(&mut input).await.unwrap();
        assert!(matches!(header, Header::Proxied { .. }));
        assert_eq!(input, b"\x02lp\n");

        let mut body = vec![127, 0, 0, 9, 127, 0, 0, 1, 0, 1, 0, 2];
        body.extend_from_slice(&[0x04, 0x00, 0x01, b'x']);
        let mut h = v2(1, 0x11, &body);
        h.extend_from_slice(b"POST /ipp/print HTTP/1.1\r\n");
        let mut input: &[u8] = &h;
        let header = read_header(&mut input).await.unwrap();
        assert_eq!(
            header,
            Header::Proxied {
                source: "127.0.0.9:1".parse().unwrap(),
                destination: "127.0.0.1:2".parse().unwrap(),
            }
        );
        assert_eq!(input, b"POST /ipp/print HTTP/1.1\r\n");

        let mut input: &[u8] = b"\x02lp\n";
        assert!(matches!(
            read_header(&mut input).await,
            Err(ProxyError::Io(_))
        ));
        let mut input: &[u8] = b"hello, world, no header here";
        assert_eq!(read_header(&mut input).await, Err(ProxyError::Missing));
    }
}
