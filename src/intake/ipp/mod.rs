//! IPP listener (RFC 8010/8011 over HTTP/1.1).
//!
//! Layers, from the wire in:
//! - [`crate::wire::ipp`]: pure RFC 8010 encoding, limits enforced while parsing;
//! - this module: the HTTP service (hyper, HTTP/1.1 only, keep-alive,
//!   chunked bodies, `Expect: 100-continue`); it reads the IPP request up
//!   to `end-of-attributes-tag`, never more than [`MAX_REQUEST_HEAD`]
//!   bytes, and hands the rest of the body (the document) on as a stream;
//! - `request`: what the service hands each operation, and gets back;
//! - `ops`: the operations, each answered in IPP.
//!
//! The forward step's client to `ipp://` devices is [`crate::dispatch::ipp`].
//!
//! Each tenant input on an IPP listener is a printer: `/ipp/print` (no
//! queue) and `/ipp/print/<queue>` or `/printers/<queue>`.

mod ops;
mod request;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{tls, Admission, Connection};
use crate::wire::ipp::{self as codec, status};
use request::{Access, ConnCtx, Document, Reply};
pub use request::{HEADER_READ_TIMEOUT, MAX_IGNORED_TRAILER};

/// Largest HTTP request header (request line and fields) in bytes; more
/// gets `431 Request Header Fields Too Large`.
pub const MAX_HTTP_HEADER_SIZE: usize = 16 << 10;

/// Most HTTP header fields in one request.
pub const MAX_HTTP_HEADERS: usize = 64;

/// Most bytes of IPP message before the document (`end-of-attributes-tag`
/// included); more gets `client-error-request-entity-too-large`.
pub const MAX_REQUEST_HEAD: usize = 256 << 10;

/// The printer icon every `printer-icons` URI serves.
const ICON_PNG: &[u8] = include_bytes!("icon.png");

/// Read buffer of hyper per connection: bounds the memory of a body frame.
pub const HTTP_READ_BUFFER: usize = 64 << 10;

/// A request is parsed again only after its buffered head doubled since the
/// last attempt, starting at this size: parsing stays linear in the head size.
const FIRST_PARSE_AT: usize = 512;

/// Serves one IPP connection.
pub async fn serve(conn: Connection) {
    let Connection {
        stream,
        peer,
        listener,
        admission,
        shared,
    } = conn;
    let local = stream.local_addr().unwrap_or(peer);
    // The slot stays held for the connection's life.
    let (access, _slot) = match admission {
        Admission::Admitted { routed, slot } => (Access::Tenant(routed), Some(slot)),
        Admission::NoTenant => (Access::NoTenant, None),
        Admission::OverLimit(_) => (Access::Busy, None),
    };
    let header_timeout = match &access {
        Access::Tenant(r) => r.tenant().limits.idle_timeout.min(HEADER_READ_TIMEOUT),
        _ => HEADER_READ_TIMEOUT,
    };
    // TLS and plain HTTP on one port, told apart by the first byte.
    let offered = shared
        .snapshot
        .load()
        .config
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .and_then(|l| l.tls.clone().map(|t| (t, l.tls_required)));
    let mut tls_stream = None;
    let mut plain = Some(stream);
    if let Some((files, required)) = &offered {
        let mut first = [0u8; 1];
        let s = plain.as_ref().expect("not taken yet");
        match tokio::time::timeout(header_timeout, s.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            _ => return,
        }
        if first[0] == tls::TLS_HANDSHAKE {
            let loaded_at = shared.snapshot.load().loaded_at;
            let acceptor = match shared.tls.get(&listener, files, loaded_at) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(%listener, error = %e, "cannot serve TLS on the listener");
                    return;
                }
            };
            let s = plain.take().expect("not taken yet");
            match tokio::time::timeout(header_timeout, acceptor.accept(s)).await {
                Ok(Ok(t)) => tls_stream = Some(t),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    shared.refused(&listener, peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.refused(&listener, peer, "TLS handshake timed out");
                    return;
                }
            }
        } else if *required {
            shared.refused(&listener, peer, "plain HTTP on a tls-required listener");
            return;
        }
    }
    let ctx = Arc::new(ConnCtx {
        peer,
        local,
        listener,
        access,
        shared,
        secure: tls_stream.is_some(),
        tls: offered.map(|(_, required)| required),
    });
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(HTTP_READ_BUFFER)
        .max_header_size(MAX_HTTP_HEADER_SIZE)
        .max_headers(MAX_HTTP_HEADERS);
    let served = match (tls_stream, plain) {
        (Some(t), _) => builder.serve_connection(TokioIo::new(t), svc).await,
        (None, Some(p)) => builder.serve_connection(TokioIo::new(p), svc).await,
        (None, None) => return,
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "IPP connection ended");
    }
}

fn http_reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// The host the client reached us by, for the URIs we hand out: its `Host`
/// header when that is a plain host[:port], else our local address.
fn client_host(req: &Request<Incoming>, local: SocketAddr) -> String {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= codec::MAX_SHORT_TOKEN_LEN * 4
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .map_or_else(|| local.to_string(), str::to_owned)
}

async fn handle(ctx: &ConnCtx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() == Method::GET {
        let path = req.uri().path();
        if [ops::ICON_SMALL, ops::ICON, ops::ICON_LARGE]
            .iter()
            .any(|i| path.strip_prefix('/') == Some(*i))
        {
            // `printer-icons` (PWG 5100.13) point here.
            let mut r = Response::new(Full::new(Bytes::from_static(ICON_PNG)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
            return r;
        }
        // `printer-more-info` points here; a short page says what this is.
        return http_reply(StatusCode::OK, "printroute IPP printer\n");
    }
    if req.method() != Method::POST {
        return http_reply(StatusCode::METHOD_NOT_ALLOWED, "POST application/ipp\n");
    }
    let is_ipp = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/ipp"));
    if !is_ipp {
        let mut r = http_reply(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/ipp\n",
        );
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let host = client_host(&req, ctx.local);
    let path = req.uri().path().to_owned();
    let reply = match read_head(ctx, req.into_body()).await {
        Ok((message, doc)) => ops::handle(ctx, &host, &path, message, doc).await,
        Err(reply) => reply,
    };
    let mut r = Response::new(Full::new(Bytes::from(codec::encode(&reply.message))));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/ipp"));
    if reply.close {
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Reads the body until the IPP message is complete; the rest is the document.
async fn read_head(ctx: &ConnCtx, mut body: Incoming) -> Result<(codec::Message, Document), Reply> {
    let mut head: Vec<u8> = Vec::new();
    let mut ended = false;
    let mut next_parse = FIRST_PARSE_AT;
    loop {
        if ended || head.len() >= next_parse {
            match codec::decode(&head, codec::REQUEST_LIMITS) {
                Ok((message, offset)) => {
                    let first = Bytes::copy_from_slice(&head[offset..]);
                    return Ok((message, Document { first, body, ended }));
                }
                Err(codec::DecodeError::Incomplete) if !ended => {
                    next_parse = head.len().saturating_mul(2);
                }
                Err(e) => {
                    ctx.shared
                        .refused(&ctx.listener, ctx.peer, "malformed IPP request");
                    tracing::debug!(peer = %ctx.peer, error = %e, "malformed IPP request");
                    let status = match e {
                        codec::DecodeError::ValueTooLong(_) => status::REQUEST_VALUE_TOO_LONG,
                        codec::DecodeError::TooManyAttributes => status::REQUEST_ENTITY_TOO_LARGE,
                        _ => status::BAD_REQUEST,
                    };
                    return Err(ops::error_reply(&head, status, &e.to_string(), !ended));
                }
            }
        }
        if head.len() > MAX_REQUEST_HEAD {
            ctx.shared
                .refused(&ctx.listener, ctx.peer, "IPP request head too large");
            return Err(ops::error_reply(
                &head,
                status::REQUEST_ENTITY_TOO_LARGE,
                "request attributes too large",
                true,
            ));
        }
        match tokio::time::timeout(ctx.idle_timeout(), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
                // With a Content-Length, the end is known without another read.
                ended = hyper::body::Body::is_end_stream(&body);
            }
            Ok(None) => ended = true,
            Ok(Some(Err(e))) => {
                tracing::debug!(peer = %ctx.peer, error = %e, "IPP request body broke off");
                return Err(ops::error_reply(
                    &head,
                    status::BAD_REQUEST,
                    "request body broke off",
                    true,
                ));
            }
            Err(_) => {
                ctx.shared
                    .refused(&ctx.listener, ctx.peer, "IPP client idle mid-request");
                return Err(ops::error_reply(
                    &head,
                    status::REQUEST_TIMEOUT,
                    "request timed out",
                    true,
                ));
            }
        }
    }
}
