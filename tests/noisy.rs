//! Noisy neighbours: one tenant at its limits, or with a dead printer and a
//! large backlog, does not stop another tenant's jobs. Tenant a sends from
//! 127.0.1.x, tenant b from 127.0.2.x. No assertion here is about time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

/// IPP `server-error-busy`.
const BUSY: u16 = 0x0507;

/// Jobs of tenant a queued behind its dead printer.
const BACKLOG: usize = 2_000;

/// Threads sending tenant a's backlog.
const BACKLOG_SENDERS: usize = 8;

fn doc(tag: &str, size: usize) -> Vec<u8> {
    document_with(&format!("%!PS-Adobe-3.0\n%%Title: {tag}\n"), tag, size)
}

/// Tenant a's printer at `dev_a`, b's at `dev_b`; `a_limits` are a's limit overrides.
fn config(dev_a: &str, dev_b: &str, a_limits: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "30s"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:0"]
[[listener]]
name = "ipp"
protocol = "ipp"
bind = ["127.0.0.1:0"]

[tenant.a]
ranges = ["127.0.1.0/24"]
limits = {{ {a_limits} }}
device.printer = {{ uri = "{dev_a}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [
  {{ listener = "raw", workflow = "direct" }},
  {{ listener = "lpd", workflow = "direct" }},
  {{ listener = "ipp", workflow = "direct" }},
]

[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{dev_b}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [
  {{ listener = "raw", workflow = "direct" }},
  {{ listener = "lpd", workflow = "direct" }},
  {{ listener = "ipp", workflow = "direct" }},
]
"#
    )
}

fn read_byte(s: &mut TcpStream) -> Option<u8> {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    }
}

/// A slow LPD sender: "receive a printer job" acknowledged (so the daemon
/// counts a receive), then nothing more until the stream is dropped.
fn lpd_slow_sender(from: &str, to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to).unwrap();
    s.write_all(b"\x02lp\n").unwrap();
    assert_eq!(read_byte(&mut s), Some(0), "receive-job acknowledged");
    s
}

/// LPD "receive a printer job" command alone; the daemon's answer to it.
fn lpd_receive_command(from: &str, to: SocketAddr) -> Option<u8> {
    let mut s = connect_from(from, to).unwrap();
    s.write_all(b"\x02lp\n").unwrap();
    read_byte(&mut s)
}

/// Sends one job of tenant b in the protocol `n % 3` picks; returns its digest.
fn b_job(d: &TestDaemon, n: usize) -> String {
    let data = doc(&format!("b{n}"), 3_000);
    match n % 3 {
        0 => assert_eq!(
            raw_send("127.0.2.10", d.addr("raw"), &data),
            RawOutcome::Acknowledged
        ),
        1 => assert_eq!(
            lpd_try_submit("127.0.2.11", d.addr("lpd"), "lp", "alice", "noisy", &data),
            Ok(())
        ),
        _ => assert_eq!(ipp_print("127.0.2.12", d.addr("ipp"), &data, None), 0),
    }
    sha256(&data)
}

#[test]
fn a_tenant_holding_its_receive_slots_hears_busy_while_another_prints() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&config(&dev_a.uri(), &dev_b.uri(), "max-receives = 2"));
    let (raw, lpd, ipp) = (d.addr("raw"), d.addr("lpd"), d.addr("ipp"));

    // Two slow senders of tenant a hold both of its receive slots.
    let slow = [
        lpd_slow_sender("127.0.1.20", lpd),
        lpd_slow_sender("127.0.1.21", lpd),
    ];
    let mut b_sent = Vec::new();
    b_sent.push(b_job(&d, 0));
    // Every protocol gives its busy answer to tenant a's next receive.
    let answer = lpd_receive_command("127.0.1.10", lpd);
    assert!(
        matches!(answer, Some(n) if n != 0),
        "LPD: negative acknowledgement, got {answer:?}"
    );
    b_sent.push(b_job(&d, 1));
    let refused_raw = doc("a-raw-busy", 3_000);
    assert_eq!(
        raw_send("127.0.1.10", raw, &refused_raw),
        RawOutcome::Refused,
        "RAW: reset"
    );
    b_sent.push(b_job(&d, 2));
    let refused_ipp = doc("a-ipp-busy", 300);
    assert_eq!(
        ipp_print("127.0.1.12", ipp, &refused_ipp, None),
        BUSY,
        "IPP: server-error-busy"
    );
    b_sent.push(b_job(&d, 3));
    // A slot freed is a slot taken: tenant a prints again.
    drop(slow);
    let fine = doc("a-after", 3_000);
    wait_until("tenant a to take jobs again", || {
        (raw_send("127.0.1.10", raw, &fine) == RawOutcome::Acknowledged).then_some(())
    });
    dev_a.wait_for_digests(&[sha256(&fine)]);
    dev_b.wait_for_digests(&b_sent);
    d.wait_log("job finished tenant=b job=4");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    assert_eq!(jobs["b"].len(), 4);
    let a: Vec<&str> = jobs["a"].iter().map(|j| j.sha256.as_str()).collect();
    assert_eq!(
        a,
        vec![sha256(&fine)],
        "nothing of a's refused jobs is kept"
    );
    assert!(d.log().contains("tenant at max-receives"));
}

#[test]
fn a_dead_printer_with_a_large_backlog_does_not_hold_up_another_tenant() {
    let dead = format!("socket://127.0.1.50:{}", free_port("127.0.1.50"));
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&config(&dead, &dev_b.uri(), ""));
    let raw = d.addr("raw");
    std::thread::scope(|s| {
        for k in 0..BACKLOG_SENDERS {
            s.spawn(move || {
                let from = format!("127.0.1.{}", 100 + k);
                for n in (k..BACKLOG).step_by(BACKLOG_SENDERS) {
                    let data = doc(&format!("a{n}"), 512);
                    assert_eq!(raw_send(&from, raw, &data), RawOutcome::Acknowledged);
                }
            });
        }
    });
    let mut b_sent: Vec<String> = (0..6).map(|n| b_job(&d, n)).collect();
    dev_b.wait_for_digests(&b_sent);

    // After a restart the backlog is resumed, and b's new jobs go through meanwhile.
    assert_eq!(d.stop(), 0);
    d.spawn();
    b_sent.extend((6..12).map(|n| b_job(&d, n)));
    dev_b.wait_for_digests(&b_sent);
    d.wait_log("job finished tenant=b job=12");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    assert_eq!(
        jobs["a"].len(),
        BACKLOG,
        "every acknowledged job of a is kept"
    );
    assert!(
        jobs["a"].iter().all(|j| !j.state.is_final()),
        "a's jobs wait for their printer"
    );
    assert_eq!(d.spool_files("a").len(), BACKLOG);
    assert!(jobs["b"]
        .iter()
        .all(|j| j.state == printroute::store::job::JobState::Completed));
}

#[test]
fn receive_counts_and_limits_carry_across_a_reload() {
    let dev_a = SocatDevice::start("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let one = config(&dev_a.uri(), &dev_b.uri(), "max-receives = 1");
    let mut d = TestDaemon::start(&one);
    let lpd = d.addr("lpd");
    let slow = lpd_slow_sender("127.0.1.20", lpd);

    // The same limit after a reload: the slot held before it still counts.
    d.write_config(&one.replace("idle-timeout = \"30s\"", "idle-timeout = \"31s\""));
    d.signal("HUP");
    d.wait_log("config reloaded");
    let answer = lpd_receive_command("127.0.1.10", lpd);
    assert!(
        matches!(answer, Some(n) if n != 0),
        "still busy after the reload, got {answer:?}"
    );

    // A raised limit takes effect at once, the held slot still counted.
    d.write_config(&config(&dev_a.uri(), &dev_b.uri(), "max-receives = 2"));
    d.signal("HUP");
    wait_until("the second reload", || {
        (d.log().matches("config reloaded").count() >= 2).then_some(())
    });
    let second = lpd_slow_sender("127.0.1.21", lpd);
    let answer = lpd_receive_command("127.0.1.11", lpd);
    assert!(
        matches!(answer, Some(n) if n != 0),
        "the slot held since before both reloads still counts, got {answer:?}"
    );
    drop((slow, second));
    let data = doc("a-after-reload", 3_000);
    wait_until("tenant a to take jobs again", || {
        lpd_try_submit("127.0.1.10", lpd, "lp", "alice", "noisy", &data).ok()
    });
    dev_a.wait_for_digests(&[sha256(&data)]);
    assert_eq!(d.stop(), 0);
}
