//! The running daemon: start, reload, stop, sd_notify. Wires the layers
//! below it: hands intake and admin the narrow handles they use.
//!
//! `main` binds the listeners ([`bind_all`]) and hands them to [`run`],
//! which opens the store, builds the first snapshot, resumes unfinished
//! jobs, serves, and reacts to SIGHUP (reload) and SIGTERM/SIGINT (stop).

pub mod notify;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::notify::{monotonic_usec, notify};
use crate::admin::{Admin, Listening};
use crate::config::ids::{ListenerName, TenantId};
use crate::config::{Config, Protocol};
use crate::dispatch::capabilities::Capabilities;
use crate::dispatch::Dispatcher;
use crate::intake::Intake;
use crate::snapshot::Snapshot;
use crate::store::job::now_ms;
use crate::store::{Store, StoreError, TenantStore};

/// A listening socket bound by `main`, not yet served.
pub struct BoundListener {
    /// The listener's name.
    pub name: ListenerName,
    /// Its protocol.
    pub protocol: Protocol,
    /// The address as configured (port may be 0).
    pub configured: SocketAddr,
    /// The socket.
    pub socket: std::net::TcpListener,
}

/// What can stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A listener address could not be bound.
    #[error("cannot bind listener {name} on {addr}: {err}")]
    Bind {
        /// The listener.
        name: ListenerName,
        /// The address.
        addr: SocketAddr,
        /// Why.
        err: std::io::Error,
    },
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Signals could not be set up.
    #[error("signals: {0}")]
    Signal(std::io::Error),
    /// Commits failed for longer than `global.store-failure-restart-after`.
    #[error("the store could not commit for {0:?}; stopped so that it is restarted")]
    StoreFailed(std::time::Duration),
}

/// Binds every address of every listener of `config`.
pub fn bind_all(config: &Config) -> Result<Vec<BoundListener>, DaemonError> {
    let mut out = Vec::new();
    for l in &config.listeners {
        for &addr in &l.bind {
            let socket =
                crate::intake::listener::bind_listener(addr, l.protocol).map_err(|err| {
                    DaemonError::Bind {
                        name: l.name.clone(),
                        addr,
                        err,
                    }
                })?;
            out.push(BoundListener {
                name: l.name.clone(),
                protocol: l.protocol,
                configured: addr,
                socket,
            });
        }
    }
    Ok(out)
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct ListenerKey {
    name: ListenerName,
    protocol: Protocol,
    addr: SocketAddr,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Daemon {
    intake: Arc<Intake>,
    store: Store,
    listening: Arc<Mutex<Vec<Listening>>>,
    config_path: PathBuf,
    listeners: HashMap<ListenerKey, Running>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, bound: Vec<BoundListener>) -> Result<(), DaemonError> {
    let config_path = config.path.clone();
    let grace = config.global.shutdown_grace;
    let (data_dir, cache, sync) = (
        config.global.data_dir.clone(),
        config.global.cache_capacity,
        config.global.spool_sync,
    );
    crate::store::private::set_group_readable(config.global.group_readable);
    crate::store::private::narrow_umask();
    let t0 = std::time::Instant::now();
    let store = blocking(move || Store::open_with(&data_dir, cache, sync)).await?;
    let opened = t0.elapsed();
    store.set_min_free_space(config.global.min_free_space);
    let ids: Vec<TenantId> = config.tenants.iter().map(|t| t.id.clone()).collect();
    let s2 = store.clone();
    let stores = blocking(move || s2.provision(&ids)).await?;
    tracing::info!(
        open_ms = opened.as_millis() as u64,
        provision_ms = (t0.elapsed() - opened).as_millis() as u64,
        "store open"
    );
    for w in &config.warnings {
        tracing::warn!("{}: {w}", config.path.display());
    }
    // A key rotation a crash interrupted goes on.
    for ts in stores.iter().filter(|t| t.rekey_pending()) {
        let ts = ts.clone();
        tracing::warn!(tenant = %ts.id(), "a key rotation was interrupted; resuming it");
        tokio::task::spawn_blocking(move || {
            if let Err(e) = ts.rekey() {
                tracing::error!(tenant = %ts.id(), error = %e, "key rotation failed");
            }
        });
    }
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(
        config,
        stores.clone(),
        None,
    )));
    let dispatcher = Dispatcher::new(snapshot.clone());
    let mut resumed = 0;
    for s in &stores {
        resumed += dispatcher.resume(s)?;
    }
    let capabilities = Arc::new(Capabilities::new(Some(
        &snapshot.load().config.global.data_dir,
    )));
    capabilities.load(&snapshot.load());
    let capabilities_stop = CancellationToken::new();
    let capabilities_task = tokio::spawn(
        capabilities
            .clone()
            .run(snapshot.clone(), capabilities_stop.clone()),
    );
    let intake = Arc::new(Intake::with_capabilities(
        snapshot.clone(),
        dispatcher.clone(),
        capabilities,
    ));
    let listening = Arc::new(Mutex::new(Vec::new()));
    let admin = Arc::new(Admin {
        snapshot: snapshot.clone(),
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        connections: intake.connections.clone(),
        started: std::time::Instant::now(),
        listening: listening.clone(),
        capabilities: intake.capabilities.clone(),
    });
    let mut daemon = Daemon {
        intake: intake.clone(),
        store: store.clone(),
        listening,
        config_path,
        listeners: HashMap::new(),
    };
    for b in bound {
        daemon.serve(b);
    }
    let pruner_stop = CancellationToken::new();
    let pruner = tokio::spawn(prune_loop(snapshot.clone(), pruner_stop.clone()));
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    crate::metrics::get()
        .config_loaded
        .set(now_ms() as i64 / 1000);
    let metrics_stop = CancellationToken::new();
    let metrics_task = match snapshot.load().config.global.metrics {
        Some(addr) => match crate::intake::listener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        }) {
            Ok(l) => {
                let local = l
                    .local_addr()
                    .map_or_else(|_| addr.to_string(), |a| a.to_string());
                announce(&format!("listening metrics http {local}"));
                tracing::info!(addr = %local, "metrics at /metrics");
                Some(tokio::spawn(crate::admin::metrics::serve(
                    l,
                    admin.clone(),
                    metrics_stop.clone(),
                )))
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot bind the metrics endpoint");
                None
            }
        },
        None => None,
    };
    let watchdog_stop = CancellationToken::new();
    let watchdog = notify::watchdog_interval().map(|every| {
        tracing::info!(every = ?every, "systemd watchdog enabled");
        tokio::spawn(watchdog_loop(every, watchdog_stop.clone()))
    });
    let (reload_tx, mut reload_rx) =
        tokio::sync::mpsc::channel::<crate::admin::control::ReloadRequest>(CONTROL_RELOAD_QUEUE);
    let control_stop = CancellationToken::new();
    let control_path = snapshot.load().config.global.control_socket.clone();
    let control = match &control_path {
        Some(path) => match crate::admin::control::bind(path) {
            Ok(l) => {
                tracing::info!(socket = %path.display(), "control socket ready");
                Some(tokio::spawn(crate::admin::control::serve(
                    l,
                    admin.clone(),
                    reload_tx.clone(),
                    control_stop.clone(),
                )))
            }
            Err(e) => {
                // The daemon still routes and prints; only administration is missing.
                tracing::error!(socket = %path.display(), error = %e, "cannot bind the control socket");
                None
            }
        },
        None => None,
    };
    let web_stop = CancellationToken::new();
    let web = snapshot.load().config.global.web.clone().and_then(|w| {
        // Checked here so that a bad certificate is said at start; each
        // connection takes the one of the snapshot in force (a reload
        // picks up a renewed certificate).
        let tls = match &w.tls {
            Some(files) => match crate::intake::tls::server_config(files) {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the admin API's certificate; the API is off");
                    return None;
                }
            },
            None => false,
        };
        match crate::intake::listener::bind(w.bind).and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        }) {
            Ok(l) => {
                let local = l
                    .local_addr()
                    .map_or_else(|_| w.bind.to_string(), |a| a.to_string());
                let scheme = if tls { "https" } else { "http" };
                announce(&format!("listening web {scheme} {local}"));
                tracing::info!(addr = %local, "admin API at {scheme}://{local}/api/v1");
                Some(tokio::spawn(crate::admin::web::serve(
                    l,
                    tls,
                    admin.clone(),
                    reload_tx.clone(),
                    web_stop.clone(),
                )))
            }
            Err(e) => {
                tracing::error!(addr = %w.bind, error = %e, "cannot bind the admin API");
                None
            }
        }
    });
    // Ready only now: every listener is bound and the control socket accepts.
    announce("ready");
    let summary = snapshot.load().config.summary();
    tracing::info!(resumed, "printroute ready: {summary}");
    notify(&format!("READY=1\nSTATUS=serving {summary}"));
    let store_failed = CancellationToken::new();
    let health_stop = CancellationToken::new();
    let health = tokio::spawn(health_loop(
        store.clone(),
        snapshot.clone(),
        store_failed.clone(),
        health_stop.clone(),
    ));
    let mut failed = None;
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = daemon.reload().await; }
            Some(answer) = reload_rx.recv() => { let _ = answer.send(daemon.reload().await); }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = store_failed.cancelled() => {
                // No more watchdog pings: systemd restarts a daemon it
                // stops hearing from, and the exit status says why.
                watchdog_stop.cancel();
                failed = Some(snapshot.load().config.global.store_failure_restart_after);
                break;
            }
        }
    }
    health_stop.cancel();
    let _ = health.await;
    web_stop.cancel();
    if let Some(w) = web {
        let _ = w.await;
    }
    control_stop.cancel();
    if let Some(c) = control {
        let _ = c.await;
    }
    if let Some(path) = &control_path {
        let _ = std::fs::remove_file(path);
    }
    notify("STOPPING=1\nSTATUS=stopping");
    watchdog_stop.cancel();
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    metrics_stop.cancel();
    if let Some(m) = metrics_task {
        let _ = m.await;
    }
    tracing::info!(grace = ?grace, "stopping: no new connections; waiting for receives in flight");
    for (_, r) in daemon.listeners.drain() {
        r.stop.cancel();
        let _ = r.task.await;
    }
    intake.connections.close();
    if tokio::time::timeout(grace, intake.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; cutting off receives still in flight (they were not acknowledged)");
    }
    pruner_stop.cancel();
    let _ = pruner.await;
    capabilities_stop.cancel();
    let _ = capabilities_task.await;
    dispatcher.shutdown().await;
    blocking(move || store.close()).await?;
    tracing::info!("stopped");
    match failed {
        Some(after) => Err(DaemonError::StoreFailed(after)),
        None => Ok(()),
    }
}

/// How often the store's health is looked at.
pub const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Follows the store's health: tells systemd (STATUS) and the metrics while
/// commits fail and when they succeed again (probing once per
/// [`HEALTH_INTERVAL`] while they fail), and fires `failed` when they have
/// failed for longer than `global.store-failure-restart-after`.
async fn health_loop(
    store: Store,
    snapshot: Arc<ArcSwap<Snapshot>>,
    failed: CancellationToken,
    stop: CancellationToken,
) {
    let m = crate::metrics::get();
    let mut was_failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        let mut h = store.health();
        if h.failing_since_ms.is_some() && !h.poisoned {
            // Nothing else may write for a while: find out whether commits
            // work again, so that an idle daemon is not restarted for a
            // moment of full disk long past.
            let s = store.clone();
            if tokio::task::spawn_blocking(move || s.probe())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                h = store.health();
            }
        }
        m.store_failed_commits.set(h.failed_groups as i64);
        match h.failing_since_ms {
            Some(since) => {
                m.store_failing.set(1);
                let for_ms = now_ms().saturating_sub(since);
                let why = h.last_error.unwrap_or_default();
                notify(&format!(
                    "STATUS=commits failing for {} s, writes refused: {why}",
                    for_ms / 1000
                ));
                was_failing = true;
                let limit = snapshot.load().config.global.store_failure_restart_after;
                if for_ms >= limit.as_millis() as u64 {
                    tracing::error!(failing_for_ms = for_ms, limit = ?limit, error = %why, "commits keep failing; stopping so that the service is restarted");
                    failed.cancel();
                    return;
                }
            }
            None => {
                m.store_failing.set(0);
                if was_failing {
                    was_failing = false;
                    let summary = snapshot.load().config.summary();
                    notify(&format!("STATUS=serving {summary}"));
                }
            }
        }
    }
}

impl Daemon {
    fn serve(&mut self, b: BoundListener) {
        let key = ListenerKey {
            name: b.name.clone(),
            protocol: b.protocol,
            addr: b.configured,
        };
        let listener = match b
            .socket
            .set_nonblocking(true)
            .and_then(|_| tokio::net::TcpListener::from_std(b.socket))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listener = %b.name, addr = %b.configured, error = %e, "cannot serve listener");
                return;
            }
        };
        let local = listener
            .local_addr()
            .map_or_else(|_| b.configured.to_string(), |a| a.to_string());
        announce(&format!("listening {} {} {local}", b.name, b.protocol));
        self.listening
            .lock()
            .expect("listening lock")
            .push(Listening {
                name: b.name.to_string(),
                protocol: b.protocol.to_string(),
                addr: local.clone(),
                configured: b.configured,
            });
        tracing::info!(listener = %b.name, protocol = %b.protocol, addr = %local, "listening");
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::intake::listener::accept_loop(
            listener,
            b.name,
            b.protocol,
            self.intake.clone(),
            stop.clone(),
        ));
        self.listeners.insert(key, Running { stop, task });
    }

    /// Builds the new snapshot aside and swaps it in; on any error the old one stays.
    async fn reload(&mut self) -> Result<String, String> {
        notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            monotonic_usec()
        ));
        let result = self.try_reload().await;
        let m = crate::metrics::get();
        m.reloads
            .get_or_create(&crate::metrics::ReloadResult {
                result: if result.is_ok() { "ok" } else { "failed" }.into(),
            })
            .inc();
        if result.is_ok() {
            m.config_loaded.set(now_ms() as i64 / 1000);
        }
        match &result {
            Ok(summary) => {
                tracing::info!("config reloaded: {summary}");
                notify(&format!("READY=1\nSTATUS=serving {summary}"));
            }
            Err(e) => {
                tracing::error!("reload refused, the previous config stays in force:\n{e}");
                notify(&format!(
                    "READY=1\nSTATUS=reload failed, previous config in force: {}",
                    e.lines().next().unwrap_or("")
                ));
            }
        }
        result
    }

    async fn try_reload(&mut self) -> Result<String, String> {
        let t0 = std::time::Instant::now();
        let path = self.config_path.clone();
        let node = self.intake.snapshot.load().config.node.clone();
        let data_dir = self.intake.snapshot.load().config.data_dir_override.clone();
        let config = blocking(move || {
            Config::load_as(&path, node.as_deref()).map(|c| match &data_dir {
                Some(d) => c.with_data_dir(d),
                None => c,
            })
        })
        .await
        .map_err(|e| e.to_string())?;
        let loaded = t0.elapsed();
        for w in &config.warnings {
            tracing::warn!("{}: {w}", config.path.display());
        }
        let old = self.intake.snapshot.load_full();
        crate::store::private::set_group_readable(config.global.group_readable);
        crate::store::private::narrow_umask();
        let ids: Vec<TenantId> = config.tenants.iter().map(|t| t.id.clone()).collect();
        let store = self.store.clone();
        let stores: Vec<Arc<TenantStore>> = blocking(move || store.provision(&ids))
            .await
            .map_err(|e| format!("store: {e}"))?;
        let provisioned = t0.elapsed();

        let wanted: Vec<ListenerKey> = config
            .listeners
            .iter()
            .flat_map(|l| {
                l.bind.iter().map(|&addr| ListenerKey {
                    name: l.name.clone(),
                    protocol: l.protocol,
                    addr,
                })
            })
            .collect();
        let removed: Vec<ListenerKey> = self
            .listeners
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        let added: Vec<ListenerKey> = wanted
            .iter()
            .filter(|k| !self.listeners.contains_key(k))
            .cloned()
            .collect();
        // A listener whose address moves to another definition must let go first.
        for k in removed
            .iter()
            .filter(|k| added.iter().any(|a| a.addr == k.addr))
        {
            if let Some(r) = self.listeners.remove(k) {
                r.stop.cancel();
                let _ = r.task.await;
            }
        }
        let mut bound = Vec::new();
        for k in &added {
            let socket = crate::intake::listener::bind_listener(k.addr, k.protocol)
                .map_err(|e| format!("cannot bind listener {} on {}: {e}", k.name, k.addr))?;
            bound.push(BoundListener {
                name: k.name.clone(),
                protocol: k.protocol,
                configured: k.addr,
                socket,
            });
        }
        let summary = config.summary();
        let snapshot = Arc::new(Snapshot::build(config, stores, Some(&old)));
        self.intake.snapshot.store(snapshot.clone());
        self.intake.capabilities.reloaded();
        tracing::info!(
            load_ms = loaded.as_millis() as u64,
            stores_ms = (provisioned - loaded).as_millis() as u64,
            swapped_ms = t0.elapsed().as_millis() as u64,
            "new snapshot in force"
        );
        self.store
            .set_min_free_space(snapshot.config.global.min_free_space);
        for b in bound {
            self.serve(b);
        }
        for k in &removed {
            if let Some(r) = self.listeners.remove(k) {
                r.stop.cancel();
                let _ = r.task.await;
                tracing::info!(listener = %k.name, addr = %k.addr, "listener closed");
                self.listening
                    .lock()
                    .expect("listening lock")
                    .retain(|l| !(l.name == k.name.0 && l.configured == k.addr));
            }
        }
        // Tenants that (re)appear resume their queued jobs.
        for (i, t) in snapshot.config.tenants.iter().enumerate() {
            if old.tenant_index(&t.id).is_none() {
                let n = self
                    .intake
                    .dispatcher
                    .resume(&snapshot.stores[i])
                    .map_err(|e| format!("store: {e}"))?;
                if n > 0 {
                    tracing::info!(tenant = %t.id, jobs = n, "resumed queued jobs of a returning tenant");
                }
            }
        }
        // The old snapshot goes once the last connection routed with it
        // ends; when that is now, its config is freed off the runtime.
        if let Some(old) = Arc::into_inner(old) {
            tokio::task::spawn_blocking(move || drop(old));
        }
        Ok(summary)
    }
}

/// Tells systemd the daemon is alive, every `every` (half of `WatchdogSec`),
/// from the runtime that serves connections: a wedged runtime stops the pings.
async fn watchdog_loop(every: std::time::Duration, stop: CancellationToken) {
    loop {
        notify("WATCHDOG=1");
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Reload requests from the control socket that may wait at once.
pub const CONTROL_RELOAD_QUEUE: usize = 8;

/// How often finished jobs' records are checked against each tenant's `retention`.
pub const RETENTION_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes finished jobs' records once they are older than their tenant's
/// `retention`: at start, then every [`RETENTION_SWEEP_INTERVAL`].
async fn prune_loop(snapshot: Arc<ArcSwap<Snapshot>>, stop: CancellationToken) {
    loop {
        let snapshot = snapshot.load_full();
        for (t, store) in snapshot.config.tenants.iter().zip(&snapshot.stores) {
            let cutoff = now_ms().saturating_sub(t.limits.retention.as_millis() as u64);
            match store.prune_finished(cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(tenant = %t.id, records = n, "pruned finished jobs past retention")
                }
                Err(e) => tracing::warn!(tenant = %t.id, error = %e, "cannot prune finished jobs"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_SWEEP_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Whether [`announce`] writes: `serve --announce` turns it on.
static ANNOUNCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the daemon announce each bound listener (`listening NAME PROTOCOL
/// ADDRESS`) and its readiness (`ready`) on stdout, one line each, for the
/// scripts and tests that start it on port 0 and need the ports it got.
/// Off by default: everything else goes through the log.
pub fn announce_on_stdout() {
    ANNOUNCE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Tells whoever started the daemon (tests, scripts) what it is doing, on
/// stdout, when asked to ([`announce_on_stdout`]).
fn announce(line: &str) {
    if !ANNOUNCE.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn blocking<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}
