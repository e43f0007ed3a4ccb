//! Durable storage: one sled database plus a spool folder per tenant.
//!
//! The only module that knows sled. Each tenant has one tree (`tenant/<id>`)
//! with typed key prefixes (see [`keys`]); documents are spool files under
//! `spool/<tenant>/`, never sled values.
//!
//! Durability is a group commit: callers hand their record writes to one
//! flusher thread and wait. For whatever is pending, the flusher syncs the
//! spool file system once (`syncfs`), then applies the records, calls sled's
//! blocking `flush()` and `fsync`s the database file (sled's flush only uses
//! `sync_file_range`), then wakes every waiter of that batch. Records are
//! applied only after their documents are synced, so a record never reaches
//! the disk before its document. `flush_async` is never used: it deadlocks
//! under concurrency in sled 0.34.7.
//!
//! Holds the records (the only code that knows sled), the [`job`] model and
//! the spool documents. Uses config and metrics.

pub mod counts;
pub mod crypt;
pub mod document;
pub mod job;
pub mod listing;
pub mod log;
pub mod private;
pub mod rekey;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::config::ids::{JobId, TenantId, MAX_JOB_ID};
use crate::config::{SpoolSync, DEFAULT_MIN_FREE_SPACE};
use crate::store::job::{now_ms, Event, Job, JobState, NewJob};

/// Version of the on-disk layout; bumped when keys or values change shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the tree that holds the tenant registry and the schema version.
const META_TREE: &str = "printroute-meta";

/// Prefix of spool files still being received (no committed record).
const INCOMING_PREFIX: &str = ".incoming-";

/// How often a blocking commit looks whether its group is on disk.
const BLOCKING_COMMIT_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// A writer checks the file system's free space after at most this many
/// bytes (and before its first), not on every write: the floor of
/// `min-free-space` absorbs the slack.
const ROOM_CHECK_BYTES: u64 = 1 << 20;

/// Prefix of emptied spool files kept for reuse.
const FREE_PREFIX: &str = ".free-";

/// Emptied spool files a tenant keeps for reuse. Creating and deleting a
/// file per job costs far more than truncating and renaming one (inode
/// allocation and directory locks: ~1.5k vs ~7k documents/s measured here).
pub const MAX_FREE_SPOOL_FILES: usize = 256;

/// Buffer of a spool file's writer; one per connection receiving a document.
const SPOOL_WRITE_BUFFER: usize = 256 << 10;

/// What a receive first allocates for its document in memory; it grows
/// with the document up to [`log::SMALL_DOCUMENT_MAX`].
const MEMORY_WRITER_START: usize = 8 << 10;

/// Most record removals one prune hands to one commit group.
const PRUNE_BATCH: usize = 1024;

/// An abandoned partial document at least this large is deleted in the
/// blocking pool rather than on the runtime thread that dropped it.
const UNLINK_IN_BACKGROUND_BYTES: u64 = 1 << 20;

/// Key layout: every key of every tree is built here.
pub mod keys {
    use crate::config::ids::{JobId, TenantId};

    /// The tree of a tenant.
    pub fn tenant_tree(t: &TenantId) -> String {
        format!("tenant/{t}")
    }
    /// Registry entry of a tenant in the meta tree.
    pub fn registry(t: &TenantId) -> Vec<u8> {
        format!("tenant/{t}").into_bytes()
    }
    /// Prefix of registry entries.
    pub const REGISTRY_PREFIX: &[u8] = b"tenant/";
    /// Schema version in the meta tree.
    pub const SCHEMA: &[u8] = b"schema-version";
    /// Meta tree: written by [`super::Store::probe`] while commits fail.
    pub const HEALTH_PROBE: &[u8] = b"health-probe";
    /// A job record: `j/` + big-endian id, so records sort by id.
    pub fn job(id: JobId) -> [u8; 6] {
        prefixed(b"j/", id)
    }
    /// Prefix of job records.
    pub const JOB_PREFIX: &[u8] = b"j/";
    /// Queue entry of an unfinished job: `q/` + big-endian id.
    pub fn queue(id: JobId) -> [u8; 6] {
        prefixed(b"q/", id)
    }
    /// Prefix of queue entries.
    pub const QUEUE_PREFIX: &[u8] = b"q/";
    /// The next job id counter.
    pub const NEXT_JOB_ID: &[u8] = b"c/next-job-id";
    /// Where a job's document lies in the spool log: `l/` + big-endian id
    /// (see [`super::log::Location`]). Kept apart from the record, which
    /// the dispatcher rewrites: only the group commit that appends an
    /// entry writes its location.
    pub fn location(id: JobId) -> [u8; 6] {
        prefixed(b"l/", id)
    }
    /// Prefix of spool log locations.
    pub const LOCATION_PREFIX: &[u8] = b"l/";

    fn prefixed(p: &[u8; 2], id: JobId) -> [u8; 6] {
        let b = id.0.to_be_bytes();
        [p[0], p[1], b[0], b[1], b[2], b[3]]
    }
    /// The job id of a `j/` or `q/` key.
    pub fn id_of(key: &[u8]) -> Option<JobId> {
        let b: [u8; 4] = key.get(2..6)?.try_into().ok()?;
        Some(JobId(u32::from_be_bytes(b)))
    }
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File or database I/O failed.
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    /// sled failed.
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// A record could not be decoded.
    #[error("corrupt record {key}: {err}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoder's error.
        err: serde_json::Error,
    },
    /// The database was written by a newer printroute.
    #[error(
        "database schema version {found} is not {SCHEMA_VERSION}; use the printroute that wrote it"
    )]
    Schema {
        /// The version found.
        found: String,
    },
    /// The database itself failed a write (sled keeps such an error until it
    /// is reopened): nothing more is accepted, and the daemon restarts.
    #[error("the database failed a write and accepts no more until the daemon restarts")]
    Poisoned,
    /// The group commit this write was part of failed (no space, an I/O
    /// error syncing documents): the write is not durable, later ones may be.
    #[error("commit failed: {0}")]
    CommitFailed(Arc<str>),
    /// A tenant's key is missing or does not open its records.
    #[error("tenant {tenant}: {err}")]
    Key {
        /// The tenant.
        tenant: TenantId,
        /// What is wrong with its key.
        err: crypt::CryptError,
    },
    /// A key rotation of the tenant is running already.
    #[error("a key rotation of this tenant is already running")]
    RekeyRunning,
    /// The tenant used all 2^31-1 job ids.
    #[error("tenant has used every job id")]
    IdsExhausted,
    /// The document is larger than the tenant's `max-job-size`.
    #[error("document exceeds max-job-size of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Accepting the document would exceed the tenant's `spool-quota`.
    #[error("tenant spool quota of {quota} bytes would be exceeded")]
    QuotaExceeded {
        /// The quota.
        quota: u64,
    },
    /// The spool's file system is full (below `global.min-free-space`), or
    /// a write found no space: the job is refused like one over its quota,
    /// and the space left stays for the database.
    #[error("the spool's disk is full")]
    DiskFull,
}

enum Op {
    Insert(sled::Tree, Vec<u8>, Vec<u8>),
    Remove(sled::Tree, Vec<u8>),
    /// Raise a big-endian u32 counter to at least this value.
    CounterMax(sled::Tree, &'static [u8], u32),
}

impl Op {
    /// Bytes of keys and values the op writes.
    fn bytes(&self) -> u64 {
        match self {
            Op::Insert(_, k, v) => (k.len() + v.len()) as u64,
            Op::Remove(_, k) => k.len() as u64,
            Op::CounterMax(_, k, _) => (k.len() + 4) as u64,
        }
    }
}

/// Syncs each log of a group (see [`log::SpoolLog::sync`]): the first on
/// the calling thread, the others on threads of their own meanwhile.
fn sync_logs(logs: &[(Arc<log::SpoolLog>, Arc<File>)]) -> Vec<Result<(), CommitFailure>> {
    let failure = |err: io::Error| CommitFailure::of(&err.into());
    let written: Vec<Result<Vec<log::WrittenOut>, CommitFailure>> = logs
        .iter()
        .map(|(log, dir)| log.write_out(dir).map_err(failure))
        .collect();
    let out: Vec<&log::WrittenOut> = written.iter().flatten().flatten().collect();
    let flushed = match out.as_slice() {
        [] => Ok(()),
        // One flush of the device's cache for every tenant's segments.
        _ => log::flush_written_out(out.iter().copied()).map_err(failure),
    };
    written
        .into_iter()
        .zip(logs)
        .map(|(w, (log, _))| {
            let w = w?;
            if let Err(f) = &flushed {
                if !w.is_empty() {
                    for o in &w {
                        log.unsure(o.segment());
                    }
                    return Err(f.clone());
                }
            }
            Ok(())
        })
        .collect()
}

/// Why a commit failed, as its waiter hears it.
#[derive(Clone, Debug)]
enum CommitFailure {
    /// No space for it (a refusal, like a quota's).
    DiskFull,
    Failed(Arc<str>),
}

impl CommitFailure {
    fn of(e: &StoreError) -> CommitFailure {
        match e {
            StoreError::DiskFull => CommitFailure::DiskFull,
            StoreError::Io(e)
                if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) =>
            {
                CommitFailure::DiskFull
            }
            e => CommitFailure::Failed(e.to_string().into()),
        }
    }
}

/// The outcome of one commit, as its waiter sees it: `None` while it is
/// pending, then `Ok` or the reason it failed.
type GroupOutcome = Option<Result<(), CommitFailure>>;

/// A small document for the spool log, appended by the group that commits
/// its job's record (see [`log`]).
struct Append {
    log: Arc<log::SpoolLog>,
    /// The tenant's tree, for the entry's location.
    tree: sled::Tree,
    /// The tenant's spool folder, synced when a segment is created.
    dir: Arc<File>,
    id: JobId,
    /// The frame's room ([`log::FRAME_LEN`]), then the sealed document.
    entry: Vec<u8>,
    /// It moves a live job's document (a key rotation).
    relocate: bool,
}

/// An entry appended for a group, live once the group is durable.
struct Written {
    log: Arc<log::SpoolLog>,
    id: JobId,
    loc: log::Location,
    relocate: bool,
}

/// Job ids the durable id counter moves ahead by at once (see
/// `TenantStore::new_job_ops`): one write of it per this many new jobs,
/// not one per job. A restart skips what is left of the block.
pub const JOB_IDS_RESERVED_AT_ONCE: u32 = 1024;

/// Most commits (a job's record, a record change) in one group. Groups
/// take commits round-robin across lanes (one lane per tenant, one for the
/// store's own), so a tenant with thousands waiting fills at most its share
/// of a group, and another tenant's commit waits behind at most the group
/// being written.
pub const MAX_GROUP_COMMITS: usize = 256;

/// One caller's commit, waiting for a group.
struct Entry {
    ops: Vec<Op>,
    /// A document for the spool log, written before the ops.
    append: Option<Append>,
    sync_spool: bool,
    /// The spool folder whose new entry (a rename) must be durable with it.
    dir: Option<Arc<File>>,
    /// Tells the caller how its group went.
    done: watch::Sender<GroupOutcome>,
}

/// Commits waiting, per lane.
#[derive(Default)]
struct Pending {
    lanes: HashMap<u32, std::collections::VecDeque<Entry>>,
    /// Lanes with commits waiting, in turn order.
    turn: std::collections::VecDeque<u32>,
    stop: bool,
}

impl Pending {
    /// The next group: one commit per lane in turn, at most
    /// [`MAX_GROUP_COMMITS`].
    fn take_group(&mut self) -> Vec<Entry> {
        let mut group = Vec::new();
        while group.len() < MAX_GROUP_COMMITS {
            let Some(lane) = self.turn.pop_front() else {
                break;
            };
            let q = self
                .lanes
                .get_mut(&lane)
                .expect("a lane in turn has commits");
            group.push(q.pop_front().expect("a lane in turn has commits"));
            if q.is_empty() {
                self.lanes.remove(&lane);
            } else {
                self.turn.push_back(lane);
            }
        }
        group
    }
}

/// The lane of the store's own commits (registry, purge, probes).
const STORE_LANE: u32 = 0;

/// Free bytes the data dir's file system must keep beyond a group's own
/// size for the group to be written: a group that would leave less is
/// refused before the database sees it. sled keeps a failed log write as
/// an error of the whole database until it is reopened, so running out of
/// space inside sled would stop every tenant; a refused group stops only
/// its own writes, and the next group, once there is space, goes through.
pub const COMMIT_HEADROOM: u64 = 16 << 20;

/// The store's health, for `printroute status`, the metrics and systemd.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Health {
    /// Since when (ms since the epoch) commits have been failing; `None` when the last one succeeded.
    pub failing_since_ms: Option<u64>,
    /// Why the last failed commit failed.
    pub last_error: Option<String>,
    /// Commit groups that failed since start.
    pub failed_groups: u64,
    /// The database itself failed: only a restart heals it.
    pub poisoned: bool,
}

/// The group committer: one flusher thread, any number of waiters.
struct Committer {
    pending: Mutex<Pending>,
    wake: Condvar,
    poisoned: AtomicBool,
    health: Mutex<Health>,
    /// The next tenant's lane.
    next_lane: AtomicU32,
}

impl Committer {
    /// A lane of its own for a tenant's commits.
    fn new_lane(&self) -> u32 {
        self.next_lane.fetch_add(1, Ordering::Relaxed) + STORE_LANE + 1
    }

    /// Queues ops in `lane` for a coming group; returns its outcome to wait on.
    fn enqueue(
        &self,
        lane: u32,
        ops: Vec<Op>,
        append: Option<Append>,
        sync_spool: bool,
        dir: Option<&Arc<File>>,
    ) -> watch::Receiver<GroupOutcome> {
        let (done, rx) = watch::channel(None);
        let entry = Entry {
            ops,
            append,
            sync_spool,
            dir: dir.cloned(),
            done,
        };
        let mut p = self.pending.lock().expect("commit queue lock");
        let q = p.lanes.entry(lane).or_default();
        q.push_back(entry);
        if q.len() == 1 {
            p.turn.push_back(lane);
        }
        drop(p);
        self.wake.notify_one();
        rx
    }

    fn outcome(o: &GroupOutcome, poisoned: bool) -> Result<(), StoreError> {
        match o {
            Some(Ok(())) => Ok(()),
            _ if poisoned => Err(StoreError::Poisoned),
            Some(Err(CommitFailure::DiskFull)) => Err(StoreError::DiskFull),
            Some(Err(CommitFailure::Failed(why))) => Err(StoreError::CommitFailed(why.clone())),
            None => Err(StoreError::CommitFailed("the flusher stopped".into())),
        }
    }

    async fn commit(
        &self,
        lane: u32,
        ops: Vec<Op>,
        sync_spool: bool,
        dir: Option<&Arc<File>>,
    ) -> Result<(), StoreError> {
        self.commit_with(lane, ops, None, sync_spool, dir).await
    }

    /// Like [`Committer::commit`], with a document for the spool log.
    async fn commit_with(
        &self,
        lane: u32,
        ops: Vec<Op>,
        append: Option<Append>,
        sync_spool: bool,
        dir: Option<&Arc<File>>,
    ) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        let mut rx = self.enqueue(lane, ops, append, sync_spool, dir);
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(o) => o.clone(),
            Err(_) => None,
        };
        Self::outcome(&outcome, self.poisoned.load(Ordering::Acquire))
    }

    fn commit_blocking(&self, lane: u32, ops: Vec<Op>) -> Result<(), StoreError> {
        self.commit_blocking_with(lane, ops, None)
    }

    fn commit_blocking_with(
        &self,
        lane: u32,
        ops: Vec<Op>,
        append: Option<Append>,
    ) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned);
        }
        let rx = self.enqueue(lane, ops, append, false, None);
        loop {
            let outcome = rx.borrow().clone();
            if outcome.is_some() || rx.has_changed().is_err() {
                return Self::outcome(&outcome, self.poisoned.load(Ordering::Acquire));
            }
            // Blocking callers are rare (start-up, purge): a short poll is enough.
            std::thread::sleep(BLOCKING_COMMIT_POLL);
        }
    }

    /// The store's health now.
    fn health(&self) -> Health {
        self.health.lock().expect("health lock").clone()
    }

    fn run(&self, db: &sled::Db, db_file: &File, spool_root: &File) {
        loop {
            let group = {
                let mut p = self.pending.lock().expect("commit queue lock");
                while p.turn.is_empty() && !p.stop {
                    p = self.wake.wait(p).expect("commit queue lock");
                }
                if p.turn.is_empty() {
                    return;
                }
                p.take_group()
            };
            // Small documents first: appended to their tenants' logs, one
            // sync per log touched. An entry that fails fails only its own
            // commit.
            let mut members = Vec::with_capacity(group.len());
            for mut e in group {
                let mut written = None;
                let mut failed = None;
                if let Some(a) = e.append.take() {
                    match a.log.write(&a.entry) {
                        Ok(loc) => {
                            // First: sled keeps a prefix of a group's writes
                            // when the process dies during its flush, so a
                            // queue entry it kept always has its location.
                            e.ops.insert(
                                0,
                                Op::Insert(
                                    a.tree,
                                    keys::location(a.id).to_vec(),
                                    loc.encode().to_vec(),
                                ),
                            );
                            written = Some((
                                Written {
                                    log: a.log,
                                    id: a.id,
                                    loc,
                                    relocate: a.relocate,
                                },
                                a.dir,
                            ));
                        }
                        Err(err) => failed = Some(CommitFailure::of(&err.into())),
                    }
                }
                members.push((e, written, failed));
            }
            // The logs touched, each synced once, different tenants' at
            // the same time (their syncs wait on the disk, not the CPU).
            let mut logs: Vec<(Arc<log::SpoolLog>, Arc<File>)> = Vec::new();
            for (_, written, _) in &members {
                if let Some((w, dir)) = written {
                    if !logs.iter().any(|(l, _)| Arc::ptr_eq(l, &w.log)) {
                        logs.push((w.log.clone(), dir.clone()));
                    }
                }
            }
            let synced = sync_logs(&logs);
            for (_, written, failed) in &mut members {
                let Some((w, _)) = written else { continue };
                let i = logs
                    .iter()
                    .position(|(l, _)| Arc::ptr_eq(l, &w.log))
                    .expect("every touched log was synced");
                if let Err(f) = &synced[i] {
                    w.log.abandoned(&w.loc);
                    *failed = Some(f.clone());
                    *written = None;
                }
            }
            let mut ops = Vec::new();
            let mut sync_spool = false;
            let mut dirs: Vec<Arc<File>> = Vec::new();
            let mut done = Vec::with_capacity(members.len());
            let mut refused = Vec::new();
            let mut placed = Vec::new();
            for (e, written, failed) in members {
                if let Some(f) = failed {
                    tracing::error!(error = ?f, "a spool log append failed; its job is refused");
                    refused.push((e.done, f));
                    continue;
                }
                ops.extend(e.ops);
                sync_spool |= e.sync_spool;
                if let Some(d) = e.dir {
                    if !dirs.iter().any(|x| Arc::ptr_eq(x, &d)) {
                        dirs.push(d);
                    }
                }
                placed.extend(written.map(|(w, _)| w));
                done.push(e.done);
            }
            let bytes = ops.iter().map(Op::bytes).sum();
            let result = if self.poisoned.load(Ordering::Acquire) {
                Err(StoreError::Poisoned)
            } else if done.is_empty() {
                // Every commit of the group was refused.
                Ok(())
            } else {
                Self::flush_group(db, db_file, spool_root, ops, bytes, sync_spool, &dirs)
            };
            for w in &placed {
                match (&result, w.relocate) {
                    (Ok(()), false) => w.log.placed(w.id, &w.loc),
                    (Ok(()), true) => w.log.relocated(w.id, &w.loc),
                    (Err(_), _) => w.log.abandoned(&w.loc),
                }
            }
            let outcome = match result {
                Ok(()) => {
                    let mut h = self.health.lock().expect("health lock");
                    if h.failing_since_ms.take().is_some() {
                        tracing::info!("group commit succeeded again; the store takes writes");
                    }
                    Ok(())
                }
                Err(e) => {
                    // Only sled's own failures poison it (it keeps them until
                    // reopened); a refused or unsynced group hurts only itself.
                    let fatal = matches!(e, StoreError::Db(_) | StoreError::Poisoned);
                    let mut h = self.health.lock().expect("health lock");
                    h.failed_groups += 1;
                    h.last_error = Some(e.to_string());
                    h.failing_since_ms.get_or_insert_with(now_ms);
                    if fatal && !self.poisoned.swap(true, Ordering::AcqRel) {
                        h.poisoned = true;
                        tracing::error!(error = %e, "the database failed a write; it takes no more until the daemon restarts");
                    } else if !fatal {
                        tracing::error!(error = %e, "group commit failed; its writes are refused, later ones are tried");
                    }
                    Err(CommitFailure::of(&e))
                }
            };
            for d in done {
                d.send_replace(Some(outcome.clone()));
            }
            for (d, f) in refused {
                d.send_replace(Some(Err(f)));
            }
        }
    }

    fn flush_group(
        db: &sled::Db,
        db_file: &File,
        spool_root: &File,
        ops: Vec<Op>,
        bytes: u64,
        sync_spool: bool,
        dirs: &[Arc<File>],
    ) -> Result<(), StoreError> {
        if sync_spool {
            rustix::fs::syncfs(spool_root).map_err(io::Error::from)?;
        }
        for d in dirs {
            d.sync_all()?;
        }
        // sled's log takes about the group's bytes again as it writes them.
        let free = rustix::fs::fstatvfs(db_file)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(io::Error::from)?;
        if free < COMMIT_HEADROOM.saturating_add(bytes.saturating_mul(2)) {
            return Err(StoreError::DiskFull);
        }
        for op in ops {
            match op {
                Op::Insert(t, k, v) => {
                    t.insert(k, v)?;
                }
                Op::Remove(t, k) => {
                    t.remove(k)?;
                }
                Op::CounterMax(t, k, v) => {
                    let cur = t
                        .get(k)?
                        .and_then(|b| <[u8; 4]>::try_from(b.as_ref()).ok())
                        .map_or(0, u32::from_be_bytes);
                    if v > cur {
                        t.insert(k, &v.to_be_bytes())?;
                    }
                }
            }
        }
        // sled's flush writes its log and waits for the writeback
        // (`sync_file_range`), which neither flushes the disk's cache nor
        // the file's size: this sync does. `fdatasync` is enough for both;
        // `fsync` would also commit the modification time each group.
        db.flush()?;
        db_file.sync_data()?;
        Ok(())
    }
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    spool_root: PathBuf,
    /// Per-tenant key files (see [`crypt`]).
    keys_dir: PathBuf,
    committer: Arc<Committer>,
    tenants: RwLock<HashMap<TenantId, Arc<TenantStore>>>,
    incoming_seq: Arc<AtomicU64>,
    spool_sync: SpoolSync,
    min_free: Arc<AtomicU64>,
}

/// The store: the sled database and the spool under one data directory.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    flusher: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Store {
    /// Opens (or creates) the store under `data_dir`, with a sled page cache
    /// of `cache_capacity` bytes, syncing documents per file ([`SpoolSync::Files`]).
    pub fn open(data_dir: &Path, cache_capacity: u64) -> Result<Store, StoreError> {
        Store::open_with(data_dir, cache_capacity, SpoolSync::Files)
    }

    /// Opens (or creates) the store with a chosen [`SpoolSync`].
    pub fn open_with(
        data_dir: &Path,
        cache_capacity: u64,
        spool_sync: SpoolSync,
    ) -> Result<Store, StoreError> {
        let db_dir = data_dir.join("db");
        let spool_root = data_dir.join("spool");
        private::create_dir_all(&db_dir)?;
        private::create_dir_all(&spool_root)?;
        let db = sled::Config::new()
            .path(&db_dir)
            .cache_capacity(cache_capacity)
            .flush_every_ms(None)
            .open()?;
        let meta = db.open_tree(META_TREE)?;
        match meta.get(keys::SCHEMA)? {
            None => {
                meta.insert(keys::SCHEMA, SCHEMA_VERSION.to_string().as_bytes())?;
            }
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_string().as_bytes() => {}
            Some(v) => {
                return Err(StoreError::Schema {
                    found: String::from_utf8_lossy(&v).into_owned(),
                })
            }
        }
        db.flush()?;
        let db_file = File::open(db_dir.join("db"))?;
        let spool_root_dir = File::open(&spool_root)?;
        let inner = Arc::new(Inner {
            db,
            meta,
            spool_root,
            keys_dir: data_dir.join("keys"),
            committer: Arc::new(Committer {
                pending: Mutex::new(Pending::default()),
                wake: Condvar::new(),
                poisoned: AtomicBool::new(false),
                health: Mutex::new(Health::default()),
                next_lane: AtomicU32::new(0),
            }),
            tenants: RwLock::new(HashMap::new()),
            incoming_seq: Arc::new(AtomicU64::new(0)),
            spool_sync,
            min_free: Arc::new(AtomicU64::new(DEFAULT_MIN_FREE_SPACE)),
        });
        let (committer, db) = (inner.committer.clone(), inner.db.clone());
        let handle = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || committer.run(&db, &db_file, &spool_root_dir))?;
        Ok(Store {
            inner,
            flusher: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Tenants the store holds data of (provisioned now or earlier, not purged).
    pub fn registered_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inner.meta.scan_prefix(keys::REGISTRY_PREFIX) {
            let (k, _) = kv?;
            if let Some(id) = std::str::from_utf8(&k[keys::REGISTRY_PREFIX.len()..])
                .ok()
                .and_then(|s| TenantId::parse(s).ok())
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Opens the collections of these tenants: a tenant with a tree or a
    /// spool folder from earlier has them opened, its unfinished jobs
    /// checked and its spool cleaned of files with no committed record; a
    /// tenant with neither gets both on its first job (sled's cost per tree
    /// grows with the number of trees: creating 10,000 up front took 8 s,
    /// most of them for tenants that may never print). Registers new
    /// tenants. Call at config load; tenants already open are reused.
    pub fn provision(&self, ids: &[TenantId]) -> Result<Vec<Arc<TenantStore>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut registry_ops = Vec::new();
        let mut trees: Option<std::collections::HashSet<sled::IVec>> = None;
        let mut spools: Option<std::collections::HashSet<std::ffi::OsString>> = None;
        for id in ids {
            if let Some(t) = self.tenant(id) {
                out.push(t);
                continue;
            }
            let trees =
                trees.get_or_insert_with(|| self.inner.db.tree_names().into_iter().collect());
            let spools = match &mut spools {
                Some(s) => s,
                None => spools.insert(
                    std::fs::read_dir(&self.inner.spool_root)?
                        .map(|e| e.map(|e| e.file_name()))
                        .collect::<io::Result<_>>()?,
                ),
            };
            let name = keys::tenant_tree(id);
            let tree = if trees.contains(name.as_bytes()) {
                Some(self.inner.db.open_tree(&name)?)
            } else {
                None
            };
            let spool_dir = self.inner.spool_root.join(id.as_str());
            let has_spool = spools.contains(std::ffi::OsStr::new(id.as_str()));
            if self.inner.meta.get(keys::registry(id))?.is_none() {
                registry_ops.push(Op::Insert(
                    self.inner.meta.clone(),
                    keys::registry(id),
                    now_ms().to_string().into_bytes(),
                ));
            }
            let t = Arc::new(TenantStore::open(
                id.clone(),
                crypt::key_path(&self.inner.keys_dir, id.as_str()),
                self.inner.db.clone(),
                tree,
                has_spool,
                spool_dir,
                self.inner.committer.clone(),
                self.inner.incoming_seq.clone(),
                self.inner.spool_sync,
                self.inner.min_free.clone(),
            )?);
            self.inner
                .tenants
                .write()
                .expect("tenant map lock")
                .insert(id.clone(), t.clone());
            out.push(t);
        }
        if !registry_ops.is_empty() {
            self.inner
                .committer
                .commit_blocking(STORE_LANE, registry_ops)?;
        }
        Ok(out)
    }

    /// An open tenant collection.
    pub fn tenant(&self, id: &TenantId) -> Option<Arc<TenantStore>> {
        self.inner
            .tenants
            .read()
            .expect("tenant map lock")
            .get(id)
            .cloned()
    }

    /// Flushes and stops the flusher thread; the store is unusable afterwards,
    /// and the database closes when the last tenant handle is dropped.
    pub fn close(&self) -> Result<(), StoreError> {
        let tenants: Vec<Arc<TenantStore>> = self
            .inner
            .tenants
            .write()
            .expect("tenant map lock")
            .drain()
            .map(|(_, t)| t)
            .collect();
        {
            let mut p = self
                .inner
                .committer
                .pending
                .lock()
                .expect("commit queue lock");
            p.stop = true;
        }
        self.inner.committer.wake.notify_all();
        if let Some(h) = self.flusher.lock().expect("flusher handle lock").take() {
            let _ = h.join();
        }
        // Nothing commits any more: each tenant's id counter comes back
        // from the block reserved ahead to the next id, so a restart goes
        // on without a gap (only a crash skips the rest of the block).
        for t in &tenants {
            if let Some(tree) = t.existing_tree() {
                let next = t.next_id.load(Ordering::Acquire);
                tree.insert(keys::NEXT_JOB_ID, &next.to_be_bytes())?;
            }
        }
        self.inner.db.flush()?;
        Ok(())
    }

    /// Size of the database folder in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }
}

/// One tenant's collection: its sled tree and its spool folder, both
/// created on the tenant's first job.
pub struct TenantStore {
    id: TenantId,
    /// The tenant's key file, and its keys once loaded or created.
    key_path: PathBuf,
    keys: arc_swap::ArcSwapOption<crypt::KeyRing>,
    /// What its spool documents' chunks are bound to (see [`TenantStore::document_aad`]).
    doc_aad: Arc<[u8]>,
    /// Held (cloned) by every receive: a key rotation swaps it and waits
    /// until no receive holds the old one (they seal with the old key).
    writers: Mutex<Arc<()>>,
    /// A key rotation runs.
    rekeying: AtomicBool,
    db: sled::Db,
    /// The tenant's tree, once it exists.
    tree: OnceLock<sled::Tree>,
    /// Held while the tree or the spool folder is created.
    creating: Mutex<()>,
    spool_dir: PathBuf,
    next_id: AtomicU32,
    /// Ids below this are covered by the durable id counter
    /// ([`keys::NEXT_JOB_ID`]); see [`JOB_IDS_RESERVED_AT_ONCE`].
    ids_reserved: AtomicU32,
    spool_bytes: AtomicU64,
    committer: Arc<Committer>,
    /// The tenant's lane in the group commit.
    lane: u32,
    incoming_seq: Arc<AtomicU64>,
    spool_sync: SpoolSync,
    /// Bytes that must stay free on the spool's file system.
    min_free: Arc<AtomicU64>,
    /// The spool folder, opened once it exists, to sync new entries in it.
    spool_dir_file: OnceLock<Arc<File>>,
    /// Emptied spool files ready for reuse (at most [`MAX_FREE_SPOOL_FILES`]).
    free: Mutex<Vec<PathBuf>>,
    /// Unfinished jobs per queue.
    queue_counts: counts::QueueCounts,
    /// Its small documents (see [`log`]).
    log: Arc<log::SpoolLog>,
}

impl TenantStore {
    /// Opens a tenant's collection: `tree` if it has one, its spool folder
    /// if `has_spool`; checks unfinished jobs and cleans the spool.
    #[expect(
        clippy::too_many_arguments,
        reason = "the store's shared parts, passed once per tenant"
    )]
    fn open(
        id: TenantId,
        key_path: PathBuf,
        db: sled::Db,
        tree: Option<sled::Tree>,
        has_spool: bool,
        spool_dir: PathBuf,
        committer: Arc<Committer>,
        incoming_seq: Arc<AtomicU64>,
        spool_sync: SpoolSync,
        min_free: Arc<AtomicU64>,
    ) -> Result<TenantStore, StoreError> {
        let doc_aad = [id.as_str().as_bytes(), b"/document"].concat().into();
        let mut t = TenantStore {
            id,
            key_path,
            keys: arc_swap::ArcSwapOption::empty(),
            doc_aad,
            writers: Mutex::new(Arc::new(())),
            rekeying: AtomicBool::new(false),
            db,
            tree: OnceLock::new(),
            creating: Mutex::new(()),
            next_id: AtomicU32::new(1),
            ids_reserved: AtomicU32::new(0),
            spool_bytes: AtomicU64::new(0),
            lane: committer.new_lane(),
            committer,
            incoming_seq,
            spool_sync,
            min_free,
            spool_dir_file: OnceLock::new(),
            free: Mutex::new(Vec::new()),
            queue_counts: counts::QueueCounts::default(),
            log: Arc::new(log::SpoolLog::new(&spool_dir)),
            spool_dir,
        };
        if tree.is_none() && !has_spool {
            // Nothing of this tenant on disk: both come with its first job.
            return Ok(t);
        }
        let (id, spool_dir) = (&t.id, &t.spool_dir);
        private::create_dir_all(spool_dir)?;
        let mut active = std::collections::HashSet::new();
        if let Some(tree) = &tree {
            let counter = tree
                .get(keys::NEXT_JOB_ID)?
                .and_then(|b| <[u8; 4]>::try_from(b.as_ref()).ok())
                .map_or(1, u32::from_be_bytes);
            let last = match tree.scan_prefix(keys::JOB_PREFIX).next_back() {
                Some(kv) => keys::id_of(&kv?.0).map_or(0, |j| j.0),
                None => 0,
            };
            t.next_id = AtomicU32::new(counter.max(last + 1));
            t.ids_reserved = AtomicU32::new(counter);
            for kv in tree.scan_prefix(keys::QUEUE_PREFIX) {
                let (k, _) = kv?;
                if let Some(j) = keys::id_of(&k) {
                    active.insert(j.0.to_string());
                }
            }
        }
        // Where unfinished jobs' small documents lie in the spool log.
        let mut in_log = HashMap::new();
        if let Some(tree) = &tree {
            for name in &active {
                let Ok(n) = name.parse::<u32>() else { continue };
                if let Some(v) = tree.get(keys::location(JobId(n)))? {
                    if let Some(loc) = log::Location::decode(&v) {
                        in_log.insert(JobId(n), loc);
                    }
                }
            }
        }
        let mut spool_bytes = 0;
        // Remove what no committed, unfinished record owns: partial receives
        // of a previous run and documents of finished jobs. The spool log's
        // segments are the log's to clean.
        let mut sizes = HashMap::new();
        for entry in std::fs::read_dir(spool_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if log::segment_number(&name).is_some() {
                continue;
            }
            if active.contains(name.as_ref()) {
                let len = entry.metadata()?.len();
                spool_bytes += len;
                sizes.insert(name.into_owned(), len);
            } else {
                tracing::info!(tenant = %id, file = %name, "removing orphaned spool file");
                std::fs::remove_file(entry.path())?;
            }
        }
        let opened = log::SpoolLog::open(spool_dir, in_log.clone())?;
        if opened.deleted > 0 || opened.cut > 0 {
            tracing::info!(tenant = %id, deleted = opened.deleted, cut_bytes = opened.cut, unused_bytes = opened.unused, "spool log: segments with no live entry deleted, dead tails cut");
        }
        let log_damage: HashMap<JobId, String> = opened.damaged.into_iter().collect();
        let log = opened.log;
        // Check every unfinished job: its record must decode and its document
        // be there whole. One that is not can never be delivered: it ends
        // aborted, saying why, instead of failing again on every start.
        let mut repairs = Vec::new();
        if let Some(tree) = &tree {
            for name in &active {
                let Ok(n) = name.parse::<u32>() else { continue };
                let jid = JobId(n);
                let problem = match tree.get(keys::job(jid))? {
                    None => Some((None, "its record is missing".to_owned())),
                    Some(v) => match t.decode(&keys::job(jid), &v) {
                        // A missing or wrong key is the admin's to fix
                        // (restore the key file): the job is left as it is.
                        Err(e @ StoreError::Key { .. }) => {
                            tracing::error!(tenant = %id, job = n, error = %e, "unfinished job cannot be read; restore the tenant's key file");
                            None
                        }
                        Err(e) => Some((None, format!("its record cannot be read: {e}"))),
                        Ok(job) => match (in_log.get(&jid), sizes.get(name)) {
                            (Some(_), _) if log_damage.contains_key(&jid) => {
                                Some((Some(job), log_damage[&jid].clone()))
                            }
                            (Some(loc), _) if u64::from(loc.len) == job.stored_len() => {
                                spool_bytes += job.size;
                                None
                            }
                            (Some(loc), _) => {
                                let why = format!(
                                    "its spool log entry has {} of {} bytes",
                                    loc.len,
                                    job.stored_len()
                                );
                                Some((Some(job), why))
                            }
                            (None, Some(&len)) if len == job.stored_len() => {
                                // Quotas count plain bytes, as receives do.
                                spool_bytes = spool_bytes - len + job.size;
                                None
                            }
                            (None, Some(&len)) => {
                                let why =
                                    format!("its document has {len} of {} bytes", job.stored_len());
                                Some((Some(job), why))
                            }
                            (None, None) => Some((Some(job), "its document is missing".to_owned())),
                        },
                    },
                };
                if let Some((job, why)) = problem {
                    tracing::error!(tenant = %id, job = n, "unfinished job cannot go on: {why}");
                    if let Some(len) = sizes.get(name) {
                        spool_bytes -= len;
                        std::fs::remove_file(spool_dir.join(name))?;
                    }
                    log.remove(jid);
                    repairs.push(Op::Remove(tree.clone(), keys::queue(jid).to_vec()));
                    if let Some(mut job) = job {
                        job.set_state(JobState::Aborted, format!("found damaged at start: {why}"));
                        let k = keys::job(jid);
                        repairs.push(Op::Insert(tree.clone(), k.to_vec(), t.encode(&k, &job)?));
                    }
                }
            }
        }
        t.log = Arc::new(log);
        if !repairs.is_empty() {
            t.committer.commit_blocking(t.lane, repairs)?;
        }
        let dir = Arc::new(File::open(spool_dir)?);
        t.spool_bytes = AtomicU64::new(spool_bytes);
        let _ = t.spool_dir_file.set(dir);
        if let Some(tree) = tree {
            let _ = t.tree.set(tree);
        }
        Ok(t)
    }

    /// The tenant's tree if it exists; a tenant without one has no records.
    fn existing_tree(&self) -> Option<&sled::Tree> {
        self.tree.get()
    }

    /// The tenant's tree, created now if this is its first record.
    fn tree(&self) -> Result<&sled::Tree, StoreError> {
        if let Some(t) = self.tree.get() {
            return Ok(t);
        }
        let _creating = self.creating.lock().expect("tenant creation lock");
        if let Some(t) = self.tree.get() {
            return Ok(t);
        }
        let t = self.db.open_tree(keys::tenant_tree(&self.id))?;
        Ok(self.tree.get_or_init(|| t))
    }

    /// The tenant's spool folder, opened (and created on the tenant's first job) once.
    fn spool_dir_file(&self) -> io::Result<&Arc<File>> {
        if let Some(f) = self.spool_dir_file.get() {
            return Ok(f);
        }
        let _creating = self.creating.lock().expect("tenant creation lock");
        if let Some(f) = self.spool_dir_file.get() {
            return Ok(f);
        }
        private::create_dir_all(&self.spool_dir)?;
        let f = Arc::new(File::open(&self.spool_dir)?);
        Ok(self.spool_dir_file.get_or_init(|| f))
    }

    /// A spool write's outcome: a full disk is [`StoreError::DiskFull`], counted.
    fn disk_full(&self, r: io::Result<()>) -> Result<(), StoreError> {
        match r {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
                crate::metrics::get().job(self.id.as_str(), "refused-disk-full");
                Err(StoreError::DiskFull)
            }
            r => Ok(r?),
        }
    }

    /// True when `n` more bytes leave at least `min-free-space` free on the spool's file system.
    fn has_room(&self, n: u64) -> bool {
        let Ok(dir) = self.spool_dir_file() else {
            return true;
        };
        match rustix::fs::fstatvfs(&**dir) {
            Ok(st) => {
                st.f_bavail.saturating_mul(st.f_frsize)
                    >= n.saturating_add(self.min_free.load(Ordering::Relaxed))
            }
            // Unknown: let the write itself find out (ENOSPC is caught).
            Err(_) => true,
        }
    }

    /// The tenant.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// Bytes of documents this tenant holds in the spool (received and in receipt).
    pub fn spool_bytes(&self) -> u64 {
        self.spool_bytes.load(Ordering::Relaxed)
    }

    /// Starts receiving a document into the spool, within `max_size` bytes
    /// and the tenant's `quota`.
    pub async fn spool_writer(
        self: &Arc<Self>,
        max_size: u64,
        quota: u64,
    ) -> Result<SpoolWriter, StoreError> {
        // The tenant's first document creates its spool folder, and its key.
        self.spool_dir_file()?;
        let epoch = self.writers.lock().expect("writer epoch lock").clone();
        let ring = self.key()?;
        let (sealer, header) = crypt::DocSealer::new(&ring.current, self.document_aad());
        // Small until it grows past the spool log's limit: in memory, with
        // room for the log's frame before the sealed document.
        let mut mem = Vec::with_capacity(MEMORY_WRITER_START);
        mem.resize(log::FRAME_LEN, 0);
        mem.extend_from_slice(&header);
        Ok(SpoolWriter {
            tenant: self.clone(),
            file: None,
            mem_chunk: mem.len(),
            mem: Some(mem),
            sealer,
            chunk: Vec::new(),
            finished: false,
            keys: ring,
            _epoch: epoch,
            path: PathBuf::new(),
            size: 0,
            max_size,
            quota,
            hasher: Sha256::new(),
            committed: false,
            started: std::time::Instant::now(),
            unchecked: 0,
            in_flight: None,
            held: 0,
        })
    }

    /// A new spool file for a document of its own (an emptied one reused
    /// when there is one).
    async fn spool_file(&self) -> Result<(PathBuf, tokio::fs::File), StoreError> {
        let reused = self.free.lock().expect("free spool list lock").pop();
        Ok(match reused {
            Some(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .await?;
                (path, file)
            }
            None => {
                let n = self.incoming_seq.fetch_add(1, Ordering::Relaxed);
                let path = self
                    .spool_dir
                    .join(format!("{INCOMING_PREFIX}{}-{n}", std::process::id()));
                let file = tokio::fs::File::from_std(private::create_file(&path)?);
                (path, file)
            }
        })
    }

    /// Commits a received document as a new job: assigns its id, makes the
    /// document and the record durable (group commit), and returns the record.
    /// Only after this returns may the client hear success.
    pub async fn commit_new(&self, writer: SpoolWriter, new: NewJob) -> Result<Job, StoreError> {
        let id = self.reserve_job_id()?;
        self.commit_reserved(writer, new, id).await
    }

    /// Saves a changed record durably; a job in a final state leaves the queue.
    pub async fn save(&self, job: &Job) -> Result<(), StoreError> {
        let tree = self.tree()?;
        let k = keys::job(job.id);
        let mut ops = vec![Op::Insert(tree.clone(), k.to_vec(), self.encode(&k, job)?)];
        if job.state.is_final() {
            ops.push(Op::Remove(tree.clone(), keys::queue(job.id).to_vec()));
        }
        self.queue_counts.saving(job);
        self.committer.commit(self.lane, ops, false, None).await?;
        self.queue_counts.saved(job);
        Ok(())
    }

    /// Unfinished jobs that came in by `listener` and `queue`: a lookup,
    /// after the first call reads the unfinished records once.
    pub fn queued_on(
        &self,
        listener: &crate::config::ids::ListenerName,
        queue: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.queue_counts
            .queued(listener, queue, || self.unfinished_records())
    }

    /// A job's record.
    pub fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let Some(tree) = self.existing_tree() else {
            return Ok(None);
        };
        tree.get(keys::job(id))?
            .map(|v| self.decode(&keys::job(id), &v))
            .transpose()
    }

    /// Every job record of the tenant, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        let Some(tree) = self.existing_tree() else {
            return Ok(out);
        };
        for kv in tree.scan_prefix(keys::JOB_PREFIX) {
            let (k, v) = kv?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Deletes the records of jobs that finished before `cutoff_ms` (ms
    /// since the epoch); returns how many. Their documents are gone already.
    pub async fn prune_finished(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut ops = Vec::new();
        let Some(tree) = self.existing_tree() else {
            return Ok(0);
        };
        for kv in tree.scan_prefix(keys::JOB_PREFIX) {
            let (k, v) = kv?;
            let job = self.decode(&k, &v)?;
            let finished_ms = job.history.last().map_or(job.created_ms, |e| e.at_ms);
            if job.state.is_final() && finished_ms < cutoff_ms {
                ops.push(Op::Remove(tree.clone(), k.to_vec()));
                ops.push(Op::Remove(tree.clone(), keys::location(job.id).to_vec()));
            }
        }
        // A record and its location each.
        let n = ops.len() / 2;
        // In groups of bounded size: the commits of every tenant that share
        // a group with a prune wait for all of its removals.
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(PRUNE_BATCH));
            self.committer.commit(self.lane, ops, false, None).await?;
            ops = rest;
        }
        Ok(n)
    }

    /// Ids of unfinished jobs, oldest first.
    pub fn active_jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let mut out = Vec::new();
        let Some(tree) = self.existing_tree() else {
            return Ok(out);
        };
        for kv in tree.scan_prefix(keys::QUEUE_PREFIX) {
            let (k, _) = kv?;
            out.extend(keys::id_of(&k));
        }
        Ok(out)
    }

    /// Where a committed job's document rests.
    pub fn spool_path(&self, id: JobId) -> PathBuf {
        self.spool_dir.join(id.0.to_string())
    }

    /// Deletes a finished job's document from the spool.
    pub fn remove_document(&self, job: &Job) {
        if self.log.remove(job.id) {
            self.spool_bytes
                .fetch_sub(job.size.min(self.spool_bytes()), Ordering::Relaxed);
            return;
        }
        match self.recycle(&self.spool_path(job.id)) {
            Ok(()) => {
                self.spool_bytes
                    .fetch_sub(job.size.min(self.spool_bytes()), Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(tenant = %self.id, job = %job.id, error = %e, "cannot remove spool file")
            }
        }
    }

    /// Empties a spool file and keeps it for reuse, or deletes it when
    /// enough are kept. Its content is gone either way.
    fn recycle(&self, path: &Path) -> io::Result<()> {
        let mut free = self.free.lock().expect("free spool list lock");
        if free.len() >= MAX_FREE_SPOOL_FILES {
            drop(free);
            return std::fs::remove_file(path);
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(0)?;
        let n = self.incoming_seq.fetch_add(1, Ordering::Relaxed);
        let target = self
            .spool_dir
            .join(format!("{FREE_PREFIX}{}-{n}", std::process::id()));
        std::fs::rename(path, &target)?;
        free.push(target);
        Ok(())
    }
}

/// A document being received into a tenant's spool, hashed as it streams.
/// Dropped without commit, its partial file is deleted.
pub struct SpoolWriter {
    tenant: Arc<TenantStore>,
    /// The document's own spool file, once it has one and until it is finished.
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// The document while it is small enough for the spool log (at most
    /// [`log::SMALL_DOCUMENT_MAX`] plain bytes): room for the log's frame,
    /// the header, the sealed chunks, then the plain bytes of the chunk
    /// being filled (from `mem_chunk`). `None` once it has a file.
    mem: Option<Vec<u8>>,
    mem_chunk: usize,
    /// Seals the document's chunks with the tenant's current key.
    sealer: crypt::DocSealer,
    /// Plain bytes of the chunk being filled, once the document has a file
    /// (sealed in place when full).
    chunk: Vec<u8>,
    /// Its last chunk is sealed: it takes no more bytes.
    finished: bool,
    /// The keys the writer started with: a key rotation waits until no
    /// writer holds the ring it replaced.
    keys: Arc<crypt::KeyRing>,
    /// The key epoch the writer started in (see [`TenantStore::rekey`]).
    _epoch: Arc<()>,
    path: PathBuf,
    size: u64,
    max_size: u64,
    quota: u64,
    hasher: Sha256,
    committed: bool,
    /// When the receive started: the acknowledgement time counts from here.
    started: std::time::Instant,
    /// Bytes written since the last free-space check.
    unchecked: u64,
    /// The tenant's count of unsynced bytes and its limit, when limited.
    in_flight: Option<(Arc<InFlight>, u64)>,
    /// Bytes of this writer in that count: written, not yet synced.
    held: u64,
}

/// A tenant's bytes of documents received into the spool but not yet
/// durable (neither synced nor committed), summed over its receives; see
/// [`SpoolWriter::limit_in_flight`].
#[derive(Default, Debug)]
pub struct InFlight {
    bytes: AtomicU64,
}

impl InFlight {
    /// Bytes received and not yet durable, now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl SpoolWriter {
    /// Appends bytes; refuses them past `max-job-size` or the spool quota.
    pub async fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let n = buf.len() as u64;
        if self.size + n > self.max_size {
            crate::metrics::get().job(self.tenant.id.as_str(), "refused-too-large");
            return Err(StoreError::TooLarge {
                limit: self.max_size,
            });
        }
        let used = self.tenant.spool_bytes.fetch_add(n, Ordering::Relaxed);
        self.size += n;
        if used + n > self.quota {
            crate::metrics::get().job(self.tenant.id.as_str(), "refused-quota");
            return Err(StoreError::QuotaExceeded { quota: self.quota });
        }
        self.unchecked += n;
        if (self.size == n || self.unchecked >= ROOM_CHECK_BYTES)
            && !self.tenant.has_room(std::mem::take(&mut self.unchecked))
        {
            crate::metrics::get().job(self.tenant.id.as_str(), "refused-disk-full");
            return Err(StoreError::DiskFull);
        }
        if let Some((budget, max)) = self.in_flight.clone() {
            // Backpressure: past the tenant's limit, make what this writer
            // holds durable before reading on. A writer that holds nothing
            // always proceeds, so receives never wait on each other.
            if self.held > 0 && budget.bytes() + n > max {
                self.sync_held().await?;
            }
            budget.bytes.fetch_add(n, Ordering::Relaxed);
            self.held += n;
        }
        self.hasher.update(buf);
        if self.mem.is_some() && self.size > log::SMALL_DOCUMENT_MAX {
            self.spill().await?;
        }
        let mut rest = buf;
        if self.mem.is_some() {
            while !rest.is_empty() {
                let mem = self.mem.as_mut().expect("receiving in memory");
                let take = rest
                    .len()
                    .min(crypt::DOC_CHUNK - (mem.len() - self.mem_chunk));
                mem.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if mem.len() - self.mem_chunk == crypt::DOC_CHUNK {
                    self.seal_mem(false)?;
                }
            }
            return Ok(());
        }
        while !rest.is_empty() {
            let take = rest.len().min(crypt::DOC_CHUNK - self.chunk.len());
            self.chunk.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.chunk.len() == crypt::DOC_CHUNK {
                self.seal_chunk(false).await?;
            }
        }
        Ok(())
    }

    /// Seals the chunk being filled in memory (a document for the spool
    /// log), in place after the chunks before it.
    fn seal_mem(&mut self, last: bool) -> Result<(), StoreError> {
        let mem = self.mem.as_mut().expect("receiving in memory");
        self.sealer
            .seal_tail(mem, self.mem_chunk, last)
            .map_err(|err| StoreError::Key {
                tenant: self.tenant.id.clone(),
                err,
            })?;
        self.mem_chunk = mem.len();
        Ok(())
    }

    /// Seals the chunk being filled and hands it to the file.
    async fn seal_chunk(&mut self, last: bool) -> Result<(), StoreError> {
        self.sealer
            .seal(&mut self.chunk, last)
            .map_err(|err| StoreError::Key {
                tenant: self.tenant.id.clone(),
                err,
            })?;
        let r = self
            .file
            .as_mut()
            .expect("writer not yet finished")
            .write_all(&self.chunk)
            .await;
        self.chunk.clear();
        self.tenant.disk_full(r)
    }

    /// Gives the document a spool file of its own: it has grown past the
    /// spool log's limit, or waits parked, or is read back. What is in
    /// memory goes to the file (all of it when the document is finished,
    /// which closes the file).
    async fn spill(&mut self) -> Result<(), StoreError> {
        let Some(mem) = self.mem.take() else {
            return Ok(());
        };
        let (path, file) = self.tenant.spool_file().await?;
        self.path = path;
        let mut file = tokio::io::BufWriter::with_capacity(SPOOL_WRITE_BUFFER, file);
        let sealed = if self.finished {
            mem.len()
        } else {
            self.mem_chunk
        };
        let r = file.write_all(&mem[log::FRAME_LEN..sealed]).await;
        self.tenant.disk_full(r)?;
        if self.finished {
            let r = file.flush().await;
            return self.tenant.disk_full(r);
        }
        self.chunk = Vec::with_capacity(crypt::DOC_CHUNK + crypt::TAG_LEN);
        self.chunk.extend_from_slice(&mem[self.mem_chunk..]);
        self.file = Some(file);
        Ok(())
    }

    /// Seals the last chunk (possibly empty) and flushes: the file holds
    /// the whole sealed document (or memory does, for the spool log).
    /// Takes no more writes. Returns the file if it is still open.
    async fn finish(&mut self) -> Result<Option<tokio::fs::File>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        if self.mem.is_some() {
            self.seal_mem(true)?;
            self.finished = true;
            return Ok(None);
        }
        self.finished = true;
        self.seal_chunk(true).await?;
        // No chunk buffer from here on (a parked writer may wait long).
        self.chunk = Vec::new();
        let mut file = self.file.take().expect("writer not yet finished");
        let r = file.flush().await;
        self.tenant.disk_full(r)?;
        Ok(Some(file.into_inner()))
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Counts this writer's bytes in `budget` until they are durable, and
    /// keeps the budget at most `max` bytes (plus one write per writer): a
    /// write that would pass it first syncs (`fdatasync`) what this writer
    /// holds, so the bytes leave the count. The sync is the backpressure:
    /// the receive reads no more from its socket meanwhile. It bounds the
    /// unsynced data one tenant leaves in the page cache, which the commits
    /// of every tenant (a journal commit, a `syncfs`) may have to write first.
    pub fn limit_in_flight(&mut self, budget: Arc<InFlight>, max: u64) {
        self.release_held();
        self.in_flight = Some((budget, max));
    }

    /// Flushes and syncs the bytes written so far; they leave the tenant's
    /// in-flight count (those of the chunk being filled, at most
    /// [`crypt::DOC_CHUNK`], are synced with the next).
    async fn sync_held(&mut self) -> Result<(), StoreError> {
        self.spill().await?;
        let file = self.file.as_mut().expect("writer not yet finished");
        file.flush().await?;
        match file.get_mut().sync_data().await {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
                crate::metrics::get().job(self.tenant.id.as_str(), "refused-disk-full");
                return Err(StoreError::DiskFull);
            }
            r => r?,
        }
        self.release_held();
        Ok(())
    }

    fn release_held(&mut self) {
        if let Some((budget, _)) = &self.in_flight {
            budget.bytes.fetch_sub(self.held, Ordering::Relaxed);
        }
        self.held = 0;
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        self.release_held();
        if !self.committed {
            self.tenant
                .spool_bytes
                .fetch_sub(self.size, Ordering::Relaxed);
            // Deleted, not recycled: a write of this file may still be in
            // flight in the blocking pool and must not land in a reused file.
            // Unlinking a big file frees many blocks and can take a while:
            // not on a runtime thread that other tenants' connections share.
            let path = std::mem::take(&mut self.path);
            if path.as_os_str().is_empty() {
                // In memory only.
                return;
            }
            match tokio::runtime::Handle::try_current() {
                Ok(rt) if self.size >= UNLINK_IN_BACKGROUND_BYTES => {
                    rt.spawn_blocking(move || std::fs::remove_file(path));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

impl TenantStore {
    /// The tenant's keys, the key created with its first record.
    fn key(&self) -> Result<Arc<crypt::KeyRing>, StoreError> {
        if let Some(k) = self.keys.load_full() {
            return Ok(k);
        }
        let _creating = self.creating.lock().expect("tenant creation lock");
        if let Some(k) = self.keys.load_full() {
            return Ok(k);
        }
        let key_err = |err| StoreError::Key {
            tenant: self.id.clone(),
            err,
        };
        let ring = match crypt::KeyRing::load(&self.key_path).map_err(key_err)? {
            Some(k) => k,
            // Records sealed with a key that is gone: a new key would make
            // the old one useless even if it is found again. Refuse.
            None if self.has_sealed_records()? => {
                return Err(key_err(crypt::CryptError::NoKey(self.key_path.clone())))
            }
            None => crypt::KeyRing {
                current: crypt::TenantKey::load_or_create(&self.key_path).map_err(key_err)?,
                previous: None,
            },
        };
        let ring = Arc::new(ring);
        self.keys.store(Some(ring.clone()));
        Ok(ring)
    }

    /// True when the tenant's newest record is sealed (it has had a key).
    fn has_sealed_records(&self) -> Result<bool, StoreError> {
        let Some(tree) = self.existing_tree() else {
            return Ok(false);
        };
        Ok(match tree.scan_prefix(keys::JOB_PREFIX).next_back() {
            Some(kv) => crypt::is_sealed(&kv?.1),
            None => false,
        })
    }

    /// The keys if the key file exists (reading never creates one).
    fn existing_key(&self) -> Result<Arc<crypt::KeyRing>, StoreError> {
        if let Some(k) = self.keys.load_full() {
            return Ok(k);
        }
        let _creating = self.creating.lock().expect("tenant creation lock");
        if let Some(k) = self.keys.load_full() {
            return Ok(k);
        }
        let key_err = |err| StoreError::Key {
            tenant: self.id.clone(),
            err,
        };
        let ring = crypt::KeyRing::load(&self.key_path)
            .map_err(key_err)?
            .ok_or_else(|| key_err(crypt::CryptError::NoKey(self.key_path.clone())))?;
        let ring = Arc::new(ring);
        self.keys.store(Some(ring.clone()));
        Ok(ring)
    }

    /// What a record is bound to: its tenant and its key in the tree.
    fn aad(&self, key: &[u8]) -> Vec<u8> {
        [self.id.as_str().as_bytes(), b"/", key].concat()
    }

    /// What a spool document's chunks are bound to: its tenant.
    fn document_aad(&self) -> Arc<[u8]> {
        self.doc_aad.clone()
    }

    /// A record as stored: sealed with the tenant's current key.
    fn encode(&self, key: &[u8], job: &Job) -> Result<Vec<u8>, StoreError> {
        let plain = serde_json::to_vec(job).expect("a job record always serialises");
        Ok(self.key()?.current.seal(&plain, &self.aad(key)))
    }

    /// A stored record: sealed, or plain JSON from before records were sealed.
    fn decode(&self, key: &[u8], v: &[u8]) -> Result<Job, StoreError> {
        if crypt::is_sealed(v) {
            let (plain, _) = self
                .existing_key()?
                .open(v, &self.aad(key))
                .map_err(|err| StoreError::Key {
                    tenant: self.id.clone(),
                    err,
                })?;
            return decode(key, &plain);
        }
        decode(key, v)
    }

    /// A job's document, to read: sealed with the tenant's keys, or plain
    /// when it was spooled before documents were sealed.
    pub fn document(&self, job: &Job) -> Result<document::Document, StoreError> {
        let keys = if job.document_sealed {
            Some(self.existing_key()?)
        } else {
            None
        };
        let source = match self.log.entry(job.id) {
            Some(entry) => document::Source::Log(entry),
            None => document::Source::File(self.spool_path(job.id)),
        };
        Ok(document::Document {
            source,
            size: job.size,
            keys,
            aad: self.document_aad(),
        })
    }
}

fn decode(key: &[u8], v: &[u8]) -> Result<Job, StoreError> {
    serde_json::from_slice(v).map_err(|err| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        err,
    })
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Additions for IPP Create-Job: a job id is handed out before its document arrives.
impl TenantStore {
    /// Reserves the next job id without committing a job: IPP Create-Job
    /// (RFC 8011 section 4.2.4) returns the `job-id` before Send-Document
    /// brings the document. Commit the job with [`TenantStore::commit_reserved`];
    /// an id never committed (the client gave up) stays unused.
    pub fn reserve_job_id(&self) -> Result<JobId, StoreError> {
        self.next_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n <= MAX_JOB_ID).then_some(n + 1)
            })
            .map(JobId)
            .map_err(|_| StoreError::IdsExhausted)
    }

    /// Like [`TenantStore::commit_new`], under an id from
    /// [`TenantStore::reserve_job_id`]. Only after this returns may the
    /// client hear success.
    pub async fn commit_reserved(
        &self,
        mut writer: SpoolWriter,
        new: NewJob,
        id: JobId,
    ) -> Result<Job, StoreError> {
        let file = writer.finish().await?;
        if let Some(entry) = writer.mem.take() {
            return self.commit_to_log(writer, new, id, entry).await;
        }
        if let Some(file) = file {
            if self.spool_sync == SpoolSync::Files {
                file.sync_data().await?;
            }
        } else if self.spool_sync == SpoolSync::Files {
            // Parked (an LPD data file): its bytes were written and closed
            // unsynced; sync them now.
            tokio::fs::File::open(&writer.path)
                .await?
                .sync_data()
                .await?;
        }
        let final_path = self.spool_path(id);
        tokio::fs::rename(&writer.path, &final_path).await?;
        writer.path = final_path;
        let job = self.new_record(&writer, new, id);
        // A tenant's first job creates its tree; sled makes the new tree
        // durable with the flush of this job's group.
        let tree = self.tree()?;
        let mut ops = self.new_job_ops(tree, &job)?;
        // A location left under this id by a group that a crash cut short
        // (the id was never committed, so it is given again) must not take
        // this job's document for an entry of the log.
        ops.push(Op::Remove(tree.clone(), keys::location(id).to_vec()));
        let fs_sync = self.spool_sync == SpoolSync::Filesystem;
        let dir = if fs_sync {
            None
        } else {
            Some(self.spool_dir_file()?)
        };
        self.committer.commit(self.lane, ops, fs_sync, dir).await?;
        Ok(self.committed(writer, job))
    }

    /// What committing a new job writes: its record, its queue entry and
    /// the id counter past it.
    fn new_job_ops(&self, tree: &sled::Tree, job: &Job) -> Result<Vec<Op>, StoreError> {
        let id = job.id;
        let mut ops = vec![
            Op::Insert(
                tree.clone(),
                keys::job(id).to_vec(),
                self.encode(&keys::job(id), job)?,
            ),
            Op::Insert(tree.clone(), keys::queue(id).to_vec(), Vec::new()),
        ];
        // The counter is raised a block of ids at a time: one write per
        // JOB_IDS_RESERVED_AT_ONCE jobs. A job past what is durably
        // reserved carries the raise (several do while the first is in
        // its group: harmless), and only a commit that succeeded counts
        // it (`TenantStore::committed`), so a refused one leaves the next
        // job to carry it. Every committed id is then below the durable
        // counter, and none is given twice, also after its record is
        // pruned.
        if id.0 >= self.ids_reserved.load(Ordering::Acquire) {
            ops.push(Op::CounterMax(
                tree.clone(),
                keys::NEXT_JOB_ID,
                Self::reserved_past(id),
            ));
        }
        Ok(ops)
    }

    /// The id counter a commit of job `id` raises to, when it raises it.
    fn reserved_past(id: JobId) -> u32 {
        id.0.saturating_add(JOB_IDS_RESERVED_AT_ONCE)
            .min(MAX_JOB_ID + 1)
    }

    /// Commits a small document (finished in memory, `entry`) with its
    /// job: the group commit appends it to the tenant's spool log.
    async fn commit_to_log(
        &self,
        writer: SpoolWriter,
        new: NewJob,
        id: JobId,
        mut entry: Vec<u8>,
    ) -> Result<Job, StoreError> {
        let job = self.new_record(&writer, new, id);
        log::frame(&mut entry, id);
        let tree = self.tree()?;
        let ops = self.new_job_ops(tree, &job)?;
        let append = Append {
            log: self.log.clone(),
            tree: tree.clone(),
            dir: self.spool_dir_file()?.clone(),
            id,
            entry,
            relocate: false,
        };
        let r = self
            .committer
            .commit_with(self.lane, ops, Some(append), false, None)
            .await;
        if matches!(r, Err(StoreError::DiskFull)) {
            crate::metrics::get().job(self.id.as_str(), "refused-disk-full");
        }
        r?;
        Ok(self.committed(writer, job))
    }

    /// A new job's record, for the document `writer` received.
    fn new_record(&self, writer: &SpoolWriter, new: NewJob, id: JobId) -> Job {
        let now = now_ms();
        let sha = writer.hasher.clone().finalize();
        Job {
            tenant: self.id.clone(),
            id,
            listener: new.listener,
            queue: new.queue,
            peer: new.peer,
            user: new.user,
            name: new.name,
            format: new.format,
            size: writer.size,
            sha256: hex(&sha),
            document_sealed: true,
            workflow: new.workflow,
            step: 0,
            state: JobState::Pending,
            created_ms: now,
            hold_until_ms: None,
            step_started_ms: 0,
            delivering: None,
            history: vec![Event {
                at_ms: now,
                state: JobState::Pending,
                note: "received".into(),
                repeats: 0,
                last_ms: None,
            }],
            history_dropped: 0,
            ipp_job_attributes: new.ipp_job_attributes,
            pin: new.pin,
        }
    }

    /// Counts a committed job in and returns it.
    fn committed(&self, mut writer: SpoolWriter, job: Job) -> Job {
        writer.committed = true;
        if job.id.0 >= self.ids_reserved.load(Ordering::Acquire) {
            // Its commit carried the counter's raise (see `new_job_ops`).
            self.ids_reserved
                .fetch_max(Self::reserved_past(job.id), Ordering::AcqRel);
        }
        self.queue_counts.added(&job);
        let m = crate::metrics::get();
        m.job(self.id.as_str(), "accepted");
        m.received(
            self.id.as_str(),
            &job.listener.0,
            job.size,
            writer.started.elapsed().as_secs_f64(),
        );
        job
    }
}

/// Reading back a document while it is received: LPD jobs arrive as
/// several data files, in any order, that become one spool document.
impl SpoolWriter {
    /// Finishes the document (it takes no more writes) and returns it to
    /// read back: the LPD input assembles one document from several data
    /// files in control-file order. The file stays the writer's: it is
    /// still deleted when the writer is dropped uncommitted.
    pub async fn document(&mut self) -> Result<document::Document, StoreError> {
        self.finish().await?;
        self.spill().await?;
        Ok(document::Document {
            source: document::Source::File(self.path.clone()),
            size: self.size,
            keys: Some(self.keys.clone()),
            aad: self.tenant.document_aad(),
        })
    }

    /// Finishes the document and closes the file: the writer keeps its
    /// path and its bytes' place in the tenant's spool quota and in-flight
    /// count, but holds neither a buffer nor a descriptor while it waits
    /// (an LPD data file sent before its control file may wait long). It
    /// takes no more writes; its bytes are read back with
    /// [`SpoolWriter::document`], and it is deleted when dropped uncommitted.
    pub async fn park(&mut self) -> Result<(), StoreError> {
        self.finish().await?;
        self.spill().await?;
        Ok(())
    }
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Keys of the tenant's tree (job records, queue entries, counters).
    pub records: usize,
    /// Files in its spool folder.
    pub spool_files: usize,
    /// Bytes of those files.
    pub spool_bytes: u64,
}

impl Store {
    /// Deletes a tenant's tree, spool folder and registry entry: all the
    /// store knows of it. Stop its jobs first ([`crate::dispatch::Dispatcher::stop_tenant`]).
    pub fn purge(&self, id: &TenantId) -> Result<PurgeReport, StoreError> {
        self.inner
            .tenants
            .write()
            .expect("tenant map lock")
            .remove(id);
        // The key first: from here on nothing left of the tenant's records,
        // in sled's log or anywhere, can be read.
        for f in crypt::key_files(&crypt::key_path(&self.inner.keys_dir, id.as_str())) {
            crypt::shred(&f)?;
        }
        let name = keys::tenant_tree(id);
        let mut report = PurgeReport {
            records: self.inner.db.open_tree(&name)?.len(),
            ..PurgeReport::default()
        };
        self.inner.db.drop_tree(&name)?;
        let spool = self.inner.spool_root.join(id.as_str());
        if let Ok(rd) = std::fs::read_dir(&spool) {
            for e in rd.flatten() {
                report.spool_files += 1;
                report.spool_bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
        match std::fs::remove_dir_all(&spool) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        self.inner.committer.commit_blocking(
            STORE_LANE,
            vec![Op::Remove(self.inner.meta.clone(), keys::registry(id))],
        )?;
        Ok(report)
    }

    /// The store's health: whether commits are failing, since when, why.
    pub fn health(&self) -> Health {
        self.inner.committer.health()
    }

    /// Commits one small record of the store's own, to learn whether
    /// commits succeed again while nothing else writes (a success clears
    /// the failing state). Blocking.
    pub fn probe(&self) -> Result<(), StoreError> {
        self.inner.committer.commit_blocking(
            STORE_LANE,
            vec![Op::Insert(
                self.inner.meta.clone(),
                keys::HEALTH_PROBE.to_vec(),
                now_ms().to_be_bytes().to_vec(),
            )],
        )
    }

    /// Sets the bytes that must stay free on the spool's file system (`global.min-free-space`).
    pub fn set_min_free_space(&self, bytes: u64) {
        self.inner.min_free.store(bytes, Ordering::Relaxed);
    }

    /// Names of every sled tree in the database (for audits and tests).
    pub fn tree_names(&self) -> Vec<String> {
        self.inner
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ids::ListenerName;

    /// A lane with a backlog fills at most its turns of a group: the lone
    /// commit of another lane goes into the very next group, and groups
    /// stay within their bound.
    #[test]
    fn groups_take_commits_round_robin_across_lanes() {
        let mut p = Pending::default();
        let push = |p: &mut Pending, lane: u32| {
            let entry = Entry {
                ops: Vec::new(),
                append: None,
                sync_spool: false,
                dir: None,
                done: watch::channel(None).0,
            };
            let q = p.lanes.entry(lane).or_default();
            q.push_back(entry);
            if q.len() == 1 {
                p.turn.push_back(lane);
            }
        };
        for _ in 0..1000 {
            push(&mut p, 1);
        }
        push(&mut p, 2);
        for _ in 0..10 {
            push(&mut p, 3);
        }
        let first = p.take_group();
        assert_eq!(first.len(), MAX_GROUP_COMMITS);
        // Lanes 2 and 3 had their turns in the first group: 1 + 10 commits.
        assert!(!p.lanes.contains_key(&2) && !p.lanes.contains_key(&3));
        assert_eq!(p.lanes[&1].len(), 1000 - (MAX_GROUP_COMMITS - 11));
        let mut groups = 1;
        while !p.turn.is_empty() {
            assert!(p.take_group().len() <= MAX_GROUP_COMMITS);
            groups += 1;
        }
        assert!(p.lanes.is_empty());
        assert_eq!(groups, (1011usize).div_ceil(MAX_GROUP_COMMITS));
    }

    /// Opens the store again in the same process: sled lets go of its
    /// lock file when its last background job of the closed store ends,
    /// which on a busy machine can be a moment after `close`.
    pub(super) fn reopen(dir: &Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(dir, 8 << 20) {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r.unwrap(),
            }
        }
    }

    fn read_document(t: &TenantStore, job: &Job) -> Vec<u8> {
        let mut out = Vec::new();
        io::Read::read_to_end(
            &mut t.document(job).unwrap().blocking_reader().unwrap(),
            &mut out,
        )
        .unwrap();
        out
    }

    /// Documents of every size around the chunk boundaries read back
    /// whole through both readers; a file cut, grown, with a flipped bit
    /// or two chunks swapped, or read with another tenant's key, does not
    /// read.
    #[tokio::test]
    async fn sealed_documents_read_back_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let ts = store
            .provision(&[TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap()])
            .unwrap();
        let (t, other) = (&ts[0], &ts[1]);
        let c = crypt::DOC_CHUNK;
        let small = log::SMALL_DOCUMENT_MAX as usize;
        for size in [
            0,
            1,
            c - 1,
            c,
            c + 1,
            2 * c,
            3 * c + 17,
            small,
            small + 1,
            5 * c + 3,
        ] {
            let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
            // Odd write sizes, so writes straddle chunks.
            for part in body.chunks(5000) {
                w.write(part).await.unwrap();
            }
            let job = t.commit_new(w, new_job("a")).await.unwrap();
            // Small ones in the spool log, the others in files of their own.
            if size <= small {
                assert!(!t.spool_path(job.id).exists(), "size {size}");
                let entry = t.log.entry(job.id).expect("in the spool log");
                assert_eq!(
                    u64::from(entry.sealed_len()),
                    crypt::sealed_len(size as u64)
                );
            } else {
                assert!(t.log.entry(job.id).is_none(), "size {size}");
                assert_eq!(
                    std::fs::metadata(t.spool_path(job.id)).unwrap().len(),
                    crypt::sealed_len(size as u64)
                );
            }
            assert_eq!(read_document(t, &job), body, "blocking, size {size}");
            let mut r = t.document(&job).unwrap().reader().await.unwrap();
            let mut got = Vec::new();
            while let Some(chunk) = r.next_chunk().await.unwrap() {
                got.extend_from_slice(chunk);
            }
            assert_eq!(got, body, "async, size {size}");
        }
        let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
        w.write(&vec![9u8; small + 2 * c + 5]).await.unwrap();
        let job = t.commit_new(w, new_job("a")).await.unwrap();
        let path = t.spool_path(job.id);
        let good = std::fs::read(&path).unwrap();
        let fails = |bytes: &[u8], why: &str| {
            std::fs::write(&path, bytes).unwrap();
            let mut out = Vec::new();
            let e = io::Read::read_to_end(
                &mut t.document(&job).unwrap().blocking_reader().unwrap(),
                &mut out,
            )
            .expect_err(why);
            assert!(document::is_unreadable(&e), "{why}: {e}");
        };
        fails(&good[..good.len() - 1], "cut by a byte");
        let whole_chunks = crypt::DOC_HEADER_LEN + 2 * (c + crypt::TAG_LEN);
        fails(&good[..whole_chunks], "cut at a chunk boundary");
        fails(&[&good[..], b"x"].concat(), "grown");
        let mut flipped = good.clone();
        flipped[crypt::DOC_HEADER_LEN + 100] ^= 1;
        fails(&flipped, "a flipped bit");
        let h = crypt::DOC_HEADER_LEN;
        let n = c + crypt::TAG_LEN;
        let swapped = [
            &good[..h],
            &good[h + n..h + 2 * n],
            &good[h..h + n],
            &good[h + 2 * n..],
        ]
        .concat();
        fails(&swapped, "two chunks swapped");
        std::fs::write(&path, &good).unwrap();
        // Another tenant's keys do not open it.
        let w = other.spool_writer(1 << 30, 1 << 30).await.unwrap();
        other.commit_new(w, new_job("b")).await.unwrap();
        let mut foreign = other.document(&job).unwrap();
        foreign.source = document::Source::File(path.clone());
        let mut out = Vec::new();
        assert!(io::Read::read_to_end(&mut foreign.blocking_reader().unwrap(), &mut out).is_err());
        assert_eq!(read_document(t, &job).len(), small + 2 * c + 5);
    }

    fn new_job(user: &str) -> NewJob {
        NewJob {
            listener: ListenerName("raw".into()),
            queue: None,
            peer: "127.0.0.2:4000".parse().unwrap(),
            user: user.into(),
            name: "report".into(),
            format: None,
            workflow: "direct".into(),
            ipp_job_attributes: None,
            pin: None,
        }
    }

    #[tokio::test]
    async fn a_tenants_collection_comes_with_its_first_job() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            let ts = store.provision(&[a.clone(), b.clone()]).unwrap();
            assert!(!store.tree_names().iter().any(|t| t.starts_with("tenant/")));
            assert!(!dir.path().join("spool/a").exists());
            assert!(ts[0].jobs().unwrap().is_empty());
            assert!(ts[0].active_jobs().unwrap().is_empty());
            let mut w = ts[0].spool_writer(1 << 20, 1 << 30).await.unwrap();
            w.write(b"first").await.unwrap();
            ts[0].commit_new(w, new_job("alice")).await.unwrap();
            assert!(store.tree_names().iter().any(|t| t == "tenant/a"));
            assert!(!store.tree_names().iter().any(|t| t == "tenant/b"));
            drop(ts);
            store.close().unwrap();
        }
        {
            // What a crash during b's first receive leaves: a spool folder, no tree.
            std::fs::create_dir_all(dir.path().join("spool/b")).unwrap();
            std::fs::write(dir.path().join("spool/b/.incoming-1-0"), b"partial").unwrap();
        }
        let store = reopen(dir.path());
        let ts = store.provision(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(ts[0].active_jobs().unwrap(), vec![JobId(1)]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("spool/b"))
                .unwrap()
                .count(),
            0,
            "b's orphaned partial file is removed at start"
        );
        assert!(!store.tree_names().iter().any(|t| t == "tenant/b"));
        // Purging a tenant that never printed works too.
        drop(ts);
        assert_eq!(store.purge(&b).unwrap().records, 0);
        assert!(!dir.path().join("spool/b").exists());
        store.close().unwrap();
    }

    #[tokio::test]
    async fn committed_jobs_survive_reopen_with_per_tenant_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            let ts = store.provision(&[a.clone(), b.clone()]).unwrap();
            for (i, t) in ts.iter().enumerate() {
                for n in 0..3 {
                    let mut w = t.spool_writer(1 << 20, 1 << 30).await.unwrap();
                    w.write(format!("doc {i} {n}").as_bytes()).await.unwrap();
                    let job = t.commit_new(w, new_job("alice")).await.unwrap();
                    assert_eq!(job.id, JobId(n + 1));
                }
            }
            // An unfinished receive leaves nothing behind.
            let mut w = ts[0].spool_writer(1 << 20, 1 << 30).await.unwrap();
            w.write(b"partial").await.unwrap();
            drop(w);
            store.close().unwrap();
        }
        let store = reopen(dir.path());
        let mut reg = store.registered_tenants().unwrap();
        reg.sort();
        assert_eq!(reg, vec![a.clone(), b.clone()]);
        let ts = store.provision(&[a.clone(), b]).unwrap();
        let jobs = ts[0].jobs().unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|j| j.tenant == a));
        assert_eq!(jobs[1].sha256, hex(&Sha256::digest(b"doc 0 1")));
        assert_eq!(read_document(&ts[0], &jobs[1]), b"doc 0 1");
        assert_eq!(ts[0].active_jobs().unwrap().len(), 3);
        // The three small documents are in one spool log segment, sealed;
        // the partial receive left nothing.
        let files: Vec<_> = std::fs::read_dir(dir.path().join("spool/a"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let raw = std::fs::read(&files[0]).unwrap();
        assert!(
            !raw.windows(5).any(|w| w == b"doc 0"),
            "the spool log is sealed"
        );
        let mut w = ts[0].spool_writer(1 << 20, 1 << 30).await.unwrap();
        w.write(b"x").await.unwrap();
        assert_eq!(
            ts[0].commit_new(w, new_job("bob")).await.unwrap().id,
            JobId(4)
        );
    }

    #[tokio::test]
    async fn an_id_is_never_given_twice_across_a_crash_and_pruning() {
        let (dir, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = TenantId::parse("a").unwrap();
        let commit = |t: Arc<TenantStore>| async move {
            let mut w = t.spool_writer(1 << 20, 1 << 30).await.unwrap();
            w.write(b"doc").await.unwrap();
            t.commit_new(w, new_job("alice")).await.unwrap()
        };
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            let t = store.provision(std::slice::from_ref(&a)).unwrap().remove(0);
            for n in 1..=3 {
                let mut job = commit(t.clone()).await;
                assert_eq!(job.id, JobId(n));
                job.set_state(JobState::Completed, "printed");
                t.save(&job).await.unwrap();
            }
            // Every record goes: only the counter remembers the ids.
            assert_eq!(t.prune_finished(now_ms() + 1).await.unwrap(), 3);
            // What a kill -9 now leaves: the files as the durable commits
            // left them, copied while the store is open.
            copy_tree(dir.path(), crashed.path());
            drop(t);
            store.close().unwrap();
        }
        // After a clean close the ids go on without a gap.
        let store = reopen(dir.path());
        let t = store.provision(std::slice::from_ref(&a)).unwrap().remove(0);
        assert_eq!(commit(t.clone()).await.id, JobId(4));
        drop(t);
        store.close().unwrap();
        drop(store);
        // After the crash they skip the rest of the block, never reusing one.
        let store = reopen(crashed.path());
        let t = store.provision(std::slice::from_ref(&a)).unwrap().remove(0);
        assert_eq!(
            commit(t.clone()).await.id,
            JobId(1 + JOB_IDS_RESERVED_AT_ONCE)
        );
        drop(t);
        store.close().unwrap();
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_tree(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn size_and_quota_limits_refuse_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let t = store
            .provision(&[TenantId::parse("a").unwrap()])
            .unwrap()
            .remove(0);
        let mut w = t.spool_writer(10, 1 << 30).await.unwrap();
        w.write(b"0123456789").await.unwrap();
        assert!(matches!(
            w.write(b"!").await,
            Err(StoreError::TooLarge { limit: 10 })
        ));
        drop(w);
        assert_eq!(t.spool_bytes(), 0);
        let mut w = t.spool_writer(100, 15).await.unwrap();
        w.write(b"0123456789").await.unwrap();
        let mut w2 = t.spool_writer(100, 15).await.unwrap();
        assert!(matches!(
            w2.write(b"0123456789").await,
            Err(StoreError::QuotaExceeded { quota: 15 })
        ));
        drop(w2);
        let job = t.commit_new(w, new_job("a")).await.unwrap();
        assert_eq!(t.spool_bytes(), 10);
        t.remove_document(&job);
        assert_eq!(t.spool_bytes(), 0);
    }

    #[tokio::test]
    async fn unsynced_bytes_stay_within_the_in_flight_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let t = store
            .provision(&[TenantId::parse("a").unwrap()])
            .unwrap()
            .remove(0);
        let budget = Arc::new(InFlight::default());
        let max = 1 << 20;
        let chunk = vec![7u8; 64 << 10];
        let mut writers = Vec::new();
        for _ in 0..3 {
            let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
            w.limit_in_flight(budget.clone(), max);
            writers.push(w);
        }
        for round in 0..40 {
            for w in &mut writers {
                w.write(&chunk).await.unwrap();
                // At most the limit, plus one write of each writer that held nothing.
                assert!(
                    budget.bytes() <= max + 3 * chunk.len() as u64,
                    "round {round}"
                );
            }
        }
        let first = writers.remove(0);
        assert_eq!(first.size(), 40 * chunk.len() as u64);
        let job = t.commit_new(first, new_job("a")).await.unwrap();
        assert_eq!(
            std::fs::read(t.spool_path(job.id)).unwrap().len() as u64,
            job.stored_len()
        );
        assert_eq!(read_document(&t, &job), vec![7u8; 40 * chunk.len()]);
        drop(writers);
        assert_eq!(
            budget.bytes(),
            0,
            "committed and dropped writers hold nothing"
        );
    }

    #[tokio::test]
    async fn finished_documents_are_emptied_and_their_files_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let t = store
            .provision(&[TenantId::parse("a").unwrap()])
            .unwrap()
            .remove(0);
        let spool = dir.path().join("spool/a");
        let names = || {
            let mut v: Vec<(String, u64)> = std::fs::read_dir(&spool)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().unwrap().len(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        // Documents past the spool log's limit get files of their own.
        let big = log::SMALL_DOCUMENT_MAX as usize + 1;
        let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
        w.write(&vec![1u8; big]).await.unwrap();
        let first = t.commit_new(w, new_job("a")).await.unwrap();
        t.remove_document(&first);
        let after = names();
        assert_eq!(after.len(), 1);
        assert!(
            after[0].0.starts_with(FREE_PREFIX) && after[0].1 == 0,
            "{after:?}"
        );
        let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
        w.write(&vec![2u8; big]).await.unwrap();
        let second = t.commit_new(w, new_job("a")).await.unwrap();
        assert_eq!(
            names(),
            vec![("2".to_owned(), crypt::sealed_len(big as u64))],
            "the emptied file was reused"
        );
        assert_eq!(read_document(&t, &second), vec![2u8; big]);
        assert_eq!(t.spool_bytes(), big as u64);
        // Small ones share a segment of the spool log, which goes when
        // the last of them finishes.
        let mut small = Vec::new();
        for body in [&b"third"[..], b"fourth"] {
            let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
            w.write(body).await.unwrap();
            small.push(t.commit_new(w, new_job("a")).await.unwrap());
        }
        let n = names();
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(n[1].0.starts_with(log::SEGMENT_PREFIX), "{n:?}");
        assert_eq!(read_document(&t, &small[1]), b"fourth");
        t.remove_document(&small[0]);
        assert_eq!(names().len(), 2);
        t.remove_document(&small[1]);
        t.remove_document(&second);
        let n = names();
        assert!(
            n.iter()
                .all(|(name, len)| name.starts_with(FREE_PREFIX) && *len == 0),
            "{n:?}"
        );
        assert_eq!(t.spool_bytes(), 0);
    }

    #[tokio::test]
    async fn a_damaged_unfinished_job_is_aborted_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = TenantId::parse("a").unwrap();
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            let t = store.provision(std::slice::from_ref(&a)).unwrap().remove(0);
            let big = vec![3u8; log::SMALL_DOCUMENT_MAX as usize + 10];
            for body in [&b"whole document"[..], b"document cut short", &big] {
                let mut w = t.spool_writer(1 << 30, 1 << 30).await.unwrap();
                w.write(body).await.unwrap();
                t.commit_new(w, new_job("a")).await.unwrap();
            }
            store.close().unwrap();
        }
        // Job 2's entry in the spool log and job 3's file lose their tails
        // (say, a disk that lied about a sync). The segment's file goes on
        // in zeros after its last entry (written ahead).
        let cut = |name: &str, by: u64| {
            let path = dir.path().join("spool/a").join(name);
            let bytes = std::fs::read(&path).unwrap();
            let end = if name.starts_with(log::SEGMENT_PREFIX) {
                bytes.iter().rposition(|b| *b != 0).unwrap() + 1
            } else {
                bytes.len()
            };
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(end as u64 - by).unwrap();
        };
        cut("log-000000000001", 4);
        cut("3", 7);
        let store = reopen(dir.path());
        let t = store.provision(std::slice::from_ref(&a)).unwrap().remove(0);
        assert_eq!(t.active_jobs().unwrap(), vec![JobId(1)]);
        let note = |id| {
            let j = t.job(JobId(id)).unwrap().unwrap();
            assert_eq!(j.state, JobState::Aborted);
            j.history.last().unwrap().note.clone()
        };
        assert!(
            note(2).contains("spool log entry is cut short"),
            "{}",
            note(2)
        );
        let len3 = crypt::sealed_len(log::SMALL_DOCUMENT_MAX + 10);
        assert!(
            note(3).contains(&format!("{} of {len3} bytes", len3 - 7)),
            "{}",
            note(3)
        );
        assert!(!dir.path().join("spool/a/3").exists());
        assert_eq!(t.spool_bytes(), 14);
        let j1 = t.job(JobId(1)).unwrap().unwrap();
        assert_eq!(read_document(&t, &j1), b"whole document");
    }
}
