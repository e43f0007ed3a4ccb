//! What the HTTP service hands the IPP operations for each request, and
//! what they hand back: the connection's context, the document that
//! follows the IPP message, the reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::ids::ListenerName;
use crate::intake::Intake;
use crate::snapshot::Routed;
use crate::wire::ipp as codec;

/// Longest a client may take to send a request's HTTP header, and longest
/// an idle keep-alive connection is kept: a client that trickles its header
/// holds only its own connection, never a worker (cf. CUPS CVE-2025-58436).
/// A tenant's shorter `idle-timeout` wins.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes after the IPP message of a request that carries no document
/// (RFC 8011 section 4: they are ignored) read to keep the connection alive.
pub const MAX_IGNORED_TRAILER: usize = 64 << 10;

/// Who the connection belongs to.
pub(crate) enum Access {
    /// A tenant took it.
    Tenant(Routed),
    /// The address belongs to no tenant: every request gets `client-error-not-authorized`.
    NoTenant,
    /// The tenant is at `max-connections`: every request gets `server-error-busy`.
    Busy,
}

/// What every request of a connection shares.
pub(crate) struct ConnCtx {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub listener: ListenerName,
    pub access: Access,
    pub shared: Arc<Intake>,
    /// The connection speaks TLS (`ipps`).
    pub secure: bool,
    /// The listener offers TLS: `Some(required)`.
    pub tls: Option<bool>,
}

impl ConnCtx {
    /// How long one body read may take.
    pub fn idle_timeout(&self) -> Duration {
        match &self.access {
            Access::Tenant(r) => r.tenant().limits.idle_timeout,
            _ => HEADER_READ_TIMEOUT,
        }
    }
}

/// An HTTP response with an IPP body.
pub(crate) struct Reply {
    /// The IPP response.
    pub message: codec::Message,
    /// Close the connection after it: the request body was not read to its end.
    pub close: bool,
}

/// The body of a request past the IPP message: the document.
pub(crate) struct Document {
    /// Document bytes that came with the last part of the IPP message.
    pub first: Bytes,
    /// The rest of the request body.
    pub body: Incoming,
    /// The body has ended.
    pub ended: bool,
}

impl Document {
    /// Reads and drops what is left of a body that should carry no
    /// document, up to [`MAX_IGNORED_TRAILER`] bytes, so that the
    /// connection can stay open; past that it is left unread (and closed).
    pub async fn skip_rest(&mut self, idle: Duration) {
        let mut seen = self.first.len();
        self.first = Bytes::new();
        while !self.ended && seen <= MAX_IGNORED_TRAILER {
            match tokio::time::timeout(idle, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    seen += frame.data_ref().map_or(0, |d| d.len());
                    self.ended = hyper::body::Body::is_end_stream(&self.body);
                }
                Ok(None) => self.ended = true,
                Ok(Some(Err(_))) | Err(_) => return,
            }
        }
    }
}
