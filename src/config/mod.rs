//! The TOML config file: its model, and validation into a [`Config`].
//!
//! Loading parses and validates everything before anything is used, and
//! reports every problem at once, each naming the file, the key and, for
//! conflicts, both parties. A [`Config`] that exists is valid.
//!
//! Holds the model, loading, validation, [`units`] and [`ids`], and owns
//! every default it names. Uses only routing and wire (their limits).

pub mod ids;
pub mod units;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::ids::{ListenerName, TenantId};
use crate::config::units::{parse_duration, parse_rate, parse_size, Rate, RateUnit};
use crate::routing::{canonical, find_overlaps, RoutingTable};

/// Default of `global.min-free-space`: bytes of the spool's file system that
/// documents may not take, so the database always has room to commit.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 256 << 20;

/// Default of `global.store-failure-restart-after`: long enough for space
/// freed by hand or a log rotation to let commits succeed again, short
/// enough that a store that cannot heal (sled failed) is restarted soon.
pub const DEFAULT_STORE_FAILURE_RESTART_AFTER: Duration = Duration::from_secs(300);

/// Default of `device-timeout`: a device that takes no bytes for this long
/// has stalled, and the transfer fails.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the documents of a commit group are made durable before their records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpoolSync {
    /// Each receiving connection syncs its own document (`fdatasync`, many at
    /// once from the blocking pool, which the file system merges into few
    /// journal commits), and the flusher syncs each touched spool folder once
    /// per group. Unaffected by other writers on the same file system.
    #[default]
    Files,
    /// One `syncfs` of the spool's file system per group: the fewest syncs
    /// when the data dir has a file system of its own, but it also flushes
    /// whatever else is dirty on that file system.
    Filesystem,
}

/// Exit code for a bad config file (sysexits.h `EX_CONFIG`).
pub const EX_CONFIG: i32 = 78;

pub use crate::wire::lpd::MAX_QUEUE_NAME_LEN;

/// Default grace period in-flight receives get on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Default of `global.capabilities-refresh`: how often the IPP printers of
/// printroute ask their `ipp://` devices what they can print.
pub const DEFAULT_CAPABILITIES_REFRESH: Duration = Duration::from_secs(300);

/// Shortest `global.capabilities-refresh`: a device is not asked more often.
pub const MIN_CAPABILITIES_REFRESH: Duration = Duration::from_secs(5);

/// What a `socket://` or `lpd://` device without `formats` is taken to print:
/// it cannot be asked, and PostScript and PCL are what printers behind a
/// raw or LPD port interpret nearly everywhere; `application/octet-stream`
/// lets a client send bytes whose format printroute recognises as one of
/// those (or does not recognise at all) unchanged.
pub const DEFAULT_DEVICE_FORMATS: &[&str] = &[
    "application/octet-stream",
    "application/postscript",
    "application/vnd.hp-pcl",
];

/// What a `socket://` or `lpd://` device without `media` is taken to print on.
pub const DEFAULT_DEVICE_MEDIA: &[&str] = &["iso_a4_210x297mm", "na_letter_8.5x11in"];

/// What a `socket://` or `lpd://` device without `sides` is taken to print.
pub const DEFAULT_DEVICE_SIDES: &[&str] = &["one-sided"];

/// `sides` values a device may list (RFC 8011 section 5.2.8).
pub const SIDES: &[&str] = &["one-sided", "two-sided-long-edge", "two-sided-short-edge"];

/// Default sled page cache size (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 << 20;

/// Default `max-connection-rate`: new connections per second and tenant.
/// A print server opens one or a few per job; a thousand jobs a minute fit.
pub const DEFAULT_MAX_CONNECTION_RATE: Rate = Rate {
    count: 50,
    per: RateUnit::Second,
};

/// Smallest `max-bytes-in-flight`: one read of a receive (the RAW read
/// buffer), so that a receive that holds nothing can always take a read.
pub const MIN_BYTES_IN_FLIGHT: u64 = 256 << 10;

/// The protocol a shared listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// RAW socket printing (port 9100 style).
    Raw,
    /// RFC 1179 line printer daemon protocol.
    Lpd,
    /// IPP over HTTP/1.1 (RFC 8011).
    Ipp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Raw => "raw",
            Protocol::Lpd => "lpd",
            Protocol::Ipp => "ipp",
        })
    }
}

// ---------------------------------------------------------------------------
// The file as written (serde model). Values whose errors should be reported
// together (ranges, addresses, sizes, durations, URIs) stay text here and are
// parsed by `validate`.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    global: RawGlobal,
    #[serde(default)]
    listener: Vec<RawListener>,
    #[serde(default)]
    tenant: BTreeMap<String, RawTenant>,
    #[serde(default)]
    node: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNode {
    name: String,
    address: String,
    data_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    metrics: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGlobal {
    data_dir: PathBuf,
    control_socket: Option<PathBuf>,
    metrics: Option<String>,
    #[serde(default)]
    admin_groups: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    shutdown_grace: Option<String>,
    cache_capacity: Option<SizeText>,
    spool_sync: Option<SpoolSync>,
    min_free_space: Option<SizeText>,
    store_failure_restart_after: Option<String>,
    group_readable: Option<bool>,
    capabilities_refresh: Option<String>,
    tenants_dir: Option<PathBuf>,
    web: Option<RawWeb>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWeb {
    bind: String,
    tls: Option<TlsFiles>,
    pam_service: Option<String>,
    release_from: Option<ReleaseFrom>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    max_job_size: Option<SizeText>,
    spool_quota: Option<SizeText>,
    max_connections: Option<u32>,
    max_receives: Option<u32>,
    max_bytes_in_flight: Option<SizeText>,
    max_connection_rate: Option<String>,
    idle_timeout: Option<String>,
    delivery_timeout: Option<String>,
    retention: Option<String>,
    device_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawListener {
    name: String,
    protocol: Protocol,
    bind: Vec<String>,
    #[serde(default)]
    proxy_protocol: bool,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    tls: Option<TlsFiles>,
    #[serde(default)]
    tls_required: bool,
}

/// A certificate chain and its private key, PEM files (`tls = { cert, key }`).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFiles {
    /// The certificate chain, server certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTenant {
    name: Option<String>,
    node: Option<String>,
    #[serde(default)]
    ranges: Vec<RangeText>,
    #[serde(default)]
    admins: RawAdmins,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    device: BTreeMap<String, RawDevice>,
    #[serde(default)]
    workflow: BTreeMap<String, RawWorkflow>,
    #[serde(default)]
    input: Vec<RawInput>,
}

/// A range as written: parsed while the file is read (a config holds up to
/// millions, and a `String` for each would double the peak memory of a
/// load), or kept as text when it is not a prefix, for `validate` to report
/// with the others.
enum RangeText {
    Net(IpNet),
    Text(String),
}

impl<'de> Deserialize<'de> for RangeText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RangeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a range such as \"10.1.0.0/16\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RangeText, E> {
                Ok(match v.parse::<IpNet>() {
                    Ok(n) if n.trunc() == n => RangeText::Net(n),
                    _ => RangeText::Text(v.to_owned()),
                })
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAdmins {
    #[serde(default)]
    unix_users: Vec<String>,
    #[serde(default)]
    unix_groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDevice {
    uri: String,
    tls_fingerprint: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_verify: Option<bool>,
    make_and_model: Option<String>,
    formats: Option<Vec<String>>,
    media: Option<Vec<String>>,
    sides: Option<Vec<String>>,
    color: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWorkflow {
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case", deny_unknown_fields)]
enum RawStep {
    Hold {
        #[serde(rename = "expire-after")]
        expire_after: Option<String>,
    },
    Forward {
        devices: Vec<String>,
        fallback: Option<Fallback>,
    },
    Store {
        folder: PathBuf,
        #[serde(rename = "follow-symlink")]
        follow_symlink: Option<bool>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawInput {
    listener: String,
    queue: Option<String>,
    workflow: String,
}

// ---------------------------------------------------------------------------
// The validated model.

/// A validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Global settings.
    pub global: Global,
    /// Shared listeners.
    pub listeners: Vec<Listener>,
    /// Tenants, sorted by id. On a node ([`Config::for_node`]): only the
    /// node's own tenants.
    pub tenants: Vec<Tenant>,
    /// Nodes of a scale-out installation (`[[node]]`); empty for one machine.
    pub nodes: Vec<Node>,
    /// The node this config was narrowed to, if any.
    pub node: Option<String>,
    /// The tenants read from a file of their own in `tenants-dir`, with it.
    pub tenant_files: BTreeMap<TenantId, PathBuf>,
    /// The data folder given on the command line in place of the file's
    /// (see [`Config::with_data_dir`]); reload applies it again.
    pub data_dir_override: Option<PathBuf>,
    /// Things worth an admin's look that do not stop the config.
    pub warnings: Vec<String>,
    /// The routing table of the tenants' ranges, built once by validation.
    routing: RoutingTable,
}

/// `[global]`.
#[derive(Debug, Clone)]
pub struct Global {
    /// Where the sled database and the spool live.
    pub data_dir: PathBuf,
    /// The admin control socket.
    pub control_socket: Option<PathBuf>,
    /// Prometheus endpoint address.
    pub metrics: Option<SocketAddr>,
    /// Unix groups of global admins.
    pub admin_groups: Vec<String>,
    /// Default limits of every tenant.
    pub limits: Limits,
    /// How long in-flight receives may run on after a stop signal.
    pub shutdown_grace: Duration,
    /// sled page cache size in bytes.
    pub cache_capacity: u64,
    /// How documents are made durable before their records (`spool-sync`).
    pub spool_sync: SpoolSync,
    /// Bytes of the spool's file system documents may not take (`min-free-space`).
    pub min_free_space: u64,
    /// How long commits may keep failing before the daemon stops pinging
    /// the systemd watchdog and exits non-zero, so that systemd restarts it
    /// (`store-failure-restart-after`).
    pub store_failure_restart_after: Duration,
    /// Folders and files the daemon creates are readable by its group
    /// (0750/0640) rather than by its user only (0700/0600, the default),
    /// whatever the umask (`group-readable`).
    pub group_readable: bool,
    /// How often the capabilities of `ipp://` devices are fetched again
    /// (`capabilities-refresh`, default [`DEFAULT_CAPABILITIES_REFRESH`]);
    /// they are also fetched at start and on every reload.
    pub capabilities_refresh: Duration,
    /// `tenants-dir`: a folder of `<id>.toml` files, one tenant each,
    /// read as part of this config.
    pub tenants_dir: Option<PathBuf>,
    /// `[global.web]`: the admin API and portal; none: off.
    pub web: Option<Web>,
}

/// `[global.web]`: where the admin API (`/api/v1`) and the portal listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    /// The address it binds (`bind`).
    pub bind: SocketAddr,
    /// HTTPS with this certificate (`tls = { cert, key }`); required unless
    /// `bind` is a loopback address.
    pub tls: Option<TlsFiles>,
    /// The PAM service portal sign-ins with a password are checked by
    /// (`pam-service`, default [`DEFAULT_PAM_SERVICE`]).
    pub pam_service: String,
    /// Who may open a tenant's PIN release page (`release-from`).
    pub release_from: ReleaseFrom,
}

/// Default of `global.web.pam-service`.
pub const DEFAULT_PAM_SERVICE: &str = "printroute";

/// Who may open a tenant's PIN release page (`global.web.release-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseFrom {
    /// Only clients whose address routes to the tenant (the default).
    #[default]
    TenantRanges,
    /// Anyone holding one of the tenant's tokens, from anywhere; the
    /// tenant's own ranges need none.
    Token,
}

/// Per-tenant limits (global defaults, overridden per tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest document accepted.
    pub max_job_size: u64,
    /// Spool bytes a tenant may hold.
    pub spool_quota: u64,
    /// Concurrent connections per tenant.
    pub max_connections: u32,
    /// Jobs a tenant may be receiving at once, over all listeners
    /// (`max-receives`). One more waits up to
    /// [`crate::snapshot::RECEIVE_SLOT_WAIT`] for a free slot, then gets its
    /// protocol's busy answer (RAW reset, LPD negative acknowledgement, IPP
    /// `server-error-busy`).
    pub max_receives: u32,
    /// Bytes of a tenant's documents received but not yet durable
    /// (`max-bytes-in-flight`): backpressure, not refusal. A receive that
    /// would pass it stops reading its socket and syncs what it holds
    /// before it reads on, so one tenant's unsynced data, which every
    /// commit of every tenant may have to wait for, stays bounded.
    pub max_bytes_in_flight: u64,
    /// New connections a tenant may open (`max-connection-rate`, e.g.
    /// "20/s"): enforced in the kernel by the nftables ruleset that
    /// `printroute export nftables` writes (a meter per tenant over its
    /// ranges), before a flood reaches the listeners' shared accept queue.
    pub max_connection_rate: Rate,
    /// A peer silent this long is dropped.
    pub idle_timeout: Duration,
    /// A job no device took by then is aborted (or held, with `fallback = "hold"`).
    pub delivery_timeout: Duration,
    /// Finished jobs' records are kept this long.
    pub retention: Duration,
    /// A device that takes no bytes of a job for this long has stalled:
    /// the transfer fails and the job moves on to the next device of its
    /// pool (`device-timeout`, default 60s).
    pub device_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_job_size: 2 << 30,
            spool_quota: 50 << 30,
            max_connections: 256,
            max_receives: 64,
            max_bytes_in_flight: 64 << 20,
            max_connection_rate: DEFAULT_MAX_CONNECTION_RATE,
            idle_timeout: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(3600),
            retention: Duration::from_secs(30 * 86400),
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
        }
    }
}

/// A shared listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its name, used by tenants' inputs.
    pub name: ListenerName,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// The addresses it binds.
    pub bind: Vec<SocketAddr>,
    /// `proxy-protocol = true`: every connection must open with a PROXY
    /// header (v1 or v2) from one of these balancer ranges
    /// (`trusted-proxies`), and is routed by the client address it carries.
    pub proxy: Option<Vec<IpNet>>,
    /// IPP only: serve `ipps` with this certificate (read again on reload),
    /// on the same port as plain `ipp` unless `tls_required`.
    pub tls: Option<TlsFiles>,
    /// With `tls`: refuse connections that do not open with TLS.
    pub tls_required: bool,
}

impl Listener {
    /// Its distinct ports, lowest first (a node binds each on its address).
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.bind.iter().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Whether `ip` may send a PROXY header to this listener.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.proxy
            .as_ref()
            .is_some_and(|nets| nets.iter().any(|n| n.contains(&ip)))
    }
}

/// A node of a scale-out installation: one printroute behind a TCP load
/// balancer, serving the tenants that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name, used by tenants' `node` key and `serve --node`.
    pub name: String,
    /// The address the balancer reaches it at; it binds each listener's
    /// port(s) on it.
    pub address: IpAddr,
    /// Its own data folder, when nodes share a machine.
    pub data_dir: Option<PathBuf>,
    /// Its own control socket, when nodes share a machine.
    pub control_socket: Option<PathBuf>,
    /// Its own metrics address.
    pub metrics: Option<SocketAddr>,
}

/// A tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id (`[tenant.<id>]`).
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// The node that serves it (`node`), in a scale-out installation.
    pub node: Option<String>,
    /// The address ranges it owns.
    pub ranges: Vec<IpNet>,
    /// Unix users and groups that administer it.
    pub admins: Admins,
    /// Its effective limits.
    pub limits: Limits,
    /// Its printers, by name.
    pub devices: BTreeMap<String, Device>,
    /// Its workflows, by name.
    pub workflows: BTreeMap<String, Workflow>,
    /// Its bindings of shared listeners to workflows.
    pub inputs: Vec<Input>,
}

/// A tenant's admins.
#[derive(Debug, Clone, Default)]
pub struct Admins {
    /// Unix user names.
    pub unix_users: Vec<String>,
    /// Unix group names.
    pub unix_groups: Vec<String>,
}

/// A printer of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name within the tenant.
    pub name: String,
    /// Where and how to reach it.
    pub uri: DeviceUri,
    /// What IPP clients are told it is (`make-and-model`); none: what the
    /// device says (IPP), or a generic name.
    pub make_and_model: Option<String>,
    /// What a device that cannot be asked (socket, lpd) prints; IPP devices
    /// are asked instead (the keys are refused on them).
    pub declared: Declared,
    /// How an `ipps://` device's certificate is checked.
    pub tls_verify: TlsVerify,
}

/// How the certificate of an `ipps://` device is checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsVerify {
    /// Against the system's trusted roots (the default).
    #[default]
    SystemRoots,
    /// Against the CA certificates of this PEM file (`tls-ca`).
    Ca(PathBuf),
    /// The device's own certificate has this SHA-256 (`tls-fingerprint =
    /// "sha256:…"`): for printers with self-signed certificates.
    Fingerprint([u8; 32]),
    /// Not checked (`tls-verify = false`).
    Off,
}

/// Parses `sha256:` and 64 hex digits (colons between bytes allowed).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s
        .strip_prefix("sha256:")?
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The capabilities a `socket://` or `lpd://` device is configured with;
/// each key's default is the conservative [`DEFAULT_DEVICE_FORMATS`],
/// [`DEFAULT_DEVICE_MEDIA`], [`DEFAULT_DEVICE_SIDES`], monochrome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// MIME types (`formats`).
    pub formats: Vec<String>,
    /// PWG 5101.1 self-describing media names (`media`).
    pub media: Vec<String>,
    /// `sides` keywords.
    pub sides: Vec<String>,
    /// Prints in colour (`color`).
    pub color: bool,
}

impl Default for Declared {
    fn default() -> Declared {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Declared {
            formats: own(DEFAULT_DEVICE_FORMATS),
            media: own(DEFAULT_DEVICE_MEDIA),
            sides: own(DEFAULT_DEVICE_SIDES),
            color: false,
        }
    }
}

/// Width and height, in hundredths of millimetres, of a PWG 5101.1
/// self-describing media name (`iso_a4_210x297mm`, `na_letter_8.5x11in`).
pub fn media_dimensions(name: &str) -> Option<(i32, i32)> {
    let size = name.rsplit('_').next()?;
    let (dims, per_unit) = if let Some(d) = size.strip_suffix("mm") {
        (d, 100.0)
    } else if let Some(d) = size.strip_suffix("in") {
        (d, 2540.0)
    } else {
        return None;
    };
    let (w, h) = dims.split_once('x')?;
    let dim = |t: &str| -> Option<i32> {
        let v: f64 = t.parse().ok()?;
        let v = (v * per_unit).round();
        (v > 0.0 && v < f64::from(i32::MAX)).then_some(v as i32)
    };
    // Two underscores at least: class_name_size.
    (name.split('_').count() >= 3).then_some(())?;
    Some((dim(w)?, dim(h)?))
}

/// A device address, parsed from its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUri {
    /// `socket://host[:port]` (default port 9100).
    Socket {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `lpd://host[:port]/queue[?reserved-port=true]` (default port 515).
    Lpd {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Remote queue name.
        queue: String,
        /// Bind a source port from 721-731 (RFC 1179 3.1).
        reserved_port: bool,
    },
    /// `ipp://host[:port]/path` or `ipps://…` (default port 631).
    Ipp {
        /// True for `ipps`.
        tls: bool,
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Resource path, e.g. `/ipp/print`.
        path: String,
    },
}

impl DeviceUri {
    /// Parses a device URI of a supported scheme.
    pub fn parse(uri: &str) -> Result<DeviceUri, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| format!("{uri:?} is not a URI (write e.g. socket://10.1.2.50:9100)"))?;
        let (authority, path_query) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_query, None),
        };
        let default_port = match scheme {
            "socket" => 9100,
            "lpd" => 515,
            "ipp" | "ipps" => 631,
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} in {uri:?} (use socket, lpd, ipp or ipps)"
                ))
            }
        };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| format!("bad host or port in {uri:?}"))?;
        match scheme {
            "socket" => {
                if !(path.is_empty() || path == "/") || query.is_some() {
                    return Err(format!("a socket URI has no path or query: {uri:?}"));
                }
                Ok(DeviceUri::Socket { host, port })
            }
            "lpd" => {
                let queue = path.trim_start_matches('/');
                if queue.is_empty() || queue.contains('/') {
                    return Err(format!(
                        "an lpd URI names one queue, as lpd://host/queue: {uri:?}"
                    ));
                }
                let reserved_port = match query {
                    None => false,
                    Some("reserved-port=true") => true,
                    Some("reserved-port=false") => false,
                    Some(q) => {
                        return Err(format!(
                            "unknown option {q:?} in {uri:?} (known: reserved-port=true)"
                        ))
                    }
                };
                Ok(DeviceUri::Lpd {
                    host,
                    port,
                    queue: queue.to_owned(),
                    reserved_port,
                })
            }
            _ => {
                if query.is_some() {
                    return Err(format!("an ipp URI takes no query: {uri:?}"));
                }
                let path = if path.is_empty() {
                    "/ipp/print".to_owned()
                } else {
                    path.to_owned()
                };
                Ok(DeviceUri::Ipp {
                    tls: scheme == "ipps",
                    host,
                    port,
                    path,
                })
            }
        }
    }

    /// The device's host (name or literal address).
    pub fn host(&self) -> &str {
        match self {
            DeviceUri::Socket { host, .. }
            | DeviceUri::Lpd { host, .. }
            | DeviceUri::Ipp { host, .. } => host,
        }
    }

    /// The device's TCP port.
    pub fn port(&self) -> u16 {
        match self {
            DeviceUri::Socket { port, .. }
            | DeviceUri::Lpd { port, .. }
            | DeviceUri::Ipp { port, .. } => *port,
        }
    }
}

impl fmt::Display for DeviceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        match self {
            DeviceUri::Socket { host: h, port } => write!(f, "socket://{}:{port}", host(h)),
            DeviceUri::Lpd {
                host: h,
                port,
                queue,
                reserved_port,
            } => {
                write!(f, "lpd://{}:{port}/{queue}", host(h))?;
                if *reserved_port {
                    f.write_str("?reserved-port=true")?;
                }
                Ok(())
            }
            DeviceUri::Ipp {
                tls,
                host: h,
                port,
                path,
            } => {
                write!(
                    f,
                    "{}://{}:{port}{path}",
                    if *tls { "ipps" } else { "ipp" },
                    host(h)
                )
            }
        }
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return (port != 0).then(|| (h.to_owned(), port));
    }
    let (h, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    let valid = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    (valid && port != 0).then(|| (h.to_owned(), port))
}

/// A workflow: steps run in order on each job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Its name within the tenant.
    pub name: String,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// What to do when no device of a `forward` step takes a job in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// End the job aborted.
    #[default]
    Abort,
    /// Hold the job for its owner to release.
    Hold,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep the job until released, or until `expire_after` passes.
    Hold {
        /// Cancel the held job after this long (none: held until released).
        expire_after: Option<Duration>,
    },
    /// Deliver to the first healthy device of the pool.
    Forward {
        /// Device names, in order of preference.
        devices: Vec<String>,
        /// What happens when none takes the job within `delivery-timeout`.
        fallback: Fallback,
    },
    /// Write the document into a folder.
    Store {
        /// Absolute folder path.
        folder: PathBuf,
        /// The folder may be a symlink (`follow-symlink`); refused by default,
        /// since whoever can replace it could point the daemon anywhere.
        follow_symlink: bool,
    },
}

/// A tenant's binding of a shared listener (and queue) to a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The listener.
    pub listener: ListenerName,
    /// LPD queue / IPP printer name; none is the listener's default queue.
    pub queue: Option<String>,
    /// The workflow jobs run through.
    pub workflow: String,
}

/// A config that could not be loaded: every problem found, each with its key.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong, by key.
    pub problems: Vec<Problem>,
}

/// One problem of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the key is in, when it is not the main config file (a
    /// tenant's file in `tenants-dir`).
    pub file: Option<PathBuf>,
    /// Dotted key path, e.g. `tenant.acme.ranges`.
    pub key: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let file = p.file.as_deref().unwrap_or(&self.file);
            if p.key.is_empty() {
                write!(f, "{}: {}", file.display(), p.message)?;
            } else {
                write!(f, "{}: {}: {}", file.display(), p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates a config file, with the tenants of its
    /// `tenants-dir`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &FileEdits::new())
    }

    /// Like [`Config::load`], but as if the files named in `edits` had the
    /// given text (`None`: as if absent): the config a change would make,
    /// validated before any file is written. Edits name the main file or
    /// files of `tenants-dir`.
    pub fn load_with(path: &Path, edits: &FileEdits) -> Result<Config, ConfigError> {
        let text = match edits.get(path) {
            Some(Some(t)) => t.clone(),
            _ => std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: path.to_owned(),
                problems: vec![Problem {
                    file: None,
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                }],
            })?,
        };
        Config::parse_with(path, &text, edits)
    }

    /// Parses and validates config text; `path` names it in errors and
    /// anchors relative paths (to the file's folder). A `tenants-dir` it
    /// names is read from disk.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(path, text, &FileEdits::new())
    }

    fn parse_with(path: &Path, text: &str, edits: &FileEdits) -> Result<Config, ConfigError> {
        let one = |e: toml::de::Error| ConfigError {
            file: path.to_owned(),
            problems: vec![Problem {
                file: None,
                key: String::new(),
                message: e.to_string().trim_end().to_owned(),
            }],
        };
        // Unknown keys are collected with their paths (the slow way, only
        // when there are some), so that they are reported together with
        // every other problem of the file.
        let (mut raw, mut unknown): (RawConfig, Vec<Problem>) = match parse_toml(text) {
            Ok(raw) => (raw, Vec::new()),
            Err(e) if e.message().starts_with("unknown field") => {
                parse_collecting_unknown(text).map_err(one)?
            }
            Err(e) => return Err(one(e)),
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut tenant_files = BTreeMap::new();
        if let Some(dir) = &raw.global.tenants_dir {
            let dir = if dir.is_absolute() {
                dir.clone()
            } else {
                base.join(dir)
            };
            let (files, mut problems) = read_tenants_dir(&dir, edits);
            unknown.append(&mut problems);
            for (id, file, t) in files {
                if raw.tenant.contains_key(&id) {
                    unknown.push(Problem {
                        file: Some(file.clone()),
                        key: format!("tenant.{id}"),
                        message: format!(
                            "tenant {id} is defined both here and in {}; keep it in one place",
                            path.display()
                        ),
                    });
                    continue;
                }
                raw.tenant.insert(id.clone(), t);
                tenant_files.insert(id, file);
            }
        }
        let mut v = Validator {
            base,
            tenant_bases: tenant_files
                .iter()
                .map(|(id, f): (&String, &PathBuf)| {
                    (
                        id.clone(),
                        f.parent().map(Path::to_path_buf).unwrap_or_default(),
                    )
                })
                .collect(),
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let mut config = v.config(path, raw);
        config.tenant_files = tenant_files
            .iter()
            .filter_map(|(id, f)| Some((TenantId::parse(id).ok()?, f.clone())))
            .collect();
        if v.problems.is_empty() && unknown.is_empty() {
            Ok(config)
        } else {
            let mut problems = unknown;
            problems.append(&mut v.problems);
            // A key of a tenant that lives in a file of its own is that file's.
            for p in &mut problems {
                if p.file.is_some() {
                    continue;
                }
                let Some(rest) = p.key.strip_prefix("tenant.") else {
                    continue;
                };
                let id = &rest[..rest.find(['.', '[']).unwrap_or(rest.len())];
                if let Some(f) = tenant_files.get(id) {
                    p.file = Some(f.clone());
                }
            }
            Err(ConfigError {
                file: path.to_owned(),
                problems,
            })
        }
    }

    /// Reads and validates a config file, narrowed to `node` if given
    /// (see [`Config::for_node`]); what `serve` and reload use.
    pub fn load_as(path: &Path, node: Option<&str>) -> Result<Config, ConfigError> {
        let config = Config::load(path)?;
        match node {
            None if !config.nodes.is_empty() => Err(ConfigError {
                file: path.to_owned(),
                problems: vec![Problem {
                file: None,
                    key: "node".into(),
                    message: format!(
                        "the config lists nodes ({}); start with --node NAME to say which one this is",
                        list(config.nodes.iter().map(|n| &n.name))
                    ),
                }],
            }),
            None => Ok(config),
            Some(n) => config.for_node(n).map_err(|message| ConfigError {
                file: path.to_owned(),
                problems: vec![Problem {
                file: None,
                    key: "node".into(),
                    message,
                }],
            }),
        }
    }

    /// The config with `dir` as its data folder (`serve --data-dir`,
    /// `PRINTROUTE_DATA_DIR`): every path of the file inside the file's
    /// `global.data-dir` (the control socket, `store` folders) moves along,
    /// so that one config (the shipped example, say) runs beside another
    /// copy of itself, or in a test, without sharing a byte of state.
    pub fn with_data_dir(mut self, dir: &Path) -> Config {
        let old = self.global.data_dir.clone();
        let moved = |p: &mut PathBuf| {
            if let Ok(rest) = p.strip_prefix(&old) {
                *p = dir.join(rest);
            }
        };
        if let Some(c) = &mut self.global.control_socket {
            moved(c);
        }
        for t in &mut self.tenants {
            for w in t.workflows.values_mut() {
                for step in &mut w.steps {
                    if let Step::Store { folder, .. } = step {
                        moved(folder);
                    }
                }
            }
        }
        self.global.data_dir = dir.to_owned();
        self.data_dir_override = Some(dir.to_owned());
        self
    }

    /// The config one node of a scale-out installation runs: only the
    /// tenants that name the node, each listener bound on the node's
    /// address at the listener's port(s), and the node's own data folder,
    /// control socket and metrics address where it sets them.
    pub fn for_node(mut self, name: &str) -> Result<Config, String> {
        let Some(node) = self.nodes.iter().find(|n| n.name == name).cloned() else {
            return Err(if self.nodes.is_empty() {
                format!("--node {name:?}: the config lists no nodes")
            } else {
                format!(
                    "--node {name:?}: no such node (defined: {})",
                    list(self.nodes.iter().map(|n| &n.name))
                )
            });
        };
        for l in &mut self.listeners {
            l.bind = l
                .ports()
                .into_iter()
                .map(|p| SocketAddr::new(node.address, p))
                .collect();
        }
        self.tenants.retain(|t| t.node.as_deref() == Some(name));
        // Tenant indices changed: the node routes only its own tenants.
        self.routing = RoutingTable::from_ranges(
            self.tenants
                .iter()
                .enumerate()
                .flat_map(|(i, t)| t.ranges.iter().map(move |r| (r, i as u32))),
        );
        if let Some(d) = node.data_dir {
            self.global.data_dir = d;
        }
        if let Some(c) = node.control_socket {
            self.global.control_socket = Some(c);
        }
        if let Some(m) = node.metrics {
            self.global.metrics = Some(m);
        }
        self.node = Some(node.name);
        Ok(self)
    }

    /// A tenant by id.
    pub fn tenant(&self, id: &TenantId) -> Option<&Tenant> {
        self.tenants
            .binary_search_by(|t| t.id.cmp(id))
            .ok()
            .map(|i| &self.tenants[i])
    }

    /// Number of ranges over all tenants.
    pub fn range_count(&self) -> usize {
        self.tenants.iter().map(|t| t.ranges.len()).sum()
    }

    /// The one-line summary `check` prints.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} tenants, {} ranges, {} listeners",
            self.tenants.len(),
            self.range_count(),
            self.listeners.len()
        );
        match &self.node {
            Some(n) => s.push_str(&format!(", node {n}")),
            None if !self.nodes.is_empty() => s.push_str(&format!(", {} nodes", self.nodes.len())),
            None => {}
        }
        s
    }

    /// The routing table of this config's ranges; tenant indices are
    /// positions in [`Config::tenants`].
    pub fn routing_table(&self) -> &RoutingTable {
        &self.routing
    }

    /// Moves the routing table out (a snapshot keeps it once, not twice);
    /// [`Config::routing_table`] is empty afterwards.
    pub(crate) fn take_routing_table(&mut self) -> RoutingTable {
        std::mem::take(&mut self.routing)
    }
}

/// A large config is parsed in pieces of about this many bytes, each cut
/// before a tenant's table, on up to [`MAX_PARSE_THREADS`] threads at once:
/// faster on several cores, and the parser's intermediate form of only a
/// few pieces is alive at a time instead of the whole file's.
pub const PARSE_PIECE_BYTES: usize = 1 << 20;

/// Most threads that parse pieces of one config at once.
pub const MAX_PARSE_THREADS: usize = 4;

/// Tenant tables of one piece of the file past the first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenantPiece {
    #[serde(default)]
    tenant: BTreeMap<String, RawTenant>,
}

/// Parses config text, in pieces when it is large (see [`PARSE_PIECE_BYTES`]).
/// Whenever the pieces do not add up to exactly what the whole file says
/// (a piece fails to parse, or a tenant's tables are spread over two
/// pieces), the whole text is parsed at once instead, which also gives
/// errors their line numbers.
fn parse_toml(text: &str) -> Result<RawConfig, toml::de::Error> {
    let pieces = split_before_tenants(text, PARSE_PIECE_BYTES);
    if pieces.len() > 1 {
        if let Some(raw) = parse_pieces(&pieces) {
            return Ok(raw);
        }
    }
    toml::from_str(text)
}

/// Most unknown keys one `check` reports; past them it stops looking.
pub const MAX_UNKNOWN_KEYS_REPORTED: usize = 50;

/// Parses `text`, taking out each unknown key the deserializer stops at and
/// trying again: returns the config without them and one problem per
/// unknown key, named by its dotted path (`tenant.globex.printers`).
fn parse_collecting_unknown(text: &str) -> Result<(RawConfig, Vec<Problem>), toml::de::Error> {
    use serde::Deserialize as _;
    let mut table = toml::de::DeTable::parse(text)?;
    let mut unknown = Vec::new();
    loop {
        let de = toml::de::Deserializer::from(table.clone());
        match RawConfig::deserialize(de) {
            Ok(raw) => return Ok((raw, unknown)),
            Err(e) if e.message().starts_with("unknown field") => {
                let span = e.span().ok_or_else(|| e.clone())?;
                let Some(key) = take_key(table.get_mut(), &span, "") else {
                    return Err(e);
                };
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let message = e.message().lines().next().unwrap_or("unknown field");
                unknown.push(Problem {
                    file: None,
                    key,
                    message: format!("{message} (line {line})"),
                });
                if unknown.len() >= MAX_UNKNOWN_KEYS_REPORTED {
                    return Ok((
                        RawConfig::deserialize(toml::de::Deserializer::from(table))
                            .map_err(|_| e)?,
                        unknown,
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes the key written at `span` from `table` (at any depth); returns
/// its dotted path, with `[i]` for the i-th table of an array.
fn take_key(
    table: &mut toml::de::DeTable<'_>,
    span: &std::ops::Range<usize>,
    prefix: &str,
) -> Option<String> {
    use toml::de::DeValue;
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    if let Some(k) = table
        .keys()
        .find(|k| k.span() == *span)
        .map(|k| k.get_ref().to_string())
    {
        table.remove(k.as_str());
        return Some(join(&k));
    }
    for (k, v) in table.iter_mut() {
        let name = join(k.get_ref());
        match v.get_mut() {
            DeValue::Table(t) => {
                if let Some(p) = take_key(t, span, &name) {
                    return Some(p);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let DeValue::Table(t) = item.get_mut() {
                        if let Some(p) = take_key(t, span, &format!("{name}[{i}]")) {
                            return Some(p);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Cuts `text` into pieces of at least `min` bytes, each cut just before a
/// line `[tenant.<id>…` whose id differs from the previous tenant header's.
fn split_before_tenants(text: &str, min: usize) -> Vec<&str> {
    const HEADER: &str = "\n[tenant.";
    let mut pieces = Vec::new();
    let (mut start, mut last_id) = (0, "");
    for (at, _) in text.match_indices(HEADER) {
        let line = at + 1;
        let rest = &text[at + HEADER.len()..];
        let id = &rest[..rest
            .find(|c: char| c == '.' || c == ']' || c.is_whitespace())
            .unwrap_or(rest.len())];
        if line - start >= min && id != last_id {
            pieces.push(&text[start..line]);
            start = line;
        }
        last_id = id;
    }
    pieces.push(&text[start..]);
    pieces
}

/// Parses the pieces on a few threads; `None` when any fails or two
/// define the same tenant.
fn parse_pieces(pieces: &[&str]) -> Option<RawConfig> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_PARSE_THREADS)
        .min(pieces.len() - 1);
    let next = AtomicUsize::new(1);
    let parse_rest = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(piece) = pieces.get(i) else {
                return Some(out);
            };
            out.push(toml::from_str::<RawTenantPiece>(piece).ok()?.tenant);
        }
    };
    let (first, rest) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(parse_rest)).collect();
        let first = toml::from_str::<RawConfig>(pieces[0]).ok();
        let rest: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("config parser thread panicked"))
            .collect();
        (first, rest)
    });
    let mut raw = first?;
    for tenants in rest {
        for (id, t) in tenants?.into_iter().flatten() {
            if raw.tenant.insert(id, t).is_some() {
                return None;
            }
        }
    }
    Some(raw)
}

/// Files of a config as a change would leave them: the new text of each
/// file, or `None` for a file that would be removed (see
/// [`Config::load_with`]).
pub type FileEdits = BTreeMap<PathBuf, Option<String>>;

/// The file name of tenant `id` in a `tenants-dir`.
pub fn tenant_file_name(id: &TenantId) -> String {
    format!("{id}.toml")
}

/// Reads every `<id>.toml` of a `tenants-dir` (names starting with a dot,
/// such as the temporary files of an atomic write, and other extensions are
/// skipped), with `edits` applied: the tenants by id, each with its file,
/// and a problem for each file that cannot be read or parsed.
fn read_tenants_dir(
    dir: &Path,
    edits: &FileEdits,
) -> (Vec<(String, PathBuf, RawTenant)>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut names: BTreeSet<PathBuf> = BTreeSet::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                names.insert(dir.join(e.file_name()));
            }
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && edits.keys().any(|p| p.parent() == Some(dir)) => {}
        Err(e) => problems.push(Problem {
            file: None,
            key: "global.tenants-dir".into(),
            message: format!("cannot read {}: {e}", dir.display()),
        }),
    }
    for (p, t) in edits {
        if p.parent() == Some(dir) {
            match t {
                Some(_) => names.insert(p.clone()),
                None => names.remove(p),
            };
        }
    }
    let mut out = Vec::new();
    for file in names {
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".toml") else {
            continue;
        };
        if name.starts_with('.') || file.is_dir() {
            continue;
        }
        let mut problem = |key: String, message: String| {
            problems.push(Problem {
                file: Some(file.clone()),
                key,
                message,
            })
        };
        if let Err(e) = TenantId::parse(stem) {
            problem(
                String::new(),
                format!("a tenant's file is named <tenant id>.toml: {e}"),
            );
            continue;
        }
        let text = match edits.get(&file) {
            Some(Some(t)) => t.clone(),
            _ => match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    problem(String::new(), format!("cannot read: {e}"));
                    continue;
                }
            },
        };
        match toml::from_str::<RawTenant>(&text) {
            Ok(t) => out.push((stem.to_owned(), file.clone(), t)),
            Err(e) => {
                let line = e
                    .span()
                    .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
                let message = e.message().lines().next().unwrap_or("bad TOML").to_owned();
                problem(
                    format!("tenant.{stem}"),
                    match line {
                        Some(l) => format!("{message} (line {l})"),
                        None => message,
                    },
                )
            }
        }
    }
    (out, problems)
}

struct Validator {
    base: PathBuf,
    /// Where relative paths of a tenant from `tenants-dir` are anchored: its file's folder.
    tenant_bases: BTreeMap<String, PathBuf>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Validator {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: None,
            key: key.into(),
            message: message.into(),
        });
    }

    fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let global = self.global(raw.global);
        let listeners = self.listeners(raw.listener);
        let nodes = self.nodes(raw.node, &listeners);
        let mut tenants = Vec::new();
        for (id, t) in raw.tenant {
            let key = format!("tenant.{id}");
            let main_base = match self.tenant_bases.get(&id) {
                Some(b) => Some(std::mem::replace(&mut self.base, b.clone())),
                None => None,
            };
            match TenantId::parse(&id) {
                Ok(tid) => tenants.push(self.tenant(&key, tid, t, &global.limits, &listeners)),
                Err(e) => self.err(key, e.to_string()),
            }
            if let Some(b) = main_base {
                self.base = b;
            }
        }
        let routing = self.cross_tenant(&tenants);
        self.tenant_nodes(&tenants, &nodes);
        Config {
            path: path.to_owned(),
            global,
            listeners,
            tenants,
            nodes,
            node: None,
            tenant_files: BTreeMap::new(),
            data_dir_override: None,
            warnings: std::mem::take(&mut self.warnings),
            routing,
        }
    }

    fn global(&mut self, g: RawGlobal) -> Global {
        let metrics = g.metrics.and_then(|m| match m.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err("global.metrics", format!("{m:?} is not an address:port"));
                None
            }
        });
        let shutdown_grace = self
            .duration("global.shutdown-grace", g.shutdown_grace.as_deref())
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let cache_capacity = self
            .size("global.cache-capacity", g.cache_capacity.as_ref())
            .unwrap_or(DEFAULT_CACHE_CAPACITY);
        let limits = self.limits("global.limits", &g.limits, &Limits::default());
        Global {
            data_dir: self.path(g.data_dir),
            control_socket: g.control_socket.map(|p| self.path(p)),
            metrics,
            admin_groups: g.admin_groups,
            limits,
            shutdown_grace,
            cache_capacity,
            spool_sync: g.spool_sync.unwrap_or_default(),
            min_free_space: self
                .size("global.min-free-space", g.min_free_space.as_ref())
                .unwrap_or(DEFAULT_MIN_FREE_SPACE),
            store_failure_restart_after: self
                .duration(
                    "global.store-failure-restart-after",
                    g.store_failure_restart_after.as_deref(),
                )
                .unwrap_or(DEFAULT_STORE_FAILURE_RESTART_AFTER),
            group_readable: g.group_readable.unwrap_or(false),
            capabilities_refresh: match self.duration(
                "global.capabilities-refresh",
                g.capabilities_refresh.as_deref(),
            ) {
                Some(d) if d < MIN_CAPABILITIES_REFRESH => {
                    self.err(
                        "global.capabilities-refresh",
                        format!("must be at least {}s", MIN_CAPABILITIES_REFRESH.as_secs()),
                    );
                    DEFAULT_CAPABILITIES_REFRESH
                }
                Some(d) => d,
                None => DEFAULT_CAPABILITIES_REFRESH,
            },
            tenants_dir: g.tenants_dir.map(|p| self.path(p)),
            web: g.web.and_then(|w| self.web(w)),
        }
    }

    fn web(&mut self, w: RawWeb) -> Option<Web> {
        let tls = w.tls.map(|t| TlsFiles {
            cert: self.path(t.cert),
            key: self.path(t.key),
        });
        let Ok(bind) = w.bind.parse::<SocketAddr>() else {
            self.err(
                "global.web.bind",
                format!("{:?} is not an address:port", w.bind),
            );
            return None;
        };
        if tls.is_none() && !bind.ip().is_loopback() {
            self.err(
                "global.web.tls",
                format!("{bind} is not a loopback address: the admin API carries tokens and passwords, so give it `tls = {{ cert, key }}` (plain HTTP is allowed only on loopback)"),
            );
        }
        let pam_service = w.pam_service.unwrap_or_else(|| DEFAULT_PAM_SERVICE.into());
        if pam_service.is_empty()
            || !pam_service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.err(
                "global.web.pam-service",
                format!("{pam_service:?} is not a PAM service name (letters, digits, - _ .)"),
            );
        }
        Some(Web {
            bind,
            tls,
            pam_service,
            release_from: w.release_from.unwrap_or_default(),
        })
    }

    /// A device's `tls-fingerprint`, `tls-ca` or `tls-verify` (one at most, ipps only).
    fn tls_verify(&mut self, key: &str, uri: &DeviceUri, d: &RawDevice) -> TlsVerify {
        let given = usize::from(d.tls_fingerprint.is_some())
            + usize::from(d.tls_ca.is_some())
            + usize::from(d.tls_verify.is_some());
        if given == 0 {
            return TlsVerify::SystemRoots;
        }
        if !matches!(uri, DeviceUri::Ipp { tls: true, .. }) {
            self.err(
                key,
                "tls-fingerprint, tls-ca and tls-verify are for ipps:// devices",
            );
            return TlsVerify::SystemRoots;
        }
        if given > 1 {
            self.err(key, "give one of tls-fingerprint, tls-ca and tls-verify");
            return TlsVerify::SystemRoots;
        }
        if let Some(f) = &d.tls_fingerprint {
            return match parse_fingerprint(f) {
                Some(fp) => TlsVerify::Fingerprint(fp),
                None => {
                    self.err(
                        format!("{key}.tls-fingerprint"),
                        "write \"sha256:\" and the 64 hex digits of the certificate's SHA-256",
                    );
                    TlsVerify::SystemRoots
                }
            };
        }
        if let Some(ca) = &d.tls_ca {
            let ca = self.path(ca.clone());
            if let Err(e) = std::fs::metadata(&ca) {
                self.err(
                    format!("{key}.tls-ca"),
                    format!("cannot read {}: {e}", ca.display()),
                );
            }
            return TlsVerify::Ca(ca);
        }
        match d.tls_verify {
            Some(false) => TlsVerify::Off,
            _ => TlsVerify::SystemRoots,
        }
    }

    /// A device's `formats`, `media`, `sides` and `color`, with defaults.
    fn declared(&mut self, key: &str, uri: &DeviceUri, d: &RawDevice) -> Declared {
        let mut out = Declared::default();
        let given =
            d.formats.is_some() || d.media.is_some() || d.sides.is_some() || d.color.is_some();
        if given && matches!(uri, DeviceUri::Ipp { .. }) {
            self.err(
                key,
                "formats, media, sides and color are for socket and lpd devices; an IPP device is asked what it prints",
            );
            return out;
        }
        if let Some(f) = &d.formats {
            let bad: Vec<&String> = f
                .iter()
                .filter(|m| {
                    let ok = m.len() <= crate::wire::ipp::MAX_MIME_LEN
                        && m.split_once('/').is_some_and(|(a, b)| {
                            !a.is_empty()
                                && !b.is_empty()
                                && m.bytes().all(|c| c.is_ascii_graphic())
                        });
                    !ok
                })
                .collect();
            if f.is_empty() || !bad.is_empty() {
                self.err(
                    format!("{key}.formats"),
                    format!("needs one or more MIME types like \"application/pdf\"; not {bad:?}"),
                );
            } else {
                out.formats = f.clone();
            }
        }
        if let Some(m) = &d.media {
            let bad: Vec<&String> = m.iter().filter(|n| media_dimensions(n).is_none()).collect();
            if m.is_empty() || !bad.is_empty() {
                self.err(
                    format!("{key}.media"),
                    format!("needs PWG media names like \"iso_a4_210x297mm\"; not {bad:?}"),
                );
            } else {
                out.media = m.clone();
            }
        }
        if let Some(s) = &d.sides {
            let bad: Vec<&String> = s.iter().filter(|v| !SIDES.contains(&v.as_str())).collect();
            if s.is_empty() || !bad.is_empty() {
                self.err(
                    format!("{key}.sides"),
                    format!("takes {}; not {bad:?}", SIDES.join(", ")),
                );
            } else {
                out.sides = s.clone();
            }
        }
        if let Some(c) = d.color {
            out.color = c;
        }
        out
    }

    fn size(&mut self, key: &str, v: Option<&SizeText>) -> Option<u64> {
        match v? {
            SizeText::Bytes(n) => Some(*n),
            SizeText::Text(s) => match parse_size(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.err(key, e);
                    None
                }
            },
        }
    }

    fn duration(&mut self, key: &str, v: Option<&str>) -> Option<Duration> {
        match parse_duration(v?) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(key, e);
                None
            }
        }
    }

    fn limits(&mut self, key: &str, l: &RawLimits, base: &Limits) -> Limits {
        let out = Limits {
            max_job_size: self
                .size(&format!("{key}.max-job-size"), l.max_job_size.as_ref())
                .unwrap_or(base.max_job_size),
            spool_quota: self
                .size(&format!("{key}.spool-quota"), l.spool_quota.as_ref())
                .unwrap_or(base.spool_quota),
            max_connections: l.max_connections.unwrap_or(base.max_connections),
            max_receives: l.max_receives.unwrap_or(base.max_receives),
            max_bytes_in_flight: self
                .size(
                    &format!("{key}.max-bytes-in-flight"),
                    l.max_bytes_in_flight.as_ref(),
                )
                .unwrap_or(base.max_bytes_in_flight),
            max_connection_rate: match l.max_connection_rate.as_deref().map(parse_rate) {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.err(format!("{key}.max-connection-rate"), e);
                    base.max_connection_rate
                }
                None => base.max_connection_rate,
            },
            idle_timeout: self
                .duration(&format!("{key}.idle-timeout"), l.idle_timeout.as_deref())
                .unwrap_or(base.idle_timeout),
            delivery_timeout: self
                .duration(
                    &format!("{key}.delivery-timeout"),
                    l.delivery_timeout.as_deref(),
                )
                .unwrap_or(base.delivery_timeout),
            retention: self
                .duration(&format!("{key}.retention"), l.retention.as_deref())
                .unwrap_or(base.retention),
            device_timeout: self
                .duration(
                    &format!("{key}.device-timeout"),
                    l.device_timeout.as_deref(),
                )
                .unwrap_or(base.device_timeout),
        };
        if out.max_connections == 0 {
            self.err(format!("{key}.max-connections"), "must be at least 1");
        }
        if out.max_receives == 0 {
            self.err(format!("{key}.max-receives"), "must be at least 1");
        }
        if out.max_bytes_in_flight < MIN_BYTES_IN_FLIGHT {
            self.err(
                format!("{key}.max-bytes-in-flight"),
                format!("must be at least {} KiB", MIN_BYTES_IN_FLIGHT >> 10),
            );
        }
        if out.idle_timeout.is_zero() {
            self.err(format!("{key}.idle-timeout"), "must be longer than 0s");
        }
        if out.device_timeout.is_zero() {
            self.err(format!("{key}.device-timeout"), "must be longer than 0s");
        }
        out
    }

    fn listeners(&mut self, raw: Vec<RawListener>) -> Vec<Listener> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut binds: HashMap<SocketAddr, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, l) in raw.into_iter().enumerate() {
            let key = format!("listener[{i}]");
            if let Some(j) = names.insert(l.name.clone(), i) {
                self.err(
                    format!("{key}.name"),
                    format!("listener name {:?} is also used by listener[{j}]", l.name),
                );
            }
            if l.bind.is_empty() {
                self.err(
                    format!("{key}.bind"),
                    "a listener needs at least one address",
                );
            }
            let mut addrs = Vec::new();
            for b in &l.bind {
                match b.parse::<SocketAddr>() {
                    Ok(a) => {
                        if let Some(other) = binds.get(&a) {
                            if a.port() != 0 {
                                self.err(format!("{key}.bind"), format!("{a} is also bound by listener {other:?}"));
                            }
                        }
                        binds.insert(a, l.name.clone());
                        addrs.push(a);
                    }
                    Err(_) => self.err(
                        format!("{key}.bind"),
                        format!("{b:?} is not an address:port (write e.g. \"0.0.0.0:9100\" or \"[::]:9100\")"),
                    ),
                }
            }
            let mut trusted = Vec::new();
            for r in &l.trusted_proxies {
                match parse_range(r) {
                    Ok(n) => trusted.push(n),
                    Err(e) => self.err(format!("{key}.trusted-proxies"), e),
                }
            }
            let proxy = if l.proxy_protocol {
                if l.trusted_proxies.is_empty() {
                    self.err(
                        format!("{key}.trusted-proxies"),
                        "proxy-protocol = true needs the balancers' ranges here; a header from any other address is refused",
                    );
                }
                Some(trusted)
            } else {
                if !l.trusted_proxies.is_empty() {
                    self.warnings.push(format!(
                        "{key}.trusted-proxies: has no effect without proxy-protocol = true"
                    ));
                }
                None
            };
            let tls = l.tls.map(|t| TlsFiles {
                cert: self.path(t.cert),
                key: self.path(t.key),
            });
            if let Some(t) = &tls {
                if l.protocol != Protocol::Ipp {
                    self.err(format!("{key}.tls"), "only IPP listeners speak TLS (ipps)");
                }
                for (k, f) in [("cert", &t.cert), ("key", &t.key)] {
                    if let Err(e) = std::fs::metadata(f) {
                        self.err(
                            format!("{key}.tls.{k}"),
                            format!("cannot read {}: {e}", f.display()),
                        );
                    }
                }
            } else if l.tls_required {
                self.err(
                    format!("{key}.tls-required"),
                    "needs tls = { cert = \"FILE\", key = \"FILE\" }",
                );
            }
            out.push(Listener {
                name: ListenerName(l.name),
                protocol: l.protocol,
                bind: addrs,
                proxy,
                tls,
                tls_required: l.tls_required,
            });
        }
        out
    }

    fn tenant(
        &mut self,
        key: &str,
        id: TenantId,
        t: RawTenant,
        global: &Limits,
        listeners: &[Listener],
    ) -> Tenant {
        let mut ranges = Vec::with_capacity(t.ranges.len());
        for r in &t.ranges {
            let r = match r {
                RangeText::Net(n) => {
                    ranges.push(canonical_net(*n));
                    continue;
                }
                RangeText::Text(r) => r,
            };
            match parse_range(r) {
                Ok(n) => ranges.push(n),
                Err(e) => self.err(format!("{key}.ranges"), e),
            }
        }
        let limits = self.limits(&format!("{key}.limits"), &t.limits, global);
        let mut devices = BTreeMap::new();
        for (name, d) in t.device {
            match DeviceUri::parse(&d.uri) {
                Ok(uri) => {
                    let declared = self.declared(&format!("{key}.device.{name}"), &uri, &d);
                    let make_and_model = d.make_and_model.clone();
                    if make_and_model
                        .as_ref()
                        .is_some_and(|m| m.is_empty() || m.len() > crate::wire::ipp::MAX_NAME_LEN)
                    {
                        self.err(
                            format!("{key}.device.{name}.make-and-model"),
                            "must be 1 to 255 bytes",
                        );
                    }
                    let tls_verify = self.tls_verify(&format!("{key}.device.{name}"), &uri, &d);
                    devices.insert(
                        name.clone(),
                        Device {
                            name,
                            uri,
                            make_and_model,
                            declared,
                            tls_verify,
                        },
                    );
                }
                Err(e) => self.err(format!("{key}.device.{name}.uri"), e),
            }
        }
        let mut workflows = BTreeMap::new();
        for (name, w) in t.workflow {
            let wkey = format!("{key}.workflow.{name}");
            if w.steps.is_empty() {
                self.err(
                    format!("{wkey}.steps"),
                    "a workflow needs at least one step",
                );
            }
            let mut steps = Vec::new();
            for (i, s) in w.steps.into_iter().enumerate() {
                let skey = format!("{wkey}.steps[{i}]");
                steps.push(match s {
                    RawStep::Hold { expire_after } => Step::Hold {
                        expire_after: self
                            .duration(&format!("{skey}.expire-after"), expire_after.as_deref()),
                    },
                    RawStep::Forward {
                        devices: names,
                        fallback,
                    } => {
                        if names.is_empty() {
                            self.err(
                                format!("{skey}.devices"),
                                "a forward step needs at least one device",
                            );
                        }
                        for n in &names {
                            if !devices.contains_key(n) {
                                self.err(
                                    format!("{skey}.devices"),
                                    format!(
                                        "unknown device {n:?} (tenant {id} has: {})",
                                        list(devices.keys())
                                    ),
                                );
                            }
                        }
                        Step::Forward {
                            devices: names,
                            fallback: fallback.unwrap_or_default(),
                        }
                    }
                    RawStep::Store {
                        folder,
                        follow_symlink,
                    } => Step::Store {
                        folder: self.path(folder),
                        follow_symlink: follow_symlink.unwrap_or(false),
                    },
                });
            }
            workflows.insert(name.clone(), Workflow { name, steps });
        }
        let mut inputs = Vec::new();
        let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
        for (i, inp) in t.input.into_iter().enumerate() {
            let ikey = format!("{key}.input[{i}]");
            if !listeners.iter().any(|l| l.name.0 == inp.listener) {
                self.err(
                    format!("{ikey}.listener"),
                    format!(
                        "unknown listener {:?} (defined: {})",
                        inp.listener,
                        list(listeners.iter().map(|l| &l.name.0))
                    ),
                );
            }
            if !workflows.contains_key(&inp.workflow) {
                self.err(
                    format!("{ikey}.workflow"),
                    format!(
                        "unknown workflow {:?} (tenant {id} has: {})",
                        inp.workflow,
                        list(workflows.keys())
                    ),
                );
            }
            if let Some(q) = &inp.queue {
                let ok = !q.is_empty()
                    && q.len() <= MAX_QUEUE_NAME_LEN
                    && q.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
                if !ok {
                    self.err(format!("{ikey}.queue"), format!("{q:?}: a queue name is 1-{MAX_QUEUE_NAME_LEN} characters of A-Z, a-z, 0-9, '-', '_' or '.'"));
                }
            }
            if let Some(j) = seen.insert((inp.listener.clone(), inp.queue.clone()), i) {
                self.err(
                    ikey.clone(),
                    format!(
                        "input[{j}] already binds listener {:?} queue {}",
                        inp.listener,
                        inp.queue
                            .as_deref()
                            .map_or("(default)".to_owned(), |q| format!("{q:?}"))
                    ),
                );
            }
            inputs.push(Input {
                listener: ListenerName(inp.listener),
                queue: inp.queue,
                workflow: inp.workflow,
            });
        }
        Tenant {
            name: t.name.unwrap_or_else(|| id.to_string()),
            node: t.node,
            id,
            ranges,
            admins: Admins {
                unix_users: t.admins.unix_users,
                unix_groups: t.admins.unix_groups,
            },
            limits,
            devices,
            workflows,
            inputs,
        }
    }

    fn nodes(&mut self, raw: Vec<RawNode>, listeners: &[Listener]) -> Vec<Node> {
        let mut out: Vec<Node> = Vec::new();
        for (i, n) in raw.into_iter().enumerate() {
            let key = format!("node[{i}]");
            if let Some(j) = out.iter().position(|o| o.name == n.name) {
                self.err(
                    format!("{key}.name"),
                    format!("node name {:?} is also used by node[{j}]", n.name),
                );
            }
            if n.name.is_empty()
                || !n
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.err(
                    format!("{key}.name"),
                    format!("{:?}: a node name is letters, digits, '-' and '_'", n.name),
                );
            }
            let address = match n.address.parse::<IpAddr>() {
                Ok(a) => canonical(a),
                Err(_) => {
                    self.err(
                        format!("{key}.address"),
                        format!("{:?} is not an IP address", n.address),
                    );
                    continue;
                }
            };
            if let Some(o) = out.iter().find(|o| o.address == address) {
                self.err(
                    format!("{key}.address"),
                    format!("{address} is also node {:?}'s address", o.name),
                );
            }
            let metrics = n.metrics.and_then(|m| match m.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        format!("{key}.metrics"),
                        format!("{m:?} is not an address:port"),
                    );
                    None
                }
            });
            out.push(Node {
                name: n.name,
                address,
                data_dir: n.data_dir.map(|p| self.path(p)),
                control_socket: n.control_socket.map(|p| self.path(p)),
                metrics,
            });
        }
        if !out.is_empty() {
            for (i, l) in listeners.iter().enumerate() {
                if l.proxy.is_none() {
                    self.err(
                        format!("listener[{i}].proxy-protocol"),
                        format!("listener {:?} must set proxy-protocol = true: behind the balancer, a node learns the client's address only from the PROXY header", l.name),
                    );
                }
                if l.bind.iter().any(|a| a.port() == 0) {
                    self.err(
                        format!("listener[{i}].bind"),
                        "with nodes, the balancer forwards to each listener's port on the node, so the port cannot be 0",
                    );
                }
            }
        }
        out
    }

    /// Every tenant names a known node when there are nodes, and none otherwise.
    fn tenant_nodes(&mut self, tenants: &[Tenant], nodes: &[Node]) {
        for t in tenants {
            match (&t.node, nodes.is_empty()) {
                (None, false) => self.err(
                    format!("tenant.{}.node", t.id),
                    format!(
                        "the config lists nodes, so every tenant names the node that serves it ({})",
                        list(nodes.iter().map(|n| &n.name))
                    ),
                ),
                (Some(n), true) => self.err(
                    format!("tenant.{}.node", t.id),
                    format!("node {n:?} is not defined: add a [[node]] with its name and address"),
                ),
                (Some(n), false) if !nodes.iter().any(|x| &x.name == n) => self.err(
                    format!("tenant.{}.node", t.id),
                    format!(
                        "unknown node {n:?} (defined: {})",
                        list(nodes.iter().map(|n| &n.name))
                    ),
                ),
                _ => {}
            }
        }
    }

    /// Reports every pair of overlapping ranges, naming both tenants.
    fn overlaps(&mut self, tenants: &[Tenant]) {
        let owners: Vec<(usize, IpNet)> = tenants
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.ranges.iter().map(move |r| (i, *r)))
            .collect();
        let nets: Vec<IpNet> = owners.iter().map(|o| o.1).collect();
        let mut reported = BTreeSet::new();
        for (a, b) in find_overlaps(&nets) {
            let ((ta, ra), (tb, rb)) = (owners[a], owners[b]);
            if !reported.insert((a.min(b), a.max(b))) {
                continue;
            }
            let (ida, idb) = (&tenants[ta].id, &tenants[tb].id);
            let what = if ra == rb {
                "is the same range as"
            } else {
                "overlaps"
            };
            self.err(
                format!("tenant.{idb}.ranges"),
                format!("{rb} (tenant {idb}) {what} {ra} (tenant {ida}); an address must belong to exactly one tenant"),
            );
        }
    }

    /// Reports every two tenants whose `store` folders are the same or one
    /// inside the other: one tenant would see (and could displace) the
    /// other's documents. One tenant's workflows may share a folder.
    fn shared_store_folders(&mut self, tenants: &[Tenant]) {
        let mut folders: Vec<(&TenantId, String, PathBuf)> = Vec::new();
        for t in tenants {
            for w in t.workflows.values() {
                for (i, step) in w.steps.iter().enumerate() {
                    if let Step::Store { folder, .. } = step {
                        let key = format!("tenant.{}.workflow.{}.steps[{i}].folder", t.id, w.name);
                        folders.push((&t.id, key, lexical_normal(folder)));
                    }
                }
            }
        }
        for (a, (ta, ka, fa)) in folders.iter().enumerate() {
            for (tb, kb, fb) in &folders[a + 1..] {
                if ta == tb {
                    continue;
                }
                let what = if fa == fb {
                    "is the same folder as"
                } else if fb.starts_with(fa) {
                    "lies inside"
                } else if fa.starts_with(fb) {
                    "contains"
                } else {
                    continue;
                };
                self.err(
                    kb.clone(),
                    format!(
                        "{} (tenant {tb}) {what} {} ({ka}, tenant {ta}); each tenant stores into folders of its own",
                        fb.display(),
                        fa.display()
                    ),
                );
            }
        }
    }

    /// Checks that need every tenant: overlapping ranges, devices in another
    /// tenant's range. Returns the routing table it checked devices with.
    fn cross_tenant(&mut self, tenants: &[Tenant]) -> RoutingTable {
        let table = RoutingTable::from_ranges(
            tenants
                .iter()
                .enumerate()
                .flat_map(|(i, t)| t.ranges.iter().map(move |r| (r, i as u32))),
        );
        // The table's sorted intervals say whether any ranges overlap; only
        // then are they paired up for the messages.
        if table.has_overlaps() {
            self.overlaps(tenants);
        }
        self.shared_store_folders(tenants);
        for (i, t) in tenants.iter().enumerate() {
            for d in t.devices.values() {
                let Ok(ip) = d.uri.host().parse::<IpAddr>() else {
                    continue;
                };
                match table.route(ip) {
                    Some(r) if r.tenant as usize != i => {
                        let other = &tenants[r.tenant as usize].id;
                        self.err(
                            format!("tenant.{}.device.{}.uri", t.id, d.name),
                            format!("address {ip} lies in range {} of tenant {other}, not of tenant {}", r.range, t.id),
                        );
                    }
                    Some(_) => {}
                    None => self.warnings.push(format!(
                        "tenant.{}.device.{}.uri: address {ip} lies outside every range (fine if it sits behind NAT)",
                        t.id, d.name
                    )),
                }
            }
        }
        table
    }
}

/// `path` with `.` and `..` taken out, without asking the file system
/// (`check` may run where the folders do not exist).
fn lexical_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// A range of IPv4-mapped IPv6 addresses (`::ffff:10.1.0.0/112`) is the
/// IPv4 range it maps, as a single mapped address is its IPv4 address:
/// peers are routed by their canonical address, so the mapped form would
/// never match and would hide overlaps with IPv4 ranges.
fn canonical_net(n: IpNet) -> IpNet {
    match n {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(n, IpNet::V4),
        _ => n,
    }
}

/// A range as written in `ranges` or `trusted-proxies`: a network with no
/// host bits set, or one address.
fn parse_range(r: &str) -> Result<IpNet, String> {
    match r.parse::<IpNet>() {
        Ok(n) if n.trunc() != n => Err(format!(
            "{r} has bits set past its prefix length; did you mean {}?",
            n.trunc()
        )),
        Ok(n) => Ok(canonical_net(n)),
        Err(_) => match r.parse::<IpAddr>() {
            Ok(a) => Ok(IpNet::from(canonical(a))),
            Err(_) => Err(format!("{r:?} is not a range (write e.g. \"10.1.0.0/16\")")),
        },
    }
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md's example, as written.
    pub(crate) const DESIGN_EXAMPLE: &str = include_str!("../../tests/data/design-example.toml");

    fn problems(text: &str) -> Vec<Problem> {
        Config::parse(Path::new("/etc/printroute/t.toml"), text)
            .expect_err("config should be refused")
            .problems
    }

    #[test]
    fn design_example_is_accepted_as_written() {
        let c =
            Config::parse(Path::new("/etc/printroute/printroute.toml"), DESIGN_EXAMPLE).unwrap();
        assert_eq!(c.summary(), "2 tenants, 3 ranges, 3 listeners");
        let acme = c.tenant(&TenantId::parse("acme").unwrap()).unwrap();
        assert_eq!(acme.limits.spool_quota, 5 << 30);
        assert_eq!(acme.limits.max_job_size, 2 << 30);
        assert_eq!(acme.inputs.len(), 3);
        assert_eq!(
            acme.workflows["secure"].steps[1],
            Step::Forward {
                devices: vec!["floor1".into()],
                fallback: Fallback::Hold
            }
        );
        assert_eq!(
            acme.devices["floor2"].uri,
            DeviceUri::Ipp {
                tls: false,
                host: "10.1.2.51".into(),
                port: 631,
                path: "/ipp/print".into()
            }
        );
    }

    #[test]
    fn proxy_and_node_keys_are_validated() {
        let base = r#"
            [global]
            data-dir = "/var/lib/printroute"
            [[listener]]
            name = "raw"
            protocol = "raw"
            bind = ["0.0.0.0:9100"]
        "#;
        let keys = |extra: &str| -> Vec<String> {
            problems(&format!("{base}{extra}"))
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        // proxy-protocol without trusted proxies, and a bad range.
        let p = problems(&base.replace(
            r#"bind = ["0.0.0.0:9100"]"#,
            r#"bind = ["0.0.0.0:9100"]
            proxy-protocol = true"#,
        ));
        assert_eq!(p[0].key, "listener[0].trusted-proxies");
        let p = problems(&base.replace(
            r#"bind = ["0.0.0.0:9100"]"#,
            r#"bind = ["0.0.0.0:9100"]
            proxy-protocol = true
            trusted-proxies = ["10.0.0.1/8"]"#,
        ));
        assert!(p[0].message.contains("did you mean 10.0.0.0/8"), "{p:?}");
        // Nodes need proxy-protocol on every listener, and every tenant names a known node.
        assert_eq!(
            keys(
                r#"
            [[node]]
            name = "n1"
            address = "10.9.0.11"
            [tenant.a]
            ranges = ["10.1.0.0/16"]
            [tenant.b]
            node = "n2"
            ranges = ["10.2.0.0/16"]
            "#
            ),
            [
                "listener[0].proxy-protocol",
                "tenant.a.node",
                "tenant.b.node"
            ]
        );
        assert_eq!(
            keys(
                r#"
            [tenant.a]
            node = "n1"
            ranges = ["10.1.0.0/16"]
            "#
            ),
            ["tenant.a.node"]
        );
        let ok = base.replace(
            r#"bind = ["0.0.0.0:9100"]"#,
            r#"bind = ["0.0.0.0:9100"]
            proxy-protocol = true
            trusted-proxies = ["10.9.0.1", "2001:db8::/64"]"#,
        );
        let c = Config::parse(Path::new("/etc/printroute/t.toml"), &ok).unwrap();
        let l = &c.listeners[0];
        assert!(l.trusts("10.9.0.1".parse().unwrap()));
        assert!(l.trusts("::ffff:10.9.0.1".parse().unwrap()));
        assert!(l.trusts("2001:db8::5".parse().unwrap()));
        assert!(!l.trusts("10.9.0.2".parse().unwrap()));
        let err = Config::load_as(Path::new("/nonexistent/t.toml"), None);
        assert!(err.is_err());
    }

    #[test]
    fn receive_limits_have_defaults_overrides_and_floors() {
        let c = Config::parse(
            Path::new("/etc/printroute/t.toml"),
            r#"
            [global]
            data-dir = "/tmp/x"
            limits = { max-receives = 8 }
            [tenant.a]
            ranges = ["10.1.0.0/16"]
            limits = { max-bytes-in-flight = "16 MiB" }
            [tenant.b]
            ranges = ["10.2.0.0/16"]
            "#,
        )
        .unwrap();
        let a = c.tenant(&TenantId::parse("a").unwrap()).unwrap();
        let b = c.tenant(&TenantId::parse("b").unwrap()).unwrap();
        assert_eq!(
            (a.limits.max_receives, a.limits.max_bytes_in_flight),
            (8, 16 << 20)
        );
        assert_eq!(
            b.limits.max_bytes_in_flight,
            Limits::default().max_bytes_in_flight
        );
        let p = problems(
            r#"
            [global]
            data-dir = "/tmp/x"
            [tenant.a]
            ranges = ["10.1.0.0/16"]
            limits = { max-receives = 0, max-bytes-in-flight = "4 KiB" }
            "#,
        );
        assert!(
            p.iter().any(|p| p.key == "tenant.a.limits.max-receives"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.key == "tenant.a.limits.max-bytes-in-flight"),
            "{p:?}"
        );
    }

    #[test]
    fn two_tenants_storing_into_one_folder_or_nested_folders_are_refused() {
        let p = problems(
            r#"
            [global]
            data-dir = "/tmp/x"
            [tenant.a]
            ranges = ["10.1.0.0/16"]
            workflow.w = { steps = [{ step = "store", folder = "/srv/archive" }] }
            workflow.v = { steps = [{ step = "store", folder = "/srv/archive/./" }] }
            [tenant.b]
            ranges = ["10.2.0.0/16"]
            workflow.x = { steps = [{ step = "store", folder = "/srv/x/../archive" }] }
            [tenant.c]
            ranges = ["10.3.0.0/16"]
            workflow.y = { steps = [{ step = "store", folder = "/srv/archive/c" }] }
            [tenant.d]
            ranges = ["10.4.0.0/16"]
            workflow.z = { steps = [{ step = "store", folder = "/srv/archive-d" }] }
            "#,
        );
        let msgs: Vec<String> = p
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        assert!(msgs.iter().any(|m| m.starts_with("tenant.b.workflow.x.steps[0].folder: /srv/archive (tenant b) is the same folder as /srv/archive (tenant.a.workflow.")), "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.starts_with("tenant.c.workflow.y.steps[0].folder: /srv/archive/c (tenant c) lies inside /srv/archive (tenant.a.workflow.v.steps[0].folder, tenant a)")), "{msgs:#?}");
        assert!(msgs.iter().any(|m| m.contains("(tenant c) lies inside /srv/archive (tenant.b.workflow.x.steps[0].folder, tenant b)")), "{msgs:#?}");
        // a and its own two workflows: fine; d's folder only shares a prefix of the name.
        assert!(
            !msgs
                .iter()
                .any(|m| m.contains("tenant d") || m.contains("archive-d")),
            "{msgs:#?}"
        );
        // a/v, a/w against b and c: 2 + 2, b against c: 1.
        assert_eq!(p.len(), 5, "{msgs:#?}");
    }

    #[test]
    fn overlaps_name_both_tenants_and_ranges() {
        let p = problems(
            r#"
            [global]
            data-dir = "/tmp/x"
            [tenant.a]
            ranges = ["10.1.0.0/16", "10.1.2.0/24"]
            [tenant.b]
            ranges = ["10.1.128.0/17"]
            "#,
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter().any(|p| p
                .message
                .contains("10.1.2.0/24 (tenant a) overlaps 10.1.0.0/16 (tenant a)")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.key == "tenant.b.ranges"
                && p.message
                    .contains("10.1.128.0/17 (tenant b) overlaps 10.1.0.0/16 (tenant a)")),
            "{p:?}"
        );
    }

    #[test]
    fn ipv4_mapped_ranges_are_their_ipv4_ranges() {
        let p = problems(
            r#"
            [global]
            data-dir = "/tmp/x"
            [tenant.a]
            ranges = ["10.0.0.0/8"]
            [tenant.b]
            ranges = ["::ffff:10.1.0.0/112"]
            "#,
        );
        assert!(
            p.iter().any(|p| p.key == "tenant.b.ranges"
                && p.message
                    .contains("10.1.0.0/16 (tenant b) overlaps 10.0.0.0/8 (tenant a)")),
            "{p:?}"
        );
        let c = Config::parse(
            Path::new("/etc/printroute/t.toml"),
            "[global]\ndata-dir = \"/tmp/x\"\n[tenant.b]\nranges = [\"::ffff:10.1.0.0/112\", \"::/96\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.tenants[0].ranges,
            [
                "10.1.0.0/16".parse::<IpNet>().unwrap(),
                "::/96".parse().unwrap()
            ]
        );
    }

    #[test]
    fn every_bad_reference_is_reported_at_once() {
        let p = problems(
            r#"
            [global]
            data-dir = "/tmp/x"
            limits = { max-job-size = "2 GB2", idle-timeout = "soon" }
            [[listener]]
            name = "raw"
            protocol = "raw"
            bind = ["127.0.0.1:9100"]
            [[listener]]
            name = "raw"
            protocol = "lpd"
            bind = ["127.0.0.1:9100", "nowhere"]
            [tenant.a]
            ranges = ["10.1.0.0/16", "10.9.0.1/16"]
            device.p1 = { uri = "usb://x" }
            device.p2 = { uri = "socket://10.2.0.5:9100" }
            workflow.w = { steps = [{ step = "forward", devices = ["p3"] }] }
            [[tenant.a.input]]
            listener = "ipp"
            workflow = "w"
            [[tenant.a.input]]
            listener = "raw"
            workflow = "nope"
            [[tenant.a.input]]
            listener = "raw"
            workflow = "w"
            [tenant.b]
            ranges = ["10.2.0.0/16"]
            "#,
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "global.limits.max-job-size",
            "global.limits.idle-timeout",
            "listener[1].name",
            "listener[1].bind",
            "tenant.a.ranges",
            "tenant.a.device.p1.uri",
            "tenant.a.device.p2.uri",
            "tenant.a.workflow.w.steps[0].devices",
            "tenant.a.input[0].listener",
            "tenant.a.input[1].workflow",
            "tenant.a.input[2]",
        ] {
            assert!(keys.contains(&k), "no problem reported for {k}: {p:#?}");
        }
        let p2 = p
            .iter()
            .find(|p| p.key == "tenant.a.device.p2.uri")
            .unwrap();
        assert!(p2.message.contains("10.2.0.0/16 of tenant b"), "{p2:?}");
    }

    #[test]
    fn a_large_file_parsed_in_pieces_says_what_the_whole_says() {
        use std::fmt::Write;
        let mut text = String::from(
            "[global]\ndata-dir = \"/d\"\n[[listener]]\nname = \"raw\"\nprotocol = \"raw\"\nbind = [\"127.0.0.1:0\"]\n",
        );
        for i in 0..50 {
            let _ = write!(
                text,
                "[tenant.t{i}]\nranges = [\"10.0.{i}.0/24\"]\n[tenant.t{i}.device.p]\nuri = \"socket://10.0.{i}.9\"\n"
            );
        }
        let pieces = split_before_tenants(&text, 100);
        assert!(pieces.len() > 5, "{}", pieces.len());
        assert_eq!(pieces.concat(), text);
        assert!(pieces[1..].iter().all(|p| p.starts_with("[tenant.")));
        let raw = parse_pieces(&pieces).expect("pieces parse");
        assert_eq!(raw.tenant.len(), 50);
        assert_eq!(raw.tenant["t7"].device["p"].uri, "socket://10.0.7.9");

        // A tenant's tables spread over two pieces: the pieces do not add
        // up, and the whole text is parsed instead.
        text.push_str("[tenant.t0.device.late]\nuri = \"socket://10.0.0.10\"\n");
        assert!(parse_pieces(&split_before_tenants(&text, 100)).is_none());
        let raw = parse_toml(&text).unwrap();
        assert_eq!(raw.tenant["t0"].device.len(), 2);
        // A piece that does not parse on its own: a global table after the tenants.
        let late = format!("{text}[global.limits]\nmax-connections = 5\n");
        assert!(parse_pieces(&split_before_tenants(&late, 100)).is_none());
        let raw = parse_toml(&late).unwrap();
        assert_eq!(raw.global.limits.max_connections, Some(5));
    }

    #[test]
    fn unknown_keys_are_errors_with_their_place() {
        let p =
            problems("[global]\ndata-dir = \"/x\"\n[tenant.a]\nranges = []\ncolour = \"red\"\n");
        assert!(p[0].message.contains("unknown field `colour`"), "{p:?}");
        assert!(p[0].message.contains("line 5"), "{p:?}");
        let p = problems("[global]\ndata-dir = \"/x\"\n[tenant.a.workflow.w]\nsteps = [{ step = \"forward\", devices = [], colour = 1 }]\n");
        assert!(p[0].message.contains("colour"), "{p:?}");
    }

    #[test]
    fn device_capability_and_tls_keys_are_validated() {
        let p = problems(
            "[global]\ndata-dir = \"/x\"\n[tenant.a]\nranges = [\"10.1.0.0/16\"]\n\
             device.s = { uri = \"socket://10.1.0.5\", formats = [\"pdf\"], sides = [\"both\"], media = [\"a4\"], tls-verify = false }\n\
             device.i = { uri = \"ipp://10.1.0.6/ipp/print\", formats = [\"application/pdf\"] }\n\
             device.t = { uri = \"ipps://10.1.0.7/ipp/print\", tls-fingerprint = \"sha256:12\" }\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "tenant.a.device.s.formats",
            "tenant.a.device.s.sides",
            "tenant.a.device.s.media",
            "tenant.a.device.s",
            "tenant.a.device.i",
            "tenant.a.device.t.tls-fingerprint",
        ] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        let fp = format!("sha256:{}", "ab:".repeat(31) + "cd");
        assert_eq!(
            parse_fingerprint(&fp).map(|f| (f[0], f[31])),
            Some((0xab, 0xcd))
        );
        assert_eq!(media_dimensions("na_letter_8.5x11in"), Some((21590, 27940)));
        assert_eq!(media_dimensions("iso_a4_210x297mm"), Some((21000, 29700)));
        assert_eq!(media_dimensions("a4"), None);
    }

    #[test]
    fn device_outside_every_range_is_a_warning() {
        let c = Config::parse(
            Path::new("t.toml"),
            "[global]\ndata-dir = \"/x\"\n[tenant.a]\nranges = [\"10.1.0.0/16\"]\ndevice.p = { uri = \"socket://192.0.2.1\" }\n",
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("192.0.2.1"));
    }

    #[test]
    fn device_uris_parse() {
        assert_eq!(
            DeviceUri::parse("lpd://10.2.0.9/lobby?reserved-port=true").unwrap(),
            DeviceUri::Lpd {
                host: "10.2.0.9".into(),
                port: 515,
                queue: "lobby".into(),
                reserved_port: true
            }
        );
        assert_eq!(
            DeviceUri::parse("socket://[2001:db8::5]:9101").unwrap(),
            DeviceUri::Socket {
                host: "2001:db8::5".into(),
                port: 9101
            }
        );
        assert_eq!(
            DeviceUri::parse("socket://printer.example:9100")
                .unwrap()
                .to_string(),
            "socket://printer.example:9100"
        );
        for bad in [
            "http://x",
            "socket://",
            "socket://a b",
            "lpd://x",
            "socket://x:99999",
            "socket://x:0",
            "lpd://[2001:db8::9]:0/lobby",
            "socket://x/y",
        ] {
            assert!(DeviceUri::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tenants_dir_files_join_the_main_file_and_errors_name_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("printroute.toml");
        let tdir = dir.path().join("tenants.d");
        std::fs::create_dir(&tdir).unwrap();
        let main_text = r#"
[global]
data-dir = "/tmp/x"
tenants-dir = "tenants.d"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.globex]
ranges = ["10.2.0.0/16"]
"#;
        std::fs::write(&main, main_text).unwrap();
        std::fs::write(
            tdir.join("acme.toml"),
            r#"
name = "ACME"
ranges = ["10.1.0.0/16"]
[device.floor1]
uri = "socket://10.1.2.50:9100"
[workflow.direct]
steps = [{ step = "forward", devices = ["floor1"] }]
[[input]]
listener = "raw"
workflow = "direct"
"#,
        )
        .unwrap();
        // A temporary file of an atomic write and other names are not tenants.
        std::fs::write(tdir.join(".acme.toml.tmp"), "garbage").unwrap();
        std::fs::write(tdir.join("README"), "garbage").unwrap();
        let c = Config::load(&main).unwrap();
        let ids: Vec<&str> = c.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["acme", "globex"]);
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(c.tenant_files.get(&acme), Some(&tdir.join("acme.toml")));
        assert_eq!(c.tenant(&acme).unwrap().devices.len(), 1);

        // What a change would make, validated without writing: an overlap
        // with a tenant of the main file and an unknown device, both named
        // in the tenant's file.
        let acme_file = tdir.join("acme.toml");
        let mut edits = FileEdits::new();
        edits.insert(
            acme_file.clone(),
            Some(
                "ranges = [\"10.2.3.0/24\"]\n[workflow.w]\nsteps = [{ step = \"forward\", devices = [\"nope\"] }]\n"
                    .into(),
            ),
        );
        let e = Config::load_with(&main, &edits).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.problems.len(), 2, "{text}");
        assert!(
            e.problems
                .iter()
                .all(|p| p.file.as_ref() == Some(&acme_file)),
            "{text}"
        );
        assert!(text.contains("tenant.acme.ranges: 10.2.3.0/24 (tenant acme) overlaps 10.2.0.0/16 (tenant globex)"), "{text}");
        assert!(text.contains("tenant.acme.workflow.w"), "{text}");
        assert!(text.starts_with(&acme_file.display().to_string()), "{text}");
        // The file on disk is untouched and still loads.
        assert!(Config::load(&main).is_ok());

        // An unknown key, a tenant in both places, a bad file name.
        std::fs::write(tdir.join("globex.toml"), "ranges = [\"10.9.0.0/16\"]\n").unwrap();
        std::fs::write(tdir.join("Bad Name.toml"), "").unwrap();
        let mut edits = FileEdits::new();
        edits.insert(acme_file.clone(), Some("printers = 3\n".into()));
        let e = Config::load_with(&main, &edits).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "{}: tenant.acme: unknown field `printers`",
                acme_file.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{}: tenant.globex: tenant globex is defined both here and in {}",
                tdir.join("globex.toml").display(),
                main.display()
            )),
            "{text}"
        );
        assert!(
            text.contains("Bad Name.toml: a tenant's file is named <tenant id>.toml"),
            "{text}"
        );

        // Removing a file by an edit takes its tenant out.
        std::fs::remove_file(tdir.join("globex.toml")).unwrap();
        std::fs::remove_file(tdir.join("Bad Name.toml")).unwrap();
        let mut edits = FileEdits::new();
        edits.insert(acme_file, None);
        let c = Config::load_with(&main, &edits).unwrap();
        assert_eq!(c.tenants.len(), 1);
    }

    #[test]
    fn web_needs_tls_off_loopback() {
        let base = "[global]\ndata-dir = \"/tmp/x\"\n[global.web]\n";
        let p = problems(&format!("{base}bind = \"0.0.0.0:8631\"\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "global.web.tls");
        assert!(Config::parse(
            Path::new("t.toml"),
            &format!("{base}bind = \"127.0.0.1:8631\"\n")
        )
        .is_ok());
        let c = Config::parse(
            Path::new("/etc/p/p.toml"),
            &format!("{base}bind = \"[::]:8631\"\ntls = {{ cert = \"w.pem\", key = \"w.key\" }}\npam-service = \"login\"\n"),
        )
        .unwrap();
        let w = c.global.web.unwrap();
        assert_eq!(w.tls.unwrap().cert, PathBuf::from("/etc/p/w.pem"));
        assert_eq!(w.pam_service, "login");
        assert_eq!(w.release_from, ReleaseFrom::TenantRanges);
    }
}
