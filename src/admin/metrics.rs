//! The metrics endpoint: `GET /metrics` at `global.metrics`, the
//! registry's text exposition with the per-tenant gauges read at scrape.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Admin;
use crate::metrics::{get, TenantLabel};

/// Longest a metrics scrape may take to send its request.
pub const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The text exposition, with the gauges read from the daemon now.
pub fn render(admin: &Admin) -> String {
    let m = get();
    let snapshot = admin.snapshot.load_full();
    let held = admin.dispatcher.held_counts();
    for (t, store) in snapshot.config.tenants.iter().zip(&snapshot.stores) {
        let l = TenantLabel {
            tenant: t.id.to_string(),
        };
        m.queue_depth
            .get_or_create(&l)
            .set(store.active_jobs().map_or(0, |a| a.len()) as i64);
        m.held_jobs
            .get_or_create(&l)
            .set(held.get(&t.id).copied().unwrap_or(0) as i64);
        m.spool_bytes
            .get_or_create(&l)
            .set(store.spool_bytes() as i64);
    }
    m.encode()
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub async fn serve(listener: tokio::net::TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = stop.cancelled() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let admin = admin.clone();
                    async move {
                        let (status, body) = if req.uri().path() == "/metrics" {
                            (200, render(&admin))
                        } else {
                            (404, "not found: try /metrics\n".to_owned())
                        };
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(SCRAPE_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}
