//! The PROXY protocol on listeners, behind Debian's real HAProxy: routing
//! uses the client address the header carries, and a connection without a
//! header, with a broken one, or from an address that is not a trusted
//! proxy is refused.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;

/// Tenants: a and b by bound loopback sources; c is 127.0.0.1, the address
/// the CUPS backends (which cannot bind a source) connect from. HAProxy
/// also connects to printroute from 127.0.0.1: as a peer it is the trusted
/// proxy, as a client address inside a header it is tenant c.
fn config() -> String {
    let mut s = String::from(
        r#"
[global]
data-dir = "{data}"
shutdown-grace = "5s"
[global.limits]
idle-timeout = "10s"
"#,
    );
    for (name, proto) in [("raw", "raw"), ("lpd", "lpd"), ("ipp", "ipp")] {
        s.push_str(&format!(
            r#"
[[listener]]
name = "{name}"
protocol = "{proto}"
bind = ["127.0.0.1:0"]
proxy-protocol = true
trusted-proxies = ["127.0.0.1/32"]
"#
        ));
    }
    for (t, range) in [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.1")] {
        s.push_str(&format!(
            r#"
[tenant.{t}]
ranges = ["{range}"]
workflow.keep = {{ steps = [{{ step = "store", folder = "{{dir}}/store-{t}" }}] }}
input = [
  {{ listener = "raw", workflow = "keep" }},
  {{ listener = "lpd", queue = "office", workflow = "keep" }},
  {{ listener = "ipp", workflow = "keep" }},
]
"#
        ));
    }
    s
}

/// HAProxy frontends: raw with PROXY v2, raw with PROXY v1, lpd and ipp with v2.
struct Fronts {
    raw_v2: u16,
    raw_v1: u16,
    lpd: u16,
    ipp: u16,
}

fn haproxy_cfg(d: &TestDaemon, f: &Fronts) -> String {
    let mut s = String::from(
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n",
    );
    for (name, port, listener, send) in [
        ("rawv2", f.raw_v2, "raw", "send-proxy-v2"),
        ("rawv1", f.raw_v1, "raw", "send-proxy"),
        ("lpd", f.lpd, "lpd", "send-proxy-v2"),
        ("ipp", f.ipp, "ipp", "send-proxy-v2"),
    ] {
        s.push_str(&format!(
            "frontend {name}\n    bind 127.0.0.1:{port}\n    default_backend {name}\n\
             backend {name}\n    server printroute {} {send}\n",
            d.addr(listener)
        ));
    }
    s
}

/// Sends `head` then `data` straight to a listener, from `from`.
fn raw_with_head(from: &str, to: SocketAddr, head: &[u8], data: &[u8]) -> RawOutcome {
    let mut v = head.to_vec();
    v.extend_from_slice(data);
    raw_send(from, to, &v)
}

#[test]
fn haproxy_v1_and_v2_headers_route_by_the_client_address_and_strangers_are_refused() {
    let d = TestDaemon::start(&config());
    let fronts = Fronts {
        raw_v2: free_port("127.0.0.1"),
        raw_v1: free_port("127.0.0.1"),
        lpd: free_port("127.0.0.1"),
        ipp: free_port("127.0.0.1"),
    };
    let cfg = d.dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_cfg(&d, &fronts)).unwrap();
    let _h = Haproxy::start(
        &cfg,
        &[fronts.raw_v2, fronts.raw_v1, fronts.lpd, fronts.ipp],
    );
    let front = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    // RAW through HAProxy, v2 and v1 headers, from two tenants' addresses.
    let a_doc = document_with("@PJL SET USERNAME=\"alice\"\r\n", "a-v2", 50_000);
    let b_doc = document_with("@PJL SET USERNAME=\"bob\"\r\n", "b-v1", 60_000);
    assert_eq!(
        raw_send("127.0.0.2", front(fronts.raw_v2), &a_doc),
        RawOutcome::Acknowledged
    );
    assert_eq!(
        raw_send("127.0.0.3", front(fronts.raw_v1), &b_doc),
        RawOutcome::Acknowledged
    );
    // LPD through HAProxy from tenant b.
    let b_lpd = document_with("", "b-lpd", 40_000);
    lpd_submit(
        "127.0.0.3",
        front(fronts.lpd),
        "office",
        "bob",
        "memo",
        &b_lpd,
    );

    // Real CUPS backends through HAProxy: they connect from 127.0.0.1, tenant c.
    let c_doc = document_with("%!PS-Adobe-3.0\n", "c-cups", 30_000);
    let file = d.dir.path().join("c.ps");
    std::fs::write(&file, &c_doc).unwrap();
    for (backend, uri) in [
        ("socket", format!("socket://127.0.0.1:{}", fronts.raw_v2)),
        ("lpd", format!("lpd://127.0.0.1:{}/office", fronts.lpd)),
        ("ipp", format!("ipp://127.0.0.1:{}/ipp/print", fronts.ipp)),
    ] {
        let out = Command::new(require(backend))
            .args(["1", "carol", &format!("via {backend}"), "1", ""])
            .arg(&file)
            .env("DEVICE_URI", &uri)
            .env("CONTENT_TYPE", "application/postscript")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "CUPS {backend} backend through HAProxy failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Straight to the listener: an untrusted peer, a trusted peer without a
    // header, with a broken header, with a header naming no tenant, or one
    // cut short, are all refused.
    let raw = d.addr("raw");
    let junk = document_with("", "refused", 10_000);
    assert_eq!(raw_send("127.0.0.2", raw, &junk), RawOutcome::Refused);
    assert_eq!(
        raw_with_head(
            "127.0.0.2",
            raw,
            b"PROXY TCP4 127.0.0.3 127.0.0.1 5000 9100\r\n",
            &junk
        ),
        RawOutcome::Refused,
        "a header from an untrusted address is refused"
    );
    assert_eq!(raw_send("127.0.0.1", raw, &junk), RawOutcome::Refused);
    assert_eq!(
        raw_with_head(
            "127.0.0.1",
            raw,
            b"PROXY TCP4 127.0.0.3 nonsense\r\n",
            &junk
        ),
        RawOutcome::Refused
    );
    assert_eq!(
        raw_with_head(
            "127.0.0.1",
            raw,
            b"PROXY TCP4 10.99.0.1 127.0.0.1 5000 9100\r\n",
            &junk
        ),
        RawOutcome::Refused
    );
    assert_eq!(
        raw_send(
            "127.0.0.1",
            raw,
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00"
        ),
        RawOutcome::Refused
    );
    // A well-formed v1 header from the trusted proxy is taken as written.
    let b_hand = document_with("", "b-hand", 20_000);
    assert_eq!(
        raw_with_head(
            "127.0.0.1",
            raw,
            b"PROXY TCP4 127.0.0.3 127.0.0.1 40000 9100\r\n",
            &b_hand
        ),
        RawOutcome::Acknowledged
    );

    let folder = |t: &str| -> Vec<String> {
        let dir = d.dir.path().join(format!("store-{t}"));
        let mut v: Vec<String> = stored_documents(&dir)
            .iter()
            .map(|(_, data)| sha256(data))
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    wait_until("every job stored", || {
        (folder("a").len() == 1 && folder("b").len() == 3 && folder("c").len() == 3).then_some(())
    });
    assert_eq!(folder("a"), vec![sha256(&a_doc)]);
    assert_eq!(
        folder("b"),
        sorted(vec![sha256(&b_doc), sha256(&b_lpd), sha256(&b_hand)])
    );
    assert!(folder("c").iter().all(|h| h == &sha256(&c_doc)));

    let mut d = d;
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    let users = |t: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = jobs[t]
            .iter()
            .map(|j| (j.peer.ip().to_string(), j.user.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(users("a"), [("127.0.0.2".to_owned(), "alice".to_owned())]);
    assert_eq!(
        users("b"),
        [
            ("127.0.0.3".to_owned(), "anonymous".to_owned()),
            ("127.0.0.3".to_owned(), "bob".to_owned()),
            ("127.0.0.3".to_owned(), "bob".to_owned()),
        ]
    );
    assert_eq!(jobs["c"].len(), 3);
    assert!(jobs["c"]
        .iter()
        .all(|j| j.peer.ip().to_string() == "127.0.0.1"));
    assert!(
        jobs["c"].iter().filter(|j| j.user == "carol").count() >= 2,
        "the lpd and ipp backends name their user: {:?}",
        jobs["c"]
    );
}
