//! What each tenant's devices can print, kept up to date: `ipp://` devices
//! are asked with Get-Printer-Attributes (`all` and `media-col-database`)
//! at start, on every reload and every `capabilities-refresh`; socket and
//! lpd devices say what their config says. The answers are kept on disk
//! (`<data-dir>/capabilities/<tenant>/`, one 0600 file per device), so a
//! device that is down at start keeps its last known capabilities.
//!
//! The IPP printer of an input asks [`Capabilities::printer`] for the
//! intersection over the devices its workflow forwards to ([`super::mirror`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::device::connect;
use super::mirror;
use crate::config::ids::TenantId;
use crate::config::{Device, DeviceUri, Step, Tenant, TlsVerify};
use crate::snapshot::Snapshot;
use crate::wire::ipp::{self as codec, group, op, Attribute, Group, Message, Value};

/// Longest a device may take to answer one request for its capabilities.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Most devices asked at the same time.
pub const MAX_CONCURRENT_FETCHES: usize = 16;

/// Largest capabilities answer read from a device (ippeveprinter's is about 9 KiB).
pub const MAX_CAPABILITIES_RESPONSE: usize = 1 << 20;

/// Folder under the data dir that keeps the answers.
pub const CACHE_DIR: &str = "capabilities";

/// What [`Capabilities::device_report`] shows of a device's answer.
pub const REPORTED_ATTRIBUTES: &[&str] = &[
    "printer-make-and-model",
    "printer-state",
    "printer-state-reasons",
    "printer-state-message",
    "document-format-supported",
    "sides-supported",
    "marker-names",
    "marker-levels",
];

/// Make and model a printer shows when no device names one.
pub const GENERIC_MAKE_AND_MODEL: &str = "printroute routing queue";

/// A device's last known answer.
struct Known {
    uri: DeviceUri,
    printer: Arc<Vec<Attribute>>,
}

/// What an IPP printer of printroute presents: its devices' capabilities.
#[derive(Debug)]
pub struct Printer {
    /// Capability attributes, intersected over the pool.
    pub attributes: Vec<Attribute>,
    /// `printer-make-and-model`.
    pub make_and_model: String,
    /// `printer-state` and `printer-state-reasons` of the pool, as the devices last said.
    pub state: (i32, Vec<String>),
    /// The one IPP device behind the printer (Identify-Printer goes there).
    pub single_ipp: Option<(DeviceUri, TlsVerify)>,
}

/// Printers computed since the last change, by tenant and workflow (none:
/// the workflow mirrors no device).
type Computed = HashMap<(TenantId, String), Option<Arc<Printer>>>;

/// The capabilities of every tenant's devices; one per daemon.
pub struct Capabilities {
    dir: Option<PathBuf>,
    known: Mutex<HashMap<(TenantId, String), Known>>,
    printers: Mutex<Computed>,
    reloaded: Notify,
}

impl Capabilities {
    /// Capabilities kept under `data_dir` (none: in memory only).
    pub fn new(data_dir: Option<&Path>) -> Capabilities {
        Capabilities {
            dir: data_dir.map(|d| d.join(CACHE_DIR)),
            known: Mutex::new(HashMap::new()),
            printers: Mutex::new(HashMap::new()),
            reloaded: Notify::new(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, String), Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn computed(&self) -> std::sync::MutexGuard<'_, Computed> {
        self.printers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What an IPP device of `tenant` last said about itself (its kept
    /// Get-Printer-Attributes answer), for its admins: the attributes of
    /// [`REPORTED_ATTRIBUTES`] it gave, as text. `None` for a device that
    /// has never answered (or is not an IPP device).
    pub fn device_report(
        &self,
        tenant: &TenantId,
        device: &str,
    ) -> Option<Vec<(&'static str, Vec<String>)>> {
        let printer = self
            .known()
            .get(&(tenant.clone(), device.to_owned()))?
            .printer
            .clone();
        Some(
            REPORTED_ATTRIBUTES
                .iter()
                .filter_map(|&name| {
                    let a = printer.iter().find(|a| a.name == name)?;
                    let values = a
                        .values
                        .iter()
                        .map(|v| match (v.as_str(), v.as_int()) {
                            (Some(s), _) => super::device::device_text(s),
                            (None, Some(n)) => n.to_string(),
                            (None, None) => "?".to_owned(),
                        })
                        .collect();
                    Some((name, values))
                })
                .collect(),
        )
    }

    /// Reads the kept answers of the config's `ipp://` devices (a device that
    /// is down at start keeps its last known capabilities).
    pub fn load(&self, snapshot: &Snapshot) {
        let Some(dir) = &self.dir else { return };
        let mut loaded = 0;
        for t in &snapshot.config.tenants {
            for d in t.devices.values().filter(|d| is_ipp(d)) {
                let path = cache_file(dir, &t.id, d);
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                match codec::decode(&bytes, codec::RESPONSE_LIMITS) {
                    Ok((m, _)) => {
                        let attrs = m
                            .groups
                            .into_iter()
                            .find(|g| g.tag == group::PRINTER)
                            .map(|g| g.attributes)
                            .unwrap_or_default();
                        self.known().insert(
                            (t.id.clone(), d.name.clone()),
                            Known {
                                uri: d.uri.clone(),
                                printer: Arc::new(attrs),
                            },
                        );
                        loaded += 1;
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %t.id, device = %d.name, file = %path.display(), error = %e, "kept capabilities unreadable; asking the device again");
                    }
                }
            }
        }
        if loaded > 0 {
            tracing::info!(devices = loaded, "kept device capabilities loaded");
        }
        self.computed().clear();
    }

    /// Says a new snapshot is in force: the printers are computed again and
    /// every IPP device is asked now.
    pub fn reloaded(&self) {
        self.computed().clear();
        self.reloaded.notify_one();
    }

    /// Asks every IPP device now, then every `capabilities-refresh` and on
    /// every reload, until `stop`.
    pub async fn run(self: Arc<Self>, snapshot: Arc<ArcSwap<Snapshot>>, stop: CancellationToken) {
        loop {
            let s = snapshot.load_full();
            let every = s.config.global.capabilities_refresh;
            tokio::select! {
                _ = self.refresh(&s) => {}
                _ = stop.cancelled() => return,
            }
            drop(s);
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.reloaded.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Asks every `ipp://` device of every tenant once.
    pub async fn refresh(&self, snapshot: &Snapshot) {
        let gate = Arc::new(Semaphore::new(MAX_CONCURRENT_FETCHES));
        let mut tasks = tokio::task::JoinSet::new();
        for t in &snapshot.config.tenants {
            for d in t.devices.values().filter(|d| is_ipp(d)) {
                let (tenant, device, gate) = (t.id.clone(), d.clone(), gate.clone());
                tasks.spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    let r =
                        tokio::time::timeout(FETCH_TIMEOUT, fetch(&device.uri, &device.tls_verify))
                            .await;
                    (tenant, device, r)
                });
            }
        }
        let mut changed = false;
        while let Some(done) = tasks.join_next().await {
            let Ok((tenant, device, r)) = done else {
                continue;
            };
            match r {
                Ok(Ok(attrs)) => {
                    self.keep(&tenant, &device, &attrs).await;
                    self.known().insert(
                        (tenant, device.name.clone()),
                        Known {
                            uri: device.uri.clone(),
                            printer: Arc::new(attrs),
                        },
                    );
                    changed = true;
                }
                Ok(Err(e)) => {
                    tracing::info!(%tenant, device = %device.name, error = %e, "cannot ask the device what it prints; its last known capabilities stay");
                }
                Err(_) => {
                    tracing::info!(%tenant, device = %device.name, "the device did not say what it prints in time; its last known capabilities stay");
                }
            }
        }
        if changed {
            self.computed().clear();
        }
    }

    /// Writes a device's answer to its file (0600, in a 0700 folder).
    async fn keep(&self, tenant: &TenantId, device: &Device, attrs: &[Attribute]) {
        let Some(dir) = &self.dir else { return };
        let path = cache_file(dir, tenant, device);
        let mut g = Group::new(group::PRINTER);
        g.attributes = attrs.to_vec();
        let bytes = codec::encode(&Message {
            version: (2, 0),
            code: 0,
            request_id: 1,
            groups: vec![g],
        });
        let r = tokio::task::spawn_blocking(move || write_private(&path, &bytes)).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(%tenant, device = %device.name, error = %e, "cannot keep the device's capabilities on disk");
        }
    }

    /// What the IPP printer of a tenant's workflow presents: none when the
    /// workflow forwards nowhere, or no device of it is known yet.
    pub fn printer(&self, tenant: &Tenant, workflow: &str) -> Option<Arc<Printer>> {
        let key = (tenant.id.clone(), workflow.to_owned());
        if let Some(p) = self.computed().get(&key) {
            return p.clone();
        }
        let p = self.compute(tenant, workflow).map(Arc::new);
        self.computed().insert(key, p.clone());
        p
    }

    fn compute(&self, tenant: &Tenant, workflow: &str) -> Option<Printer> {
        let w = tenant.workflows.get(workflow)?;
        let mut names: Vec<&String> = Vec::new();
        for s in &w.steps {
            if let Step::Forward { devices, .. } = s {
                for d in devices {
                    if !names.contains(&d) {
                        names.push(d);
                    }
                }
            }
        }
        let mut sets = Vec::new();
        let mut states = Vec::new();
        let mut makes = Vec::new();
        let known = self.known();
        for n in &names {
            let d = tenant.devices.get(*n)?;
            if is_ipp(d) {
                let Some(k) = known
                    .get(&(tenant.id.clone(), d.name.clone()))
                    .filter(|k| k.uri == d.uri)
                else {
                    // Not known yet: the pool is what the known devices print.
                    continue;
                };
                sets.push(mirror::capabilities_of(&k.printer));
                let get = |n: &str| k.printer.iter().find(|a| a.name == n);
                states.push((
                    get("printer-state")
                        .and_then(|a| a.values.first()?.as_int())
                        .unwrap_or(3),
                    get("printer-state-reasons")
                        .map(|a| {
                            a.values
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                ));
                makes.push(d.make_and_model.clone().or_else(|| {
                    get("printer-make-and-model")
                        .and_then(|a| a.values.first()?.as_str().map(str::to_owned))
                }));
            } else {
                sets.push(mirror::declared(&d.declared));
                states.push((3, Vec::new()));
                makes.push(d.make_and_model.clone());
            }
        }
        drop(known);
        if sets.is_empty() {
            return None;
        }
        let make_and_model = match makes.as_slice() {
            [Some(m)] => m.clone(),
            all if all.iter().all(|m| m.is_some() && *m == all[0]) => {
                all[0].clone().unwrap_or_default()
            }
            _ => GENERIC_MAKE_AND_MODEL.to_owned(),
        };
        let single_ipp = match names.as_slice() {
            [n] => tenant
                .devices
                .get(*n)
                .filter(|d| is_ipp(d))
                .map(|d| (d.uri.clone(), d.tls_verify.clone())),
            _ => None,
        };
        Some(Printer {
            attributes: mirror::intersect(&sets),
            make_and_model,
            state: mirror::pool_state(&states),
            single_ipp,
        })
    }
}

/// Deletes the kept capabilities of a purged tenant's devices.
pub fn forget_tenant(data_dir: &Path, tenant: &TenantId) {
    let dir = data_dir.join(CACHE_DIR).join(tenant.to_string());
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(%tenant, dir = %dir.display(), error = %e, "cannot delete the tenant's kept device capabilities")
        }
    }
}

fn is_ipp(d: &Device) -> bool {
    matches!(d.uri, DeviceUri::Ipp { .. })
}

/// The file of a device's answer: named from its name and URI, so that a
/// device given another address is asked afresh.
fn cache_file(dir: &Path, tenant: &TenantId, d: &Device) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(d.name.as_bytes());
    h.update(b"\0");
    h.update(uri_text(&d.uri).as_bytes());
    let name: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(tenant.to_string()).join(format!("{name}.ipp"))
}

fn uri_text(uri: &DeviceUri) -> String {
    match uri {
        DeviceUri::Ipp {
            tls,
            host,
            port,
            path,
        } => format!("ipp{}://{host}:{port}{path}", if *tls { "s" } else { "" }),
        other => format!("{other:?}"),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// Where an `ipp://` device is reached, and how it is named.
struct Address {
    tls: bool,
    host: String,
    port: u16,
    /// The Host header.
    authority: String,
    /// The HTTP resource.
    path: String,
    /// `printer-uri` of requests.
    printer_uri: String,
}

fn address(uri: &DeviceUri) -> Option<Address> {
    let DeviceUri::Ipp {
        tls,
        host,
        port,
        path,
    } = uri
    else {
        return None;
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path.clone()
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Some(Address {
        tls: *tls,
        host: host.clone(),
        port: *port,
        printer_uri: format!("ipp{}://{authority}{path}", if *tls { "s" } else { "" }),
        authority,
        path,
    })
}

/// One IPP request to a device, its answer decoded.
async fn ask(
    uri: &DeviceUri,
    verify: &TlsVerify,
    code: u16,
    extra: Vec<Attribute>,
) -> std::io::Result<Message> {
    let Address {
        tls,
        host,
        port,
        authority,
        path,
        printer_uri,
    } = address(uri).ok_or_else(|| std::io::Error::other("not an ipp:// device"))?;
    let mut g = Group::new(group::OPERATION);
    g.push(Attribute::new(
        "attributes-charset",
        Value::charset("utf-8"),
    ));
    g.push(Attribute::new(
        "attributes-natural-language",
        Value::language("en"),
    ));
    g.push(Attribute::new("printer-uri", Value::uri(&printer_uri)));
    g.push(Attribute::new(
        "requesting-user-name",
        Value::name("printroute"),
    ));
    g.attributes.extend(extra);
    let body = codec::encode(&Message {
        version: (2, 0),
        code,
        request_id: 1,
        groups: vec![g],
    });
    let stream = connect(&host, port)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (mut sender, conn_task) = if tls {
        let stream = super::tls::handshake(stream, &host, verify)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        (sender, tokio::spawn(async move { drop(conn.await) }))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        (sender, tokio::spawn(async move { drop(conn.await) }))
    };
    let result = async {
        let req = Request::post(path.as_str())
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/ipp")
            .body(Full::new(Bytes::from(body)))
            .map_err(std::io::Error::other)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        if !resp.status().is_success() {
            return Err(std::io::Error::other(format!("HTTP {}", resp.status())));
        }
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_CAPABILITIES_RESPONSE)
            .collect()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .to_bytes();
        codec::decode(&bytes, codec::RESPONSE_LIMITS)
            .map(|(m, _)| m)
            .map_err(|e| std::io::Error::other(format!("bad IPP answer: {e}")))
    }
    .await;
    conn_task.abort();
    result
}

/// Get-Printer-Attributes (`all`, `media-col-database`) of a device: its printer group.
pub async fn fetch(uri: &DeviceUri, verify: &TlsVerify) -> std::io::Result<Vec<Attribute>> {
    let m = ask(
        uri,
        verify,
        op::GET_PRINTER_ATTRIBUTES,
        vec![Attribute::many(
            "requested-attributes",
            vec![Value::keyword("all"), Value::keyword("media-col-database")],
        )],
    )
    .await?;
    if m.code >= 0x0100 {
        return Err(std::io::Error::other(format!(
            "IPP status 0x{:04x}",
            m.code
        )));
    }
    Ok(m.groups
        .into_iter()
        .filter(|g| g.tag == group::PRINTER)
        .flat_map(|g| g.attributes)
        .collect())
}

/// Identify-Printer (PWG 5100.13 section 5.2) passed on to a device with
/// the client's `identify-actions` and `message`; returns the device's status.
pub async fn identify(
    uri: &DeviceUri,
    verify: &TlsVerify,
    extra: Vec<Attribute>,
) -> std::io::Result<u16> {
    let m = tokio::time::timeout(FETCH_TIMEOUT, ask(uri, verify, op::IDENTIFY_PRINTER, extra))
        .await
        .map_err(|_| std::io::Error::other("Identify-Printer timed out"))??;
    Ok(m.code)
}
