//! The core daemon end to end over RAW, with the real binary, real sled on
//! disk, socat as the printers and clients from tenants' loopback addresses.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Two tenants: a = 127.0.1.0/24 (+ 127.0.0.1 for clients that cannot bind),
/// b = 127.0.2.0/24; each forwards RAW jobs to its own device.
fn two_tenants(dev_a: &str, dev_b: &str, extra: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "5s"
[global.limits]
idle-timeout = "5s"
delivery-timeout = "1h"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]

[tenant.a]
name = "Tenant A"
ranges = ["127.0.1.0/24", "127.0.0.1/32"]
device.printer = {{ uri = "{dev_a}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]

[tenant.b]
name = "Tenant B"
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{dev_b}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]
{extra}
"#
    )
}

fn doc(tag: &str, size: usize) -> Vec<u8> {
    document_with(
        &format!("@PJL SET USERNAME = \"user-{tag}\"\n@PJL JOB NAME = \"job {tag}\"\n"),
        tag,
        size,
    )
}

#[test]
fn jobs_of_two_tenants_reach_only_their_own_device_and_store() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&two_tenants(&dev_a.uri(), &dev_b.uri(), ""));
    let raw = d.addr("raw");
    let mut handles = Vec::new();
    for i in 0..8 {
        for (tenant, src) in [
            ("a", format!("127.0.1.{}", 10 + i)),
            ("b", format!("127.0.2.{}", 10 + i)),
        ] {
            handles.push(std::thread::spawn(move || {
                let data = doc(&format!("{tenant}{i}"), 50_000 + i * 1000);
                assert_eq!(raw_send(&src, raw, &data), RawOutcome::Acknowledged);
                (tenant, sha256(&data))
            }));
        }
    }
    let sent: Vec<(&str, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let want = |t: &str| {
        sent.iter()
            .filter(|s| s.0 == t)
            .map(|s| s.1.clone())
            .collect::<Vec<_>>()
    };
    // A sender of no tenant is refused.
    assert_eq!(
        raw_send("127.0.9.9", raw, &doc("stranger", 1000)),
        RawOutcome::Refused
    );

    let got_a = dev_a.wait_for_digests(&want("a"));
    let got_b = dev_b.wait_for_digests(&want("b"));
    assert_eq!(got_a.len(), 8, "device a got exactly tenant a's jobs");
    assert_eq!(got_b.len(), 8, "device b got exactly tenant b's jobs");
    d.wait_log("job finished tenant=b job=8");
    d.wait_log("job finished tenant=a job=8");
    assert_eq!(d.stop(), 0);

    let jobs = d.stored_jobs();
    assert_eq!(jobs.len(), 2, "no tenant but a and b has a collection");
    for t in ["a", "b"] {
        let mut shas: Vec<String> = jobs[t].iter().map(|j| j.sha256.clone()).collect();
        shas.sort();
        let mut w = want(t);
        w.sort();
        assert_eq!(
            shas, w,
            "tenant {t}'s records hold exactly its own documents"
        );
        let mut ids: Vec<u32> = jobs[t].iter().map(|j| j.id.0).collect();
        ids.sort();
        assert_eq!(ids, (1..=8).collect::<Vec<_>>(), "job ids count per tenant");
        for j in &jobs[t] {
            assert_eq!(j.tenant.as_str(), t);
            assert_eq!(
                j.state,
                printroute::store::job::JobState::Completed,
                "{j:?}"
            );
            assert!(
                j.user.starts_with(&format!("user-{t}")),
                "user from PJL: {}",
                j.user
            );
            assert!(j.peer.ip().to_string().starts_with(if t == "a" {
                "127.0.1."
            } else {
                "127.0.2."
            }));
        }
        assert!(
            d.spool_files(t).is_empty(),
            "finished jobs leave no spool file"
        );
    }
}

#[test]
fn cups_socket_backend_prints_through_to_a_real_device() {
    let backend = require("socket");
    let dev_a = SocatDevice::start("127.0.1.50");
    let d = TestDaemon::start(&two_tenants(&dev_a.uri(), "socket://127.0.2.50:9", ""));
    let data = doc("cups", 300_000);
    let file = d.dir.path().join("doc.prn");
    std::fs::write(&file, &data).unwrap();
    // The backend connects from 127.0.0.1 (it cannot bind a source), which is tenant a's.
    let out = Command::new(backend)
        .args(["1", "alice", "title", "1", ""])
        .arg(&file)
        .env("DEVICE_URI", format!("socket://{}", d.addr("raw")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "socket backend failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dev_a.wait_for_digests(&[sha256(&data)]);
    d.wait_log("job finished tenant=a job=1 state=\"completed\"");
}

#[test]
fn acknowledged_job_survives_kill_9_and_is_delivered_once_when_the_device_returns() {
    let mut dev_a = SocatDevice::start("127.0.1.50");
    dev_a.down();
    let mut d = TestDaemon::start(&two_tenants(&dev_a.uri(), "socket://127.0.2.50:9", ""));
    let data = doc("durable", 200_000);
    assert_eq!(
        raw_send("127.0.1.20", d.addr("raw"), &data),
        RawOutcome::Acknowledged
    );
    d.kill9();
    dev_a.up();
    d.spawn();
    dev_a.wait_for_digests(&[sha256(&data)]);
    d.wait_log("job finished tenant=a job=1 state=\"completed\"");
    // No second delivery follows.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(dev_a.received(), vec![sha256(&data)]);
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    assert_eq!(jobs["a"].len(), 1);
    assert_eq!(
        jobs["a"][0].state,
        printroute::store::job::JobState::Completed
    );
    assert!(d.spool_files("a").is_empty());
}

#[test]
fn reload_routes_a_new_tenant_keeps_old_config_on_overlap_and_finishes_open_connections() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_c = SocatDevice::start("127.0.3.50");
    let base = two_tenants(&dev_a.uri(), "socket://127.0.2.50:9", "");
    let d = TestDaemon::start(&base);
    let raw = d.addr("raw");
    assert_eq!(raw_send("127.0.3.7", raw, b"before"), RawOutcome::Refused);

    // A connection opened before the reload finishes under its snapshot.
    let open_doc = doc("across-reload", 100_000);
    let mut open = connect_from("127.0.1.30", raw).unwrap();
    open.write_all(&open_doc[..50_000]).unwrap();

    let tenant_c = format!(
        r#"
[tenant.c]
ranges = ["127.0.3.0/24"]
device.printer = {{ uri = "{}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]
"#,
        dev_c.uri()
    );
    d.write_config(&two_tenants(
        &dev_a.uri(),
        "socket://127.0.2.50:9",
        &tenant_c,
    ));
    d.signal("HUP");
    d.wait_log("config reloaded: 3 tenants");
    let c_doc = doc("tenant-c", 10_000);
    assert_eq!(raw_send("127.0.3.7", raw, &c_doc), RawOutcome::Acknowledged);
    dev_c.wait_for_digests(&[sha256(&c_doc)]);

    open.write_all(&open_doc[50_000..]).unwrap();
    open.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut open, &mut rest).expect("open connection acknowledged");
    dev_a.wait_for_digests(&[sha256(&open_doc)]);

    // An overlapping config is refused; the previous one keeps routing.
    let overlap = "[tenant.d]\nranges = [\"127.0.3.128/25\"]\n";
    d.write_config(&two_tenants(
        &dev_a.uri(),
        "socket://127.0.2.50:9",
        &format!("{tenant_c}{overlap}"),
    ));
    d.signal("HUP");
    d.wait_log("reload refused");
    assert!(
        d.log()
            .contains("127.0.3.128/25 (tenant d) overlaps 127.0.3.0/24 (tenant c)"),
        "{}",
        d.log()
    );
    let c_doc2 = doc("tenant-c-2", 10_000);
    assert_eq!(
        raw_send("127.0.3.8", raw, &c_doc2),
        RawOutcome::Acknowledged
    );
    dev_c.wait_for_digests(&[sha256(&c_doc2)]);
}

#[test]
fn reload_binds_added_listeners_and_closes_removed_ones() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let base = two_tenants(&dev_a.uri(), "socket://127.0.2.50:9", "");
    let d = TestDaemon::start(&base);
    let first = d.addr("raw");
    let with_second = base.replace(
        "[tenant.a]",
        "[[listener]]\nname = \"raw2\"\nprotocol = \"raw\"\nbind = [\"127.0.0.1:0\"]\n\n[tenant.a]",
    )
    .replace(
        "input = [{ listener = \"raw\", workflow = \"direct\" }]\n\n[tenant.b]",
        "input = [{ listener = \"raw\", workflow = \"direct\" }, { listener = \"raw2\", workflow = \"direct\" }]\n\n[tenant.b]",
    );
    d.write_config(&with_second);
    d.signal("HUP");
    let (name, second) = d.next_listening();
    assert_eq!(name, "raw2");
    d.wait_log("config reloaded");
    let j = doc("second-listener", 5000);
    assert_eq!(raw_send("127.0.1.9", second, &j), RawOutcome::Acknowledged);
    assert_eq!(
        raw_send("127.0.1.9", first, b"first still serves"),
        RawOutcome::Acknowledged
    );
    dev_a.wait_for_digests(&[sha256(&j)]);
    // Back to one listener: the second port closes, the first stays.
    d.write_config(&base);
    d.signal("HUP");
    d.wait_log("listener closed");
    assert!(
        std::net::TcpStream::connect(second).is_err(),
        "removed listener still accepts"
    );
    assert_eq!(
        raw_send("127.0.1.9", first, b"first after reload"),
        RawOutcome::Acknowledged
    );
}

#[test]
fn oversized_job_idle_peer_and_connection_limit_are_refused_while_others_are_served() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let cfg = two_tenants(&dev_a.uri(), &dev_b.uri(), "")
        .replace("ranges = [\"127.0.1.0/24\", \"127.0.0.1/32\"]", "ranges = [\"127.0.1.0/24\", \"127.0.0.1/32\"]\nlimits = { max-job-size = \"64 KiB\", max-connections = 2, idle-timeout = \"1s\" }")
        .replace("shutdown-grace = \"5s\"", "shutdown-grace = \"5s\"\nmetrics = \"127.0.0.1:0\"");
    let mut d = TestDaemon::start(&cfg);
    let raw = d.addr("raw");

    // Oversized: refused, nothing kept.
    assert_eq!(
        raw_send("127.0.1.10", raw, &doc("big", 200_000)),
        RawOutcome::Refused
    );
    // Idle: a peer that stops sending is cut off with a reset after idle-timeout.
    let mut idle = connect_from("127.0.1.11", raw).unwrap();
    idle.write_all(b"partial").unwrap();
    let mut buf = [0u8; 1];
    let r = std::io::Read::read(&mut idle, &mut buf);
    assert!(r.is_err(), "idle peer should see a reset, got {r:?}");
    // Connection limit: two open connections fill tenant a's slots.
    let accepted = || {
        sample(
            &scrape(d.addr("metrics")),
            "printroute_connections_accepted_total{tenant=\"a\",listener=\"raw\"}",
        )
    };
    let before = accepted();
    let hold1 = connect_from("127.0.1.12", raw).unwrap();
    let hold2 = connect_from("127.0.1.13", raw).unwrap();
    // Both hold their slots once the daemon has admitted them.
    wait_until("both connections admitted", || {
        (accepted() == before + 2.0).then_some(())
    });
    assert_eq!(raw_send("127.0.1.14", raw, b"third"), RawOutcome::Refused);
    // Tenant b is not affected by a's limits.
    let b_doc = doc("b-ok", 100_000);
    assert_eq!(
        raw_send("127.0.2.14", raw, &b_doc),
        RawOutcome::Acknowledged
    );
    dev_b.wait_for_digests(&[sha256(&b_doc)]);
    drop((hold1, hold2));
    // Once the slots are free (the held connections time out or close), a is served again.
    let a_doc = doc("a-ok", 10_000);
    wait_until("tenant a to be served again", || {
        (raw_send("127.0.1.15", raw, &a_doc) == RawOutcome::Acknowledged).then_some(())
    });
    dev_a.wait_for_digests(&[sha256(&a_doc)]);
    d.wait_log("job finished tenant=a job=1");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    assert_eq!(
        jobs["a"].len(),
        1,
        "only the good job of a was recorded: {:?}",
        jobs["a"]
    );
    assert!(
        d.spool_files("a").is_empty(),
        "no partial spool file remains"
    );
}

#[test]
fn store_step_writes_the_document_into_the_tenant_folder() {
    let d0 = tempfile::tempdir().unwrap();
    let folder = d0.path().join("archive");
    let cfg = format!(
        r#"
[global]
data-dir = "{{data}}"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
workflow.archive = {{ steps = [{{ step = "store", folder = "{}" }}] }}
input = [{{ listener = "raw", workflow = "archive" }}]
"#,
        folder.display()
    );
    let d = TestDaemon::start(&cfg);
    let data = b"@PJL JOB NAME = \"../../etc/passwd\"\nhello".to_vec();
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), &data),
        RawOutcome::Acknowledged
    );
    d.wait_log("job finished tenant=a job=1 state=\"completed\"");
    let files = stored_documents(&folder);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].1, data);
    assert!(files[0].0.starts_with(&folder));
}

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let watchdogs = std::cell::Cell::new(0);
    // The next notification that is not a watchdog ping (those are counted).
    let recv = || loop {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m == "WATCHDOG=1" {
            watchdogs.set(watchdogs.get() + 1);
        } else {
            return m;
        }
    };
    let cfg = two_tenants("socket://127.0.1.50:9", "socket://127.0.2.50:9", "");
    let mut d = TestDaemon::start_with_env(
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap().to_owned()),
            // WatchdogSec=200ms: pings every 100 ms.
            ("WATCHDOG_USEC", "200000".to_owned()),
        ],
    );
    let ready = recv();
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving 2 tenants"),
        "{ready}"
    );
    d.signal("HUP");
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(recv().starts_with("READY=1"));
    wait_until("watchdog pings", || {
        let mut buf = [0u8; 64];
        if let Ok(n) = sock.recv(&mut buf) {
            if &buf[..n] == b"WATCHDOG=1" {
                watchdogs.set(watchdogs.get() + 1);
            }
        }
        (watchdogs.get() >= 3).then_some(())
    });
    assert_eq!(d.stop(), 0);
    assert!(recv().starts_with("STOPPING=1"));
}

#[test]
fn ipv6_peer_routes_to_its_tenant() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let cfg = two_tenants(&dev_a.uri(), "socket://127.0.2.50:9", "")
        .replace(
            "ranges = [\"127.0.1.0/24\", \"127.0.0.1/32\"]",
            "ranges = [\"127.0.1.0/24\", \"::1/128\"]",
        )
        .replace("bind = [\"127.0.0.1:0\"]", "bind = [\"[::1]:0\"]");
    let d = TestDaemon::start(&cfg);
    let data = doc("v6", 20_000);
    assert_eq!(
        raw_send("::1", d.addr("raw"), &data),
        RawOutcome::Acknowledged
    );
    dev_a.wait_for_digests(&[sha256(&data)]);
    d.wait_log("job finished tenant=a job=1 state=\"completed\"");
}

#[test]
fn finished_jobs_records_are_pruned_after_retention() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let cfg = two_tenants(&dev_a.uri(), "socket://127.0.2.50:9", "").replace(
        "delivery-timeout = \"1h\"",
        "delivery-timeout = \"1h\"\nretention = \"1s\"",
    );
    let mut d = TestDaemon::start(&cfg);
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"short-lived"),
        RawOutcome::Acknowledged
    );
    d.wait_log("job finished tenant=a job=1");
    std::thread::sleep(Duration::from_millis(1100));
    // The sweep runs at start: a restart past the retention drops the record.
    assert_eq!(d.stop(), 0);
    d.spawn();
    d.wait_log("pruned finished jobs past retention tenant=a records=1");
    assert_eq!(d.stop(), 0);
    assert!(d.stored_jobs()["a"].is_empty());
    // Job ids keep counting: a pruned id is never reused.
    d.spawn();
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"next"),
        RawOutcome::Acknowledged
    );
    d.wait_log("job finished tenant=a job=2");
}

#[test]
fn a_held_job_expires_after_its_hold_also_across_a_restart() {
    let d0 = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"
[global]
data-dir = "{{data}}"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
workflow.secure = {{ steps = [{{ step = "hold", expire-after = "2s" }}, {{ step = "store", folder = "{}" }}] }}
input = [{{ listener = "raw", workflow = "secure" }}]
"#,
        d0.path().join("out").display()
    );
    let mut d = TestDaemon::start(&cfg);
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"expires unprinted"),
        RawOutcome::Acknowledged
    );
    d.wait_log("RAW job accepted");
    // Restart while it is held: it keeps its remaining time.
    assert_eq!(d.stop(), 0);
    assert_eq!(
        d.stored_jobs()["a"][0].state,
        printroute::store::job::JobState::Held
    );
    d.spawn();
    d.wait_log("job finished tenant=a job=1 state=\"canceled\"");
    assert_eq!(d.stop(), 0);
    let job = &d.stored_jobs()["a"][0];
    assert_eq!(job.state, printroute::store::job::JobState::Canceled);
    assert!(
        job.history.iter().any(|e| e.note == "hold expired"),
        "{:?}",
        job.history
    );
    assert!(
        d.spool_files("a").is_empty(),
        "the expired job's document is deleted"
    );
    assert!(
        !d0.path().join("out").exists(),
        "an expired job is never stored"
    );
}
