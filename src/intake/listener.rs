//! Shared listeners: binding, the accept loop, routing and admission.
//!
//! The accept loop accepts; each connection's task reads the PROXY header
//! where the listener wants one, routes (with the snapshot current at that
//! moment), admits and serves. A RAW listener without PROXY headers routes
//! and admits in the loop itself (a refusal is a reset, nothing to read),
//! and sheds a tenant at its limit in the kernel ([`shed`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::ids::ListenerName;
use crate::config::Protocol;
use crate::intake::{self, proxy, shed, Admission, Connection, Intake};
use crate::routing::canonical;
use crate::snapshot::{Routed, Snapshot};
use crate::wire::proxy::Header;

/// Length of the kernel's queue of connections not yet accepted.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Pause after a failed accept (e.g. out of file descriptors) before the next.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds a listening socket: `SO_REUSEADDR`, and IPv6 sockets take IPv6
/// only, so `0.0.0.0:P` and `[::]:P` can both be bound.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    bind_with(addr, None)
}

/// Like [`bind`], with `linger` set on the socket before it listens.
fn bind_with(addr: SocketAddr, linger: Option<Duration>) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Before listen: the kernel copies the listening socket's options into
    // each connection when its handshake completes, also before accept.
    if linger.is_some() {
        socket.set_linger(linger)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Binds a shared listener's socket for `protocol`. A RAW listener's
/// socket has `SO_LINGER 0`, which Linux copies to every socket it accepts:
/// from the first moment, a RAW connection the daemon has not acknowledged
/// ends with a reset, also when the process dies before its task ran. (An
/// orderly close is RAW's only acknowledgement: a sender that connected
/// and had not sent yet would otherwise read the dying process's FIN as
/// one.) It is set before the socket listens: a connection whose handshake
/// completed between `listen` and a later `setsockopt` would keep the
/// ordinary close, and a daemon killed after reading its data would close
/// it in order, an acknowledgement of a job never kept (seen under load by
/// the kill -9 tests, with senders retrying during a restart). LPD and IPP
/// acknowledge in their protocols; their sockets get the ordinary close
/// back at accept.
pub fn bind_listener(addr: SocketAddr, protocol: Protocol) -> io::Result<std::net::TcpListener> {
    let linger = (protocol == Protocol::Raw).then_some(Duration::ZERO);
    bind_with(addr, linger)
}

/// Accepts connections until `stop` fires, handing each to its protocol.
pub async fn accept_loop(
    listener: TcpListener,
    name: ListenerName,
    protocol: Protocol,
    shared: Arc<Intake>,
    stop: CancellationToken,
) {
    let v6 = listener.local_addr().is_ok_and(|a| a.is_ipv6());
    let mut shedder = shed::Shedder::new(name.clone(), v6);
    loop {
        let next_check = shedder.next_check();
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
            () = async { tokio::time::sleep_until(next_check.expect("checked only while shed")).await }, if next_check.is_some() => {
                shedder.check(SockRef::from(&listener), &shared.snapshot.load_full());
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        if protocol == Protocol::Raw {
            // RAW without a PROXY header: routing and admission read
            // nothing, and a refusal is a reset. Both are done here, so a
            // connection refused (a tenant's flood over its
            // max-connections, an address of no tenant) costs an accept and
            // a close, not a task of its own.
            let snapshot = shared.snapshot.load_full();
            if !proxied(&snapshot, &name) {
                match admit(&shared, snapshot, &name, peer) {
                    admission @ Admission::Admitted { .. } => {
                        shedder.admitted(SockRef::from(&stream));
                        let _ = stream.set_nodelay(true);
                        shared.connections.spawn(serve_routed(
                            stream,
                            peer,
                            None,
                            name.clone(),
                            protocol,
                            shared.clone(),
                            admission,
                        ));
                    }
                    Admission::OverLimit(routed) => {
                        shedder.over_limit(SockRef::from(&listener), &routed);
                        intake::reset(stream);
                    }
                    Admission::NoTenant => intake::reset(stream),
                }
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        if protocol != Protocol::Raw {
            let _ = socket2::SockRef::from(&stream).set_linger(None);
        }
        shared.connections.spawn(connection(
            stream,
            peer,
            name.clone(),
            protocol,
            shared.clone(),
        ));
    }
}

/// Whether `name` takes a PROXY header first (in the config of `snapshot`).
fn proxied(snapshot: &Snapshot, name: &ListenerName) -> bool {
    snapshot
        .config
        .listeners
        .iter()
        .any(|l| l.name == *name && l.proxy.is_some())
}

/// Routes `client` to its tenant and takes one of the tenant's connection
/// slots; a refusal is counted and logged.
fn admit(
    shared: &Intake,
    snapshot: Arc<Snapshot>,
    name: &ListenerName,
    client: SocketAddr,
) -> Admission {
    match snapshot.routing.lookup(client.ip()) {
        None => {
            shared.refused(name, client, "address of no tenant");
            Admission::NoTenant
        }
        Some(i) => {
            let routed = Routed {
                snapshot,
                index: i as usize,
            };
            match routed.admit() {
                Some(slot) => {
                    crate::metrics::get().connection_accepted(routed.tenant().id.as_str(), &name.0);
                    Admission::Admitted { routed, slot }
                }
                None => {
                    shared.refused(name, client, "tenant at max-connections");
                    Admission::OverLimit(routed)
                }
            }
        }
    }
}

/// One accepted connection: its PROXY header if the listener wants one,
/// then routing and admission, then the listener's protocol, all in the
/// connection's own task so that a slow header never holds up the accept loop.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    name: ListenerName,
    protocol: Protocol,
    shared: Arc<Intake>,
) {
    let mut snapshot = shared.snapshot.load_full();
    let mut client = peer;
    let mut via = None;
    let proxied = snapshot
        .config
        .listeners
        .iter()
        .find(|l| l.name == name)
        .filter(|l| l.proxy.is_some());
    if let Some(l) = proxied {
        if !l.trusts(peer.ip()) {
            shared.refused(&name, peer, "PROXY header expected from a trusted proxy");
            intake::reset(stream);
            return;
        }
        match proxy::read_header(&mut stream).await {
            Ok(Header::Proxied { source, .. }) => {
                client = SocketAddr::new(canonical(source.ip()), source.port());
                via = Some(peer);
            }
            Ok(Header::Local) => {}
            Err(e) => {
                tracing::debug!(listener = %name, %peer, error = %e, "PROXY header refused");
                shared.refused(&name, peer, "missing or bad PROXY header");
                intake::reset(stream);
                return;
            }
        }
        // The header may have taken a while: route with the config current now.
        snapshot = shared.snapshot.load_full();
    }
    let admission = admit(&shared, snapshot, &name, client);
    serve_routed(stream, client, via, name, protocol, shared, admission).await;
}

/// A routed connection in its protocol, in a span that every log line of
/// it carries.
async fn serve_routed(
    stream: TcpStream,
    client: SocketAddr,
    via: Option<SocketAddr>,
    name: ListenerName,
    protocol: Protocol,
    shared: Arc<Intake>,
    admission: Admission,
) {
    // One span per connection: every log line of it carries these fields.
    let tenant = match &admission {
        Admission::Admitted { routed, .. } | Admission::OverLimit(routed) => {
            routed.tenant().id.to_string()
        }
        Admission::NoTenant => "-".to_owned(),
    };
    let span = match via {
        Some(via) => tracing::info_span!("conn", listener = %name, peer = %client, %via, %tenant),
        None => tracing::info_span!("conn", listener = %name, peer = %client, %tenant),
    };
    let conn = Connection {
        stream,
        peer: client,
        listener: name,
        admission,
        shared,
    };
    tracing::Instrument::instrument(serve(protocol, conn), span).await;
}

async fn serve(protocol: Protocol, conn: Connection) {
    match protocol {
        Protocol::Raw => intake::raw::serve(conn).await,
        Protocol::Lpd => intake::lpd::serve(conn).await,
        Protocol::Ipp => intake::ipp::serve(conn).await,
    }
}
