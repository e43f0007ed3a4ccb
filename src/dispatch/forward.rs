//! The `forward` step: deliver a document to the first healthy device of a
//! pool, in the device's protocol; devices that fail are marked down and
//! probed again with exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ids::{JobId, TenantId};
use crate::config::{Device, DeviceUri};
use crate::store::document::Document;
use crate::store::job::Job;
use crate::store::TenantStore;

use super::device::SendError;

/// First wait before probing a device that failed.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between probes of a device that keeps failing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Jobs that wait in memory for one device (each a task of a few KB).
/// Later jobs of a longer backlog park: only their id is kept, and each is
/// started again, oldest first, as the queue drains. Memory then does not
/// grow with a down device's backlog.
pub const DEVICE_QUEUE_WINDOW: usize = 64;

/// Starts a parked job again (the dispatcher's `submit`).
pub type Resubmit = Arc<dyn Fn(Arc<TenantStore>, JobId) + Send + Sync>;

/// Health and one-at-a-time access of one device.
pub struct DeviceState {
    /// One transfer at a time to one printer.
    pub permit: Semaphore,
    health: Mutex<Health>,
    /// Jobs waiting for this device, by job id (commit order): the oldest
    /// one probes and sends first, so a device that comes back gets its
    /// jobs in the order they were accepted.
    queue: Mutex<BTreeMap<u32, Arc<tokio::sync::Notify>>>,
    /// Jobs past [`DEVICE_QUEUE_WINDOW`], by id: no task, no memory but this.
    parked: Mutex<BTreeMap<u32, Arc<TenantStore>>>,
    resubmit: Resubmit,
}

/// A job's place in a device's queue; leaving it (drop) wakes the next oldest job.
pub struct Turn {
    state: Arc<DeviceState>,
    id: u32,
    notify: Arc<tokio::sync::Notify>,
}

impl Turn {
    /// True when no older job waits for the device.
    pub fn is_head(&self) -> bool {
        self.state
            .queue
            .lock()
            .expect("device queue lock")
            .keys()
            .next()
            == Some(&self.id)
    }

    /// Waits until an older job leaves the queue.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let unparked = {
            let mut q = self.state.queue.lock().expect("device queue lock");
            q.remove(&self.id);
            if let Some(next) = q.values().next() {
                next.notify_one();
            }
            // Under the queue lock, as parking is: no job parks unseen.
            if q.len() < DEVICE_QUEUE_WINDOW {
                self.state
                    .parked
                    .lock()
                    .expect("parked jobs lock")
                    .pop_first()
            } else {
                None
            }
        };
        if let Some((id, store)) = unparked {
            (self.state.resubmit)(store, JobId(id));
        }
    }
}

#[derive(Default)]
struct Health {
    down_until: Option<Instant>,
    backoff: Duration,
}

impl DeviceState {
    fn new(resubmit: Resubmit) -> Self {
        DeviceState {
            permit: Semaphore::new(1),
            health: Mutex::new(Health::default()),
            queue: Mutex::new(BTreeMap::new()),
            parked: Mutex::new(BTreeMap::new()),
            resubmit,
        }
    }

    /// Enters the device's queue as job `id` of `store`; `None` when the
    /// job parked instead (its task should end: it is started again when
    /// its turn nears). A job older than one already waiting always enters,
    /// so the device keeps commit order.
    pub fn turn_or_park(self: &Arc<Self>, id: u32, store: &Arc<TenantStore>) -> Option<Turn> {
        let notify = Arc::new(tokio::sync::Notify::new());
        {
            let mut q = self.queue.lock().expect("device queue lock");
            let younger_waits = q.last_key_value().is_some_and(|(last, _)| *last > id);
            if q.len() >= DEVICE_QUEUE_WINDOW && !younger_waits {
                self.parked
                    .lock()
                    .expect("parked jobs lock")
                    .insert(id, store.clone());
                return None;
            }
            q.insert(id, notify.clone());
        }
        Some(Turn {
            state: self.clone(),
            id,
            notify,
        })
    }

    /// Jobs waiting for the device: in memory, and parked.
    pub fn waiting(&self) -> (usize, usize) {
        let q = self.queue.lock().expect("device queue lock").len();
        (q, self.parked.lock().expect("parked jobs lock").len())
    }

    /// When the device may be tried again; `None` when it is up (or due).
    pub fn down_until(&self) -> Option<Instant> {
        let h = self.health.lock().expect("device health lock");
        h.down_until.filter(|t| *t > Instant::now())
    }

    /// Records a success: the device is up.
    pub fn mark_up(&self) {
        let mut h = self.health.lock().expect("device health lock");
        h.down_until = None;
        h.backoff = Duration::ZERO;
    }

    /// Records a failure: down until the next probe, with doubled backoff.
    pub fn mark_down(&self) -> Duration {
        let mut h = self.health.lock().expect("device health lock");
        h.backoff = if h.backoff.is_zero() {
            BACKOFF_MIN
        } else {
            (h.backoff * 2).min(BACKOFF_MAX)
        };
        h.down_until = Some(Instant::now() + h.backoff);
        h.backoff
    }
}

/// Every device's state, keyed by tenant, device name and URI (a changed
/// URI after a reload is a new device).
#[derive(Default)]
pub struct Devices {
    map: Mutex<HashMap<(TenantId, String, String), Arc<DeviceState>>>,
    resubmit: OnceLock<Resubmit>,
}

impl Devices {
    /// Sets how parked jobs are started again (once, by the dispatcher).
    pub fn set_resubmit(&self, r: Resubmit) {
        let _ = self.resubmit.set(r);
    }

    /// The state of a tenant's device.
    pub fn get(&self, tenant: &TenantId, device: &Device) -> Arc<DeviceState> {
        let key = (tenant.clone(), device.name.clone(), device.uri.to_string());
        self.map
            .lock()
            .expect("device map lock")
            .entry(key)
            .or_insert_with(|| {
                let r = self
                    .resubmit
                    .get()
                    .cloned()
                    .expect("the dispatcher sets resubmit before any job runs");
                Arc::new(DeviceState::new(r))
            })
            .clone()
    }

    /// The state of a tenant's device if a job has gone to it (none is made).
    pub fn peek(&self, tenant: &TenantId, device: &Device) -> Option<Arc<DeviceState>> {
        let key = (tenant.clone(), device.name.clone(), device.uri.to_string());
        self.map.lock().expect("device map lock").get(&key).cloned()
    }
}

/// Sends the document `doc` of `job` to `device`; returns the bytes
/// sent. A socket device that takes no bytes for `stall` (the tenant's
/// `device-timeout`) has failed.
pub async fn send(
    device: &Device,
    job: &Job,
    doc: &Document,
    stall: Duration,
) -> Result<u64, SendError> {
    match &device.uri {
        DeviceUri::Socket { host, port } => super::socket::send(host, *port, doc, stall).await,
        DeviceUri::Lpd { .. } => super::lpd::send(&device.uri, job, doc).await,
        DeviceUri::Ipp { .. } => super::ipp::send(&device.uri, &device.tls_verify, job, doc).await,
    }
}
