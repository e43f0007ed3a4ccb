//! One immutable snapshot of config, routing table and tenant handles.
//!
//! A connection takes the snapshot current at accept time and keeps it to
//! the end, so a reload never changes a connection's routing half-way.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::config::ids::{ListenerName, TenantId};
use crate::config::{Config, Input, Tenant};
use crate::routing::{Route, RoutingTable};
use crate::store::{InFlight, SpoolWriter, StoreError, TenantStore};

/// How long a receive waits for a free slot when its tenant is at
/// `max-receives`, before it gets its protocol's busy answer. Long enough
/// to smooth a burst of small jobs (each takes milliseconds), short enough
/// that a tenant whose slots slow senders hold hears "busy" soon.
pub const RECEIVE_SLOT_WAIT: Duration = Duration::from_secs(2);

/// Per-tenant counters that live across reloads.
#[derive(Default, Debug)]
pub struct TenantRuntime {
    /// Open connections of the tenant, over all listeners.
    pub connections: AtomicU32,
    /// Jobs of the tenant being received now (up to `max-receives`).
    pub receives: AtomicU32,
    /// Wakes a receive waiting for a slot when one is freed.
    receive_freed: Notify,
    /// The tenant's document bytes received and not yet durable (up to `max-bytes-in-flight`).
    pub in_flight: Arc<InFlight>,
}

/// Config, routing table and each tenant's store and runtime.
pub struct Snapshot {
    /// The validated config.
    pub config: Config,
    /// Address → tenant index (into `config.tenants`); moved out of the
    /// config, whose own table is empty.
    pub routing: RoutingTable,
    /// Store handles, aligned with `config.tenants`.
    pub stores: Vec<Arc<TenantStore>>,
    /// Runtime counters, aligned with `config.tenants`.
    pub runtimes: Vec<Arc<TenantRuntime>>,
    /// When the config was loaded.
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// Builds a snapshot; `stores` must be aligned with `config.tenants`.
    /// Runtime counters of tenants already in `previous` are carried over.
    pub fn build(
        mut config: Config,
        stores: Vec<Arc<TenantStore>>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        assert_eq!(stores.len(), config.tenants.len(), "one store per tenant");
        let routing = config.take_routing_table();
        let runtimes = config
            .tenants
            .iter()
            .map(|t| {
                previous
                    .and_then(|p| p.runtime_of(&t.id))
                    .unwrap_or_default()
            })
            .collect();
        Snapshot {
            config,
            routing,
            stores,
            runtimes,
            loaded_at: SystemTime::now(),
        }
    }

    fn runtime_of(&self, id: &TenantId) -> Option<Arc<TenantRuntime>> {
        let i = self
            .config
            .tenants
            .binary_search_by(|t| t.id.cmp(id))
            .ok()?;
        Some(self.runtimes[i].clone())
    }

    /// Index of a tenant by id.
    pub fn tenant_index(&self, id: &TenantId) -> Option<usize> {
        self.config.tenants.binary_search_by(|t| t.id.cmp(id)).ok()
    }

    /// The tenant and range an address routes to.
    pub fn route(&self, ip: IpAddr) -> Option<Route> {
        self.routing.route(ip)
    }
}

/// A connection's tenant: the snapshot it was routed with and the tenant's place in it.
#[derive(Clone)]
pub struct Routed {
    /// The snapshot current at accept time.
    pub snapshot: Arc<Snapshot>,
    /// Index of the tenant in the snapshot.
    pub index: usize,
}

impl Routed {
    /// The tenant's config.
    pub fn tenant(&self) -> &Tenant {
        &self.snapshot.config.tenants[self.index]
    }

    /// The tenant's store.
    pub fn store(&self) -> &Arc<TenantStore> {
        &self.snapshot.stores[self.index]
    }

    /// The tenant's runtime counters.
    pub fn runtime(&self) -> &Arc<TenantRuntime> {
        &self.snapshot.runtimes[self.index]
    }

    /// The tenant's input on a listener and queue (`None`: the default queue).
    pub fn input(&self, listener: &ListenerName, queue: Option<&str>) -> Option<&Input> {
        self.tenant()
            .inputs
            .iter()
            .find(|i| &i.listener == listener && i.queue.as_deref() == queue)
    }

    /// Takes a connection slot of the tenant, if it has one free.
    pub fn admit(&self) -> Option<ConnectionSlot> {
        let rt = self.runtime().clone();
        let max = self.tenant().limits.max_connections;
        rt.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(rt))
    }
}

/// Receive admission: `max-receives` and `max-bytes-in-flight`.
impl Routed {
    /// Takes a receive slot of the tenant: at once when one is free, else
    /// the first one freed within [`RECEIVE_SLOT_WAIT`]. `None`: the tenant
    /// is busy; the protocol gives its busy answer. Hold the slot until
    /// the job is committed (or given up).
    pub async fn receive_slot(&self) -> Option<ReceiveSlot> {
        let rt = self.runtime().clone();
        let deadline = tokio::time::Instant::now() + RECEIVE_SLOT_WAIT;
        loop {
            // Registered before the attempt, so a slot freed in between still wakes us.
            let freed = rt.receive_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let max = self.tenant().limits.max_receives;
            if rt
                .receives
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
            {
                return Some(ReceiveSlot(rt.clone()));
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Starts receiving a document into the tenant's spool, within its
    /// `max-job-size`, `spool-quota` and `max-bytes-in-flight`.
    pub async fn spool_writer(&self) -> Result<SpoolWriter, StoreError> {
        let limits = &self.tenant().limits;
        let mut w = self
            .store()
            .spool_writer(limits.max_job_size, limits.spool_quota)
            .await?;
        w.limit_in_flight(self.runtime().in_flight.clone(), limits.max_bytes_in_flight);
        Ok(w)
    }
}

/// A held receive slot of a tenant; released (and a waiting receive woken) on drop.
pub struct ReceiveSlot(Arc<TenantRuntime>);

impl Drop for ReceiveSlot {
    fn drop(&mut self) {
        self.0.receives.fetch_sub(1, Ordering::AcqRel);
        self.0.receive_freed.notify_one();
    }
}

/// A held connection slot of a tenant; released on drop.
pub struct ConnectionSlot(Arc<TenantRuntime>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
