//! Shared listeners: binding, the accept loop, routing and admission.
//!
//! The accept loop only accepts, routes (with the snapshot current at that
//! moment) and admits; everything else runs in a spawned, tracked task.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Protocol;
use crate::daemon::Shared;
use crate::ids::ListenerName;
use crate::protocol::{self, Admission, Connection};
use crate::routing::canonical;
use crate::snapshot::Routed;

/// Length of the kernel's queue of connections not yet accepted.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Pause after a failed accept (e.g. out of file descriptors) before the next.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds a listening socket: `SO_REUSEADDR`, and IPv6 sockets take IPv6
/// only, so `0.0.0.0:P` and `[::]:P` can both be bound.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Accepts connections until `stop` fires, handing each to its protocol.
pub async fn accept_loop(
    listener: TcpListener,
    name: ListenerName,
    protocol: Protocol,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        let snapshot = shared.snapshot.load_full();
        let admission = match snapshot.routing.lookup(peer.ip()) {
            None => {
                shared.refused(&name, peer, "address of no tenant");
                Admission::NoTenant
            }
            Some(i) => {
                let routed = Routed {
                    snapshot,
                    index: i as usize,
                };
                match routed.admit() {
                    Some(slot) => {
                        crate::metrics::get()
                            .connections_accepted
                            .get_or_create(&crate::metrics::TenantListener {
                                tenant: routed.tenant().id.to_string(),
                                listener: name.to_string(),
                            })
                            .inc();
                        Admission::Admitted { routed, slot }
                    }
                    None => {
                        shared.refused(&name, peer, "tenant at max-connections");
                        Admission::OverLimit(routed)
                    }
                }
            }
        };
        // One span per connection: every log line of it carries these fields.
        let tenant = match &admission {
            Admission::Admitted { routed, .. } | Admission::OverLimit(routed) => {
                routed.tenant().id.to_string()
            }
            Admission::NoTenant => "-".to_owned(),
        };
        let span = tracing::info_span!("conn", listener = %name, %peer, %tenant);
        let conn = Connection {
            stream,
            peer,
            listener: name.clone(),
            admission,
            shared: shared.clone(),
        };
        shared
            .connections
            .spawn(tracing::Instrument::instrument(serve(protocol, conn), span));
    }
}

async fn serve(protocol: Protocol, conn: Connection) {
    match protocol {
        Protocol::Raw => protocol::raw::serve(conn).await,
        Protocol::Lpd => protocol::lpd::serve(conn).await,
        Protocol::Ipp => protocol::ipp::serve(conn).await,
    }
}
