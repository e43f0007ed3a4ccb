//! Offboarding truly deletes: a tenant's records are sealed with a key of
//! its own, so neither its users' nor its jobs' names are in the database
//! in plain text, and purging it shreds that key: a byte search of the
//! whole data dir afterwards finds none of its names, none of its document
//! bytes and not its key. The tenant that stays prints on, and a copy of
//! the data dir without the key files yields no readable record.

mod common;

use std::path::Path;

use common::*;

const B_USER: &str = "zebra-user-4711";
const B_JOB: &str = "zebra-confidential";
const B_MARKER: &str = "ZEBRA-DOCUMENT-BYTES-0b5e7a";

fn config(device: &str, with_b: bool) -> String {
    let b = if with_b {
        r#"
[tenant.b]
ranges = ["127.0.2.0/24"]
workflow.keep = { steps = [{ step = "hold" }] }
input = [{ listener = "raw", workflow = "keep" }]
"#
    } else {
        ""
    };
    format!(
        r#"
[global]
data-dir = "{{data}}"
control-socket = "{{dir}}/control.sock"
[[listener]]
name = "raw"
protocol = "raw"
bind = ["127.0.0.1:0"]
[tenant.a]
ranges = ["127.0.1.0/24"]
device.printer = {{ uri = "{device}" }}
workflow.secure = {{ steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "secure" }}]
{b}"#
    )
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

#[test]
fn a_purged_tenant_leaves_nothing_readable_and_the_other_prints_on() {
    let dev = RecordingDevice::good("127.0.1.50");
    let mut d = TestDaemon::start(&config(&dev.uri(), true));
    let raw = d.addr("raw");
    let a_doc = document_with(
        "@PJL SET USERNAME = \"alice\"\n@PJL JOB NAME = \"a-report\"\n",
        "a",
        4096,
    );
    assert_eq!(raw_send("127.0.1.7", raw, &a_doc), RawOutcome::Acknowledged);
    for i in 0..5 {
        let doc = document_with(
            &format!(
                "\x1b%-12345X@PJL SET USERNAME = \"{B_USER}\"\n@PJL JOB NAME = \"{B_JOB}\"\n{B_MARKER}-{i}\n"
            ),
            &format!("b{i}"),
            4096,
        );
        assert_eq!(raw_send("127.0.2.7", raw, &doc), RawOutcome::Acknowledged);
    }
    let b_jobs = wait_until("b's held jobs", || {
        let jobs = d.live_jobs("b");
        (jobs.len() == 5).then_some(jobs)
    });
    assert_eq!(
        b_jobs[0].user, B_USER,
        "the names are what the search looks for"
    );
    assert_eq!(b_jobs[0].name, B_JOB);
    let data = d.data_dir();
    // Sealed: neither the database nor the spool holds any of b's names
    // or document bytes in plain text.
    assert_eq!(
        d.spool_files("b").len(),
        5,
        "b's documents are in the spool"
    );
    for needle in [B_USER, B_JOB, B_MARKER] {
        let found = files_containing(&data, needle.as_bytes());
        assert!(found.is_empty(), "{needle} in plain text in {found:?}");
    }
    let b_key = std::fs::read(data.join("keys/b.key")).expect("b's key file");

    // Offboarding: b leaves the config, then is purged.
    d.write_config(&config(&dev.uri(), false));
    d.signal("HUP");
    wait_until("the reload", || {
        d.log().contains("config reloaded").then_some(())
    });
    let (ok, out) = d.cli(&["purge", "b", "--force"]);
    assert!(ok, "purge: {out}");

    // a prints on: its held job is released and arrives.
    let (ok, out) = d.cli(&["release", "a/1"]);
    assert!(ok, "release: {out}");
    wait_until("a's job at its printer", || {
        (dev.printed() == vec![sha256(&a_doc)]).then_some(())
    });
    assert_eq!(d.stop(), 0);

    // Nothing of b anywhere under the data dir: names, documents, key.
    for needle in [
        B_USER.as_bytes(),
        B_JOB.as_bytes(),
        B_MARKER.as_bytes(),
        &b_key,
    ] {
        let found = files_containing(&data, needle);
        assert!(
            found.is_empty(),
            "{:?} still readable in {found:?}",
            String::from_utf8_lossy(&needle[..needle.len().min(20)])
        );
    }
    // a's records are intact.
    let jobs = stored_jobs_at(&data);
    assert_eq!(jobs["a"].len(), 1);
    assert_eq!(jobs["a"][0].user, "alice");
    assert!(!jobs.contains_key("b"));
}

#[test]
fn a_data_dir_copied_without_its_keys_yields_no_readable_record() {
    let mut d = TestDaemon::start(&config("socket://127.0.1.50:9", true));
    let raw = d.addr("raw");
    let doc = document_with(
        &format!("@PJL SET USERNAME = \"{B_USER}\"\n@PJL JOB NAME = \"{B_JOB}\"\n{B_MARKER}\n"),
        "copy",
        4096,
    );
    assert_eq!(raw_send("127.0.2.7", raw, &doc), RawOutcome::Acknowledged);
    assert_eq!(d.stop(), 0);
    // The copy an attacker takes: everything but the key files.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(d.data_dir())
        .arg(copy.path().join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(copy.path().join("data/keys")).unwrap();
    let store = printroute::store::Store::open(&copy.path().join("data"), 8 << 20).unwrap();
    let b = printroute::config::ids::TenantId::parse("b").unwrap();
    // Opening without the key: the tenant's records cannot be read.
    let stores = store.provision(std::slice::from_ref(&b)).unwrap();
    let err = stores[0].jobs().unwrap_err().to_string();
    assert!(err.contains("key file") && err.contains("missing"), "{err}");
    // Nothing of the copy is readable: not the names, not the document.
    let spooled = std::fs::read_dir(copy.path().join("data/spool/b"))
        .unwrap()
        .count();
    assert_eq!(spooled, 1, "the copy has b's document");
    for needle in [B_USER, B_JOB, B_MARKER] {
        let found = files_containing(&copy.path().join("data"), needle.as_bytes());
        assert!(found.is_empty(), "{needle} readable in {found:?}");
    }
    store.close().unwrap();
}

/// A lost key file fails only its tenant, and says so; the tenant's jobs
/// are left as they are (restoring the file brings them back), and no new
/// key replaces the lost one.
#[test]
fn a_lost_key_fails_only_its_tenant_with_a_clear_message() {
    let dev = RecordingDevice::good("127.0.1.50");
    let mut d = TestDaemon::start(&config(&dev.uri(), true));
    let raw = d.addr("raw");
    let a_doc = document_with("", "a-kept", 4096);
    let b_doc = document_with("", "b-kept", 4096);
    assert_eq!(raw_send("127.0.1.7", raw, &a_doc), RawOutcome::Acknowledged);
    assert_eq!(raw_send("127.0.2.7", raw, &b_doc), RawOutcome::Acknowledged);
    assert_eq!(d.stop(), 0);
    let b_key = d.data_dir().join("keys/b.key");
    let saved = std::fs::read(&b_key).unwrap();
    std::fs::remove_file(&b_key).unwrap();

    d.spawn();
    let raw = d.addr("raw");
    // b: a new job cannot be recorded, and no new key appears.
    assert_eq!(
        raw_send("127.0.2.7", raw, &document_with("", "b-new", 4096)),
        RawOutcome::Refused
    );
    assert!(!b_key.exists(), "a new key would orphan b's records");
    assert!(
        d.log().contains("b.key is missing"),
        "the log names the missing key file:\n{}",
        d.log()
    );
    // a prints on.
    let (ok, out) = d.cli(&["release", "a/1"]);
    assert!(ok, "{out}");
    wait_until("a's job printed", || {
        (dev.printed() == vec![sha256(&a_doc)]).then_some(())
    });
    assert_eq!(d.stop(), 0);

    // The key restored: b's job is there as it was.
    std::fs::write(&b_key, saved).unwrap();
    let jobs = stored_jobs_at(&d.data_dir());
    assert_eq!(jobs["b"].len(), 1);
    assert_eq!(jobs["b"][0].sha256, sha256(&b_doc));
    assert_eq!(jobs["b"][0].state, printroute::store::job::JobState::Held);
}
