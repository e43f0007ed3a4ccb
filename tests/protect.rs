//! Tenant data protection against the host: planted links in store folders,
//! the umask, a local user flooding the control socket, LPD data files held
//! aside, admins known only to the name service, and readiness. The real
//! binary, real clients (the CLI, `setpriv`, `prlimit`, `unshare`, perl's
//! sockets) and real file systems; nothing mocked.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Runs the CLI as root against `socket`; returns (success, stdout + stderr).
fn cli(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The final state of a job, asked over the control socket (waits for it).
fn final_state(socket: &Path, job: &str) -> String {
    wait_until(&format!("job {job} to finish"), || {
        let (ok, out) = cli(socket, &["job", job, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        let state = v["state"].as_str()?.to_owned();
        ["completed", "aborted", "canceled"]
            .contains(&state.as_str())
            .then_some(state)
    })
}

/// A RAW document whose PJL header names the job.
fn pjl_doc(name: &str, body: &str) -> Vec<u8> {
    format!("\x1b%-12345X@PJL JOB NAME = \"{name}\"\r\n@PJL ENTER LANGUAGE = PCL\r\n{body}")
        .into_bytes()
}

/// Every entry under `root` (not following symlinks), except below `skip`:
/// its kind, mode, inode, link count, size, link target or content digest.
fn tree(root: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                todo.push(p.clone());
                "dir".to_owned()
            } else if m.file_type().is_socket() {
                "socket".to_owned()
            } else {
                sha256(&std::fs::read(&p).unwrap())
            };
            out.insert(
                p,
                format!(
                    "{what} mode {:o} ino {} nlink {} size {}",
                    m.mode(),
                    m.ino(),
                    m.nlink(),
                    m.len()
                ),
            );
        }
    }
    out
}

use std::os::unix::fs::FileTypeExt;

/// The example config's store step (`config/printroute.toml`: globex from
/// 127.0.2.0/24 stores RAW jobs into `archive/globex`), plus a neighbour
/// tenant storing into `archive/initech`, and a control socket.
fn store_config(follow: bool) -> String {
    let follow = if follow {
        ", follow-symlink = true"
    } else {
        ""
    };
    format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.globex]
name = "Globex"
ranges = ["127.0.2.0/24"]
[tenant.globex.workflow.archive]
steps = [{{ step = "store", folder = "{{dir}}/archive/globex"{follow} }}]
[[tenant.globex.input]]
listener = "raw"
workflow = "archive"
[tenant.initech]
ranges = ["127.0.3.0/24"]
[tenant.initech.workflow.archive]
steps = [{{ step = "store", folder = "{{dir}}/archive/initech" }}]
[[tenant.initech.input]]
listener = "raw"
workflow = "archive"
"#
    )
}

#[test]
fn store_step_never_follows_or_overwrites_planted_links() {
    let mut d = TestDaemon::start(&store_config(false));
    let (raw, sock) = (d.addr("raw"), d.dir.path().join("control.sock"));
    let root = d.dir.path().to_owned();
    let (globex, initech) = (root.join("archive/globex"), root.join("archive/initech"));
    std::fs::create_dir_all(&globex).unwrap();
    std::fs::create_dir_all(&initech).unwrap();
    // Files outside the folders, which a planted link points at.
    let victim = root.join("victim.txt");
    let victim2 = root.join("victim2.txt");
    std::fs::write(&victim, "ORIGINAL").unwrap();
    std::fs::write(&victim2, "ORIGINAL 2").unwrap();
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();

    // Job 1 "report": the name it would get and its first suffixes are taken
    // by symlinks and a hard link to files outside; so is the temp name the
    // store step used to write through.
    std::os::unix::fs::symlink(&victim, globex.join(".printroute-globex-1.tmp")).unwrap();
    std::os::unix::fs::symlink(&victim, globex.join("1-report")).unwrap();
    std::fs::hard_link(&victim2, globex.join("1-report-1")).unwrap();
    std::os::unix::fs::symlink(root.join("nonexistent"), globex.join("1-report-2")).unwrap();
    // Job 2 "all": every name it could be stored under is a symlink.
    std::os::unix::fs::symlink(&victim, globex.join("2-all")).unwrap();
    for n in 1..=printroute::dispatch::folder::MAX_NAME_SUFFIXES {
        std::os::unix::fs::symlink(&victim, globex.join(format!("2-all-{n}"))).unwrap();
    }
    // The store folders (and the folder holding them, which the test changes) aside.
    let skip = [root.join("archive"), d.data_dir(), root.join("daemon.log")];
    let outside = tree(&root, &skip);
    let planted = tree(&globex, &[]);

    let doc1 = pjl_doc("report", "EVIL globex 1");
    assert_eq!(raw_send("127.0.2.7", raw, &doc1), RawOutcome::Acknowledged);
    assert_eq!(final_state(&sock, "globex/1"), "completed");
    assert_eq!(std::fs::read(globex.join("1-report-3")).unwrap(), doc1);

    let doc2 = pjl_doc("all", "EVIL globex 2");
    assert_eq!(raw_send("127.0.2.7", raw, &doc2), RawOutcome::Acknowledged);
    assert_eq!(
        final_state(&sock, "globex/2"),
        "aborted",
        "every name taken"
    );
    let (_, out) = cli(&sock, &["job", "globex/2", "--json"]);
    assert!(out.contains("are all taken"), "{out}");

    // The neighbour's first job has the same name, in its own folder.
    let doc3 = pjl_doc("report", "initech 1");
    assert_eq!(raw_send("127.0.3.9", raw, &doc3), RawOutcome::Acknowledged);
    assert_eq!(final_state(&sock, "initech/1"), "completed");
    assert_eq!(std::fs::read(initech.join("1-report")).unwrap(), doc3);

    // Between jobs, globex's folder is swapped for a symlink to a folder outside.
    std::fs::rename(&globex, root.join("archive/globex.real")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &globex).unwrap();
    let doc4 = pjl_doc("report", "EVIL globex 3");
    assert_eq!(raw_send("127.0.2.7", raw, &doc4), RawOutcome::Acknowledged);
    assert_eq!(
        final_state(&sock, "globex/3"),
        "aborted",
        "folder is a symlink"
    );
    let (_, out) = cli(&sock, &["job", "globex/3", "--json"]);
    assert!(out.contains("is a symlink; refused"), "{out}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // Nothing outside the folders changed; nothing planted was overwritten
    // or written through; every stored file is its own job's.
    assert_eq!(
        tree(&root, &skip),
        outside,
        "files outside the store folders changed"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "ORIGINAL");
    assert_eq!(std::fs::read_to_string(&victim2).unwrap(), "ORIGINAL 2");
    let real = root.join("archive/globex.real");
    let mut after = tree(&real, &[]);
    let stored = after
        .remove(&real.join("1-report-3"))
        .expect("job 1 stored");
    assert!(stored.starts_with(&sha256(&doc1)), "{stored}");
    let before: BTreeMap<PathBuf, String> = planted
        .into_iter()
        .map(|(p, v)| (real.join(p.strip_prefix(&globex).unwrap()), v))
        .collect();
    // The hard link's target is untouched, so its entry is too (same inode, content).
    assert_eq!(
        after, before,
        "a planted entry changed, or a temp file was left"
    );
    let initech_files: Vec<_> = std::fs::read_dir(&initech).unwrap().collect();
    assert_eq!(
        initech_files.len(),
        1,
        "only initech's own job in its folder"
    );

    // With follow-symlink = true on the step, the symlinked folder is used.
    d.write_config(&store_config(true));
    d.signal("HUP");
    d.wait_log("new snapshot in force");
    let doc5 = pjl_doc("report", "globex 4");
    assert_eq!(raw_send("127.0.2.7", raw, &doc5), RawOutcome::Acknowledged);
    assert_eq!(final_state(&sock, "globex/4"), "completed");
    assert_eq!(std::fs::read(elsewhere.join("4-report")).unwrap(), doc5);
    assert_eq!(d.stop(), 0);
}

#[test]
fn check_refuses_two_tenants_storing_into_one_folder_or_nested_folders() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(false)
        .replace("{data}", &dir.path().join("data").display().to_string())
        .replace("{dir}", &dir.path().display().to_string())
        .replace("archive/initech", "archive/globex/initech");
    let path = dir.path().join("printroute.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("tenant.initech.workflow.archive.steps[0].folder")
            && err.contains("(tenant initech) lies inside")
            && err.contains("(tenant.globex.workflow.archive.steps[0].folder, tenant globex)"),
        "{err}"
    );
}

/// A hold workflow (documents stay in the spool) and a store workflow.
fn private_config(group_readable: bool) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}/private/data"
group-readable = {group_readable}
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
workflow.held = {{ steps = [{{ step = "hold" }}] }}
input = [{{ listener = "raw", workflow = "held" }}]
[tenant.b]
ranges = ["127.0.2.0/24"]
workflow.archive = {{ steps = [{{ step = "store", folder = "{{dir}}/archive/b" }}] }}
input = [{{ listener = "raw", workflow = "archive" }}]
"#
    )
}

/// Modes of every folder and file the daemon made for a held and a stored
/// job, started under umask 0: (is a folder, mode) by path.
fn modes_after_two_jobs(group_readable: bool) -> BTreeMap<String, (bool, u32)> {
    let umask0 = ["sh", "-c", "umask 0; exec \"$@\"", "sh"];
    let probe = Command::new(umask0[0])
        .args(&umask0[1..])
        .args(["cat", "/proc/self/status"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&probe.stdout).contains("Umask:\t0000"),
        "the wrapper starts its command under umask 0"
    );
    let mut d = TestDaemon::start_wrapped(&private_config(group_readable), &[], &umask0);
    // The daemon narrows its umask for what sled creates.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let narrowed = if group_readable { "0027" } else { "0077" };
    assert!(status.contains(&format!("Umask:\t{narrowed}")), "{status}");
    let raw = d.addr("raw");
    assert_eq!(
        raw_send("127.0.1.5", raw, b"held a"),
        RawOutcome::Acknowledged
    );
    assert_eq!(
        raw_send("127.0.2.5", raw, b"stored b"),
        RawOutcome::Acknowledged
    );
    let archive = d.dir.path().join("archive");
    wait_until("the stored file", || {
        (!stored_documents(&archive.join("b")).is_empty()).then_some(())
    });
    assert_eq!(d.stop(), 0);
    let mut modes = BTreeMap::new();
    // Everything under the folders the daemon created: `private` above the
    // data dir, and `archive` above the store folder.
    let mut todo = vec![d.data_dir().join("private"), archive];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        let name = p.strip_prefix(d.dir.path()).unwrap().display().to_string();
        modes.insert(name, (m.is_dir(), m.mode() & 0o7777));
    }
    for want in [
        "data/private/data/db/db",
        "data/private/data/spool/a",
        "archive/b",
    ] {
        assert!(modes.contains_key(want), "{want} in {modes:#?}");
    }
    assert!(
        modes
            .keys()
            .any(|k| k.starts_with("data/private/data/spool/a/")),
        "a's held document: {modes:#?}"
    );
    assert!(
        modes.keys().any(|k| k.starts_with("archive/b/")),
        "b's stored file: {modes:#?}"
    );
    modes
}

#[test]
fn data_is_private_under_umask_0() {
    let modes = modes_after_two_jobs(false);
    for (p, (dir, m)) in &modes {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{p}: {m:o} in {modes:#?}");
    }
}

#[test]
fn group_readable_data_under_umask_0() {
    let modes = modes_after_two_jobs(true);
    for (p, (dir, m)) in &modes {
        let want = if *dir { 0o750 } else { 0o640 };
        assert_eq!(*m, want, "{p}: {m:o} in {modes:#?}");
    }
}

/// Opens `n` connections to the control socket as the user perl runs as and
/// keeps them idle until its stdin closes; returns it once they are open.
fn flood(socket: &Path, n: usize, as_user: Option<&str>) -> std::process::Child {
    let script = r#"use IO::Socket::UNIX; use IO::Handle; my ($path, $n) = @ARGV; my @s;
        for (1..$n) { my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path); push @s, $s if $s; }
        print "open ", scalar(@s), "\n"; STDOUT->flush; <STDIN>;"#;
    let mut c = match as_user {
        Some(u) => {
            let mut c = Command::new(require("setpriv"));
            c.args([&format!("--reuid={u}"), "--regid=nogroup", "--clear-groups"])
                .arg(require("perl"));
            c
        }
        None => Command::new(require("perl")),
    };
    let mut child = c
        .args(["-e", script])
        .arg(socket)
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 64];
    let n_read = child.stdout.as_mut().unwrap().read(&mut line).unwrap();
    let line = String::from_utf8_lossy(&line[..n_read]);
    assert!(line.starts_with("open "), "{line}");
    child
}

/// Descriptors the daemon has open.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The daemon's descriptor limit in the flood test.
const FLOOD_NOFILE: usize = 128;
/// Idle connections the flood opens, per flooding user: more than the limit.
const FLOOD_CONNECTIONS: usize = 400;
/// Jobs the tenant prints during the flood.
const FLOOD_JOBS: usize = 20;

#[test]
fn control_socket_flood_does_not_starve_printing() {
    let d = TestDaemon::start_wrapped(
        &store_config(false),
        &[],
        &[
            "prlimit",
            &format!("--nofile={FLOOD_NOFILE}:{FLOOD_NOFILE}"),
            "--",
        ],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().nth(3) == Some(&FLOOD_NOFILE.to_string())),
        "{limits}"
    );
    let sock = d.dir.path().join("control.sock");
    // The socket's folder is the test's temp dir: let the unprivileged user reach it.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = fds(d.pid());
    // A local nobody and an admin (root) each hold hundreds of idle connections.
    let mut floods = vec![
        flood(&sock, FLOOD_CONNECTIONS, Some("nobody")),
        flood(&sock, FLOOD_CONNECTIONS, None),
    ];
    let raw = d.addr("raw");
    let mut most = 0;
    for i in 0..FLOOD_JOBS {
        let doc = pjl_doc(&format!("flood{i}"), &format!("during the flood {i}"));
        assert_eq!(
            raw_send("127.0.2.7", raw, &doc),
            RawOutcome::Acknowledged,
            "job {i}"
        );
        most = most.max(fds(d.pid()));
    }
    for i in 1..=FLOOD_JOBS {
        assert_eq!(final_state(&sock, &format!("globex/{i}")), "completed");
    }
    let stored = std::fs::read_dir(d.dir.path().join("archive/globex"))
        .unwrap()
        .count();
    assert_eq!(stored, FLOOD_JOBS);
    eprintln!(
        "flood: daemon descriptors {base} at start, at most {most} while {FLOOD_JOBS} jobs printed"
    );
    let bound = base + printroute::admin::control::MAX_CONNECTIONS + FLOOD_JOBS;
    assert!(
        most <= bound && most < FLOOD_NOFILE,
        "descriptors {most} > {bound} (at start {base})"
    );
    // An admin is still served meanwhile.
    let (ok, out) = cli(&sock, &["status"]);
    assert!(ok, "{out}");
    for mut f in floods.drain(..) {
        drop(f.stdin.take());
        f.wait().unwrap();
    }
    d.wait_log("control connection refused");
    assert!(!d.log().contains("Too many open files"), "{}", d.log());
}

#[test]
fn readiness_means_the_control_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let d = TestDaemon::start_with_env(
        &store_config(false),
        &[("NOTIFY_SOCKET", notify_path.display().to_string())],
    );
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1"), "{msg}");
    // READY=1 came after the bind: the socket answers at once.
    let (ok, out) = cli(&d.dir.path().join("control.sock"), &["status", "--json"]);
    assert!(ok, "{out}");
    assert!(out.contains("globex"), "{out}");
}

/// LPD sessions that each send many data files and never their control file.
const HELD_SESSIONS: usize = 16;
/// Data files per session, all held aside.
const HELD_FILES: usize = printroute::intake::lpd::MAX_HELD_ASIDE_FILES;
/// Size of each held data file.
const HELD_FILE_SIZE: usize = 64 << 10;
/// Most the daemon's resident memory may grow while the sessions hold their files.
const HELD_RSS_GROWTH_KIB: u64 = 32 << 10;
/// Most it may stay above where it started once they closed.
const HELD_RSS_AFTER_KIB: u64 = 24 << 10;
/// Descriptors each held session may add (its socket and a spare).
const HELD_FDS_PER_SESSION: usize = 2;

#[test]
fn lpd_data_files_held_aside_keep_memory_and_descriptors_bounded() {
    let d = TestDaemon::start(
        r#"
[global]
data-dir = "{data}"
[global.limits]
max-receives = 64
# Sessions wait while the others send (a minute or more on a busy machine).
idle-timeout = "10m"
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
workflow.held = { steps = [{ step = "hold" }] }
input = [{ listener = "lpd", queue = "q", workflow = "held" }]
[tenant.b]
ranges = ["127.0.2.0/24"]
limits = { spool-quota = "1 MiB" }
workflow.held = { steps = [{ step = "hold" }] }
input = [{ listener = "lpd", queue = "q", workflow = "held" }]
"#,
    );
    let (lpd, pid) = (d.addr("lpd"), d.pid());
    let (rss0, fds0) = (rss_kib(pid), fds(pid));
    let ack = |s: &mut std::net::TcpStream| {
        let mut b = [9u8; 1];
        s.read_exact(&mut b).map(|_| b[0]).unwrap_or(255)
    };
    let data = vec![b'x'; HELD_FILE_SIZE];
    let mut sessions = Vec::new();
    for i in 0..HELD_SESSIONS {
        let mut s = connect_from(&format!("127.0.1.{}", 10 + i), lpd).unwrap();
        s.write_all(b"\x02q\n").unwrap();
        assert_eq!(ack(&mut s), 0);
        for f in 0..HELD_FILES {
            let letter = (if f < 26 {
                b'A' + f as u8
            } else {
                b'a' + (f - 26) as u8
            }) as char;
            s.write_all(format!("\x03{} df{letter}{i:03}client\n", data.len()).as_bytes())
                .unwrap();
            assert_eq!(ack(&mut s), 0, "session {i} file {f}");
            s.write_all(&data).unwrap();
            s.write_all(&[0]).unwrap();
            assert_eq!(ack(&mut s), 0, "session {i} file {f}");
        }
        sessions.push(s);
    }
    let (rss1, fds1) = (rss_kib(pid), fds(pid));
    eprintln!("held aside: RSS {rss0} -> {rss1} KiB, descriptors {fds0} -> {fds1}");
    assert!(
        fds1 <= fds0 + HELD_SESSIONS * HELD_FDS_PER_SESSION,
        "descriptors {fds0} -> {fds1}"
    );
    assert!(
        rss1 <= rss0 + HELD_RSS_GROWTH_KIB,
        "RSS {rss0} -> {rss1} KiB"
    );
    let spool_files = d.spool_files("a").len();
    assert_eq!(
        spool_files,
        HELD_SESSIONS * HELD_FILES,
        "each held file waits in the spool"
    );

    // One more held file than a session may hold is refused.
    let s = &mut sessions[0];
    s.write_all(format!("\x03{} dfA999other\n", data.len()).as_bytes())
        .unwrap();
    assert_eq!(ack(s), 1, "past MAX_HELD_ASIDE_FILES");

    // Held files count against the tenant's spool quota (b: 1 MiB).
    let mut b = connect_from("127.0.2.10", lpd).unwrap();
    b.write_all(b"\x02q\n").unwrap();
    assert_eq!(ack(&mut b), 0);
    let big = vec![b'y'; 256 << 10];
    let mut accepted = 0;
    for letter in 'A'..='Z' {
        b.write_all(format!("\x03{} df{letter}001client\n", big.len()).as_bytes())
            .unwrap();
        if ack(&mut b) != 0 {
            break;
        }
        if b.write_all(&big).and_then(|_| b.write_all(&[0])).is_err() || ack(&mut b) != 0 {
            break;
        }
        accepted += 1;
    }
    assert_eq!(
        accepted, 4,
        "files of 256 KiB held aside within a 1 MiB quota"
    );
    drop(b);

    drop(sessions);
    let (rss2, fds2) = wait_until("the sessions' descriptors and files to go", || {
        let f = fds(pid);
        // Each tenant's spool folder, opened with its first document, stays open.
        (f <= fds0 + 2 && d.spool_files("a").is_empty()).then(|| (rss_kib(pid), f))
    });
    eprintln!("after the sessions: RSS {rss2} KiB, descriptors {fds2}");
    assert!(
        rss2 <= rss0 + HELD_RSS_AFTER_KIB,
        "RSS {rss0} -> {rss2} KiB after"
    );
}

/// A user and group only the name service's `extrausers` database has.
const NSS_USER: &str = "prt-nss-admin";
const NSS_UID: u32 = 47_111;
const NSS_GROUP: &str = "prt-nss-admins";
const NSS_GID: u32 = 47_112;
/// A user the name service knows, in no admin group.
const NSS_OTHER_UID: u32 = 47_113;

/// Removes what the test wrote into /var/lib/extrausers, even on a panic.
struct ExtraUsers {
    written: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Drop for ExtraUsers {
    fn drop(&mut self) {
        for (path, before) in &self.written {
            match before {
                Some(b) => {
                    let _ = std::fs::write(path, b);
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

#[test]
fn an_admin_known_only_through_nss_is_recognised() {
    assert!(
        Path::new("/usr/lib/libnss_extrausers.so.2").exists()
            || Path::new("/lib/x86_64-linux-gnu/libnss_extrausers.so.2").exists(),
        "libnss-extrausers is not installed: run scripts/test, which installs it"
    );
    let getent = |db: &str, key: &str| {
        Command::new("getent")
            .args([db, key])
            .status()
            .unwrap()
            .success()
    };
    assert!(
        !getent("passwd", NSS_USER),
        "{NSS_USER} must not exist in the system's own databases"
    );
    let dir = Path::new("/var/lib/extrausers");
    std::fs::create_dir_all(dir).unwrap();
    let mut guard = ExtraUsers {
        written: Vec::new(),
    };
    for (file, lines) in [
        (
            "passwd",
            format!(
                "{NSS_USER}:x:{NSS_UID}:{NSS_UID}::/nonexistent:/usr/sbin/nologin\nprt-nss-other:x:{NSS_OTHER_UID}:{NSS_OTHER_UID}::/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "group",
            // The admin group lists the user only as a member: only getgrouplist finds it.
            format!("{NSS_USER}:x:{NSS_UID}:\n{NSS_GROUP}:x:{NSS_GID}:{NSS_USER}\nprt-nss-other:x:{NSS_OTHER_UID}:\n"),
        ),
    ] {
        let path = dir.join(file);
        let before = std::fs::read(&path).ok();
        let mut text = before.clone().unwrap_or_default();
        text.extend_from_slice(lines.as_bytes());
        guard.written.push((path.clone(), before));
        std::fs::write(&path, text).unwrap();
    }
    // A private nsswitch.conf with extrausers, bound over /etc/nsswitch.conf
    // only inside the daemon's own mount namespace.
    let tmp = tempfile::tempdir().unwrap();
    let nsswitch = tmp.path().join("nsswitch.conf");
    let system = std::fs::read_to_string("/etc/nsswitch.conf").unwrap();
    let private: String = system
        .lines()
        .map(|l| {
            if l.starts_with("passwd:") || l.starts_with("group:") {
                format!("{l} extrausers\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&nsswitch, private).unwrap();
    let bind = format!(
        "mount --bind {} /etc/nsswitch.conf && exec \"$@\"",
        nsswitch.display()
    );
    let d = TestDaemon::start_wrapped(
        &format!(
            r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
admins = {{ unix-groups = ["{NSS_GROUP}"] }}
workflow.held = {{ steps = [{{ step = "hold" }}] }}
input = [{{ listener = "raw", workflow = "held" }}]
[tenant.b]
ranges = ["127.0.2.0/24"]
workflow.held = {{ steps = [{{ step = "hold" }}] }}
input = [{{ listener = "raw", workflow = "held" }}]
"#
        ),
        &[],
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &bind,
            "sh",
        ],
    );
    // Outside the daemon's namespace the system still knows nothing of the user.
    assert_eq!(
        std::fs::read_to_string("/etc/nsswitch.conf").unwrap(),
        system
    );
    assert!(!getent("passwd", NSS_USER));
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"a's job"),
        RawOutcome::Acknowledged
    );
    assert_eq!(
        raw_send("127.0.2.5", d.addr("raw"), b"b's job"),
        RawOutcome::Acknowledged
    );
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = d.dir.path().join("control.sock");
    let as_uid = |uid: u32, args: &[&str]| {
        let out = Command::new(require("setpriv"))
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .arg(bin())
            .args(args)
            .arg("--socket")
            .arg(&sock)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = wait_until("a's job to be held", || {
        let r = as_uid(NSS_UID, &["jobs", "--json"]);
        (r.0 && r.1.contains("held")).then_some(r)
    });
    assert!(ok, "{out}");
    let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tenants: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["a"], "the NSS admin of a sees a's job only");
    let (ok, out) = as_uid(NSS_OTHER_UID, &["jobs"]);
    assert!(!ok && out.contains("permission denied"), "{out}");
}
