//! One module per listener protocol. Each takes an accepted, routed
//! connection ([`Connection`]) and answers refusals in its own protocol.

pub mod ipp;
pub mod lpd;
pub mod proxy;
pub mod raw;
pub mod sniff;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::daemon::Shared;
use crate::ids::ListenerName;
use crate::snapshot::{ConnectionSlot, Routed};

/// What routing and admission decided about a connection.
pub enum Admission {
    /// The tenant takes the connection.
    Admitted {
        /// The tenant, with the snapshot current at accept.
        routed: Routed,
        /// The tenant's connection slot, held for the connection's life.
        slot: ConnectionSlot,
    },
    /// The address belongs to no tenant.
    NoTenant,
    /// The tenant has no free connection slot.
    OverLimit(Routed),
}

/// An accepted connection, handed to its listener's protocol.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// The peer (canonicalised: no v4-mapped v6 addresses).
    pub peer: SocketAddr,
    /// The listener it arrived on.
    pub listener: ListenerName,
    /// Routing and admission.
    pub admission: Admission,
    /// Daemon-wide state.
    pub shared: Arc<Shared>,
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

/// Ends a connection with a TCP reset, so the peer sees an error rather
/// than an orderly close (which a RAW sender takes as success).
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}
