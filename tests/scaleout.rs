//! Scale-out: two printroute nodes on one config behind one real HAProxy
//! whose configuration `printroute export haproxy` wrote. Each tenant's
//! jobs land only on its own node, with the right tenant and user.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;

/// Tenant → (node, source address).
const TENANTS: [(&str, &str, &str); 4] = [
    ("a", "n1", "127.0.0.2"),
    ("b", "n2", "127.0.0.3"),
    ("c", "n1", "127.0.0.4"),
    ("d", "n2", "127.0.0.5"),
];

fn config(dir: &Path, raw: u16, lpd: u16) -> String {
    let dir = dir.display();
    let mut s = format!(
        r#"
[global]
data-dir = "{dir}/unused"
shutdown-grace = "5s"
[global.limits]
idle-timeout = "10s"

[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:{raw}"]
proxy-protocol = true
trusted-proxies = ["127.0.0.1"]

[[listener]]
name = "lpd"
protocol = "lpd"
bind = ["127.0.0.1:{lpd}"]
proxy-protocol = true
trusted-proxies = ["127.0.0.1"]

[[node]]
name = "n1"
address = "127.0.0.11"
data-dir = "{dir}/n1"
control-socket = "{dir}/n1/control.sock"

[[node]]
name = "n2"
address = "127.0.0.12"
data-dir = "{dir}/n2"
control-socket = "{dir}/n2/control.sock"
"#
    );
    for (t, node, ip) in TENANTS {
        s.push_str(&format!(
            r#"
[tenant.{t}]
node = "{node}"
ranges = ["{ip}"]
workflow.keep = {{ steps = [{{ step = "store", folder = "{dir}/store-{t}" }}] }}
input = [
  {{ listener = "raw", workflow = "keep" }},
  {{ listener = "lpd", queue = "office", workflow = "keep" }},
]
"#
        ));
    }
    s
}

#[test]
fn each_tenants_jobs_land_only_on_its_own_node_behind_one_haproxy() {
    let shared = tempfile::tempdir().unwrap();
    let (raw, lpd) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let text = config(shared.path(), raw, lpd);
    let path = shared.path().join("printroute.toml");
    std::fs::write(&path, &text).unwrap();

    let out_dir = shared.path().join("haproxy");
    let out = Command::new(bin())
        .args(["export", "haproxy", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export haproxy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each node runs the same config text, told which node it is.
    let mut n1 = TestDaemon::start_with_env(&text, &[("PRINTROUTE_NODE", "n1".into())]);
    let mut n2 = TestDaemon::start_with_env(&text, &[("PRINTROUTE_NODE", "n2".into())]);
    assert_eq!(n1.addr("raw"), SocketAddr::from(([127, 0, 0, 11], raw)));
    assert_eq!(n2.addr("lpd"), SocketAddr::from(([127, 0, 0, 12], lpd)));
    let _h = Haproxy::start(&out_dir.join("haproxy.cfg"), &[raw, lpd]);
    let front = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    let mut want: HashMap<&str, Vec<String>> = HashMap::new();
    for (t, _, ip) in TENANTS {
        let user = format!("user-{t}");
        let doc = document_with(
            &format!("@PJL SET USERNAME=\"{user}\"\r\n"),
            &format!("raw-{t}"),
            30_000,
        );
        assert_eq!(raw_send(ip, front(raw), &doc), RawOutcome::Acknowledged);
        let doc2 = document_with("", &format!("lpd-{t}"), 20_000);
        lpd_submit(ip, front(lpd), "office", &user, "memo", &doc2);
        want.entry(t)
            .or_default()
            .extend([sha256(&doc), sha256(&doc2)]);
    }
    // An address of no tenant is turned away by HAProxy itself.
    let stray = document_with("", "stray", 10_000);
    assert_eq!(
        raw_send("127.0.0.9", front(raw), &stray),
        RawOutcome::Refused
    );
    // A node refuses a tenant of the other node even with a valid header.
    let mut head = b"PROXY TCP4 127.0.0.3 127.0.0.1 40000 9100\r\n".to_vec();
    head.extend_from_slice(&stray);
    assert_eq!(
        raw_send("127.0.0.1", n1.addr("raw"), &head),
        RawOutcome::Refused
    );

    let folder = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = stored_documents(&shared.path().join(format!("store-{t}")))
            .iter()
            .map(|(_, data)| sha256(data))
            .collect();
        v.sort();
        v
    };
    wait_until("every job stored", || {
        TENANTS
            .iter()
            .all(|(t, _, _)| folder(t).len() == 2)
            .then_some(())
    });
    for (t, _, _) in TENANTS {
        let mut w = want[t].clone();
        w.sort();
        assert_eq!(folder(t), w, "tenant {t}'s documents");
    }

    assert_eq!(n1.stop(), 0);
    assert_eq!(n2.stop(), 0);
    for (node, tenants) in [("n1", ["a", "c"]), ("n2", ["b", "d"])] {
        let jobs = stored_jobs_at(&shared.path().join(node));
        let mut have: Vec<&String> = jobs.keys().collect();
        have.sort();
        assert_eq!(have, tenants, "tenants with records on node {node}");
        for t in tenants {
            let recs = &jobs[t];
            assert_eq!(recs.len(), 2, "jobs of {t} on {node}");
            let ip = TENANTS.iter().find(|x| x.0 == t).unwrap().2;
            for j in recs {
                assert_eq!(j.tenant.to_string(), t);
                assert_eq!(j.user, format!("user-{t}"));
                assert_eq!(j.peer.ip().to_string(), ip);
            }
        }
    }
}
