//! Administration over the control socket: the real CLI run as different
//! unix users (created here with groupadd/useradd; the test command runs as
//! root), each seeing and touching only what the daemon grants it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// Test accounts: a tenant admin of `a` by user name, one of `b` by group,
/// a global admin by group, and somebody who is no admin at all.
const ALICE: &str = "prt-alice";
const BOB: &str = "prt-bob";
const CAROL: &str = "prt-carol";
const MALLORY: &str = "prt-mallory";
const B_ADMINS: &str = "prt-b-admins";
const GLOBAL_ADMINS: &str = "prt-admins";

fn ensure_accounts() {
    let exists = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .output()
            .unwrap()
            .status
            .success()
    };
    for g in [B_ADMINS, GLOBAL_ADMINS] {
        if !exists("group", g) {
            assert!(
                Command::new(require("groupadd"))
                    .arg(g)
                    .status()
                    .unwrap()
                    .success(),
                "groupadd {g} (run the tests as root)"
            );
        }
    }
    for (u, groups) in [
        (ALICE, ""),
        (BOB, B_ADMINS),
        (CAROL, GLOBAL_ADMINS),
        (MALLORY, ""),
    ] {
        if !exists("passwd", u) {
            let mut c = Command::new(require("useradd"));
            c.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]);
            if !groups.is_empty() {
                c.args(["--groups", groups]);
            }
            assert!(
                c.arg(u).status().unwrap().success(),
                "useradd {u} (run the tests as root)"
            );
        }
    }
}

/// Runs the CLI as `user` (with its groups); returns (success, stdout, stderr).
fn cli_as(user: &str, socket: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut c = match user {
        "root" => Command::new(bin()),
        u => {
            let mut c = Command::new(require("setpriv"));
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--init-groups",
                bin(),
            ]);
            c
        }
    };
    let out = c.args(args).arg("--socket").arg(socket).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dev_a1: &str, dev_a2: &str, with_b: bool) -> String {
    let b = if with_b {
        format!(
            r#"
[tenant.b]
ranges = ["127.0.2.0/24"]
admins = {{ unix-groups = ["{B_ADMINS}"] }}
workflow.held = {{ steps = [{{ step = "hold" }}, {{ step = "store", folder = "{{dir}}/out-b" }}] }}
input = [{{ listener = "raw", workflow = "held" }}]
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/run/control.sock"
admin-groups = ["{GLOBAL_ADMINS}"]
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
admins = {{ unix-users = ["{ALICE}"] }}
device.floor1 = {{ uri = "{dev_a1}" }}
device.floor2 = {{ uri = "{dev_a2}" }}
workflow.held = {{ steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["floor1"] }}] }}
input = [{{ listener = "raw", workflow = "held" }}]
{b}"#
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn admins_see_and_touch_only_what_they_administer() {
    ensure_accounts();
    let floor1 = SocatDevice::start("127.0.1.50");
    let floor2 = SocatDevice::start("127.0.1.51");
    let mut d = TestDaemon::start(&config(&floor1.uri(), &floor2.uri(), true));
    // Other users must reach the socket: the temp dir is root's 0700.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = d.dir.path().join("run/control.sock");
    let raw = d.addr("raw");
    let docs: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("document a{i}").into_bytes())
        .collect();
    for doc in &docs {
        assert_eq!(raw_send("127.0.1.7", raw, doc), RawOutcome::Acknowledged);
    }
    assert_eq!(
        raw_send("127.0.2.7", raw, b"document b0"),
        RawOutcome::Acknowledged
    );
    wait_until("all four jobs held", || {
        let (ok, out, _) = cli_as("root", &sock, &["jobs", "--state", "held", "--json"]);
        (ok && json(&out).as_array().unwrap().len() == 4).then_some(())
    });

    // Tenant a's admin: a's jobs only; b does not exist for her.
    let (ok, out, err) = cli_as(ALICE, &sock, &["jobs", "--json"]);
    assert!(ok, "{err}");
    let jobs = json(&out);
    assert_eq!(jobs.as_array().unwrap().len(), 3);
    assert!(jobs.as_array().unwrap().iter().all(|j| j["tenant"] == "a"));
    for args in [
        &["jobs", "--tenant", "b"][..],
        &["job", "b/1"],
        &["release", "b/1"],
        &["cancel", "b/1"],
    ] {
        let (ok, _, err) = cli_as(ALICE, &sock, args);
        assert!(!ok && err.contains("no such tenant: b"), "{args:?}: {err}");
    }
    let (ok, out, _) = cli_as(ALICE, &sock, &["tenants"]);
    assert!(
        ok && out.contains("127.0.1.0/24") && !out.contains("127.0.2.0/24"),
        "{out}"
    );
    // She releases job 1 (to its workflow's device) and job 2 to floor2, and cancels job 3.
    assert!(cli_as(ALICE, &sock, &["release", "a/1"]).0);
    let (ok, _, err) = cli_as(ALICE, &sock, &["release", "a/2", "--to", "floor2"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli_as(ALICE, &sock, &["release", "a/3", "--to", "nowhere"]);
    assert!(!ok && err.contains("no device"), "{err}");
    assert!(cli_as(ALICE, &sock, &["cancel", "a/3"]).0);
    floor1.wait_for_digests(&[sha256(&docs[0])]);
    floor2.wait_for_digests(&[sha256(&docs[1])]);
    let (ok, out, _) = cli_as(ALICE, &sock, &["job", "a/3"]);
    assert!(ok && out.contains("canceled"), "{out}");

    // Tenant b's admin (by group) sees b's job, untouched by alice.
    let (ok, out, err) = cli_as(BOB, &sock, &["jobs", "--json"]);
    assert!(ok, "{err}");
    let jobs = json(&out);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["tenant"], "b");
    assert_eq!(jobs[0]["state"], "held");

    // Somebody who is no admin gets nothing.
    let (ok, _, err) = cli_as(MALLORY, &sock, &["jobs"]);
    assert!(!ok && err.contains("permission denied"), "{err}");
    let (ok, _, err) = cli_as(MALLORY, &sock, &["status"]);
    assert!(!ok && err.contains("permission denied"), "{err}");

    // A global admin (by group) sees both tenants and the listeners; tenant admins may not reload or purge.
    let (ok, out, err) = cli_as(CAROL, &sock, &["status", "--json"]);
    assert!(ok, "{err}");
    let st = json(&out);
    assert_eq!(st["tenants"].as_array().unwrap().len(), 2);
    assert_eq!(st["listeners"][0]["addr"], raw.to_string());
    let (ok, _, err) = cli_as(BOB, &sock, &["reload"]);
    assert!(!ok && err.contains("only a global admin"), "{err}");
    let (ok, _, err) = cli_as(BOB, &sock, &["purge", "b"]);
    assert!(!ok && err.contains("only a global admin"), "{err}");

    // Offboarding b: purge refuses while b is configured; after removal and reload it leaves no trace.
    let (ok, _, err) = cli_as(CAROL, &sock, &["purge", "b"]);
    assert!(!ok && err.contains("still in the config"), "{err}");
    d.write_config(&config(&floor1.uri(), &floor2.uri(), false));
    let (ok, out, err) = cli_as(CAROL, &sock, &["reload"]);
    assert!(ok && out.contains("1 tenants"), "{out}{err}");
    assert_eq!(
        raw_send("127.0.2.7", raw, b"after offboarding"),
        RawOutcome::Refused
    );
    let (ok, out, err) = cli_as(CAROL, &sock, &["purge", "b", "--json"]);
    assert!(ok, "{err}");
    let r = json(&out);
    assert_eq!(r["purged"], "b");
    assert!(r["records"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["spool-files"], 1);
    let (ok, _, err) = cli_as(CAROL, &sock, &["jobs", "--tenant", "b"]);
    assert!(!ok && err.contains("no such tenant"), "{err}");

    assert_eq!(d.stop(), 0);
    assert!(
        !d.data_dir().join("spool/b").exists(),
        "b's spool folder is gone"
    );
    let store = printroute::store::Store::open(&d.data_dir(), 8 << 20).unwrap();
    let trees = store.tree_names();
    assert!(trees.iter().any(|t| t == "tenant/a"), "{trees:?}");
    assert!(
        !trees.iter().any(|t| t.contains("tenant/b")),
        "b's tree is gone: {trees:?}"
    );
    assert!(!store
        .registered_tenants()
        .unwrap()
        .iter()
        .any(|t| t.as_str() == "b"));
    store.close().unwrap();
}
