//! The web portal: a real headless Chromium driven through chromedriver's
//! WebDriver HTTP interface (plain HTTP requests from the test), over the
//! daemon's HTTPS with a test certificate; and the portal's defences
//! (session cookie flags, CSRF, cross-site posts, another tenant's pages,
//! the sign-in rate limit) with a plain HTTPS client.
//!
//! Screenshots of each page are written to
//! `$CARGO_TARGET_TMPDIR/portal-screenshots/` (target/tmp/...).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::web::*;
use common::*;
use serde_json::{json, Value};

/// One WebDriver command's longest wait (a page load in a cold browser).
const WEBDRIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// chromedriver and the session it drives; both end on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn webdriver(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WEBDRIVER_TIMEOUT)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open whatever the request says:
    // read the head, then exactly Content-Length bytes.
    let mut r = std::io::BufReader::new(s);
    let mut len = 0;
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

impl Browser {
    fn start() -> Browser {
        let driver_bin = require("chromedriver");
        let chromium = require("chromium");
        let port = free_port("127.0.0.1");
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until("chromedriver to listen", || TcpStream::connect(addr).ok());
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1400", format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let r = webdriver(addr, "POST", "/session", Some(&caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            driver,
            addr,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let r = webdriver(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        if let Some(e) = r["value"]["error"].as_str() {
            panic!("WebDriver {method} {path}: {e}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The element `css` selects, once the page has it.
    fn find(&self, css: &str) -> String {
        wait_until(&format!("element {css}"), || {
            let r = webdriver(
                self.addr,
                "POST",
                &format!("/session/{}/element", self.session),
                Some(&json!({ "using": "css selector", "value": css })),
            );
            r["value"][ELEMENT].as_str().map(str::to_owned)
        })
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(&json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(&json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(&json!({ "text": text })),
        );
    }

    fn wait_text(&self, needle: &str) {
        wait_until(&format!("page text {needle:?}"), || {
            self.source().contains(needle).then_some(())
        });
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = webdriver(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for c in digits.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..c.len()]);
    }
    out
}

fn acme_file(d1: &SocatDevice, d2: &SocatDevice) -> String {
    format!(
        r#"name = "ACME"
ranges = ["127.0.1.0/24"]
[device.d1]
uri = "{}"
[device.d2]
uri = "{}"
[workflow.secure]
steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["d1"] }}]
[[input]]
listener = "raw"
workflow = "secure"
"#,
        d1.uri(),
        d2.uri()
    )
}

#[test]
fn in_a_browser_a_tenant_admin_releases_a_job_and_edits_a_device_and_a_global_admin_provisions() {
    let (d1, d2, d3) = (
        SocatDevice::start("127.0.1.9"),
        SocatDevice::start("127.0.1.10"),
        SocatDevice::start("127.0.1.11"),
    );
    let (d, api, aside) = start("", &[("acme.toml", acme_file(&d1, &d2))]);
    let base = format!("https://localhost:{}", api.addr.port());
    let acme = token(&d, &["--tenant", "acme"], &[]);
    let global = token(&d, &["--global"], &[]);
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"held in the browser\n"),
        RawOutcome::Acknowledged
    );
    let held = wait_until("a held job", || {
        let j = d.live_jobs("acme");
        (j.first()?.state.as_str() == "held").then(|| j[0].id.0)
    });

    let b = Browser::start();
    b.go(&format!("{base}/t/acme/"));
    b.find("#token");
    assert!(b.url().ends_with("/t/acme/signin"), "{}", b.url());
    b.screenshot("1-sign-in");
    b.type_into("#token", &acme);
    b.click("button[type=submit]");
    b.wait_text("Held jobs");
    b.screenshot("2-tenant-page");

    // Release the held job to d2 (its workflow would send it to d1).
    b.click(&format!(
        "form[action='/t/acme/jobs/{held}/release'] option[value='d2']"
    ));
    b.click(&format!(
        "form[action='/t/acme/jobs/{held}/release'] button"
    ));
    b.wait_text(&format!("job {held}: released"));
    assert_eq!(d2.wait_for(1).len(), 1);
    assert!(d1.received().is_empty());
    b.screenshot("3-released");

    // Edit d1's address to d3's; the file says so and the next job goes there.
    b.type_into(
        "form[action='/t/acme/devices/d1'] input[name=uri]",
        &d3.uri(),
    );
    b.click("form[action='/t/acme/devices/d1'] button");
    b.wait_text("device d1 saved");
    let text = std::fs::read_to_string(aside.tenant_file("acme")).unwrap();
    assert!(text.contains(&d3.uri()), "{text}");
    b.screenshot("4-device-edited");
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"second\n"),
        RawOutcome::Acknowledged
    );
    let second = wait_until("the second job held", || {
        d.live_jobs("acme")
            .iter()
            .find(|j| j.state.as_str() == "held")
            .map(|j| j.id.0)
    });
    let r = api.call(
        "127.0.0.1",
        "POST",
        &format!("/api/v1/tenants/acme/jobs/{second}/release"),
        Some(&acme),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(d3.wait_for(1).len(), 1);

    // A global admin signs in (new browser session) and provisions a tenant.
    b.cmd("DELETE", "/cookie", None);
    b.go(&format!("{base}/admin/"));
    b.type_into("#token", &global);
    b.click("button[type=submit]");
    b.wait_text("Provision a tenant");
    b.screenshot("5-admin");
    b.type_into("form[action='/admin/tenants'] input[name=id]", "initech");
    b.type_into("form[action='/admin/tenants'] input[name=name]", "Initech");
    b.type_into(
        "form[action='/admin/tenants'] input[name=ranges]",
        "127.0.3.0/24",
    );
    b.click("form[action='/admin/tenants'] button");
    b.wait_text("tenant initech provisioned");
    assert!(aside.tenant_file("initech").exists());
    assert!(b.source().contains("href=\"/t/initech/\""));
    b.screenshot("6-provisioned");
    // A global admin sees any tenant's view.
    b.go(&format!("{base}/t/acme/"));
    b.wait_text("ACME (acme)");
    b.screenshot("7-global-sees-acme");
}

/// Signs in through the form; returns the session cookie and the page's CSRF token.
fn sign_in(api: &Api, from: &str, path: &str, token: &str) -> (String, String) {
    let r = api.request(
        from,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("token={token}").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = api.request(
        from,
        "GET",
        r.header("location").unwrap(),
        &[("Cookie", &pair)],
        b"",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    (pair, csrf)
}

#[test]
fn the_portal_refuses_forms_without_csrf_or_from_other_sites_and_hides_other_tenants() {
    let (d1, d2) = (
        SocatDevice::start("127.0.1.9"),
        SocatDevice::start("127.0.1.10"),
    );
    let globex = "name = \"Globex\"\nranges = [\"127.0.2.0/24\"]\n";
    let (d, api, _aside) = start(
        "",
        &[
            ("acme.toml", acme_file(&d1, &d2)),
            ("globex.toml", globex.into()),
        ],
    );
    let acme = token(&d, &["--tenant", "acme"], &[]);
    let from = "127.0.0.1";
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"x\n"),
        RawOutcome::Acknowledged
    );
    let held = wait_until("a held job", || {
        let j = d.live_jobs("acme");
        (j.first()?.state.as_str() == "held").then(|| j[0].id.0)
    });

    // No session: to the sign-in page.
    let r = api.request(from, "GET", "/t/acme/", &[], b"");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/t/acme/signin"))
    );
    let (cookie, csrf) = sign_in(&api, from, "/t/acme/signin", &acme);
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
    ];
    let release = format!("/t/acme/jobs/{held}/release");

    // A form without the CSRF token, with a wrong one, or posted from
    // another site's page: refused, and the job stays held.
    let r = api.request(from, "POST", &release, &form, b"to=d2");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api.request(from, "POST", &release, &form, b"to=d2&csrf=00");
    assert_eq!(r.status, 403, "{}", r.body);
    let cross = [form[0], form[1], ("Origin", "https://evil.example")];
    let r = api.request(
        from,
        "POST",
        &release,
        &cross,
        format!("to=d2&csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("another site"), "{}", r.body);
    let site = [form[0], form[1], ("Sec-Fetch-Site", "cross-site")];
    let r = api.request(
        from,
        "POST",
        &release,
        &site,
        format!("to=d2&csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(d.live_jobs("acme")[0].state.as_str(), "held");
    // The real form (same origin, its token) works.
    let origin = format!("https://{}", api.addr);
    let same = [form[0], form[1], ("Origin", origin.as_str())];
    let r = api.request(
        from,
        "POST",
        &release,
        &same,
        format!("to=d2&csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(d2.wait_for(1).len(), 1);

    // Another tenant's pages look exactly like a tenant that does not exist.
    for path in ["/t/{t}/", "/t/{t}/jobs/1/release", "/t/{t}/devices/d1"] {
        for method in ["GET", "POST"] {
            let body = format!("csrf={csrf}&uri=socket://127.0.2.9:9100");
            let other = api.request(
                from,
                method,
                &path.replace("{t}", "globex"),
                &form,
                body.as_bytes(),
            );
            let none = api.request(
                from,
                method,
                &path.replace("{t}", "nosuch"),
                &form,
                body.as_bytes(),
            );
            assert_eq!(other.status, 404, "{method} {path}");
            assert_eq!(
                (other.status, &other.body),
                (none.status, &none.body),
                "{method} {path}"
            );
        }
    }
    // A tenant's token does not open the global pages.
    let r = api.request(from, "GET", "/admin/", &[("Cookie", &cookie)], b"");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/admin/signin"))
    );

    // Signing out ends the session.
    let r = api.request(
        from,
        "POST",
        "/signout",
        &same,
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 303);
    let r = api.request(from, "GET", "/t/acme/", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 303, "the old cookie no longer works");

    // Failed sign-ins from one address: past the limit even a good token
    // is refused there; another address signs in.
    let limit = printroute::admin::web::state::MAX_FAILED_SIGN_INS;
    let form_only = [form[0]];
    for _ in 0..limit {
        let r = api.request(
            "127.0.0.30",
            "POST",
            "/t/acme/signin",
            &form_only,
            b"token=prt_nope_nope",
        );
        assert_eq!(r.status, 401);
    }
    let r = api.request(
        "127.0.0.30",
        "POST",
        "/t/acme/signin",
        &form_only,
        format!("token={acme}").as_bytes(),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    sign_in(&api, "127.0.0.31", "/t/acme/signin", &acme);
}
