//! A moment of disk-full never stops the daemon: with the data dir on a
//! small tmpfs (the tests run as root), a full file system fails the
//! commits of that moment — their jobs are refused in their protocols, a
//! cancel fails and the job stays as it was — and once space is freed,
//! every tenant's jobs are accepted again without a restart, and nothing
//! acknowledged is lost. Commits that keep failing past
//! `store-failure-restart-after` stop the watchdog pings and the daemon,
//! with a non-zero exit, so that systemd restarts it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use printroute::store::job::JobState;

/// Size of the data dir's file system.
const TMPFS_SIZE: &str = "48m";

/// A tmpfs mounted on a folder of the test's, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs (the tests run as root)");
        Tmpfs(at.to_path_buf())
    }

    /// Fills the file system to the last byte; the filler file.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=1M"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status();
        // dd stops at ENOSPC; take the last blocks too.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&filler)
            .unwrap();
        let page = [0u8; 4096];
        while std::io::Write::write_all(&mut f, &page).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn config(data: &Path, device: &str, restart_after: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{}"
control-socket = "{{dir}}/control.sock"
min-free-space = "64 KiB"
store-failure-restart-after = "{restart_after}"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
workflow.keep = {{ steps = [{{ step = "hold" }}] }}
input = [{{ listener = "raw", workflow = "keep" }}]
[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{device}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]
"#,
        data.display()
    )
}

#[test]
fn a_full_disk_refuses_only_its_moment_and_the_daemon_heals_without_a_restart() {
    let dev = RecordingDevice::good("127.0.2.50");
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("data"));
    let mut d = TestDaemon::start(&config(&fs.0, &dev.uri(), "1h"));
    let raw = d.addr("raw");

    // Before: three held jobs of a, one delivered job of b.
    let mut acked_a = Vec::new();
    for i in 0..3 {
        let doc = document_with("", &format!("a-before-{i}"), 8 << 10);
        assert_eq!(raw_send("127.0.1.7", raw, &doc), RawOutcome::Acknowledged);
        acked_a.push(sha256(&doc));
    }
    let b1 = document_with("", "b-before", 8 << 10);
    assert_eq!(raw_send("127.0.2.7", raw, &b1), RawOutcome::Acknowledged);
    wait_until("b's first job printed", || {
        (dev.printed() == vec![sha256(&b1)]).then_some(())
    });

    // The disk fills up (another program, a log gone wild).
    let filler = fs.fill();
    // A cancel's record cannot be written: the cancel fails, the job stays held.
    let (ok, out) = d.cli(&["cancel", "a/1"]);
    assert!(!ok, "cancel on a full disk: {out}");
    // New jobs of both tenants are refused in RAW's way (a reset), not lost.
    let refused_a = document_with("", "a-during", 8 << 10);
    assert_eq!(raw_send("127.0.1.7", raw, &refused_a), RawOutcome::Refused);
    let refused_b = document_with("", "b-during", 8 << 10);
    assert_eq!(raw_send("127.0.2.7", raw, &refused_b), RawOutcome::Refused);
    // The status says so.
    let (ok, status) = d.cli(&["status", "--json"]);
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["store"]["failing-since-ms"].as_u64().is_some(),
        "{status}"
    );
    assert!(status["store"]["failed-groups"].as_u64().unwrap() >= 1);

    // Space comes back: no restart, every tenant's jobs are taken again.
    std::fs::remove_file(filler).unwrap();
    // The daemon finds out by itself (it probes while commits fail), before
    // any client writes again: an idle daemon is not restarted for a moment
    // of full disk long past.
    wait_until("the store healthy again without a new job", || {
        let (_, status) = d.cli(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_str(&status).ok()?;
        status["store"]["failing-since-ms"].is_null().then_some(())
    });
    let a2 = document_with("", "a-after", 8 << 10);
    let b2 = document_with("", "b-after", 8 << 10);
    wait_until("a's jobs accepted again", || {
        (raw_send("127.0.1.7", raw, &a2) == RawOutcome::Acknowledged).then_some(())
    });
    acked_a.push(sha256(&a2));
    assert_eq!(raw_send("127.0.2.7", raw, &b2), RawOutcome::Acknowledged);
    wait_until("b's job printed after the disk-full", || {
        (dev.printed() == vec![sha256(&b1), sha256(&b2)]).then_some(())
    });
    let (ok, out) = d.cli(&["cancel", "a/1"]);
    assert!(ok, "cancel after space came back: {out}");
    let (ok, out) = d.cli(&["release", "a/2"]);
    assert!(ok, "release after space came back: {out}");
    let (_, status) = d.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["store"]["failing-since-ms"].is_null(), "{status}");

    // Nothing acknowledged was lost; nothing refused was kept.
    assert_eq!(d.stop(), 0);
    let jobs = stored_jobs_at(&fs.0);
    let a: Vec<(String, JobState)> = jobs["a"]
        .iter()
        .map(|j| (j.sha256.clone(), j.state))
        .collect();
    for sha in &acked_a {
        assert!(
            a.iter().any(|(s, _)| s == sha),
            "acknowledged job lost: {a:?}"
        );
    }
    assert_eq!(a.len(), acked_a.len(), "{a:?}");
    assert!(
        a.contains(&(acked_a[0].clone(), JobState::Canceled)),
        "{a:?}"
    );
    assert!(
        a.contains(&(acked_a[1].clone(), JobState::Completed)),
        "{a:?}"
    );
    assert!(a.contains(&(acked_a[2].clone(), JobState::Held)), "{a:?}");
    assert_eq!(jobs["b"].len(), 2);
    assert!(jobs["b"].iter().all(|j| j.state == JobState::Completed));
}

#[test]
fn commits_that_keep_failing_stop_the_watchdog_and_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("data"));
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut d = TestDaemon::start_with_env(
        &config(&fs.0, "socket://127.0.2.50:9", "3s"),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_owned()),
            ("WATCHDOG_USEC", "400000".to_owned()),
        ],
    );
    let raw = d.addr("raw");
    assert_eq!(
        raw_send("127.0.1.7", raw, b"%!PS\nkept\n"),
        RawOutcome::Acknowledged
    );
    let _filler = fs.fill();
    // A failing commit, then nothing that heals it.
    let (ok, _) = d.cli(&["cancel", "a/1"]);
    assert!(!ok);
    let mut messages = Vec::new();
    let started = std::time::Instant::now();
    let exit = loop {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if let Some(code) = d.try_exit() {
            break code;
        }
        assert!(
            started.elapsed() < WAIT,
            "the daemon did not stop: {messages:?}"
        );
    };
    assert_ne!(exit, 0, "a daemon that cannot commit exits non-zero");
    let failing = messages
        .iter()
        .position(|m| m.contains("STATUS=commits failing"))
        .unwrap_or_else(|| panic!("systemd heard no failing status: {messages:?}"));
    // No watchdog ping after the daemon gave up.
    let stopping = messages
        .iter()
        .position(|m| m.starts_with("STOPPING=1"))
        .unwrap_or(messages.len());
    assert!(
        messages[stopping..].iter().all(|m| m != "WATCHDOG=1"),
        "{messages:?}"
    );
    assert!(failing < stopping, "{messages:?}");
    assert!(
        d.log().contains("commits keep failing; stopping"),
        "{}",
        d.log()
    );
}
