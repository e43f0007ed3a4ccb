//! LPD (RFC 1179) in and out with the real binary: real clients (the CUPS
//! `lpd` backend, rlpr, LPRng's lpr/lpq/lprm), a real downstream LPD server
//! (LPRng's lpd), and hostile raw-TCP clients, from two tenants' addresses.
//!
//! LPRng comes from `scripts/lprng.sh` (it cannot be installed beside CUPS).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use printroute::store::job::JobState;

/// Where `scripts/lprng.sh` unpacks LPRng.
const LPRNG: &str = "/opt/printroute-test/lprng";

/// Tests whose clients bind reserved source ports (the CUPS lpd backend,
/// rlpr, printroute forwarding with reserved-port=true) take turns: the
/// range is small, and a client that finds its port taken gives up.
static RESERVED_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn reserved_ports() -> std::sync::MutexGuard<'static, ()> {
    RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// An LPRng program unpacked by `scripts/lprng.sh`, with the config folder
/// it wrote; panics (never skips) when missing.
fn lprng(tool: &str) -> PathBuf {
    for dir in ["usr/bin", "usr/sbin"] {
        let p = Path::new(LPRNG).join("root").join(dir).join(tool);
        if p.exists() && Path::new(LPRNG).join("etc/lprng/lpd.conf").exists() {
            return p;
        }
    }
    panic!("LPRng {tool} is not unpacked: run the test command from README.md, which runs scripts/lprng.sh");
}

/// Lays `$LPRNG/etc/lprng` over `/etc/lprng`, then execs its arguments.
/// Runs only inside `unshare --mount` (mounts are private there), so LPRng
/// reads the tests' config while the machine's `/etc/lprng` (absent, or
/// someone else's) is neither read nor changed. Without an `/etc/lprng` to
/// mount over, `/etc` gets an overlay (upper layer on a tmpfs) that adds it.
const LPRNG_PRIVATE_ETC: &str = r#"set -e
conf="$LPRNG/etc/lprng"
if [ ! -d /etc/lprng ]; then
    mount -t tmpfs -o mode=0755,size=1m printroute-lprng "$LPRNG/ns"
    mkdir -p "$LPRNG/ns/upper/lprng" "$LPRNG/ns/work"
    mount -t overlay -o "lowerdir=/etc,upperdir=$LPRNG/ns/upper,workdir=$LPRNG/ns/work" printroute-etc /etc
fi
mount --bind "$conf" /etc/lprng
exec "$0" "$@""#;

/// An LPRng program in a mount namespace of its own that shows it the
/// tests' config as /etc/lprng, and a PID namespace of its own: LPRng
/// signals pids it reads from lock files, which must never reach other
/// processes.
fn lprng_cmd(tool: &str) -> Command {
    let mut c = Command::new(require("unshare"));
    c.args(["--mount", "--pid", "--fork", "--kill-child"])
        .arg(require("sh"))
        .args(["-c", LPRNG_PRIVATE_ETC])
        .arg(lprng(tool))
        .env("LPRNG", LPRNG);
    c
}

/// Two tenants with the same queue names: `office` forwards to the tenant's
/// device, `held` holds jobs (for queue state and remove). Tenant a owns
/// 127.0.1.0/24 and 127.0.0.1 (for clients that cannot bind a source).
fn config(dev_a: &str, dev_b: &str, a_limits: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "5s"
[global.limits]
idle-timeout = "10s"
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:0"]

[tenant.a]
ranges = ["127.0.1.0/24", "127.0.0.1/32"]
admins = {{ unix-users = ["boss"] }}
limits = {{ {a_limits} }}
device.printer = {{ uri = "{dev_a}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
workflow.secure = {{ steps = [{{ step = "hold" }}] }}
input = [
  {{ listener = "lpd", queue = "office", workflow = "direct" }},
  {{ listener = "lpd", queue = "held", workflow = "secure" }},
]

[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{dev_b}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
workflow.secure = {{ steps = [{{ step = "hold" }}] }}
input = [
  {{ listener = "lpd", queue = "office", workflow = "direct" }},
  {{ listener = "lpd", queue = "held", workflow = "secure" }},
]
"#
    )
}

/// Deterministic document bytes.
fn doc(tag: &str, size: usize) -> Vec<u8> {
    document_with(&format!("%!PS-Adobe-3.0\n%%Title: {tag}\n"), tag, size)
}

// ---- a raw RFC 1179 client, for well-behaved and hostile sessions ----

/// Reads one acknowledgement octet; `None` when the daemon closed or reset.
fn ack(s: &mut TcpStream) -> Option<u8> {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

fn expect_ack(s: &mut TcpStream, what: &str) {
    assert_eq!(ack(s), Some(0), "acknowledgement of {what}");
}

/// A control file printing each `(data file, letter)` line.
fn control(user: &str, name: &str, lines: &[(&str, char)]) -> String {
    let mut cf = format!("Htesthost\nP{user}\nJ{name}\n");
    for (df, letter) in lines {
        cf.push_str(&format!("{letter}{df}\n"));
    }
    cf
}

/// Sends one file (subcommand, bytes, NUL), checking both acknowledgements.
fn send_file(s: &mut TcpStream, code: u8, name: &str, bytes: &[u8]) {
    s.write_all(&[code]).unwrap();
    s.write_all(format!("{} {name}\n", bytes.len()).as_bytes())
        .unwrap();
    expect_ack(s, &format!("subcommand for {name}"));
    s.write_all(bytes).unwrap();
    s.write_all(&[0]).unwrap();
    expect_ack(s, name);
}

/// Opens a receive-job session on `queue`; returns the daemon's answer to it.
fn open_job(from: &str, to: SocketAddr, queue: &str) -> (TcpStream, Option<u8>) {
    let mut s = connect_from(from, to).unwrap();
    s.write_all(format!("\x02{queue}\n").as_bytes()).unwrap();
    let a = ack(&mut s);
    (s, a)
}

/// Submits one well-behaved job (control file first); true when acknowledged.
fn submit(from: &str, to: SocketAddr, queue: &str, user: &str, name: &str, data: &[u8]) -> bool {
    let (mut s, a) = open_job(from, to, queue);
    if a != Some(0) {
        return false;
    }
    let cf = control(user, name, &[("dfA001testhost", 'l')]);
    send_file(&mut s, 2, "cfA001testhost", cf.as_bytes());
    send_file(&mut s, 3, "dfA001testhost", data);
    true
}

/// Sends a one-line command and reads the whole text answer.
fn query(from: &str, to: SocketAddr, line: &str) -> String {
    let mut s = connect_from(from, to).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

// ---- helpers for real clients ----

/// A socat relay on `listen` that connects to `to` from `from`: lets real
/// clients that cannot bind a source address (lpr, rlpr) speak from
/// tenant b's addresses, and rlpr (port 515 only) reach the daemon.
struct Relay(Child);

impl Relay {
    fn start(listen: &str, from: &str, to: SocketAddr) -> Relay {
        let (ip, port) = listen.rsplit_once(':').unwrap();
        let child = Command::new(require("socat"))
            .arg(format!("TCP-LISTEN:{port},bind={ip},reuseaddr,fork"))
            .arg(format!("TCP:{to},bind={from}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = listen.parse().unwrap();
        wait_until("relay to listen", || {
            // A bare probe: the daemon sees a connection that sends nothing.
            TcpStream::connect(addr).ok().map(|_| ())
        });
        Relay(child)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lpr(args: &[&str]) -> Output {
    run(lprng_cmd("lpr").args(args))
}

fn lpq(printer: &str) -> String {
    let out = run(lprng_cmd("lpq").args(["-P", printer]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lprm(printer: &str, user: &str, what: &str) -> Output {
    run(lprng_cmd("lprm").args(["-P", printer, "-U", user, what]))
}

// ---- tests ----

#[test]
fn lpd_jobs_of_two_tenants_reach_their_own_devices_with_owner_and_name() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&config(&dev_a.uri(), &dev_b.uri(), ""));
    let lpd = d.addr("lpd");
    let mut handles = Vec::new();
    for i in 0..6 {
        for (t, src) in [
            ("a", format!("127.0.1.{}", 10 + i)),
            ("b", format!("127.0.2.{}", 10 + i)),
        ] {
            handles.push(std::thread::spawn(move || {
                let data = doc(&format!("{t}{i}"), 30_000 + i * 1000);
                let user = format!("user-{t}{i}");
                assert!(submit(
                    &src,
                    lpd,
                    "office",
                    &user,
                    &format!("job {t}{i}"),
                    &data
                ));
                (t, sha256(&data))
            }));
        }
    }
    let sent: Vec<(&str, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let want = |t: &str| -> Vec<String> {
        sent.iter()
            .filter(|s| s.0 == t)
            .map(|s| s.1.clone())
            .collect()
    };
    assert_eq!(dev_a.wait_for_digests(&want("a")).len(), 6);
    assert_eq!(dev_b.wait_for_digests(&want("b")).len(), 6);
    d.wait_log("job finished tenant=a job=6");
    d.wait_log("job finished tenant=b job=6");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    for t in ["a", "b"] {
        assert_eq!(jobs[t].len(), 6);
        for j in &jobs[t] {
            assert_eq!(j.state, JobState::Completed, "{j:?}");
            assert!(j.user.starts_with(&format!("user-{t}")), "{}", j.user);
            assert!(j.name.starts_with(&format!("job {t}")), "{}", j.name);
            assert_eq!(j.queue.as_deref(), Some("office"));
            assert_eq!(j.format.as_deref(), Some("application/postscript"));
        }
        assert!(d.spool_files(t).is_empty());
    }
}

#[test]
fn cups_lpd_backend_submits_control_first_and_data_first() {
    let _ports = reserved_ports();
    let backend = require("lpd");
    let dev_a = SocatDevice::start("127.0.1.50");
    let d = TestDaemon::start(&config(&dev_a.uri(), "socket://127.0.2.50:9", ""));
    let lpd = d.addr("lpd");
    let mut digests = Vec::new();
    for (i, order) in [
        "",
        "?order=data,control",
        "?reserve=none&order=control,data",
    ]
    .iter()
    .enumerate()
    {
        let data = doc(&format!("cups{i}"), 100_000 + i);
        let file = d.dir.path().join(format!("doc{i}.ps"));
        std::fs::write(&file, &data).unwrap();
        // Run as root, the backend binds a reserved source port on 127.0.0.1: tenant a.
        let out = run(Command::new(&backend)
            .args(["1", "alice", &format!("title {i}"), "1", ""])
            .arg(&file)
            .env("DEVICE_URI", format!("lpd://{lpd}/office{order}")));
        assert!(out.status.success(), "lpd backend failed");
        digests.push(sha256(&data));
    }
    dev_a.wait_for_digests(&digests);
    d.wait_log("job finished tenant=a job=3");
    let log = d.log();
    for i in 0..3 {
        assert!(log.contains("user=alice"), "{log}");
        assert!(log.contains(&format!("tenant=a job={}", i + 1)));
    }
    // An unknown queue is refused: the backend reports failure and nothing is kept.
    let file = d.dir.path().join("doc0.ps");
    let out = run(Command::new("timeout")
        .arg("60")
        .arg(&backend)
        .args(["9", "alice", "nope", "1", ""])
        .arg(&file)
        .env(
            "DEVICE_URI",
            format!("lpd://{lpd}/nosuchqueue?contimeout=5"),
        ));
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stderr).contains("ERROR"));
}

#[test]
fn lprng_lpr_lpq_lprm_see_only_their_own_tenants_jobs() {
    let d = TestDaemon::start(&config(
        "socket://127.0.1.50:9",
        "socket://127.0.2.50:9",
        "",
    ));
    let lpd = d.addr("lpd");
    // Tenant a: straight from 127.0.0.1; tenant b: through a relay from 127.0.2.20.
    let relay = free_port("127.0.0.21");
    let _relay = Relay::start(&format!("127.0.0.21:{relay}"), "127.0.2.20", lpd);
    let a = format!("held@127.0.0.1%{}", lpd.port());
    let b = format!("held@127.0.0.21%{relay}");
    let file = d.dir.path().join("memo.txt");
    std::fs::write(&file, doc("memo", 5000)).unwrap();
    let f = file.to_str().unwrap();
    assert!(lpr(&["-P", &a, "-U", "alice", "-J", "alice-memo", f])
        .status
        .success());
    assert!(lpr(&["-P", &a, "-U", "alice", "-J", "alice-second", f])
        .status
        .success());
    assert!(lpr(&["-P", &a, "-U", "dave", "-J", "dave-memo", f])
        .status
        .success());
    assert!(lpr(&["-P", &b, "-U", "carol", "-J", "carol-memo", f])
        .status
        .success());
    d.wait_log("job=3 peer=127.0.0.1");
    d.wait_log("tenant=b job=1");

    let qa = wait_until("tenant a's held jobs in lpq", || {
        let q = lpq(&a);
        (q.matches("hold").count() >= 3).then_some(q)
    });
    assert!(qa.contains("alice") && qa.contains("dave"), "{qa}");
    assert!(!qa.contains("carol"), "tenant a sees b's job: {qa}");
    let qb = lpq(&b);
    assert!(qb.contains("carol"), "{qb}");
    assert!(!qb.contains("alice") && !qb.contains("dave"), "{qb}");

    // dave may not remove alice's jobs; alice removes her job 1.
    lprm(&a, "dave", "alice");
    lprm(&a, "alice", "1");
    // Tenant b's job 1 is carol's, untouched by a's removal of its job 1.
    let qa = wait_until("alice's job 1 removed", || {
        let q = lpq(&a);
        (!q.contains("alice-memo") && q.contains("alice-second")).then_some(q)
    });
    assert!(qa.contains("dave-memo"), "{qa}");
    assert!(lpq(&b).contains("carol"));
    // b's admin-less user cannot remove anything of a; a's admin removes all of a's.
    lprm(&b, "boss", "all");
    assert!(lpq(&b).contains("carol"), "boss is a's admin, not b's");
    lprm(&a, "boss", "all");
    wait_until("tenant a's queue empty", || {
        lpq(&a).contains("no entries").then_some(())
    });
    assert!(lpq(&b).contains("carol"));
}

#[test]
fn rlpr_sends_two_jobs_with_copies_on_one_connection_from_tenant_b() {
    let _ports = reserved_ports();
    require("rlpr");
    let dev_b = SocatDevice::start("127.0.2.50");
    let d = TestDaemon::start(&config("socket://127.0.1.50:9", &dev_b.uri(), ""));
    // rlpr only speaks to port 515: a relay there, from tenant b's address.
    let _relay = Relay::start("127.0.0.15:515", "127.0.2.30", d.addr("lpd"));
    let one = doc("first", 20_000);
    let two = doc("second", 30_000);
    let (f1, f2) = (d.dir.path().join("one.ps"), d.dir.path().join("two.ps"));
    std::fs::write(&f1, &one).unwrap();
    std::fs::write(&f2, &two).unwrap();
    let out = run(Command::new(require("rlpr"))
        .args([
            "-H",
            "127.0.0.15",
            "-P",
            "office",
            "-U",
            "erin",
            "-J",
            "two files",
        ])
        .args(["--copies=2", "--timeout=20"])
        .arg(&f1)
        .arg(&f2));
    assert!(out.status.success(), "rlpr failed");
    // rlpr sends each file as a job of its own, both on one connection;
    // copies are repeated print lines, made by repeating the data.
    let want = [
        sha256(&[one.clone(), one].concat()),
        sha256(&[two.clone(), two].concat()),
    ];
    dev_b.wait_for_digests(&want);
    d.wait_log("job finished tenant=b job=2");
    assert!(d.log().contains("user=erin size=40000 files=1 copies=2"));
}

/// LPRng's lpd as the downstream printer, with its own lifetime.
struct LprngLpd {
    port: u16,
    child: Child,
}

impl LprngLpd {
    fn start() -> LprngLpd {
        let spool = Path::new(LPRNG).join("spool/fwd");
        for e in std::fs::read_dir(&spool).unwrap() {
            let _ = std::fs::remove_file(e.unwrap().path());
        }
        // LPRng's lpd signals the pid its lock file names (a previous
        // server's); after a crash that pid may be any process by now. A
        // stale lock goes, and lpd runs in a PID namespace of its own, so
        // whatever it signals, it can only reach itself; --kill-child ends
        // it (and its forked helpers) with the unshare process.
        for e in std::fs::read_dir(Path::new(LPRNG).join("run")).unwrap() {
            let _ = std::fs::remove_file(e.unwrap().path());
        }
        // Up to three tries: a free port found by binding and releasing can
        // be taken again before lpd binds it, and then lpd exits.
        let log = std::env::temp_dir().join(format!("lprng-lpd-{}.log", std::process::id()));
        for attempt in 1..=3 {
            let port = free_port("127.0.0.1");
            let mut child = lprng_cmd("lpd")
                .args(["-F", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let start = std::time::Instant::now();
            while start.elapsed() < WAIT / 3 {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return LprngLpd { port, child };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            eprintln!(
                "LPRng lpd (try {attempt}) did not listen on {port}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            // Dropping it ends its PID namespace, as for a running one.
            drop(LprngLpd { port, child });
        }
        panic!("LPRng lpd did not listen after three tries");
    }

    /// The held jobs' control information (`hfA*` files: key=value lines).
    fn held_jobs(&self) -> Vec<String> {
        let spool = Path::new(LPRNG).join("spool/fwd");
        std::fs::read_dir(spool)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("hfA"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

impl Drop for LprngLpd {
    fn drop(&mut self) {
        // lpd is the init of its PID namespace: killing it ends the whole
        // namespace. (--kill-child alone is not enough: lpd's switch to user
        // daemon clears its parent-death signal.)
        let pid = self.child.id();
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            for lpd in children.split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", lpd]).status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn forwarding_to_lprng_lpd_delivers_document_owner_and_job_name() {
    let _ports = reserved_ports();
    let down = LprngLpd::start();
    let uri = format!("lpd://127.0.0.1:{}/fwd?reserved-port=true", down.port);
    let d = TestDaemon::start(&config(&uri, "socket://127.0.2.50:9", ""));
    let data = doc("forwarded", 250_000);
    assert!(submit(
        "127.0.1.40",
        d.addr("lpd"),
        "office",
        "alice",
        "quarterly report",
        &data
    ));
    d.wait_log("job finished tenant=a job=1 state=\"completed\"");
    let hf = wait_until("the job held at LPRng", || {
        down.held_jobs()
            .into_iter()
            .find(|h| h.contains("J=quarterly report"))
    });
    assert!(hf.lines().any(|l| l == "P=alice"), "{hf}");
    // The source port was a reserved one (RFC 1179 3.1: 721-731).
    let port = hf
        .lines()
        .find_map(|l| l.strip_prefix("remoteport=0x"))
        .map(|h| u16::from_str_radix(h, 16).unwrap())
        .expect("remoteport in hf file");
    assert!((721..=731).contains(&port), "source port {port}");
    // The data file LPRng keeps holds exactly the document.
    let df: Vec<PathBuf> = std::fs::read_dir(Path::new(LPRNG).join("spool/fwd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("dfA"))
        .collect();
    assert_eq!(df.len(), 1, "{df:?}");
    assert_eq!(sha256(&std::fs::read(&df[0]).unwrap()), sha256(&data));
}

#[test]
fn quirks_of_real_clients_are_accepted() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let d = TestDaemon::start(&config(&dev_a.uri(), "socket://127.0.2.50:9", ""));
    let lpd = d.addr("lpd");
    let mut want = Vec::new();

    // Data file before control file, two data files, one printed twice;
    // lines ending in CR LF.
    let (a1, a2) = (doc("dfirst-a", 7000), doc("dfirst-b", 9000));
    let (mut s, r) = open_job("127.0.1.60", lpd, "office\r");
    assert_eq!(r, Some(0));
    send_file(&mut s, 3, "dfB002h", &a2);
    let cf = control(
        "frank",
        "data first",
        &[("dfA002h", 'l'), ("dfA002h", 'l'), ("dfB002h", 'l')],
    )
    .replace('\n', "\r\n");
    send_file(&mut s, 2, "cfA002h", cf.as_bytes());
    send_file(&mut s, 3, "dfA002h", &a1);
    drop(s);
    want.push(sha256(&[a1.clone(), a1, a2].concat()));

    // Several jobs on one connection.
    let (mut s, _) = open_job("127.0.1.61", lpd, "office");
    for i in 0..3 {
        let data = doc(&format!("several{i}"), 4096);
        let cf = control("gina", &format!("several {i}"), &[("dfA010h", 'o')]);
        send_file(&mut s, 2, &format!("cfA01{i}h"), cf.as_bytes());
        send_file(&mut s, 3, "dfA010h", &data);
        want.push(sha256(&data));
    }
    drop(s);

    // Placeholder lengths (0 and 999999999999): the data runs until the client closes.
    for (i, len) in ["0", "999999999999"].iter().enumerate() {
        let data = doc(&format!("placeholder{i}"), 50_000);
        let (mut s, _) = open_job("127.0.1.62", lpd, "office");
        let cf = control("hank", "placeholder", &[("dfA020h", 'l')]);
        send_file(&mut s, 2, "cfA020h", cf.as_bytes());
        s.write_all(format!("\x03{len} dfA020h\n").as_bytes())
            .unwrap();
        expect_ack(&mut s, "placeholder data file command");
        s.write_all(&data).unwrap();
        s.write_all(&[0]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // The final acknowledgement comes after the commit, on the half-closed connection.
        expect_ack(&mut s, "placeholder data file");
        want.push(sha256(&data));
    }
    dev_a.wait_for_digests(&want);
    d.wait_log("job finished tenant=a job=6");
    let log = d.log();
    assert!(
        log.contains("user=frank") && log.contains("files=2 copies=3"),
        "{log}"
    );
}

#[test]
fn hostile_clients_are_refused_while_another_tenant_is_served() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&config(
        &dev_a.uri(),
        &dev_b.uri(),
        "idle-timeout = \"1s\", max-job-size = \"1 MiB\"",
    ));
    let lpd = d.addr("lpd");
    // A well-behaved client of tenant b keeps submitting meanwhile.
    let good = std::thread::spawn(move || {
        let mut sent = Vec::new();
        for i in 0..20 {
            let data = doc(&format!("good{i}"), 8000);
            assert!(
                submit("127.0.2.70", lpd, "office", "ivy", "good", &data),
                "b's job {i}"
            );
            sent.push(sha256(&data));
        }
        sent
    });

    // 1,000 bogus commands, each on its own connection: negative ack, closed.
    for i in 0..1000u32 {
        let mut s = connect_from("127.0.1.80", lpd).unwrap();
        let junk = [(i % 250) as u8 + 6, b'x', b'\n'];
        s.write_all(&junk).unwrap();
        assert_eq!(ack(&mut s), Some(1), "bogus command {i}");
    }
    // Bogus subcommands after a good command: negative ack, closed.
    let (mut s, _) = open_job("127.0.1.81", lpd, "office");
    s.write_all(b"\x09what\n").unwrap();
    assert_eq!(ack(&mut s), Some(1));
    assert_eq!(ack(&mut s), None, "closed after the negative ack");
    // Unknown queue, address of no tenant, oversized declared length.
    assert_eq!(open_job("127.0.1.82", lpd, "nosuchqueue").1, Some(1));
    assert_eq!(open_job("127.0.9.9", lpd, "office").1, Some(1));
    assert!(query("127.0.9.9", lpd, "\x03office\n").contains("no such queue"));
    let (mut s, _) = open_job("127.0.1.83", lpd, "office");
    s.write_all(b"\x032000000 dfA001h\n").unwrap();
    assert_eq!(ack(&mut s), Some(1), "data file over max-job-size");
    // A control file that lies about its length (shorter than it is).
    let (mut s, _) = open_job("127.0.1.84", lpd, "office");
    let cf = control("mallory", "liar", &[("dfA001h", 'l')]);
    s.write_all(b"\x0210 cfA001h\n").unwrap();
    expect_ack(&mut s, "control file command");
    s.write_all(cf.as_bytes()).unwrap();
    s.write_all(&[0]).unwrap();
    assert_eq!(ack(&mut s), Some(1), "lying control file");
    // A truncated data file: the client closes half-way.
    let (mut s, _) = open_job("127.0.1.85", lpd, "office");
    send_file(&mut s, 2, "cfA001h", cf.as_bytes());
    s.write_all(b"\x031000 dfA001h\n").unwrap();
    expect_ack(&mut s, "data file command");
    s.write_all(&[b'x'; 500]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(ack(&mut s), None, "truncated job is not acknowledged");
    // A slow sender stalls mid-file: cut off after idle-timeout, unacknowledged.
    let (mut s, _) = open_job("127.0.1.86", lpd, "office");
    send_file(&mut s, 2, "cfA001h", cf.as_bytes());
    s.write_all(b"\x031000 dfA001h\n").unwrap();
    expect_ack(&mut s, "data file command");
    s.write_all(&[b'x'; 10]).unwrap();
    assert_eq!(ack(&mut s), None, "slow sender is cut off");
    // A placeholder-length data file beyond max-job-size.
    let (mut s, _) = open_job("127.0.1.87", lpd, "office");
    send_file(&mut s, 2, "cfA001h", cf.as_bytes());
    s.write_all(b"\x030 dfA001h\n").unwrap();
    expect_ack(&mut s, "data file command");
    let chunk = vec![b'y'; 64 << 10];
    for _ in 0..24 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    assert_ne!(ack(&mut s), Some(0), "over-size stream is refused");

    // Tenant a is still served, and so was b all along.
    let fine = doc("a-after", 3000);
    assert!(submit("127.0.1.88", lpd, "office", "judy", "after", &fine));
    dev_a.wait_for_digests(&[sha256(&fine)]);
    let sent_b = good.join().unwrap();
    dev_b.wait_for_digests(&sent_b);
    d.wait_log("job finished tenant=a job=1");
    d.wait_log("job finished tenant=b job=20");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    assert_eq!(
        jobs["a"].len(),
        1,
        "only a's good job was kept: {:?}",
        jobs["a"]
    );
    assert_eq!(jobs["a"][0].user, "judy");
    assert_eq!(jobs["b"].len(), 20);
    assert!(d.spool_files("a").is_empty(), "{:?}", d.spool_files("a"));
    assert!(!jobs.contains_key("c"));
}
