//! Spool quota per tenant: tenant a, with a small `spool-quota`
//! and a device that is down, is refused once its spool is full, in each
//! protocol's own way (RAW reset without acknowledgement, LPD negative
//! acknowledgement, IPP `server-error-not-accepting-jobs`), while tenant
//! b's jobs keep flowing; nothing of a refused job is recorded or kept.

mod common;

use common::*;

/// The document format the IPP jobs here declare.
const OCTET_STREAM: &str = "application/octet-stream";

const NOT_ACCEPTING_JOBS: u16 = 0x0506;
const ENTITY_TOO_LARGE: u16 = 0x0408;

fn doc(tag: &str, size: usize) -> Vec<u8> {
    document_with(&format!("%!PS-Adobe-3.0\n%%Title: {tag}\n"), tag, size)
}

fn config(dead_port: u16, dev_b: &str) -> String {
    format!(
        r#"
[global]
data-dir = "{{data}}"
shutdown-grace = "2s"
[global.limits]
idle-timeout = "5s"
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
limits = {{ spool-quota = "64 KiB" }}
device.printer = {{ uri = "socket://127.0.1.50:{dead_port}" }}
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

#[test]
fn a_tenant_at_its_spool_quota_is_refused_in_each_protocol_while_another_keeps_printing() {
    let dead = free_port("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let mut d = TestDaemon::start(&config(dead, &dev_b.uri()));
    let (raw, lpd, ipp) = (d.addr("raw"), d.addr("lpd"), d.addr("ipp"));
    let mut b_sent = Vec::new();
    let b_job = |n: usize, b_sent: &mut Vec<String>| {
        let data = doc(&format!("b{n}"), 20_000);
        match n % 3 {
            0 => assert_eq!(raw_send("127.0.2.10", raw, &data), RawOutcome::Acknowledged),
            1 => assert_eq!(
                lpd_try_submit("127.0.2.11", lpd, "lp", "alice", "quota", &data),
                Ok(())
            ),
            _ => assert_eq!(ipp_print("127.0.2.12", ipp, &data, Some(OCTET_STREAM)), 0),
        }
        b_sent.push(sha256(&data));
    };

    // Tenant a fills its 64 KiB: three jobs of 20,000 bytes, one per protocol.
    let a_ok: Vec<Vec<u8>> = (0..3).map(|i| doc(&format!("a-ok{i}"), 20_000)).collect();
    assert_eq!(
        raw_send("127.0.1.10", raw, &a_ok[0]),
        RawOutcome::Acknowledged
    );
    b_job(0, &mut b_sent);
    assert_eq!(
        lpd_try_submit("127.0.1.11", lpd, "lp", "alice", "quota", &a_ok[1]),
        Ok(())
    );
    b_job(1, &mut b_sent);
    assert_eq!(
        ipp_print("127.0.1.12", ipp, &a_ok[2], Some(OCTET_STREAM)),
        0
    );
    b_job(2, &mut b_sent);

    // Full: each protocol refuses in its own way, several times over.
    let mut refused = Vec::new();
    for round in 0..2 {
        let r = doc(&format!("a-raw{round}"), 20_000);
        assert_eq!(
            raw_send("127.0.1.10", raw, &r),
            RawOutcome::Refused,
            "RAW: reset, no orderly close"
        );
        b_job(3 + 3 * round, &mut b_sent);
        let l = doc(&format!("a-lpd{round}"), 20_000);
        let answer = lpd_try_submit("127.0.1.11", lpd, "lp", "alice", "quota", &l);
        assert!(
            matches!(answer, Err(("data subcommand" | "data file", Some(n))) if n != 0),
            "LPD: negative acknowledgement of the data file, got {answer:?}"
        );
        b_job(4 + 3 * round, &mut b_sent);
        let i = doc(&format!("a-ipp{round}"), 20_000);
        let status = ipp_print("127.0.1.12", ipp, &i, Some(OCTET_STREAM));
        assert!(
            status == NOT_ACCEPTING_JOBS || status == ENTITY_TOO_LARGE,
            "IPP: server-error-not-accepting-jobs, got {status:#06x}"
        );
        b_job(5 + 3 * round, &mut b_sent);
        refused.extend([sha256(&r), sha256(&l), sha256(&i)]);
    }
    // A small job that still fits is taken: the quota counts bytes, nothing leaked.
    let fits = doc("a-fits", 4_000);
    assert_eq!(raw_send("127.0.1.10", raw, &fits), RawOutcome::Acknowledged);

    dev_b.wait_for_digests(&b_sent);
    d.wait_log(&format!("job finished tenant=b job={}", b_sent.len()));
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    let mut a_shas: Vec<String> = jobs["a"].iter().map(|j| j.sha256.clone()).collect();
    a_shas.sort();
    let mut want: Vec<String> = a_ok.iter().map(|x| sha256(x)).collect();
    want.push(sha256(&fits));
    want.sort();
    assert_eq!(
        a_shas, want,
        "tenant a holds its accepted jobs and nothing of the refused ones"
    );
    for r in &refused {
        assert!(!a_shas.contains(r));
    }
    let mut spool = d.spool_files("a");
    spool.sort();
    let mut ids: Vec<String> = jobs["a"].iter().map(|j| j.id.0.to_string()).collect();
    ids.sort();
    assert_eq!(
        spool, ids,
        "tenant a's spool holds exactly its accepted documents"
    );
    assert_eq!(jobs["b"].len(), b_sent.len());
    assert!(jobs["b"]
        .iter()
        .all(|j| j.state == printroute::store::job::JobState::Completed));
    assert!(d.spool_files("b").is_empty());
}

/// A full disk is treated like a full quota: with the spool's file system
/// below `global.min-free-space` (set above the disk's size here, so the
/// disk counts as full without filling it), every protocol refuses in its own
/// way and nothing is recorded; once there is room again (a reload with a
/// lower floor), jobs are taken and the store is intact.
#[test]
fn a_full_disk_refuses_jobs_in_each_protocol_and_recovers() {
    let dead = free_port("127.0.1.50");
    let dev_b = SocatDevice::start("127.0.2.50");
    let normal = config(dead, &dev_b.uri());
    let full = normal.replace("[global]\n", "[global]\nmin-free-space = \"1000 TiB\"\n");
    assert_ne!(full, normal);
    let mut d = TestDaemon::start(&full);
    let (raw, lpd, ipp) = (d.addr("raw"), d.addr("lpd"), d.addr("ipp"));
    for round in 0..2 {
        let data = doc(&format!("full{round}"), 5_000);
        assert_eq!(
            raw_send("127.0.2.10", raw, &data),
            RawOutcome::Refused,
            "RAW: reset"
        );
        let answer = lpd_try_submit("127.0.2.11", lpd, "lp", "alice", "quota", &data);
        assert!(
            matches!(answer, Err(("data subcommand" | "data file", Some(n))) if n != 0),
            "LPD: negative acknowledgement of the data file, got {answer:?}"
        );
        let status = ipp_print("127.0.2.12", ipp, &data, Some(OCTET_STREAM));
        assert_eq!(
            status, NOT_ACCEPTING_JOBS,
            "IPP: server-error-not-accepting-jobs, got {status:#06x}"
        );
    }
    d.write_config(&normal);
    d.signal("HUP");
    d.wait_log("config reloaded");
    let ok = doc("room-again", 5_000);
    assert_eq!(raw_send("127.0.2.10", raw, &ok), RawOutcome::Acknowledged);
    assert_eq!(
        ipp_print(
            "127.0.2.12",
            ipp,
            &doc("room-again-ipp", 5_000),
            Some(OCTET_STREAM)
        ),
        0
    );
    dev_b.wait_for_digests(&[sha256(&ok)]);
    d.wait_log("job finished tenant=b job=2");
    assert_eq!(d.stop(), 0);
    let jobs = d.stored_jobs();
    assert_eq!(
        jobs["b"].len(),
        2,
        "only the jobs taken after the disk had room: {:?}",
        jobs["b"]
    );
    assert!(jobs["a"].is_empty());
    assert!(d.spool_files("b").is_empty());
}
