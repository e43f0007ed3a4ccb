//! `printroute check` and `printroute which` on real files.

mod common;

use std::process::Command;

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(common::bin())
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_config_passes_check() {
    let out = Command::new(common::bin())
        .args([
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/printroute.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ok"), "{stdout}");
    assert!(
        stdout.contains("2 tenants, 4 ranges, 3 listeners"),
        "{stdout}"
    );
}

#[test]
fn overlapping_ranges_fail_with_78_naming_both_parties() {
    let (code, _, err) = check(
        "[global]\ndata-dir = \"/tmp/x\"\n[tenant.acme]\nranges = [\"10.1.0.0/16\"]\n[tenant.globex]\nranges = [\"10.1.7.0/24\"]\n",
    );
    assert_eq!(code, 78);
    assert!(err.contains("bad.toml: tenant.globex.ranges: 10.1.7.0/24 (tenant globex) overlaps 10.1.0.0/16 (tenant acme)"), "{err}");
}

#[test]
fn unknown_key_fails_with_78_and_its_place() {
    let (code, _, err) = check("[global]\ndata-dir = \"/tmp/x\"\nlisten = \"x\"\n");
    assert_eq!(code, 78);
    assert!(
        err.contains("unknown field `listen`") && err.contains("line 3"),
        "{err}"
    );
}

/// Unknown keys are reported by their paths, together with the semantic
/// problems of the same file, not one TOML error alone.
#[test]
fn unknown_keys_and_overlaps_are_reported_together() {
    let (code, _, err) = check(
        r#"
[global]
data-dir = "/tmp/x"
listen = "x"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:9100"]
tls-mode = "on"
[tenant.acme]
ranges = ["10.1.0.0/16"]
limits = { max-connection-rate = "20/s", burst = 4 }
[tenant.globex]
ranges = ["10.1.7.0/24"]
printers = ["lobby"]
[tenant.globex.workflow.w]
steps = [{ step = "hold" }]
[[tenant.globex.input]]
listener = "raw"
workflow = "w"
queue-name = "x"
"#,
    );
    assert_eq!(code, 78);
    for needle in [
        "bad.toml: global.listen: unknown field `listen`",
        "(line 4)",
        "bad.toml: listener[0].tls-mode: unknown field `tls-mode`",
        "bad.toml: tenant.acme.limits.burst: unknown field `burst`",
        "bad.toml: tenant.globex.printers: unknown field `printers`",
        "bad.toml: tenant.globex.input[0].queue-name: unknown field `queue-name`",
        "tenant.globex.ranges: 10.1.7.0/24 (tenant globex) overlaps 10.1.0.0/16 (tenant acme)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn bad_references_fail_with_78_each_named() {
    let (code, _, err) = check(
        r#"
[global]
data-dir = "/tmp/x"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:9100"]
[tenant.acme]
ranges = ["10.1.0.0/16"]
device.p = { uri = "socket://10.1.0.5" }
workflow.w = { steps = [{ step = "forward", devices = ["q"] }] }
input = [{ listener = "lpd", workflow = "w" }, { listener = "raw", workflow = "nowhere" }]
"#,
    );
    assert_eq!(code, 78);
    for needle in [
        "tenant.acme.workflow.w.steps[0].devices: unknown device \"q\"",
        "tenant.acme.input[0].listener: unknown listener \"lpd\"",
        "tenant.acme.input[1].workflow: unknown workflow \"nowhere\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn which_answers_v4_v6_and_v4_mapped_addresses() {
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/design-example.toml"
    );
    let which = |a: &str| {
        let out = Command::new(common::bin())
            .args(["which", a, "--config", cfg])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(which("10.1.2.3").contains("tenant acme (ACME Corp) by range 10.1.0.0/16"));
    assert!(
        which("::ffff:10.2.0.9").contains("10.2.0.9: tenant globex (Globex) by range 10.2.0.0/16")
    );
    assert!(which("2001:db8:1:5::1").contains("tenant acme (ACME Corp) by range 2001:db8:1::/48"));
    assert!(which("192.0.2.1").contains("no tenant"));
}

#[test]
fn check_reads_tenants_dir_and_names_the_tenant_file_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("tenants.d");
    std::fs::create_dir(&tdir).unwrap();
    let main = dir.path().join("printroute.toml");
    std::fs::write(
        &main,
        "[global]\ndata-dir = \"/tmp/x\"\ntenants-dir = \"tenants.d\"\n[tenant.acme]\nranges = [\"10.1.0.0/16\"]\n",
    )
    .unwrap();
    std::fs::write(tdir.join("globex.toml"), "ranges = [\"10.2.0.0/16\"]\n").unwrap();
    let run = || {
        let out = Command::new(common::bin())
            .arg("check")
            .arg(&main)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 tenants, 2 ranges"), "{out}");
    std::fs::write(tdir.join("globex.toml"), "ranges = [\"10.1.7.0/24\"]\n").unwrap();
    let (code, _, err) = run();
    assert_eq!(code, 78);
    let globex = tdir.join("globex.toml");
    assert!(
        err.contains(&format!(
            "{}: tenant.globex.ranges: 10.1.7.0/24 (tenant globex) overlaps 10.1.0.0/16 (tenant acme)",
            globex.display()
        )),
        "{err}"
    );
}
