//! PIN release (PWG 5100.11 `job-password`) end to end: CUPS's own
//! `print-job-password.test` sends the job with ipptool, printroute holds
//! it, and the release page over HTTPS shows it only for its user and PIN,
//! prints it on the chosen device, and locks a job after five wrong PINs.

mod common;

use std::process::Command;

use common::web::*;
use common::*;

/// The tenant owns 127.0.0.1 (ipptool cannot bind a source address) and
/// holds what arrives over IPP.
fn acme_file(d1: &SocatDevice, d2: &SocatDevice) -> String {
    format!(
        r#"name = "ACME"
ranges = ["127.0.0.1/32", "127.0.1.0/24"]
[device.d1]
uri = "{}"
[device.d2]
uri = "{}"
[workflow.secure]
steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["d1"] }}]
[workflow.direct]
steps = [{{ step = "forward", devices = ["d1"] }}]
[[input]]
listener = "ipp"
workflow = "secure"
[[input]]
listener = "ipp"
queue = "direct"
workflow = "direct"
"#,
        d1.uri(),
        d2.uri()
    )
}

const IPP_LISTENER: &str =
    "[[listener]]\nname = \"ipp\"\nprotocol = \"ipp\"\nbind = [\"127.0.0.1:0\"]\n";

fn ipptool(dir: &std::path::Path, uri: &str, test: &str) -> String {
    let out = Command::new(require("ipptool"))
        .args(["-t", "-f", "job.ps", uri, test])
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{test}: {text}");
    text
}

fn form(api: &Api, from: &str, path: &str, body: &str) -> Answer {
    api.request(
        from,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

#[test]
fn a_job_sent_with_a_pin_is_held_until_released_with_it_and_five_wrong_pins_lock_it() {
    let (d1, d2) = (
        SocatDevice::start("127.0.1.9"),
        SocatDevice::start("127.0.1.10"),
    );
    let (d, api, aside) = start(IPP_LISTENER, &[("acme.toml", acme_file(&d1, &d2))]);
    let dir = aside.dir.path();
    std::fs::write(
        dir.join("job.ps"),
        b"%!PS-Adobe-3.0\n%%Title: secret\nshowpage\n%%EOF\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("password-supported.test"),
        "{\n NAME \"job-password-supported on a holding printer\"\n OPERATION Get-Printer-Attributes\n GROUP operation-attributes-tag\n ATTR charset attributes-charset utf-8\n ATTR language attributes-natural-language en\n ATTR uri printer-uri $uri\n STATUS successful-ok\n EXPECT job-password-supported OF-TYPE integer WITH-VALUE 255\n EXPECT job-password-encryption-supported OF-TYPE keyword WITH-VALUE none\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("password-unsupported.test"),
        "{\n NAME \"no job-password-supported on a printer that does not hold\"\n OPERATION Get-Printer-Attributes\n GROUP operation-attributes-tag\n ATTR charset attributes-charset utf-8\n ATTR language attributes-natural-language en\n ATTR uri printer-uri $uri\n STATUS successful-ok\n EXPECT !job-password-supported\n}\n",
    )
    .unwrap();
    let uri = format!("ipp://{}/ipp/print", d.addr("ipp"));
    ipptool(dir, &uri, "password-supported.test");
    ipptool(dir, &format!("{uri}/direct"), "password-unsupported.test");
    // CUPS's own test, twice: two held jobs of the calling user (ipptool sends its own
    // name, root here) with PIN 1234.
    for _ in 0..2 {
        ipptool(dir, &uri, "/usr/share/cups/ipptool/print-job-password.test");
    }
    let jobs = wait_until("two held jobs", || {
        let j = d.live_jobs("acme");
        (j.len() == 2 && j.iter().all(|j| j.state.as_str() == "held")).then_some(j)
    });
    assert!(
        jobs.iter()
            .all(|j| j.user == "root" && j.pin.as_deref() == Some("set")),
        "{jobs:?}"
    );
    let (first, second) = (jobs[0].id.0, jobs[1].id.0);

    // The page answers only from the tenant's addresses.
    let page = "/t/acme/release";
    assert_eq!(api.request("127.0.1.5", "GET", page, &[], b"").status, 200);
    let outside = api.request("127.0.0.40", "GET", page, &[], b"");
    let none = api.request("127.0.0.40", "GET", "/t/nosuch/release", &[], b"");
    assert_eq!((outside.status, &outside.body), (404, &none.body));

    // A wrong PIN, or another user, shows nothing.
    let r = form(&api, "127.0.1.5", page, "user=root&pin=9999");
    assert!(
        r.body.contains("No held jobs") && !r.body.contains("Print job"),
        "{}",
        r.body
    );
    let r = form(&api, "127.0.1.5", page, "user=alice&pin=1234");
    assert!(!r.body.contains("Print job"), "{}", r.body);
    // The right one lists both, and prints the first on the chosen device.
    let r = form(&api, "127.0.1.5", page, "user=root&pin=1234");
    assert!(
        r.body.contains(&format!("Print job {first}"))
            && r.body.contains(&format!("Print job {second}")),
        "{}",
        r.body
    );
    let r = form(
        &api,
        "127.0.1.5",
        &format!("{page}/{first}"),
        "user=root&pin=9999&to=d2",
    );
    assert!(
        !r.body.contains("is printing"),
        "a wrong PIN releases nothing: {}",
        r.body
    );
    let r = form(
        &api,
        "127.0.1.5",
        &format!("{page}/{first}"),
        "user=root&pin=1234&to=d2",
    );
    assert!(
        r.body
            .contains(&format!("Job {first} is printing on device d2")),
        "{}",
        r.body
    );
    let got = d2.wait_for(1);
    assert_eq!(got.len(), 1);
    assert!(d1.received().is_empty());

    // The second job has taken two wrong PINs; three more lock it, and
    // then the right PIN opens nothing either.
    for _ in 0..3 {
        let r = form(&api, "127.0.1.6", page, "user=root&pin=0000");
        assert!(!r.body.contains("Print job"), "{}", r.body);
    }
    let r = form(&api, "127.0.1.7", page, "user=root&pin=1234");
    assert!(r.body.contains("No held jobs"), "locked: {}", r.body);
    let r = form(
        &api,
        "127.0.1.7",
        &format!("{page}/{second}"),
        "user=root&pin=1234&to=d2",
    );
    assert!(!r.body.contains("is printing"), "{}", r.body);
    assert_eq!(
        d.live_jobs("acme")
            .iter()
            .find(|j| j.id.0 == second)
            .unwrap()
            .state
            .as_str(),
        "held"
    );
    // An admin still releases it as before (the lock is the PIN page's).
    let (ok, out) = d.cli(&["release", &format!("acme/{second}")]);
    assert!(ok, "{out}");
    assert_eq!(d1.wait_for(1).len(), 1);
}
