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

/// How long a connect that the daemon's socket filter drops is waited for.
const UNANSWERED_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Whether a connection from `from` to `to` stays unanswered (neither
/// accepted nor reset) for [`UNANSWERED_WAIT`]: its SYN was dropped.
fn unanswered(from: &str, to: std::net::SocketAddr) -> bool {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket
        .bind(&std::net::SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    match socket.connect_timeout(&to.into(), UNANSWERED_WAIT) {
        Err(e) => e.kind() == std::io::ErrorKind::TimedOut,
        Ok(()) => false,
    }
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
    // That refusal shed tenant a on the RAW listener: its next connection
    // gets no answer at all (its SYNs are dropped in the kernel).
    assert!(
        unanswered("127.0.1.251", raw),
        "a's connection beyond max-connections was answered while a is shed"
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

/// Tenant a may hold two connections; both store into folders.
fn small_limit_config() -> String {
    r#"
[global]
data-dir = "{data}"
shutdown-grace = "5s"
metrics = "127.0.0.1:0"
[global.limits]
idle-timeout = "1m"

[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]

[tenant.a]
ranges = ["127.0.1.0/24"]
limits = { max-connections = 2 }
workflow.keep = { steps = [{ step = "store", folder = "{dir}/out-a" }] }
input = [{ listener = "raw", workflow = "keep" }]

[tenant.b]
ranges = ["127.0.2.0/24"]
workflow.keep = { steps = [{ step = "store", folder = "{dir}/out-b" }] }
input = [{ listener = "raw", workflow = "keep" }]
"#
    .to_owned()
}

#[test]
fn a_tenant_over_its_limit_is_shed_in_the_kernel_until_it_is_under_it_again() {
    let mut d = TestDaemon::start(&small_limit_config());
    let raw = d.addr("raw");
    let metrics = d.addr("metrics");
    let mut hold1 = connect_from("127.0.1.1", raw).unwrap();
    let _hold2 = connect_from("127.0.1.2", raw).unwrap();
    wait_until("both held connections admitted", || {
        let m = scrape(metrics);
        let n = sample(
            &m,
            r#"printroute_connections_accepted_total{tenant="a",listener="raw"}"#,
        );
        (n as usize == 2).then_some(())
    });
    // The first connection over the limit is reset, as before; it sheds a.
    assert_eq!(raw_send("127.0.1.3", raw, b"refused"), RawOutcome::Refused);
    d.wait_log(
        "tenant at max-connections: its new connections to this listener are dropped in the kernel",
    );
    // From any of a's addresses, nothing answers now ...
    assert!(unanswered("127.0.1.4", raw), "a is not shed");
    assert!(
        unanswered("127.0.1.200", raw),
        "a is not shed on all its range"
    );
    // ... while b, on the same port, is served.
    let b_doc = document_with("", "b while a is shed", 20_000);
    assert_eq!(raw_send("127.0.2.1", raw, &b_doc), RawOutcome::Acknowledged);
    // a's admitted connections carry on: a job on a held one is kept.
    let a_held = document_with("", "a on a held connection", 30_000);
    hold1.write_all(&a_held).unwrap();
    hold1.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    hold1
        .read_to_end(&mut rest)
        .expect("a held connection of a shed tenant was acknowledged");
    // Under its limit again (one slot free), a is served once the shed
    // ends: the sender's SYN retries reach the daemon.
    d.wait_log("tenant no longer shed");
    let a_after = document_with("", "a after the shed", 10_000);
    assert_eq!(
        raw_send("127.0.1.5", raw, &a_after),
        RawOutcome::Acknowledged
    );
    let stored = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = stored_documents(&d.dir.path().join(format!("out-{t}")))
            .iter()
            .map(|(_, data)| sha256(data))
            .collect();
        v.sort();
        v
    };
    let mut want_a = vec![sha256(&a_held), sha256(&a_after)];
    want_a.sort();
    wait_until("every acknowledged job stored", || {
        (stored("a") == want_a && stored("b") == [sha256(&b_doc)]).then_some(())
    });
    assert_eq!(d.stop(), 0);
}
