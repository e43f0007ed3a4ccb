//! Key rotation (`printroute rekey T`): the tenant gets a new key, every
//! record and spool document of it is sealed again with the new key while
//! jobs keep arriving, and the old key is shredded — a copy of the data
//! dir with the old key opens nothing, and every job still prints whole.
//! A rotation a crash interrupted (its previous key file still there) is
//! resumed at start.

mod common;

use std::collections::HashSet;

use common::*;

const B_MARKER: &str = "REKEY-DOCUMENT-BYTES-7c1f";

fn config(a_device: &str, b_device: &str) -> String {
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
device.printer = {{ uri = "{a_device}" }}
workflow.secure = {{ steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "secure" }}]
[tenant.b]
ranges = ["127.0.2.0/24"]
device.printer = {{ uri = "{b_device}" }}
workflow.secure = {{ steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["printer"] }}] }}
input = [{{ listener = "raw", workflow = "secure" }}]
"#
    )
}

/// b's document `i`: its marker, then enough bytes for several chunks
/// when `big`.
fn b_doc(i: usize, big: bool) -> Vec<u8> {
    let size = if big { 200 << 10 } else { 4096 };
    document_with(&format!("{B_MARKER}-{i}\n"), &format!("b{i}"), size)
}

/// Opens the data dir at `data` (a copy) and returns how many of b's
/// records read, or the error.
fn b_records(data: &std::path::Path) -> Result<usize, String> {
    let store = printroute::store::Store::open(data, 8 << 20).unwrap();
    let b = printroute::config::ids::TenantId::parse("b").unwrap();
    let ts = store.provision(std::slice::from_ref(&b)).unwrap();
    let r = ts[0].jobs().map(|j| j.len()).map_err(|e| e.to_string());
    store.close().unwrap();
    r
}

fn copy_data(from: &std::path::Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(copy.path().join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

#[test]
fn rekey_reseals_everything_while_jobs_arrive_and_shreds_the_old_key() {
    let a_dev = RecordingDevice::good("127.0.1.50");
    let dev = RecordingDevice::good("127.0.2.50");
    let mut d = TestDaemon::start(&config(&a_dev.uri(), &dev.uri()));
    let raw = d.addr("raw");
    let mut sent = Vec::new();
    for i in 0..6 {
        let doc = b_doc(i, i % 2 == 0);
        assert_eq!(raw_send("127.0.2.7", raw, &doc), RawOutcome::Acknowledged);
        sent.push(doc);
    }
    let a_doc = document_with("", "a-held", 4096);
    assert_eq!(raw_send("127.0.1.7", raw, &a_doc), RawOutcome::Acknowledged);
    let data = d.data_dir();
    let key = data.join("keys/b.key");
    let old_key = std::fs::read(&key).unwrap();
    let a_key = std::fs::read(data.join("keys/a.key")).unwrap();
    let before = copy_data(&data);

    // The rotation runs while b keeps sending.
    let (ok, out) = d.cli(&["rekey", "b"]);
    assert!(ok, "{out}");
    assert!(out.contains("in the background"), "{out}");
    for i in 6..12 {
        let doc = b_doc(i, i % 2 == 0);
        assert_eq!(raw_send("127.0.2.7", raw, &doc), RawOutcome::Acknowledged);
        sent.push(doc);
    }
    wait_until("the rotation's end", || {
        d.log().contains("key rotation finished").then_some(())
    });
    assert!(!data.join("keys/b.key.prev").exists());
    let new_key = std::fs::read(&key).unwrap();
    assert_ne!(new_key, old_key, "a new key");
    assert_eq!(
        std::fs::read(data.join("keys/a.key")).unwrap(),
        a_key,
        "a's key is untouched"
    );
    // And again, waiting for it: everything is under the new key already,
    // so a second rotation re-seals all of it once more.
    let (ok, out) = d.cli(&["rekey", "b", "--wait"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("12 records and 12 documents"),
        "every record and document of b: {out}"
    );
    let third_key = std::fs::read(&key).unwrap();

    // The old keys open nothing of what is on disk now.
    let after = copy_data(&data);
    for old in [&old_key, &new_key] {
        std::fs::write(after.path().join("data/keys/b.key"), old).unwrap();
        let r = b_records(&after.path().join("data"));
        assert!(r.is_err(), "an old key still opens b's records: {r:?}");
    }
    std::fs::write(after.path().join("data/keys/b.key"), &third_key).unwrap();
    assert_eq!(b_records(&after.path().join("data")), Ok(12));
    // The copy from before the rotation still opens with the old key
    // (which is what makes shredding it matter).
    assert_eq!(b_records(&before.path().join("data")), Ok(6));
    // No key but the current one is anywhere under the data dir.
    let files = bytes_under(&data);
    for old in [&old_key, &new_key] {
        let found: Vec<_> = files
            .iter()
            .filter(|(_, b)| b.windows(old.len()).any(|w| w == &old[..]))
            .map(|(p, _)| p)
            .collect();
        assert!(found.is_empty(), "an old key is still on disk: {found:?}");
    }

    // Every job prints whole, sealed with whichever key.
    for i in 1..=12 {
        let (ok, out) = d.cli(&["release", &format!("b/{i}")]);
        assert!(ok, "{out}");
    }
    let (ok, out) = d.cli(&["release", "a/1"]);
    assert!(ok, "{out}");
    let want: HashSet<String> = sent.iter().map(|s| sha256(s)).collect();
    wait_until("every job at its printer", || {
        let got: HashSet<String> = dev.printed().into_iter().collect();
        (got == want && dev.printed().len() == 12 && a_dev.printed() == vec![sha256(&a_doc)])
            .then_some(())
    });
    assert_eq!(d.stop(), 0);
}

/// Every file under `dir`, with its bytes.
fn bytes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

/// A crash right after the new key replaced the old one (the old one
/// waiting in `b.key.prev`, nothing re-sealed yet): at start both keys
/// open, the rotation goes on by itself, and the jobs print.
#[test]
fn an_interrupted_rotation_resumes_at_start() {
    let a_dev = RecordingDevice::good("127.0.1.50");
    let dev = RecordingDevice::good("127.0.2.50");
    let mut d = TestDaemon::start(&config(&a_dev.uri(), &dev.uri()));
    let raw = d.addr("raw");
    let docs: Vec<Vec<u8>> = (0..3).map(|i| b_doc(i, i == 1)).collect();
    for doc in &docs {
        assert_eq!(raw_send("127.0.2.7", raw, doc), RawOutcome::Acknowledged);
    }
    assert_eq!(d.stop(), 0);
    // What step 1 of a rotation leaves: the old key aside, a new one in place.
    let keys = d.data_dir().join("keys");
    let old = std::fs::read(keys.join("b.key")).unwrap();
    std::fs::write(keys.join("b.key.prev"), &old).unwrap();
    let fresh: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    std::fs::write(keys.join("b.key"), &fresh).unwrap();

    d.spawn();
    wait_until("the resumed rotation's end", || {
        d.log().contains("key rotation finished").then_some(())
    });
    assert!(d
        .log()
        .contains("a key rotation was interrupted; resuming it"));
    assert!(!keys.join("b.key.prev").exists(), "the old key is shredded");
    let raw = d.addr("raw");
    for i in 1..=3 {
        let (ok, out) = d.cli(&["release", &format!("b/{i}")]);
        assert!(ok, "{out}");
    }
    let want: HashSet<String> = docs.iter().map(|s| sha256(s)).collect();
    wait_until("b's jobs at the printer", || {
        let got: HashSet<String> = dev.printed().into_iter().collect();
        (got == want).then_some(())
    });
    // New jobs go on under the new key.
    assert_eq!(
        raw_send("127.0.2.7", raw, &b_doc(9, false)),
        RawOutcome::Acknowledged
    );
    assert_eq!(d.stop(), 0);
    let copy = copy_data(&d.data_dir());
    std::fs::write(copy.path().join("data/keys/b.key"), &old).unwrap();
    assert!(b_records(&copy.path().join("data")).is_err());
}
