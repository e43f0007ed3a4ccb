//! Administration: the control socket, the metrics endpoint, the config
//! exports (HAProxy, nftables), API tokens, and the admin API and portal
//! ([`web`]). Uses intake, dispatch, snapshot, store, config.

pub mod control;
pub mod export;
pub mod metrics;
pub mod tokens;
pub mod web;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::task::TaskTracker;

use crate::dispatch::capabilities::Capabilities;
use crate::dispatch::Dispatcher;
use crate::snapshot::Snapshot;
use crate::store::Store;

/// A bound listener, as `printroute status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listening {
    /// The listener's name.
    pub name: String,
    /// Its protocol.
    pub protocol: String,
    /// The address it is bound to.
    pub addr: String,
    /// The address as configured (port may be 0); the daemon matches
    /// listeners it closes on reload by it.
    #[serde(skip)]
    pub configured: SocketAddr,
}

/// What administration needs of the daemon: the snapshot, the store, the
/// dispatcher, what is listening, and the tracker its connections join.
pub struct Admin {
    /// The snapshot in force.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The store (every tenant, configured or not).
    pub store: Store,
    /// Holds, releases and cancels jobs.
    pub dispatcher: Dispatcher,
    /// Every admin connection's task, waited for on shutdown.
    pub connections: TaskTracker,
    /// When the daemon started.
    pub started: Instant,
    /// The listeners bound now; the daemon keeps it current.
    pub listening: Arc<Mutex<Vec<Listening>>>,
    /// What the IPP devices last said about themselves.
    pub capabilities: Arc<Capabilities>,
}

impl Admin {
    /// The listeners bound now.
    pub fn listening(&self) -> Vec<Listening> {
        self.listening.lock().expect("listening lock").clone()
    }
}
