//! Dispatch: runs each committed job through the steps of its workflow.
//!
//! Every job runs in its own task, tracked for shutdown. Steps read the
//! workflow from the current snapshot, so a reload that fixes a device
//! address reaches jobs already queued. Each state change is saved durably
//! before the next step starts; a job's step index is part of its record,
//! so a restarted daemon resumes each job where it was.
//!
//! Holds the dispatcher, hold, store-to-folder ([`folder`]) and one module
//! per device kind ([`socket`], [`lpd`], [`ipp`]; shared I/O in [`device`],
//! pools in [`forward`]). Uses snapshot, store, config, wire and metrics.

pub mod capabilities;
pub mod device;
pub mod folder;
pub mod forward;
pub mod ipp;
pub mod lpd;
pub mod mirror;
pub mod socket;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ids::{JobId, TenantId};
use crate::config::{Device, Fallback, Step};
use crate::snapshot::Snapshot;
use crate::store::job::{now_ms, Job, JobState};
use crate::store::TenantStore;

use forward::Devices;

/// Runs jobs through workflows.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: Arc<ArcSwap<Snapshot>>,
    devices: Devices,
    running: Mutex<HashMap<(TenantId, JobId), Arc<JobControl>>>,
    tasks: TaskTracker,
    /// Fires on shutdown: jobs stop where they are and resume on restart.
    cancel: CancellationToken,
}

/// How others reach a running job's task.
struct JobControl {
    /// Fires when the job is canceled (a child of the shutdown token, so it fires on shutdown too).
    cancel: CancellationToken,
    /// Wakes a held job.
    release: Notify,
    /// True while the job waits in a hold.
    held: std::sync::atomic::AtomicBool,
    /// A device named by the release (`printroute release T/ID --to DEVICE`):
    /// the next forward step sends there instead of to its pool.
    release_to: Mutex<Option<String>>,
    /// The job was submitted again while its task ran (a parked job started
    /// again just as its task was ending): the task starts itself once more.
    again: std::sync::atomic::AtomicBool,
}

enum Outcome {
    /// The step is done; go on with the next.
    Next,
    /// Run the same step again (after a fallback hold is released).
    Again,
    /// The job reached a final state.
    Finished,
    /// Stop working on the job for now (shutdown, tenant gone); it stays queued.
    Suspend,
}

impl Dispatcher {
    /// A dispatcher reading workflows from `snapshot`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Dispatcher {
        let d = Dispatcher {
            inner: Arc::new(Inner {
                snapshot,
                devices: Devices::default(),
                running: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        };
        // Devices start parked jobs again through a weak handle: the
        // dispatcher owns the devices, not the other way round.
        let weak = Arc::downgrade(&d.inner);
        d.inner
            .devices
            .set_resubmit(Arc::new(move |store: Arc<TenantStore>, id: JobId| {
                if let Some(inner) = weak.upgrade() {
                    Dispatcher { inner }.submit(store, id);
                }
            }));
        d
    }

    /// Starts running a committed job.
    pub fn submit(&self, store: Arc<TenantStore>, id: JobId) {
        self.spawn_job(store, id, None, false);
    }

    /// Starts running a job its intake has just committed, from the record
    /// it committed: the task does not read back and open what it already
    /// has (a read and a decryption per job on the intake path).
    pub fn submit_committed(&self, store: Arc<TenantStore>, job: Job) {
        let id = job.id;
        self.spawn_job(store, id, Some(job), false);
    }

    /// Starts a committed job that its client asked to hold (IPP
    /// `job-hold-until`, RFC 8011 5.2.2): it is saved as held and waits,
    /// visible to [`Dispatcher::release`] and [`Dispatcher::cancel`], also
    /// across restarts, then runs its workflow.
    pub fn submit_held(&self, store: Arc<TenantStore>, id: JobId) {
        self.spawn_job(store, id, None, true);
    }

    /// Runs job `id` in a task of its own; `committed` is its record when
    /// the caller has just committed it (read from the store otherwise).
    fn spawn_job(
        &self,
        store: Arc<TenantStore>,
        id: JobId,
        committed: Option<Job>,
        client_hold: bool,
    ) {
        let key = (store.id().clone(), id);
        let control = Arc::new(JobControl {
            cancel: self.inner.cancel.child_token(),
            release: Notify::new(),
            // A job held from the start counts as held at once: a release
            // that comes before its task waits leaves a permit in the Notify.
            held: std::sync::atomic::AtomicBool::new(client_hold),
            release_to: Mutex::new(None),
            again: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut running = self.inner.running.lock().expect("running map lock");
            if let Some(c) = running.get(&key) {
                c.again.store(true, std::sync::atomic::Ordering::Release);
                return;
            }
            running.insert(key.clone(), control.clone());
        }
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            let mut backoff = STORAGE_RETRY_MIN;
            let mut hold_first = client_hold;
            // Only the first run starts from the committed record; a run
            // after a storage failure reads the record as it was saved.
            let mut committed = committed;
            loop {
                let result = async {
                    if std::mem::take(&mut hold_first) {
                        if let Some(mut job) = store.job(id)? {
                            job.set_state(JobState::Held, "held by the client (job-hold-until)");
                            if let Err(e) = store.save(&job).await {
                                hold_first = true;
                                return Err(e);
                            }
                        }
                    }
                    run_job(&inner, &store, id, committed.take(), &control).await
                }
                .await;
                let Err(e) = result else { break };
                // A commit that failed (a full disk, say) fails only its own
                // writes: the job carries on from its record once writes
                // succeed again, without a restart.
                tracing::error!(tenant = %store.id(), job = %id, error = %e, retry_in = ?backoff, "job paused: storage failed; it carries on when the store takes writes");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = control.cancel.cancelled() => break,
                }
                backoff = (backoff * 2).min(STORAGE_RETRY_MAX);
            }
            let again = {
                let mut running = inner.running.lock().expect("running map lock");
                running.remove(&key);
                control.again.load(std::sync::atomic::Ordering::Acquire)
            };
            if again && !control.cancel.is_cancelled() {
                Dispatcher { inner }.submit(store, id);
            }
        });
    }

    /// Resumes every unfinished job of a tenant (at start, or when a tenant
    /// returns to the config). A backlog larger than [`RESUME_BATCH`] is
    /// taken up by a task, a batch at a time, yielding between batches: a
    /// tenant with a large queue does not hold up new jobs of the others
    /// while its jobs are started.
    pub fn resume(&self, store: &Arc<TenantStore>) -> Result<usize, crate::store::StoreError> {
        let ids = store.active_jobs()?;
        let n = ids.len();
        if n <= RESUME_BATCH {
            for id in ids {
                self.submit(store.clone(), id);
            }
            return Ok(n);
        }
        let (this, store) = (self.clone(), store.clone());
        self.inner.tasks.spawn(async move {
            for batch in ids.chunks(RESUME_BATCH) {
                if this.inner.cancel.is_cancelled() {
                    return;
                }
                for id in batch {
                    this.submit(store.clone(), *id);
                }
                tokio::task::yield_now().await;
            }
        });
        Ok(n)
    }

    /// Releases a held job to its workflow's devices; false when it is not held.
    pub fn release(&self, tenant: &TenantId, id: JobId) -> bool {
        self.release_to(tenant, id, None)
    }

    /// Cancels an unfinished job: its task stops, the job ends canceled
    /// with `note` in its history, its document is deleted. Returns false
    /// when the job does not exist or has already finished.
    pub async fn cancel(
        &self,
        store: &Arc<TenantStore>,
        id: JobId,
        note: &str,
    ) -> Result<bool, crate::store::StoreError> {
        let control = self
            .inner
            .running
            .lock()
            .expect("running map lock")
            .get(&(store.id().clone(), id))
            .cloned();
        if let Some(c) = control {
            c.cancel.cancel();
            // Wait for the task to let go of the job before writing its record.
            while self
                .inner
                .running
                .lock()
                .expect("running map lock")
                .contains_key(&(store.id().clone(), id))
            {
                tokio::time::sleep(CANCEL_POLL).await;
            }
        }
        let Some(mut job) = store.job(id)? else {
            return Ok(false);
        };
        if job.state.is_final() {
            return Ok(false);
        }
        job.delivering = None;
        job.set_state(JobState::Canceled, note);
        if let Err(e) = finish(store, &job).await {
            // Not canceled after all: the job goes on as it was.
            self.submit(store.clone(), id);
            return Err(e);
        }
        Ok(true)
    }

    /// Stops every job task (jobs stay durable and resume on restart) and waits for them.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// First wait before a job whose record could not be written tries again.
pub const STORAGE_RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between such tries.
pub const STORAGE_RETRY_MAX: Duration = Duration::from_secs(30);

/// How often `cancel` looks whether a job's task has stopped.
const CANCEL_POLL: Duration = Duration::from_millis(5);

/// Jobs a resume starts before it lets other tasks run.
pub const RESUME_BATCH: usize = 64;

async fn run_job(
    inner: &Inner,
    store: &Arc<TenantStore>,
    id: JobId,
    committed: Option<Job>,
    control: &JobControl,
) -> Result<(), crate::store::StoreError> {
    let record = match committed {
        Some(job) => Some(job),
        None => store.job(id)?,
    };
    let Some(mut job) = record else {
        tracing::warn!(tenant = %store.id(), job = %id, "queued job has no record");
        return Ok(());
    };
    if job.state.is_final() {
        // Queued with a final record: a kill during its finish's group
        // commit kept the record (sled keeps a prefix of a group's
        // writes) but not the queue entry's removal, and the document was
        // never removed. The finish is done again.
        tracing::info!(tenant = %store.id(), job = %id, state = job.state.as_str(), "finishing a job that a restart interrupted in its finish");
        return finish(store, &job).await;
    }
    if job.delivering.is_some() {
        // A transfer was under way when the previous run stopped: the device
        // may have the job already. Deliver again (at least once) and say so.
        let dev = job.delivering.take().unwrap_or_default();
        job.note(format!(
            "transfer to {dev} was interrupted by a restart; sending again"
        ));
    }
    loop {
        if job.state.is_final() {
            return Ok(());
        }
        let snap = inner.snapshot.load_full();
        let Some(ti) = snap.tenant_index(&job.tenant) else {
            tracing::info!(tenant = %job.tenant, job = %job.id, "tenant is no longer configured; job stays queued");
            return Ok(());
        };
        let tenant = &snap.config.tenants[ti];
        let Some(workflow) = tenant.workflows.get(&job.workflow) else {
            job.set_state(
                JobState::Aborted,
                format!("workflow {:?} no longer exists", job.workflow),
            );
            return finish(store, &job).await;
        };
        let Some(step) = workflow.steps.get(job.step as usize).cloned() else {
            job.set_state(JobState::Completed, "workflow done");
            return finish(store, &job).await;
        };
        if job.state == JobState::Held && !matches!(step, Step::Hold { .. }) {
            // Held by its client (IPP job-hold-until) or by a forward step's
            // fallback, also across a restart: wait for the release, then
            // run this step afresh.
            let until = job.hold_until_ms;
            match hold_until_released(control, &mut job, until).await? {
                Outcome::Next | Outcome::Again => {
                    job.step_started_ms = now_ms();
                    store.save(&job).await?;
                    continue;
                }
                Outcome::Finished => return finish(store, &job).await,
                Outcome::Suspend => return Ok(()),
            }
        }
        let outcome = match step {
            Step::Forward { devices, fallback } => {
                let devices = match control.release_to.lock().expect("release_to lock").take() {
                    Some(d) => vec![d],
                    None => devices,
                };
                forward_step(inner, control, store, &mut job, tenant, &devices, fallback).await?
            }
            Step::Store {
                folder,
                follow_symlink,
            } => {
                job.set_state(
                    JobState::Processing,
                    format!("storing into {}", folder.display()),
                );
                match folder::store(&job, store.document(&job)?, &folder, follow_symlink).await {
                    Ok(path) => {
                        job.note(format!("stored as {}", path.display()));
                        Outcome::Next
                    }
                    Err(e) => {
                        job.set_state(
                            JobState::Aborted,
                            format!("cannot store into {}: {e}", folder.display()),
                        );
                        Outcome::Finished
                    }
                }
            }
            Step::Hold { expire_after } => {
                hold_step(control, store, &mut job, expire_after).await?
            }
        };
        match outcome {
            Outcome::Next => {
                job.step += 1;
                job.step_started_ms = now_ms();
                // The last step's end is saved once, as the job's finish.
                if (job.step as usize) < workflow.steps.len() {
                    store.save(&job).await?;
                }
            }
            Outcome::Again => {}
            Outcome::Finished => return finish(store, &job).await,
            Outcome::Suspend => return Ok(()),
        }
    }
}

async fn finish(store: &Arc<TenantStore>, job: &Job) -> Result<(), crate::store::StoreError> {
    store.save(job).await?;
    // Emptying a big spool file takes a while: in the blocking pool, not
    // on a runtime thread that every tenant's connections share.
    let (s, j) = (store.clone(), job.clone());
    if tokio::task::spawn_blocking(move || s.remove_document(&j))
        .await
        .is_err()
    {
        tracing::warn!(tenant = %job.tenant, job = %job.id, "removing the spool file failed");
    }
    crate::metrics::get().job(job.tenant.as_str(), job.state.as_str());
    tracing::info!(tenant = %job.tenant, job = %job.id, state = job.state.as_str(), "job finished");
    Ok(())
}

async fn forward_step(
    inner: &Inner,
    control: &JobControl,
    store: &Arc<TenantStore>,
    job: &mut Job,
    tenant: &crate::config::Tenant,
    names: &[String],
    fallback: Fallback,
) -> Result<Outcome, crate::store::StoreError> {
    // The delivery timeout counts from when the job reached this step (a
    // released fallback hold starts it again).
    let deadline_ms =
        job.created_ms.max(job.step_started_ms) + tenant.limits.delivery_timeout.as_millis() as u64;
    if job.state != JobState::Processing {
        // Saved with the first attempt's `delivering` mark below.
        job.set_state(
            JobState::Processing,
            format!("forwarding to {}", names.join(", ")),
        );
    }
    // Devices that refused this job for good (their reasons): it does not
    // wait for them again in this step.
    let mut refused: Vec<(String, String)> = Vec::new();
    'pick: loop {
        if now_ms() >= deadline_ms {
            return delivery_timed_out(store, job, names, fallback).await;
        }
        let deadline_at = tokio::time::Instant::now()
            + Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
        // The device to wait for: the first of the pool that is up, else the one probed soonest.
        let pool: Vec<(&String, &crate::config::Device, Arc<forward::DeviceState>)> = names
            .iter()
            .filter(|n| !refused.iter().any(|(r, _)| r == *n))
            .filter_map(|n| {
                tenant
                    .devices
                    .get(n)
                    .map(|d| (n, d, inner.devices.get(&tenant.id, d)))
            })
            .collect();
        let Some((name, device, state)) = pool
            .iter()
            .find(|p| p.2.down_until().is_none())
            .or_else(|| pool.iter().min_by_key(|p| p.2.down_until()))
            .cloned()
        else {
            if !refused.is_empty() {
                return refused_everywhere(store, job, &refused, fallback).await;
            }
            job.set_state(
                JobState::Aborted,
                format!("none of the devices {} exists", names.join(", ")),
            );
            return Ok(Outcome::Finished);
        };
        // One job at a time per device, the oldest first: wait until no
        // older job waits for it. The turn is kept across failed attempts,
        // so a younger job never overtakes while the device is down.
        let Some(turn) = state.turn_or_park(job.id.0, store) else {
            tracing::debug!(tenant = %job.tenant, job = %job.id, device = %name, "parked behind the device's backlog");
            return Ok(Outcome::Suspend);
        };
        while !turn.is_head() {
            tokio::select! {
                _ = turn.changed() => {}
                _ = tokio::time::sleep_until(deadline_at) => continue 'pick,
                _ = control.cancel.cancelled() => return Ok(Outcome::Suspend),
            }
        }
        loop {
            if tokio::time::Instant::now() >= deadline_at {
                continue 'pick;
            }
            if let Some(probe) = state.down_until() {
                // Down: wait for its probe, unless another device of the pool
                // is up. Not this one: its probe may have come due since it
                // was found down, and re-picking would give up its turn, so
                // a younger job could send first.
                if pool
                    .iter()
                    .any(|p| !Arc::ptr_eq(&p.2, &state) && p.2.down_until().is_none())
                {
                    continue 'pick;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(probe.min(deadline_at)) => {}
                    _ = control.cancel.cancelled() => return Ok(Outcome::Suspend),
                }
                continue;
            }
            let permit = tokio::select! {
                p = state.permit.acquire() => p.expect("device semaphore is never closed"),
                _ = control.cancel.cancelled() => return Ok(Outcome::Suspend),
            };
            job.delivering = Some(name.clone());
            store.save(job).await?;
            let doc = store.document(job)?;
            let result = tokio::select! {
                r = forward::send(device, job, &doc, tenant.limits.device_timeout) => r,
                _ = control.cancel.cancelled() => return Ok(Outcome::Suspend),
            };
            drop(permit);
            job.delivering = None;
            match result {
                Ok(bytes) => {
                    state.mark_up();
                    drop(turn);
                    let m = crate::metrics::get();
                    m.job(job.tenant.as_str(), "delivered");
                    m.delivered(
                        job.tenant.as_str(),
                        bytes,
                        now_ms().saturating_sub(job.created_ms) as f64 / 1000.0,
                    );
                    job.note(format!(
                        "delivered {bytes} bytes to {name} ({})",
                        device.uri
                    ));
                    tracing::info!(tenant = %job.tenant, job = %job.id, device = %name, bytes, "delivered");
                    return Ok(Outcome::Next);
                }
                Err(e) if e.is_permanent() => {
                    // This device will not print this job, now or later: the
                    // job leaves its queue at once (younger jobs go on) and
                    // tries the rest of its pool.
                    drop(turn);
                    crate::metrics::get().job(job.tenant.as_str(), "refused-by-device");
                    tracing::warn!(tenant = %job.tenant, job = %job.id, device = %name, error = %e, "device refused the job for good");
                    job.note(format!("{name} ({}) refused the job: {e}", device.uri));
                    store.save(job).await?;
                    refused.push((name.clone(), e.to_string()));
                    continue 'pick;
                }
                Err(e) => {
                    let backoff = state.mark_down();
                    crate::metrics::get().job(job.tenant.as_str(), "failed-attempt");
                    tracing::warn!(tenant = %job.tenant, job = %job.id, device = %name, error = %e, retry_in = ?backoff, "delivery failed");
                    job.note(format!("{name} ({}) failed: {e}", device.uri));
                    store.save(job).await?;
                }
            }
        }
    }
}

/// Ends a forward step whose every device refused the job for good:
/// aborted with their reasons, or held with `fallback = "hold"`.
async fn refused_everywhere(
    store: &Arc<TenantStore>,
    job: &mut Job,
    refused: &[(String, String)],
    fallback: Fallback,
) -> Result<Outcome, crate::store::StoreError> {
    let why = refused
        .iter()
        .map(|(d, e)| format!("{d}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(match fallback {
        Fallback::Abort => {
            job.set_state(
                JobState::Aborted,
                format!("no device can print the job ({why})"),
            );
            Outcome::Finished
        }
        Fallback::Hold => {
            job.hold_until_ms = None;
            job.set_state(
                JobState::Held,
                format!("no device can print the job ({why}); held for release"),
            );
            store.save(job).await?;
            Outcome::Again
        }
    })
}

/// Ends a forward step no device took within `delivery-timeout`: aborted, or held with `fallback = "hold"`.
async fn delivery_timed_out(
    store: &Arc<TenantStore>,
    job: &mut Job,
    names: &[String],
    fallback: Fallback,
) -> Result<Outcome, crate::store::StoreError> {
    let why = format!(
        "no device of {} took the job within delivery-timeout",
        names.join(", ")
    );
    Ok(match fallback {
        Fallback::Abort => {
            job.set_state(JobState::Aborted, why);
            Outcome::Finished
        }
        Fallback::Hold => {
            job.hold_until_ms = None;
            job.set_state(JobState::Held, format!("{why}; held for release"));
            store.save(job).await?;
            Outcome::Again
        }
    })
}

async fn hold_step(
    control: &JobControl,
    store: &Arc<TenantStore>,
    job: &mut Job,
    expire_after: Option<Duration>,
) -> Result<Outcome, crate::store::StoreError> {
    if job.state != JobState::Held {
        job.hold_until_ms = expire_after.map(|d| now_ms() + d.as_millis() as u64);
        job.set_state(JobState::Held, "held until released");
        store.save(job).await?;
    }
    let outcome = hold_until_released(control, job, job.hold_until_ms).await?;
    Ok(outcome)
}

/// Waits for a release or the expiry of a held job. On release the job goes
/// on with its next step; on expiry it is canceled.
async fn hold_until_released(
    control: &JobControl,
    job: &mut Job,
    until_ms: Option<u64>,
) -> Result<Outcome, crate::store::StoreError> {
    control
        .held
        .store(true, std::sync::atomic::Ordering::Release);
    let expiry = async {
        match until_ms {
            Some(t) => tokio::time::sleep(Duration::from_millis(t.saturating_sub(now_ms()))).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = control.release.notified() => {
            job.hold_until_ms = None;
            job.set_state(JobState::Pending, "released");
            Outcome::Next
        }
        _ = expiry => {
            job.set_state(JobState::Canceled, "hold expired");
            crate::metrics::get().job(job.tenant.as_str(), "expired");
            Outcome::Finished
        }
        _ = control.cancel.cancelled() => Outcome::Suspend,
    };
    control
        .held
        .store(false, std::sync::atomic::Ordering::Release);
    Ok(outcome)
}

/// Admin operations: release to a chosen device, stop a tenant's jobs.
impl Dispatcher {
    /// Releases a held job; with `to`, its next forward step sends to that
    /// device of the tenant instead of its pool (pull printing). False when
    /// the job is not held.
    pub fn release_to(&self, tenant: &TenantId, id: JobId, to: Option<String>) -> bool {
        let running = self.inner.running.lock().expect("running map lock");
        match running.get(&(tenant.clone(), id)) {
            Some(c) if c.held.load(std::sync::atomic::Ordering::Acquire) => {
                *c.release_to.lock().expect("release_to lock") = to;
                c.release.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Stops every running job of a tenant (their records stay as they
    /// are) and waits until their tasks have let go; used before a purge.
    pub async fn stop_tenant(&self, tenant: &TenantId) {
        let controls: Vec<Arc<JobControl>> = self
            .inner
            .running
            .lock()
            .expect("running map lock")
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, c)| c.clone())
            .collect();
        for c in &controls {
            c.cancel.cancel();
        }
        while self
            .inner
            .running
            .lock()
            .expect("running map lock")
            .keys()
            .any(|(t, _)| t == tenant)
        {
            tokio::time::sleep(CANCEL_POLL).await;
        }
    }
}

/// A device as delivery sees it (the admin API's device state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceHealth {
    /// Down after a failed delivery: tried again in this long.
    pub retry_in: Option<std::time::Duration>,
    /// Jobs waiting for it (in memory and parked).
    pub waiting: usize,
}

/// Numbers for the metrics endpoint.
impl Dispatcher {
    /// How a tenant's device fares: `None` when no job has gone to it since
    /// the daemon started (or since its URI changed).
    pub fn device_health(&self, tenant: &TenantId, device: &Device) -> Option<DeviceHealth> {
        let s = self.inner.devices.peek(tenant, device)?;
        let (queued, parked) = s.waiting();
        Some(DeviceHealth {
            retry_in: s
                .down_until()
                .map(|t| t.saturating_duration_since(tokio::time::Instant::now())),
            waiting: queued + parked,
        })
    }

    /// Held jobs per tenant, now.
    pub fn held_counts(&self) -> HashMap<TenantId, usize> {
        let mut out = HashMap::new();
        for ((t, _), c) in self.inner.running.lock().expect("running map lock").iter() {
            if c.held.load(std::sync::atomic::Ordering::Acquire) {
                *out.entry(t.clone()).or_default() += 1;
            }
        }
        out
    }
}
