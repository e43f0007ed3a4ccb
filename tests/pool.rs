//! Pool failover and delivery limits with real peers: a forward
//! step whose first device is down (closed port), second accepts and
//! stalls, third resets mid-job and fourth is healthy (socat) delivers to
//! the healthy one, naming each failure in the job's history; a job no
//! device takes within `delivery-timeout` ends aborted with the reason;
//! jobs to one device arrive in commit order, also after the device was down.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use printroute::store::job::JobState;

fn doc(tag: &str, size: usize) -> Vec<u8> {
    document_with(&format!("@PJL JOB NAME = \"{tag}\"\n"), tag, size)
}

fn listener(ip: &str, rcvbuf: Option<usize>) -> TcpListener {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        // Inherited by accepted sockets: the device's window stays tiny.
        s.set_recv_buffer_size(n).unwrap();
    }
    s.set_reuse_address(true).unwrap();
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(16).unwrap();
    s.into()
}

/// A device that accepts and never reads.
fn stalling_device(ip: &str) -> SocketAddr {
    let l = listener(ip, Some(4096));
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    addr
}

/// A device that reads some bytes of each job, then resets the connection.
fn resetting_device(ip: &str) -> SocketAddr {
    let l = listener(ip, Some(4096));
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut buf = [0u8; 16 << 10];
            let _ = s.read(&mut buf);
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
    });
    addr
}

/// A device that takes one connection at a time and records each document's digest in arrival order.
fn recording_device(l: TcpListener) -> Arc<Mutex<Vec<String>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut d = Vec::new();
            if s.read_to_end(&mut d).is_ok() && !d.is_empty() {
                out.lock().unwrap().push(sha256(&d));
            }
        }
    });
    got
}

fn config(tenant_a: &str, tenant_b: &str, tenant_c: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "10s"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]

[tenant.a]
ranges = ["127.0.1.0/24"]
limits = {{ device-timeout = "1s" }}
{tenant_a}
input = [{{ listener = "raw", workflow = "direct" }}]

[tenant.b]
ranges = ["127.0.2.0/24"]
limits = {{ delivery-timeout = "2s" }}
{tenant_b}
input = [{{ listener = "raw", workflow = "direct" }}]

[tenant.c]
ranges = ["127.0.3.0/24"]
{tenant_c}
input = [{{ listener = "raw", workflow = "direct" }}]
"#
    )
}

#[test]
fn pool_fails_over_past_down_stalled_and_resetting_devices_to_the_healthy_one() {
    let down = free_port("127.0.1.51");
    let stall = stalling_device("127.0.1.52");
    let reset = resetting_device("127.0.1.53");
    let healthy = SocatDevice::start("127.0.1.54");
    let a = format!(
        r#"device.down = {{ uri = "socket://127.0.1.51:{down}" }}
device.stall = {{ uri = "socket://{stall}" }}
device.reset = {{ uri = "socket://{reset}" }}
device.healthy = {{ uri = "{}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["down", "stall", "reset", "healthy"] }}] }}"#,
        healthy.uri()
    );
    let b = r#"device.p = { uri = "socket://127.0.2.50:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["p"] }] }"#;
    let c = r#"device.p = { uri = "socket://127.0.3.50:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["p"] }] }"#;
    let mut d = TestDaemon::start(&config(&a, b, c));
    // Larger than what the stalled device's and our socket buffers hold,
    // so its stall shows; larger than what the resetting one reads.
    let docs: Vec<Vec<u8>> = (0..3).map(|i| doc(&format!("pool{i}"), 6 << 20)).collect();
    for data in &docs {
        assert_eq!(
            raw_send("127.0.1.10", d.addr("raw"), data),
            RawOutcome::Acknowledged
        );
    }
    let want: Vec<String> = docs.iter().map(|x| sha256(x)).collect();
    let got = healthy.wait_for_digests(&want);
    assert_eq!(got.len(), 3, "each job reached the healthy device once");
    d.wait_log("job finished tenant=a job=3");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    let a = &jobs["a"];
    assert_eq!(a.len(), 3);
    for j in a {
        assert_eq!(j.state, JobState::Completed, "{:?}", j.history);
        assert!(
            j.history
                .iter()
                .any(|e| e.note.starts_with("delivered") && e.note.contains("to healthy")),
            "{:?}",
            j.history
        );
    }
    // Each failure is named in the history of the job that met it (a job
    // whose device is busy failing moves on, so the jobs share the failures).
    let notes: Vec<&str> = a
        .iter()
        .flat_map(|j| j.history.iter().map(|e| e.note.as_str()))
        .collect();
    let failed = |name: &str| {
        notes
            .iter()
            .any(|n| n.starts_with(&format!("{name} (")) && n.contains("failed"))
    };
    assert!(failed("down"), "closed port named: {notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("stall (") && n.contains("timed out")),
        "stalled device named: {notes:?}"
    );
    assert!(failed("reset"), "resetting device named: {notes:?}");
    assert!(d.spool_files("a").is_empty());
}

#[test]
fn a_job_no_device_takes_within_delivery_timeout_ends_aborted_with_the_reason() {
    let dead = free_port("127.0.2.50");
    let b = format!(
        r#"device.p = {{ uri = "socket://127.0.2.50:{dead}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["p"] }}] }}"#
    );
    let a = r#"device.p = { uri = "socket://127.0.1.50:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["p"] }] }"#;
    let c = r#"device.p = { uri = "socket://127.0.3.50:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["p"] }] }"#;
    let mut d = TestDaemon::start(&config(a, &b, c));
    let data = doc("undeliverable", 10_000);
    assert_eq!(
        raw_send("127.0.2.10", d.addr("raw"), &data),
        RawOutcome::Acknowledged
    );
    d.wait_log("job finished tenant=b job=1 state=\"aborted\"");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    let j = &jobs["b"][0];
    assert_eq!(j.state, JobState::Aborted);
    assert_eq!(j.sha256, sha256(&data));
    let last = &j.history.last().unwrap().note;
    assert!(
        last.contains("no device of p took the job within delivery-timeout"),
        "{:?}",
        j.history
    );
    assert!(
        j.history
            .iter()
            .any(|e| e.note.starts_with("p (") && e.note.contains("failed")),
        "the failed attempts are named: {:?}",
        j.history
    );
    assert!(
        d.spool_files("b").is_empty(),
        "an aborted job's document is gone"
    );
}

/// Jobs committed while their device was down, and jobs committed after it
/// came back, reach it in commit order: the oldest waiting job probes and
/// sends first, and keeps its turn across failed attempts.
#[test]
fn jobs_to_one_device_arrive_in_commit_order_also_after_it_was_down() {
    // The device's port is reserved now and listened on later: down first.
    let port = free_port("127.0.3.50");
    let c = format!(
        r#"device.p = {{ uri = "socket://127.0.3.50:{port}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["p"] }}] }}"#
    );
    let a = r#"device.p = { uri = "socket://127.0.1.50:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["p"] }] }"#;
    let b = r#"device.p = { uri = "socket://127.0.2.50:9" }
workflow.direct = { steps = [{ step = "forward", devices = ["p"] }] }"#;
    let mut d = TestDaemon::start(&config(a, b, &c));
    let raw = d.addr("raw");
    let mut want = Vec::new();
    // While the device is down: every job is committed (acknowledged) before the next is sent.
    for i in 0..8 {
        let data = doc(&format!("order{i}"), 2_000 + i * 100);
        assert_eq!(raw_send("127.0.3.10", raw, &data), RawOutcome::Acknowledged);
        want.push(sha256(&data));
    }
    // The closed port was tried: the device is marked down, jobs wait for its probe.
    d.wait_log("delivery failed tenant=c job=1 device=p");
    let l = TcpListener::bind(("127.0.3.50", port)).unwrap();
    let got = recording_device(l);
    for i in 8..16 {
        let data = doc(&format!("order{i}"), 2_000 + i * 100);
        assert_eq!(raw_send("127.0.3.10", raw, &data), RawOutcome::Acknowledged);
        want.push(sha256(&data));
    }
    wait_until("16 documents at the ordered device", || {
        (got.lock().unwrap().len() >= 16).then_some(())
    });
    d.wait_log("job finished tenant=c job=16");
    assert_eq!(
        *got.lock().unwrap(),
        want,
        "the device got each job once, in commit order"
    );
    assert_eq!(d.stop(), 0);
}
