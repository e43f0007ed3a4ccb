//! The admin API on its own listener (`[global.web]`): JSON over HTTPS
//! (plain HTTP only on loopback), `/api/v1/…`, described by the OpenAPI
//! document it serves at `/api/v1/openapi.json`.
//!
//! Every request but the OpenAPI document carries a bearer token
//! (`printroute token create`); failed ones are counted per source address
//! and past [`state::MAX_FAILED_SIGN_INS`] answered 429. Jobs, release,
//! cancel, reload and purge go through the control socket's own handler
//! ([`crate::admin::control::handle`]); config changes through [`edit`].
//!
//! The portal ([`portal`]) is served on the same listener, at `/t/<tenant>/`
//! and `/admin/`, and the PIN release page ([`release`]) at
//! `/t/<tenant>/release`. The portal also signs admins in with their unix
//! password through PAM ([`password`]).

pub mod api;
pub mod caller;
pub mod edit;
pub mod password;
pub mod portal;
pub mod release;
pub mod session;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use self::api::{ApiRequest, OPENAPI};
use self::state::{Caller, Reply, Web};
use crate::admin::control::ReloadRequest;
use crate::admin::Admin;

/// The API's path prefix.
pub const API_PREFIX: &str = "/api/v1";

/// Largest request body (a tenant's device, workflow or inputs as JSON).
pub const MAX_BODY_BYTES: usize = 256 << 10;

/// API connections open at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 256;

/// A client must send its request head within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS handshake must be done within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed accept (out of descriptors, say).
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The name the API's certificate is kept under among the TLS acceptors.
pub const WEB_LISTENER: &str = "web";

/// Serves the admin API on `listener` until `stop` fires: over TLS when
/// `tls` (with `global.web.tls` of the snapshot in force at each accept,
/// so that a reload picks up a renewed certificate), else plain HTTP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: bool,
    admin: Arc<Admin>,
    reload: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    let web = Arc::new(Web {
        admin,
        reload,
        tokens: Default::default(),
        limiter: Default::default(),
        edits: tokio::sync::Mutex::new(()),
        sessions: Default::default(),
        pin_tries: Default::default(),
        passwords: Default::default(),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let acceptors = crate::intake::tls::Acceptors::default();
    let name = crate::config::ids::ListenerName(WEB_LISTENER.to_owned());
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let acceptor = if tls {
            let snapshot = web.admin.snapshot.load();
            let files = snapshot
                .config
                .global
                .web
                .as_ref()
                .and_then(|w| w.tls.clone());
            match files.map(|f| acceptors.get(&name, &f, snapshot.loaded_at)) {
                Some(Ok(a)) => Some(a),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "admin API certificate unusable; connection closed");
                    continue;
                }
                None => {
                    tracing::error!("global.web.tls was removed; restart to serve plain HTTP");
                    continue;
                }
            }
        } else {
            None
        };
        let (web, tls, stop) = (web.clone(), acceptor, stop.clone());
        web.admin.connections.clone().spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, peer, true, web, stop).await,
                        _ => tracing::debug!(%peer, "admin API TLS handshake failed"),
                    }
                }
                None => connection(stream, peer, false, web, stop).await,
            }
        });
    }
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    tls: bool,
    web: Arc<Web>,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let web = web.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&web, peer, tls, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn respond(
    web: &Web,
    peer: SocketAddr,
    tls: bool,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path();
    let reply = if path == "/"
        || path.starts_with("/t/")
        || path == "/admin"
        || path.starts_with("/admin/")
        || path == "/signout"
    {
        portal_answer(web, peer, tls, req).await
    } else {
        answer(web, peer, req).await
    };
    let mut b = hyper::Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff");
    for (k, v) in &reply.headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

async fn answer(web: &Web, peer: SocketAddr, req: hyper::Request<hyper::body::Incoming>) -> Reply {
    let ip = crate::routing::canonical(peer.ip());
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return Reply::not_found();
    };
    if rest == "/openapi.json" {
        return match *req.method() {
            hyper::Method::GET => Reply::text("application/json", OPENAPI.to_owned()),
            _ => Reply::error(405, "method not allowed").with_header("allow", "GET".into()),
        };
    }
    if let Some(wait) = web.limiter.blocked(ip) {
        return Reply::error(
            429,
            "too many failed sign-ins from this address; try again later",
        )
        .with_header("retry-after", wait.as_secs().max(1).to_string());
    }
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let record = presented.and_then(|t| web.tokens.verify(&web.data_dir(), t));
    let Some(record) = record else {
        web.limiter.failed(ip);
        tracing::info!(%ip, "admin API request without a valid token");
        return Reply::error(
            401,
            "a valid token is required (Authorization: Bearer prt_...)",
        )
        .with_header("www-authenticate", "Bearer realm=\"printroute\"".into());
    };
    let caller = Caller::from_token(&record);
    let method = req.method().as_str().to_owned();
    let query_text = req.uri().query().unwrap_or("").to_owned();
    if req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES)
    {
        return Reply::error(
            413,
            format!("a request body is at most {MAX_BODY_BYTES} bytes"),
        );
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Reply::error(
                413,
                format!("a request body is at most {MAX_BODY_BYTES} bytes"),
            )
        }
    };
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => return Reply::error(400, format!("the body is not JSON: {e}")),
        }
    };
    let api = ApiRequest {
        method: &method,
        path: rest.split('/').filter(|s| !s.is_empty()).collect(),
        query: query_text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect(),
        body,
        peer: ip,
    };
    let reply = api::route(web, &caller, &api).await;
    if method != "GET" {
        tracing::info!(who = %caller.who, %ip, %method, %path, status = reply.status, "admin API change");
    }
    reply
}

async fn portal_answer(
    web: &Web,
    peer: SocketAddr,
    tls: bool,
    req: hyper::Request<hyper::body::Incoming>,
) -> Reply {
    use self::session::{cookie_id, form_pairs};
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cookie = header(hyper::header::COOKIE)
        .as_deref()
        .and_then(cookie_id)
        .map(str::to_owned);
    let origin = header(hyper::header::ORIGIN);
    let host = header(hyper::header::HOST);
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let method = req.method().as_str().to_owned();
    let path: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(self::session::percent_decode)
        .collect();
    let query = form_pairs(req.uri().query().unwrap_or(""));
    let form = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => form_pairs(&String::from_utf8_lossy(&b.to_bytes())),
        Err(_) => {
            return Reply::error(
                413,
                format!("a request body is at most {MAX_BODY_BYTES} bytes"),
            )
        }
    };
    let preq = portal::PortalRequest {
        method,
        path,
        query,
        form,
        cookie,
        origin,
        fetch_site,
        host,
        tls,
        peer: crate::routing::canonical(peer.ip()),
    };
    // The PIN release page has its own rules of who may open it.
    let segments: Vec<&str> = preq.path.iter().map(String::as_str).collect();
    if let [t, id, r, rest @ ..] = segments.as_slice() {
        if *t == "t" && *r == "release" && rest.len() <= 1 {
            let Ok(id) = crate::config::ids::TenantId::parse(id) else {
                return portal::not_found();
            };
            return release::answer(web, &preq, &id, rest).await;
        }
    }
    portal::answer(web, &preq).await
}
