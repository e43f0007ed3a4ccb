//! `TestDaemon`: the real printroute binary on port 0 in a temp dir, plus
//! real peers (socat devices) and clients bound to tenant source addresses.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

mod cupsd;
mod eve;
mod recording;
pub mod web;
#[allow(
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]
pub use cupsd::Cupsd;
#[allow(
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]
pub use eve::{EvePrinter, EveSpec};
#[allow(
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]
pub use recording::{Behaviour, End, Received, RecordingDevice};

/// Longest wait for the daemon to say `ready`, or for a condition in `wait_until`.
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of the printroute binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_printroute")
}

/// Fails the test when a real client or peer is missing (tests never skip).
pub fn require(tool: &str) -> PathBuf {
    for dir in [
        "/usr/bin",
        "/usr/sbin",
        "/bin",
        "/sbin",
        "/usr/local/bin",
        "/usr/lib/cups/backend",
    ] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is not installed: run the test command from README.md, which installs it");
}

/// SHA-256 in hex.
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The documents a `store` step has placed in `dir` (path and content),
/// sorted by name. A file the daemon is still writing has a temporary dot
/// name (`.printroute-<random>.tmp`) until it is synced and renamed into
/// place; it is not a stored document yet and is left out. A missing
/// folder holds nothing.
pub fn stored_documents(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        // Read failing: renamed away or removed under us; not stored here.
        .filter_map(|e| Some((e.path(), std::fs::read(e.path()).ok()?)))
        .collect();
    out.sort();
    out
}

/// A free TCP port on `ip` (bound and released; the race with other
/// processes is accepted in tests), never one this test process was given
/// before: the kernel may hand a released port out again at once, and a
/// config given the same port twice is refused.
pub fn free_port(ip: &str) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const TRIES: usize = 100;
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..TRIES {
        let port = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port on {ip} that this test was not given before, in {TRIES} tries");
}

/// Polls `f` until it returns `Some`, for at most `WAIT`.
pub fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until_within(what, WAIT, f)
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub fn wait_until_within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon under test.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
    /// Listener name → bound address (first address of each listener).
    pub listeners: HashMap<String, SocketAddr>,
    env: Vec<(String, String)>,
    /// A command the binary runs under (`prlimit ...`, `sh -c 'umask 0; exec "$@"' sh`,
    /// `unshare -m ...`); each must exec it, so the daemon keeps the child's pid.
    wrapper: Vec<String>,
}

impl TestDaemon {
    /// Like [`TestDaemon::start`], with extra environment variables for the daemon.
    pub fn start_with_env(config: &str, env: &[(&str, String)]) -> TestDaemon {
        TestDaemon::start_wrapped(config, env, &[])
    }

    /// Like [`TestDaemon::start_with_env`], with the binary run under `wrapper`
    /// (a command and its arguments that exec the binary given after them).
    pub fn start_wrapped(config: &str, env: &[(&str, String)], wrapper: &[&str]) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("printroute.toml");
        let mut d = TestDaemon {
            dir,
            config_path,
            child: None,
            lines: None,
            listeners: HashMap::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
        };
        d.write_config(config);
        d.spawn();
        d
    }

    /// Data dir used by the config: `{data}` in config text is replaced by it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `config` (with `{data}` → the data dir, `{dir}` → the temp dir) and starts the daemon.
    pub fn start(config: &str) -> TestDaemon {
        TestDaemon::start_with_env(config, &[])
    }

    /// Rewrites the config file (for reload tests).
    pub fn write_config(&self, config: &str) {
        let text = config
            .replace("{data}", self.data_dir().to_str().unwrap())
            .replace("{dir}", self.dir.path().to_str().unwrap());
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Starts the binary and waits for `ready`.
    pub fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = command
            .args(["serve", "--announce", "--config"])
            .arg(&self.config_path)
            .env("PRINTROUTE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.lines = Some(rx);
        self.listeners.clear();
        self.read_until_ready();
    }

    fn read_until_ready(&mut self) {
        let rx = self.lines.as_ref().unwrap();
        loop {
            let line = rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("daemon did not get ready; log:\n{}", self.log()));
            if line == "ready" {
                return;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["listening", name, _proto, addr] = parts[..] {
                self.listeners
                    .entry(name.to_string())
                    .or_insert_with(|| addr.parse().unwrap());
            }
        }
    }

    /// The next stdout line announcing a listener, after a reload.
    pub fn next_listening(&self) -> (String, SocketAddr) {
        let rx = self.lines.as_ref().unwrap();
        loop {
            let line = rx.recv_timeout(WAIT).expect("no listening line");
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["listening", name, _proto, addr] = parts[..] {
                return (name.to_string(), addr.parse().unwrap());
            }
        }
    }

    /// Address of a listener.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Waits for a line containing `needle` to appear in the log.
    pub fn wait_log(&self, needle: &str) {
        wait_until(&format!("log line {needle:?}"), || {
            self.log().contains(needle).then_some(())
        });
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Sends a signal (`HUP`, `TERM`, `KILL`) to the daemon.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("daemon running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.child.take().unwrap().wait().unwrap();
    }

    /// SIGTERM, wait for exit; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        self.signal("TERM");
        self.wait_exit()
    }

    /// The daemon's exit status if it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<i32> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    /// Waits (at most [`WAIT`]) for the daemon to exit by itself; its exit status.
    pub fn wait_exit(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(start.elapsed() < WAIT, "daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the CLI as root against the control socket at
    /// `{dir}/control.sock` (the config must name it): (success, stdout and stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(bin())
            .args(args)
            .arg("--socket")
            .arg(self.dir.path().join("control.sock"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// A tenant's job records while the daemon runs, as the global admin
    /// sees them (`jobs --json` over the control socket at `{dir}/control.sock`,
    /// which the config must name).
    pub fn live_jobs(&self, tenant: &str) -> Vec<printroute::store::job::Job> {
        let out = Command::new(bin())
            .args(["jobs", "--tenant", tenant, "--json", "--socket"])
            .arg(self.dir.path().join("control.sock"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "jobs --json: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut jobs: Vec<printroute::store::job::Job> =
            serde_json::from_slice(&out.stdout).unwrap();
        jobs.sort_by_key(|j| j.id.0);
        jobs
    }

    /// Opens the store of a stopped daemon and returns every job record per tenant.
    pub fn stored_jobs(&self) -> HashMap<String, Vec<printroute::store::job::Job>> {
        assert!(
            self.child.is_none(),
            "stop the daemon before reading its store"
        );
        stored_jobs_at(&self.data_dir())
    }

    /// Documents in a tenant's spool folder: files of their own, named by
    /// job id, and the entries of its spool log segments (by job id; dead
    /// entries are erased, so only live ones are seen). Emptied files kept
    /// for reuse (`.free-*`) are not documents; they are checked to be empty.
    pub fn spool_files(&self, tenant: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.data_dir().join("spool").join(tenant)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".free-") {
                assert_eq!(
                    e.metadata().unwrap().len(),
                    0,
                    "a recycled spool file {name} still holds data"
                );
            } else if printroute::store::log::segment_number(&name).is_some() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                let ids = printroute::store::log::scan(&bytes);
                out.extend(ids.iter().map(|id| id.0.to_string()));
            } else {
                out.push(name);
            }
        }
        out
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
    }
}

/// Every job record per tenant in the store at `data_dir` (of a stopped daemon).
pub fn stored_jobs_at(data_dir: &Path) -> HashMap<String, Vec<printroute::store::job::Job>> {
    // A store this process opened and closed just before may hold sled's
    // file lock a moment longer (sled's I/O threads let go of the file
    // after the close returns): the open is tried again until it is free.
    let store = wait_until("the store's lock to be free", || {
        printroute::store::Store::open(data_dir, 8 << 20).ok()
    });
    let ids = store.registered_tenants().unwrap();
    let stores = store.provision(&ids).unwrap();
    let out = ids
        .iter()
        .zip(&stores)
        .map(|(id, s)| (id.to_string(), s.jobs().unwrap()))
        .collect();
    store.close().unwrap();
    drop(stores);
    out
}

/// A TCP connection from a chosen loopback source address (a tenant's address).
pub fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from: IpAddr = from.parse().unwrap();
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), WAIT)?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(WAIT))?;
    Ok(s)
}

/// Sends one LPD job from `from`: receive job, control file, then data
/// file. `Err((step, answer))` names the first step not acknowledged and
/// the daemon's answer to it (`None`: the connection ended).
pub fn lpd_try_submit(
    from: &str,
    to: SocketAddr,
    queue: &str,
    user: &str,
    name: &str,
    data: &[u8],
) -> Result<(), (&'static str, Option<u8>)> {
    let mut s = connect_from(from, to).unwrap();
    // Sends `bytes` and reads the daemon's one-byte answer.
    let mut step = |bytes: &[u8]| -> Option<u8> {
        s.write_all(bytes).ok()?;
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    };
    let cf = format!("Hclient\nP{user}\nJ{name}\nldfA001client\n");
    for (what, bytes) in [
        ("receive job", format!("\x02{queue}\n").into_bytes()),
        (
            "control subcommand",
            format!("\x02{} cfA001client\n", cf.len()).into_bytes(),
        ),
        ("control file", [cf.as_bytes(), &[0]].concat()),
        (
            "data subcommand",
            format!("\x03{} dfA001client\n", data.len()).into_bytes(),
        ),
        ("data file", [data, &[0]].concat()),
    ] {
        match step(&bytes) {
            Some(0) => {}
            other => return Err((what, other)),
        }
    }
    Ok(())
}

/// Submits one LPD job and asserts that every step is acknowledged.
pub fn lpd_submit(from: &str, to: SocketAddr, queue: &str, user: &str, name: &str, data: &[u8]) {
    assert_eq!(
        lpd_try_submit(from, to, queue, user, name, data),
        Ok(()),
        "LPD job on {queue} refused"
    );
}

/// Appends one IPP attribute (RFC 8010 3.1.4) to a request being built.
pub fn ipp_attr(b: &mut Vec<u8>, tag: u8, name: &str, v: &[u8]) {
    b.push(tag);
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(v.len() as u16).to_be_bytes());
    b.extend_from_slice(v);
}

/// IPP Print-Job of `data` to `/ipp/print` as alice, from `from`, with a
/// document-format if given; returns the IPP status code (HTTP must be 200).
pub fn ipp_print(from: &str, to: SocketAddr, data: &[u8], format: Option<&str>) -> u16 {
    use printroute::wire::ipp as codec;
    let uri = format!("ipp://{to}/ipp/print");
    let mut body = vec![2, 0, 0, 2, 0, 0, 0, 1, 1];
    ipp_attr(&mut body, 0x47, "attributes-charset", b"utf-8");
    ipp_attr(&mut body, 0x48, "attributes-natural-language", b"en");
    ipp_attr(&mut body, 0x45, "printer-uri", uri.as_bytes());
    ipp_attr(&mut body, 0x42, "requesting-user-name", b"alice");
    if let Some(f) = format {
        ipp_attr(&mut body, 0x49, "document-format", f.as_bytes());
    }
    body.push(3);
    body.extend_from_slice(data);
    let mut s = connect_from(from, to).unwrap();
    let mut req = format!(
        "POST /ipp/print HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/ipp\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    s.write_all(&req).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut resp = vec![0u8; len];
    r.read_exact(&mut resp).unwrap();
    codec::decode(&resp, codec::RESPONSE_LIMITS).unwrap().0.code
}

/// How a RAW send ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RawOutcome {
    /// Orderly close after the data: the job was accepted.
    Acknowledged,
    /// Reset (or any error): the job was refused.
    Refused,
}

/// Sends one RAW job from `from` and reports whether the daemon acknowledged it.
pub fn raw_send(from: &str, to: SocketAddr, data: &[u8]) -> RawOutcome {
    let Ok(mut s) = connect_from(from, to) else {
        return RawOutcome::Refused;
    };
    if s.write_all(data).is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
        return RawOutcome::Refused;
    }
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => RawOutcome::Acknowledged,
        Err(_) => RawOutcome::Refused,
    }
}

/// A real RAW printer: socat writing each connection into its own file.
pub struct SocatDevice {
    pub ip: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SocatDevice {
    /// Starts a device on `ip` (a free port is chosen), waiting until it accepts.
    pub fn start(ip: &str) -> SocatDevice {
        let port = free_port(ip);
        let mut d = SocatDevice {
            ip: ip.into(),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        d.up();
        d
    }

    /// Starts (again) on the same address and port.
    pub fn up(&mut self) {
        let socat = require("socat");
        let child = Command::new(socat)
            .arg("-u")
            .arg(format!(
                "TCP-LISTEN:{},bind={},reuseaddr,fork",
                self.port, self.ip
            ))
            .arg(format!("SYSTEM:cat > {}/job.$$", self.dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr: SocketAddr = format!("{}:{}", self.ip, self.port).parse().unwrap();
        wait_until("socat device to listen", || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        // That probe connection made an empty file: remove it once socat closed it.
        std::thread::sleep(Duration::from_millis(100));
        for f in self.files_raw() {
            if std::fs::metadata(&f).map(|m| m.len() == 0).unwrap_or(false) {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    /// Stops the device (port closed).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `socket://ip:port`.
    pub fn uri(&self) -> String {
        format!("socket://{}:{}", self.ip, self.port)
    }

    fn files_raw(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// SHA-256 of every non-empty document received so far.
    pub fn received(&self) -> Vec<String> {
        self.files_raw()
            .into_iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter(|d| !d.is_empty())
            .map(|d| sha256(&d))
            .collect()
    }

    /// Waits until `n` documents have arrived and returns their digests.
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        wait_until(&format!("{n} documents at {}", self.uri()), || {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
    }
}

impl Drop for SocatDevice {
    fn drop(&mut self) {
        self.down();
    }
}

impl SocatDevice {
    /// Waits until every digest of `expected` has arrived (complete files).
    pub fn wait_for_digests(&self, expected: &[String]) -> Vec<String> {
        wait_until(
            &format!("{} documents at {}", expected.len(), self.uri()),
            || {
                let r = self.received();
                expected.iter().all(|e| r.contains(e)).then_some(r)
            },
        )
    }
}

/// A test document: `header` followed by pseudo-random bytes derived from
/// `tag` (so each tag gives its own digest), `size` bytes in all (at least the header).
pub fn document_with(header: &str, tag: &str, size: usize) -> Vec<u8> {
    let mut d = header.as_bytes().to_vec();
    let mut x: u32 = tag
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        | 1;
    while d.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d.push(x as u8);
    }
    d
}

/// A real HAProxy (Debian's `haproxy`) in the foreground, stopped on drop.
pub struct Haproxy {
    child: Child,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Haproxy {
    /// Checks `cfg` with `haproxy -c`, starts it, and waits until every
    /// port in `frontends` (on 127.0.0.1) accepts connections.
    pub fn start(cfg: &Path, frontends: &[u16]) -> Haproxy {
        let haproxy = require("haproxy");
        let check = Command::new(&haproxy)
            .args(["-c", "-f"])
            .arg(cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c refused {}:\n{}{}",
            cfg.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = cfg.with_extension("log");
        let child = Command::new(&haproxy)
            .args(["-db", "-f"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let h = Haproxy { child, log };
        for &p in frontends {
            wait_until(&format!("haproxy listening on port {p}"), || {
                TcpStream::connect(("127.0.0.1", p)).ok().map(|_| ())
            });
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- haproxy log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The metrics endpoint's text.
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of one sample, e.g. `printroute_jobs_total{tenant="a",event="accepted"}`; 0 when absent.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
