//! The admin control socket: a Unix socket speaking one JSON request and one
//! JSON response per connection.
//!
//! Every request is authorised here, from the caller's credentials as the
//! kernel reports them (`SO_PEERCRED`), never from anything the client says:
//! root and members of `global.admin-groups` are global admins; the users and
//! groups of `tenant.<id>.admins` administer that tenant; anyone else is
//! refused. A tenant admin asking about another tenant is told it does not
//! exist.
//!
//! Users and groups come from the system's name service (`getpwuid`,
//! `getgrouplist`: /etc files, LDAP, SSSD, NIS alike), asked per caller and
//! kept for [`IDENTITY_CACHE_TTL`].
//!
//! The socket is open to every local user (the daemon decides), so nobody
//! may use it to starve the daemon: the caller is checked as soon as its
//! connection is accepted and a non-admin is closed at once; connections
//! are capped per uid ([`MAX_CONNECTIONS_PER_UID`]) and in total
//! ([`MAX_CONNECTIONS`]), and a request must arrive within [`REQUEST_TIMEOUT`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Admin;
use crate::config::ids::{JobId, TenantId};
use crate::config::Config;
use crate::store::job::{Job, JobState};

/// Longest request line accepted.
pub const MAX_REQUEST_LEN: usize = 64 << 10;

/// A client must send its request within this long (the CLI sends it at once).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Control connections open at once, all callers together; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;

/// Control connections one uid may hold open at once; more are closed at accept.
pub const MAX_CONNECTIONS_PER_UID: usize = 8;

/// How long a caller's user name and groups, once looked up, are used again.
pub const IDENTITY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Callers whose identities are kept at once (the cache is emptied when full).
pub const MAX_CACHED_IDENTITIES: usize = 1024;

/// How long the CLI waits for the daemon's answer (a reload or purge may take a while).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

/// File mode of the socket: anyone may connect, the daemon decides who may do what.
pub const SOCKET_MODE: u32 = 0o666;

/// Mode of the socket's folder when the daemon creates it: anyone may reach the socket.
pub const SOCKET_DIR_MODE: u32 = 0o755;

/// A request, as the CLI sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Uptime, config, listeners, job counts.
    Status,
    /// The tenants the caller may see.
    Tenants,
    /// Jobs, filtered.
    Jobs {
        /// Only this tenant's.
        tenant: Option<String>,
        /// Only in this state (`pending`, `held`, ...).
        state: Option<String>,
        /// Only of this user.
        user: Option<String>,
    },
    /// One job's record and history.
    Job {
        /// Its tenant.
        tenant: String,
        /// Its id.
        id: u32,
    },
    /// Releases a held job, optionally to one of the tenant's devices.
    Release {
        /// Its tenant.
        tenant: String,
        /// Its id.
        id: u32,
        /// A device of the tenant to print on instead of the workflow's.
        to: Option<String>,
    },
    /// Cancels an unfinished job.
    Cancel {
        /// Its tenant.
        tenant: String,
        /// Its id.
        id: u32,
    },
    /// Reloads the config file.
    Reload,
    /// Deletes all data of an offboarded tenant.
    Purge {
        /// The tenant.
        tenant: String,
        /// Purge even while the tenant is still in the config.
        #[serde(default)]
        force: bool,
    },
    /// Gives a tenant a new key and re-seals its records and documents
    /// with it in the background; the old key is then shredded.
    Rekey {
        /// The tenant.
        tenant: String,
        /// Answer when the rotation has finished, not when it has started.
        #[serde(default)]
        wait: bool,
    },
}

/// A response: `ok` with data, or an error for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// True when the request was done.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was asked for.
    #[serde(default)]
    pub data: Value,
}

impl Response {
    fn ok(data: Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }
    fn err(e: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(e.into()),
            data: Value::Null,
        }
    }
}

/// What a caller may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Global,
    /// These tenants only.
    Tenants(Vec<TenantId>),
}

impl Scope {
    fn sees(&self, t: &TenantId) -> bool {
        match self {
            Scope::Global => true,
            Scope::Tenants(ts) => ts.contains(t),
        }
    }
}

/// A caller as the name service knows it: its user name (none for a uid
/// without an entry) and the names of all its groups.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: Option<String>,
    /// Group names: the user's primary group, the peer's gid, and every
    /// group the name service lists the user in.
    pub groups: Vec<String>,
}

/// Looks a caller up in the system's name service (blocking: NSS may ask a
/// directory server).
pub fn lookup_identity(uid: u32, gid: u32) -> Identity {
    use nix::unistd::{getgrouplist, Gid, Group, Uid, User};
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let mut gids = vec![Gid::from_raw(gid)];
    if let Some(u) = &user {
        gids.push(u.gid);
        if let Ok(name) = std::ffi::CString::new(u.name.as_str()) {
            gids.extend(getgrouplist(&name, u.gid).unwrap_or_default());
        }
    }
    gids.sort_by_key(|g| g.as_raw());
    gids.dedup();
    let groups = gids
        .into_iter()
        .filter_map(|g| Group::from_gid(g).ok().flatten())
        .map(|g| g.name)
        .collect();
    Identity {
        user: user.map(|u| u.name),
        groups,
    }
}

/// The uid and identity of the user called `name` in the system's name
/// service (blocking, like [`lookup_identity`]); `None`: no such user. For
/// callers known by name rather than by socket credentials (the portal's
/// password sign-in), so that [`authorize`] decides for them as for the socket.
pub fn lookup_user(name: &str) -> Option<(u32, Identity)> {
    let u = nix::unistd::User::from_name(name).ok().flatten()?;
    let (uid, gid) = (u.uid.as_raw(), u.gid.as_raw());
    Some((uid, lookup_identity(uid, gid)))
}

/// A caller's identity and when it was looked up, by (uid, gid).
type IdentityCache = HashMap<(u32, u32), (Instant, Arc<Identity>)>;

/// Callers' identities from the name service, each kept for [`IDENTITY_CACHE_TTL`].
#[derive(Default)]
pub struct Accounts {
    cache: Mutex<IdentityCache>,
}

impl Accounts {
    /// The identity of the caller `uid`/`gid`: cached, or looked up now.
    pub async fn identity(&self, uid: u32, gid: u32) -> Arc<Identity> {
        if let Some((at, id)) = self.cache.lock().expect("identity cache").get(&(uid, gid)) {
            if at.elapsed() < IDENTITY_CACHE_TTL {
                return id.clone();
            }
        }
        let id = tokio::task::spawn_blocking(move || lookup_identity(uid, gid))
            .await
            .unwrap_or_default();
        let id = Arc::new(id);
        let mut cache = self.cache.lock().expect("identity cache");
        if cache.len() >= MAX_CACHED_IDENTITIES {
            cache.clear();
        }
        cache.insert((uid, gid), (Instant::now(), id.clone()));
        id
    }
}

/// Decides what a caller (`uid`, known as `identity`) may touch under `config`; `None`: nothing.
pub fn authorize(config: &Config, identity: &Identity, uid: u32) -> Option<Scope> {
    if uid == 0 {
        return Some(Scope::Global);
    }
    let Identity { user, groups } = identity;
    if groups
        .iter()
        .any(|g| config.global.admin_groups.contains(g))
    {
        return Some(Scope::Global);
    }
    let tenants: Vec<TenantId> = config
        .tenants
        .iter()
        .filter(|t| {
            user.as_ref()
                .is_some_and(|u| t.admins.unix_users.contains(u))
                || groups.iter().any(|g| t.admins.unix_groups.contains(g))
        })
        .map(|t| t.id.clone())
        .collect();
    (!tenants.is_empty()).then_some(Scope::Tenants(tenants))
}

/// A reload asked for over the socket: the daemon answers with its summary or its error.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// Binds the control socket (replacing a stale one) with [`SOCKET_MODE`].
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.is_dir()) {
        // Open to every local user whatever the umask: the daemon checks callers.
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SOCKET_DIR_MODE))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(l)
}

/// Open control connections, per uid and in total.
#[derive(Default)]
struct Slots {
    per_uid: HashMap<u32, usize>,
    total: usize,
}

/// One open control connection, counted in [`Slots`] until dropped.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    uid: u32,
}

impl Slot {
    /// A slot for a connection of `uid`, unless it or everyone is at the limit.
    fn take(slots: &Arc<Mutex<Slots>>, uid: u32) -> Option<Slot> {
        let mut s = slots.lock().expect("control slots");
        let mine = s.per_uid.get(&uid).copied().unwrap_or(0);
        if s.total >= MAX_CONNECTIONS || mine >= MAX_CONNECTIONS_PER_UID {
            return None;
        }
        s.total += 1;
        s.per_uid.insert(uid, mine + 1);
        Some(Slot {
            slots: slots.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().expect("control slots");
        s.total -= 1;
        if let Some(n) = s.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                s.per_uid.remove(&self.uid);
            }
        }
    }
}

/// How often refused control connections are logged (with a count), at most.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Refused connections since the last log line, and when that was.
struct Refusals {
    since: Option<Instant>,
    count: u64,
}

impl Refusals {
    fn note(&mut self, uid: u32, why: &str) {
        self.count += 1;
        if self
            .since
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(
                uid,
                refused = self.count,
                "control connection refused: {why}"
            );
            self.since = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// Tells the caller why and closes at once: one non-blocking write that
/// never waits (the socket's buffer is empty), then the connection is closed.
fn refuse(stream: UnixStream, why: &str) {
    use std::io::Write;
    let mut out = serde_json::to_vec(&Response::err(why)).unwrap_or_default();
    out.push(b'\n');
    // As a plain socket: tokio's own try_write may not know yet that a
    // just-accepted socket is writable.
    if let Ok(s) = stream.into_std() {
        let _ = (&s).write(&out);
    }
}

/// Serves the control socket until `stop` fires.
pub async fn serve(
    listener: UnixListener,
    admin: Arc<Admin>,
    reload: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    let accounts = Arc::new(Accounts::default());
    let slots = Arc::new(Mutex::new(Slots::default()));
    let refusals = Arc::new(Mutex::new(Refusals {
        since: None,
        count: 0,
    }));
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(crate::intake::listener::ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        // The kernel knows the caller from connect on; nothing it sends is needed.
        let Ok(cred) = rustix::net::sockopt::socket_peercred(&stream) else {
            continue;
        };
        let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
        let Some(slot) = Slot::take(&slots, uid) else {
            refusals
                .lock()
                .expect("refusals")
                .note(uid, "too many control connections");
            refuse(stream, "too many control connections; try again");
            continue;
        };
        let (admin, reload, accounts, refusals) = (
            admin.clone(),
            reload.clone(),
            accounts.clone(),
            refusals.clone(),
        );
        admin.connections.clone().spawn(async move {
            let _slot = slot;
            let scope = if uid == 0 {
                Some(Scope::Global)
            } else {
                let identity = accounts.identity(uid, gid).await;
                authorize(&admin.snapshot.load().config, &identity, uid)
            };
            let Some(scope) = scope else {
                refusals
                    .lock()
                    .expect("refusals")
                    .note(uid, "caller is no admin");
                refuse(stream, "permission denied: you are not a printroute admin");
                return;
            };
            if let Err(e) = connection(stream, uid, &scope, &admin, &reload).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
}

async fn connection(
    stream: UnixStream,
    uid: u32,
    scope: &Scope,
    admin: &Admin,
    reload: &mpsc::Sender<ReloadRequest>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream).take(MAX_REQUEST_LEN as u64 + 1);
    let mut line = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    let response = match read {
        Err(_) => Response::err("request timed out"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if line.len() > MAX_REQUEST_LEN => Response::err("request too long"),
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::err(format!("bad request: {e}")),
            Ok(req) => {
                tracing::info!(uid, request = ?req, "control request");
                handle(req, scope, admin, reload).await
            }
        },
    };
    let mut stream = reader.into_inner().into_inner();
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    stream.write_all(&out).await?;
    stream.shutdown().await
}

fn no_tenant(t: &str) -> Response {
    Response::err(format!("no such tenant: {t}"))
}

/// A tenant the caller may see: configured now, or (for purge) with data in the store.
fn visible(scope: &Scope, admin: &Admin, t: &str) -> Option<TenantId> {
    let id = TenantId::parse(t).ok()?;
    if !scope.sees(&id) {
        return None;
    }
    let configured = admin.snapshot.load().tenant_index(&id).is_some();
    (configured
        || admin.store.tenant(&id).is_some()
        || admin.store.registered_tenants().ok()?.contains(&id))
    .then_some(id)
}

/// A job as admins are shown it: whether a PIN was set, never its hash
/// (short PINs are guessable from it).
pub fn shown(mut j: Job) -> Job {
    if j.pin.is_some() {
        j.pin = Some("set".into());
    }
    j
}

fn job_json(j: &Job) -> Value {
    serde_json::to_value(shown(j.clone())).unwrap_or(Value::Null)
}

/// Does one request for a caller of `scope`: the control socket's, and the
/// admin API's for jobs, release, cancel, reload and purge.
pub async fn handle(
    req: Request,
    scope: &Scope,
    admin: &Admin,
    reload: &mpsc::Sender<ReloadRequest>,
) -> Response {
    let snapshot = admin.snapshot.load_full();
    match req {
        Request::Status => {
            let mut tenants = Vec::new();
            for (t, store) in snapshot.config.tenants.iter().zip(&snapshot.stores) {
                if !scope.sees(&t.id) {
                    continue;
                }
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for j in store.jobs().unwrap_or_default() {
                    *counts.entry(j.state.as_str()).or_default() += 1;
                }
                tenants.push(json!({ "tenant": t.id, "name": t.name, "jobs": counts, "spool-bytes": store.spool_bytes() }));
            }
            let listeners = if *scope == Scope::Global {
                json!(admin.listening())
            } else {
                Value::Null
            };
            Response::ok(json!({
                "uptime-seconds": admin.started.elapsed().as_secs(),
                "config": snapshot.config.path,
                "config-loaded": snapshot.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                "listeners": listeners,
                "tenants": tenants,
                "store": admin.store.health(),
            }))
        }
        Request::Tenants => {
            let list: Vec<Value> = snapshot
                .config
                .tenants
                .iter()
                .filter(|t| scope.sees(&t.id))
                .map(|t| json!({ "tenant": t.id, "name": t.name, "ranges": t.ranges, "devices": t.devices.keys().collect::<Vec<_>>() }))
                .collect();
            Response::ok(json!(list))
        }
        Request::Jobs {
            tenant,
            state,
            user,
        } => {
            let ids: Vec<TenantId> = match &tenant {
                Some(t) => match visible(scope, admin, t) {
                    Some(id) => vec![id],
                    None => return no_tenant(t),
                },
                None => snapshot
                    .config
                    .tenants
                    .iter()
                    .map(|t| t.id.clone())
                    .filter(|t| scope.sees(t))
                    .collect(),
            };
            let mut out = Vec::new();
            for id in ids {
                let Some(store) = admin.store.tenant(&id) else {
                    continue;
                };
                for j in store.jobs().unwrap_or_default() {
                    if state.as_deref().is_some_and(|s| s != j.state.as_str())
                        || user.as_deref().is_some_and(|u| u != j.user)
                    {
                        continue;
                    }
                    out.push(job_json(&j));
                }
            }
            Response::ok(json!(out))
        }
        Request::Job { tenant, id } => {
            let Some(tid) = visible(scope, admin, &tenant) else {
                return no_tenant(&tenant);
            };
            match admin
                .store
                .tenant(&tid)
                .and_then(|s| s.job(JobId(id)).ok().flatten())
            {
                Some(j) => Response::ok(job_json(&j)),
                None => Response::err(format!("no such job: {tenant}/{id}")),
            }
        }
        Request::Release { tenant, id, to } => {
            let Some(tid) = visible(scope, admin, &tenant) else {
                return no_tenant(&tenant);
            };
            let Some(ti) = snapshot.tenant_index(&tid) else {
                return no_tenant(&tenant);
            };
            if let Some(dev) = &to {
                if !snapshot.config.tenants[ti].devices.contains_key(dev) {
                    return Response::err(format!("tenant {tenant} has no device {dev:?}"));
                }
            }
            let exists = admin
                .store
                .tenant(&tid)
                .and_then(|s| s.job(JobId(id)).ok().flatten())
                .is_some();
            if !exists {
                return Response::err(format!("no such job: {tenant}/{id}"));
            }
            if admin.dispatcher.release_to(&tid, JobId(id), to.clone()) {
                Response::ok(json!({ "released": format!("{tenant}/{id}"), "to": to }))
            } else {
                Response::err(format!("job {tenant}/{id} is not held"))
            }
        }
        Request::Cancel { tenant, id } => {
            let Some(tid) = visible(scope, admin, &tenant) else {
                return no_tenant(&tenant);
            };
            let Some(store) = admin.store.tenant(&tid) else {
                return no_tenant(&tenant);
            };
            match admin
                .dispatcher
                .cancel(&store, JobId(id), "canceled by an admin")
                .await
            {
                Ok(true) => Response::ok(json!({ "canceled": format!("{tenant}/{id}") })),
                Ok(false) => match store.job(JobId(id)) {
                    Ok(Some(j)) => Response::err(format!(
                        "job {tenant}/{id} has already ended ({})",
                        j.state.as_str()
                    )),
                    _ => Response::err(format!("no such job: {tenant}/{id}")),
                },
                Err(e) => Response::err(format!("storage: {e}")),
            }
        }
        Request::Reload => {
            if *scope != Scope::Global {
                return Response::err("permission denied: only a global admin may reload");
            }
            let (tx, rx) = oneshot::channel();
            if reload.send(tx).await.is_err() {
                return Response::err("the daemon is stopping");
            }
            match rx.await {
                Ok(Ok(summary)) => Response::ok(json!({ "reloaded": summary })),
                Ok(Err(e)) => Response::err(format!(
                    "reload refused, the previous config stays in force:\n{e}"
                )),
                Err(_) => Response::err("the daemon is stopping"),
            }
        }
        Request::Purge { tenant, force } => {
            if *scope != Scope::Global {
                return Response::err("permission denied: only a global admin may purge a tenant");
            }
            let Some(tid) = visible(scope, admin, &tenant) else {
                return no_tenant(&tenant);
            };
            let configured = snapshot.tenant_index(&tid).is_some();
            if configured && !force {
                return Response::err(format!(
                    "tenant {tenant} is still in the config: remove it and reload first, or purge with --force"
                ));
            }
            admin.dispatcher.stop_tenant(&tid).await;
            match admin.store.purge(&tid) {
                Ok(r) => {
                    // What its devices said they print goes with it.
                    let data_dir = admin.snapshot.load().config.global.data_dir.clone();
                    crate::dispatch::capabilities::forget_tenant(&data_dir, &tid);
                    if configured {
                        // Its routing stays; give it a fresh, empty collection.
                        let (tx, rx) = oneshot::channel();
                        if reload.send(tx).await.is_ok() {
                            let _ = rx.await;
                        }
                    }
                    Response::ok(
                        json!({ "purged": tenant, "records": r.records, "spool-files": r.spool_files, "spool-bytes": r.spool_bytes }),
                    )
                }
                Err(e) => Response::err(format!("purge failed: {e}")),
            }
        }
        Request::Rekey { tenant, wait } => {
            if *scope != Scope::Global {
                return Response::err(
                    "permission denied: only a global admin may rotate a tenant's key",
                );
            }
            let Some(ts) = visible(scope, admin, &tenant).and_then(|t| admin.store.tenant(&t))
            else {
                return no_tenant(&tenant);
            };
            let task = tokio::task::spawn_blocking(move || ts.rekey());
            if !wait {
                let name = tenant.clone();
                tokio::spawn(async move {
                    match task.await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::error!(tenant = %name, error = %e, "key rotation failed")
                        }
                        Err(e) => {
                            tracing::error!(tenant = %name, error = %e, "key rotation failed")
                        }
                    }
                });
                return Response::ok(json!({ "rekey": tenant, "started": true }));
            }
            match task.await {
                Ok(Ok(r)) => Response::ok(json!({
                    "rekey": tenant,
                    "finished": true,
                    "records": r.records,
                    "documents": r.documents,
                    "document-bytes": r.document_bytes,
                    "plain-documents": r.plain_documents,
                })),
                Ok(Err(e)) => Response::err(format!("key rotation of {tenant} failed: {e}")),
                Err(e) => Response::err(format!("key rotation of {tenant} failed: {e}")),
            }
        }
    }
}

/// Sends one request to the daemon's control socket and returns its response.
pub fn call(socket: &Path, req: &Request) -> std::io::Result<Response> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    match s.write_all(&line) {
        // The daemon refused the caller at accept and closed: its answer says why.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    let mut out = String::new();
    std::io::BufReader::new(s).read_line(&mut out)?;
    serde_json::from_str(&out)
        .map_err(|e| std::io::Error::other(format!("bad response from the daemon: {e}")))
}

/// Job states by name, for `--state` filters.
pub fn state_names() -> [&'static str; 6] {
    [
        JobState::Pending.as_str(),
        JobState::Held.as_str(),
        JobState::Processing.as_str(),
        JobState::Completed.as_str(),
        JobState::Aborted.as_str(),
        JobState::Canceled.as_str(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            Path::new("t.toml"),
            r#"
[global]
data-dir = "/tmp/x"
admin-groups = ["printroute-admin"]
[tenant.acme]
ranges = ["10.1.0.0/16"]
admins = { unix-users = ["alice"], unix-groups = ["acme-admins"] }
[tenant.globex]
ranges = ["10.2.0.0/16"]
"#,
        )
        .unwrap()
    }

    #[test]
    fn callers_get_the_scope_their_accounts_give() {
        let c = config();
        let who = |user: &str, groups: &[&str]| Identity {
            user: Some(user.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let acme = Scope::Tenants(vec![TenantId::parse("acme").unwrap()]);
        assert_eq!(authorize(&c, &Identity::default(), 0), Some(Scope::Global));
        assert_eq!(
            authorize(&c, &who("carol", &["carol", "printroute-admin"]), 1003),
            Some(Scope::Global),
            "member of an admin group"
        );
        assert_eq!(
            authorize(&c, &who("alice", &["alice"]), 1001),
            Some(acme.clone()),
            "tenant admin user"
        );
        assert_eq!(
            authorize(&c, &who("mallory", &["mallory", "acme-admins"]), 1004),
            Some(acme),
            "member of a tenant admin group"
        );
        assert_eq!(
            authorize(&c, &Identity::default(), 4242),
            None,
            "unknown uid"
        );
    }

    #[test]
    fn the_name_service_knows_root_and_its_group() {
        let id = lookup_identity(0, 0);
        assert_eq!(id.user.as_deref(), Some("root"));
        assert!(id.groups.iter().any(|g| g == "root"), "{id:?}");
        let nobody = lookup_identity(4_000_000_000, 4_000_000_000);
        assert_eq!(nobody, Identity::default());
    }

    #[test]
    fn connection_slots_are_capped_per_uid_and_in_total_and_given_back() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let mine: Vec<Slot> = (0..MAX_CONNECTIONS_PER_UID)
            .map(|_| Slot::take(&slots, 1000).unwrap())
            .collect();
        assert!(Slot::take(&slots, 1000).is_none(), "per uid");
        let others: Vec<Slot> = (0..MAX_CONNECTIONS - MAX_CONNECTIONS_PER_UID)
            .map(|i| Slot::take(&slots, 2000 + i as u32).unwrap())
            .collect();
        assert!(Slot::take(&slots, 99).is_none(), "in total");
        drop(mine);
        assert!(Slot::take(&slots, 1000).is_some());
        drop(others);
        let s = slots.lock().unwrap();
        assert_eq!((s.total, s.per_uid.len()), (0, 0));
    }

    #[test]
    fn requests_round_trip_as_json() {
        let r = Request::Release {
            tenant: "acme".into(),
            id: 7,
            to: Some("floor2".into()),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"release","tenant":"acme","id":7,"to":"floor2"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"job","tenant":"a","id":1,"x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format-disk"}"#).is_err());
    }
}
