//! Intake: the shared listeners (accept, PROXY header, route, admit) and one
//! session module per protocol, which receives, commits and acknowledges.
//! Uses dispatch, snapshot, store, config, routing, wire and metrics.
//!
//! Each protocol takes an accepted, routed connection ([`Connection`]) and
//! answers refusals in its own protocol.

pub mod ipp;
pub mod listener;
pub mod lpd;
pub mod proxy;
pub mod raw;
pub mod shed;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

use crate::config::ids::ListenerName;
use crate::dispatch::capabilities::Capabilities;
use crate::dispatch::Dispatcher;
use crate::snapshot::{ConnectionSlot, Routed, Snapshot};
use crate::store::job::now_ms;

/// Refusals are logged at most once per this many milliseconds (they are
/// always counted); a hostile peer can trigger them at will.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 1000;

/// What the listeners and protocol sessions need of the daemon: the current
/// snapshot, the dispatcher that takes committed jobs, the tracker every
/// connection task joins (shutdown waits for it), and the refusal log.
pub struct Intake {
    /// The snapshot in force; a connection loads it once, at accept.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Takes committed jobs.
    pub dispatcher: Dispatcher,
    /// Every connection's task.
    pub connections: TaskTracker,
    /// What each tenant's devices print: the IPP printers mirror it.
    pub capabilities: Arc<Capabilities>,
    /// TLS acceptors of the IPP listeners with `tls`.
    pub tls: tls::Acceptors,
    refusals_last_ms: AtomicU64,
    refusals_suppressed: AtomicU64,
}

impl Intake {
    /// The intake's handle on the snapshot in force and the dispatcher.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, dispatcher: Dispatcher) -> Intake {
        Intake::with_capabilities(snapshot, dispatcher, Arc::new(Capabilities::new(None)))
    }

    /// The same, with the daemon's device capabilities for the IPP printers.
    pub fn with_capabilities(
        snapshot: Arc<ArcSwap<Snapshot>>,
        dispatcher: Dispatcher,
        capabilities: Arc<Capabilities>,
    ) -> Intake {
        Intake {
            snapshot,
            dispatcher,
            connections: TaskTracker::new(),
            capabilities,
            tls: tls::Acceptors::default(),
            refusals_last_ms: AtomicU64::new(0),
            refusals_suppressed: AtomicU64::new(0),
        }
    }

    /// Counts a refused connection or job, and logs it at most once per
    /// [`REFUSAL_LOG_INTERVAL_MS`] (a hostile peer can trigger refusals at will).
    pub fn refused(&self, listener: &ListenerName, peer: SocketAddr, reason: &'static str) {
        crate::metrics::get().connection_refused(&listener.0, reason);
        let now = now_ms();
        let last = self.refusals_last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFUSAL_LOG_INTERVAL_MS
            && self
                .refusals_last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.refusals_suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(%listener, %peer, reason, suppressed, "refused");
        } else {
            self.refusals_suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

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
    /// The intake's handle on the daemon.
    pub shared: Arc<Intake>,
}

/// Ends a connection with a TCP reset, so the peer sees an error rather
/// than an orderly close (which a RAW sender takes as success).
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}
