//! Many idle connections: a tenant holding thousands of idle connections
//! gets none beyond its `max-connections`, and another tenant still prints.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;

/// Idle connections tenant a holds open (more than the usual default soft
/// limit of 1024 open files).
const IDLE: usize = 2000;

/// Source addresses of tenant a the idle connections are spread over (127.0.1.1..).
const SOURCES: usize = 200;

/// Open files this test needs: its own end of every connection, and some.
const TEST_FDS: u64 = IDLE as u64 + 512;

/// Tenant a may hold exactly IDLE connections (it does, over RAW and LPD);
/// tenant b forwards RAW jobs to its printer.
fn config(dev_b: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "5s"
metrics = "127.0.0.1:0"
[global.limits]
idle-timeout = "10m"

[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]

[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:0"]

[tenant.a]
ranges = ["127.0.1.0/24"]
limits = {{ max-connections = {IDLE} }}
workflow.keep = {{ steps = [{{ step = "store", folder = "{{dir}}/out-a" }}] }}
input = [{{ listener = "raw", workflow = "keep" }}, {{ listener = "lpd", workflow = "keep" }}]

[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{dev_b}" }}
workflow.direct = {{ steps = [{{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "direct" }}]
"#
    )
}

/// Raises this process's soft limit of open files to the hard one, which must hold `need`.
fn raise_fd_limit(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    )
    .unwrap();
    assert!(
        l.maximum.is_none_or(|m| m >= need),
        "the hard limit of open files ({:?}) is below the {need} this test needs",
        l.maximum
    );
}

#[test]
fn thousands_of_idle_connections_keep_their_tenants_limit_and_other_tenants_print() {
    raise_fd_limit(TEST_FDS);
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&config(&dev_b.uri()));
    let (raw, lpd) = (d.addr("raw"), d.addr("lpd"));

    let mut held: Vec<TcpStream> = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let from = format!("127.0.1.{}", 1 + i % SOURCES);
        let to = if i % 2 == 0 { raw } else { lpd };
        held.push(connect_from(&from, to).unwrap_or_else(|e| panic!("idle connection {i}: {e}")));
    }

    // Once the daemon has admitted every held connection, a's next one is
    // refused (RAW: a reset). Not before: a probe admitted while held
    // connections still wait in a listener's queue would take the slot of
    // one of them, which would be refused instead.
    let metrics = d.addr("metrics");
    wait_until("tenant a's held connections all admitted", || {
        let m = scrape(metrics);
        let admitted: f64 = ["raw", "lpd"]
            .iter()
            .map(|l| {
                sample(
                    &m,
                    &format!(
                        r#"printroute_connections_accepted_total{{tenant="a",listener="{l}"}}"#
                    ),
                )
            })
            .sum();
        (admitted as usize == IDLE).then_some(())
    });
    assert_eq!(raw_send("127.0.1.250", raw, b""), RawOutcome::Refused);
    assert_eq!(
        raw_send("127.0.1.251", raw, b"one too many"),
        RawOutcome::Refused
    );
    // LPD: a negative acknowledgement of the receive-job command.
    let mut extra = connect_from("127.0.1.252", lpd).unwrap();
    extra.write_all(b"\x02keep\n").unwrap();
    let mut answer = [0u8; 1];
    let n = extra.read(&mut answer).unwrap_or(0);
    assert!(
        n == 0 || answer[0] != 0,
        "an LPD connection beyond max-connections must not be acknowledged"
    );

    // Tenant b is untouched by a's connections.
    let job = document_with("@PJL JOB NAME = \"b\"\n", "b", 50_000);
    assert_eq!(raw_send("127.0.2.7", raw, &job), RawOutcome::Acknowledged);
    dev_b.wait_for_digests(&[sha256(&job)]);

    // The held connections are still open: none was cut off.
    for s in held.iter().step_by(97) {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        match (&*s).read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a held idle connection ended: {other:?}"),
        }
    }
    drop(held);
    assert_eq!(d.stop(), 0);
}
