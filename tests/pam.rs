//! Portal sign-in with a unix password through PAM: real users made for the
//! test (`useradd`, `chpasswd`; removed at the end, also on failure), a PAM
//! service file of the test's own in `/etc/pam.d` (PAM looks nowhere else;
//! removed at the end), and the real daemon over HTTPS on loopback.
//!
//! Built only with the `pam` feature (scripts/test builds with it).
#![cfg(feature = "pam")]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::web::*;
use printroute::admin::web::state::MAX_FAILED_SIGN_INS;

/// A unix user made for one test; removed (with its group) on drop.
struct TestUser {
    name: String,
}

impl TestUser {
    /// A user `name` with its own group of the same name and `password`.
    fn new(name: &str, password: &str) -> TestUser {
        let ok = Command::new("useradd")
            .args([
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name} failed (tests run as root)");
        let user = TestUser { name: name.into() };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(chpasswd.stdin.take().unwrap(), "{name}:{password}").unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd {name} failed");
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A PAM service file the test wrote (never one that was there before);
/// removed on drop.
struct PamService {
    name: String,
    path: PathBuf,
}

impl PamService {
    /// `/etc/pam.d/<name>` checking unix passwords and accounts only.
    fn new(name: &str) -> PamService {
        let path = PathBuf::from("/etc/pam.d").join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f.write_all(b"auth required pam_unix.so\naccount required pam_unix.so\n")
            .unwrap();
        PamService {
            name: name.into(),
            path,
        }
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn tenant_file(name: &str, range: &str, admin: &str) -> String {
    format!(
        r#"name = "{name}"
ranges = ["{range}"]
admins = {{ unix-users = ["{admin}"] }}
"#
    )
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

#[test]
fn an_admin_signs_in_with_a_unix_password_and_others_are_refused_like_a_wrong_token() {
    let pid = std::process::id();
    let password = format!("Right-{pid}-horse");
    let alice = TestUser::new(&format!("prta{pid}"), &password);
    let bob = TestUser::new(&format!("prtb{pid}"), &password);
    let carol = TestUser::new(&format!("prtc{pid}"), &password);
    let service = PamService::new(&format!("printroute-test-{pid}"));

    // alice administers acme, bob beta; carol's group is a global admin group.
    let (d, api, _aside) = {
        let aside = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(aside.path());
        let tdir = aside.path().join("tenants.d");
        std::fs::create_dir_all(&tdir).unwrap();
        std::fs::write(
            tdir.join("acme.toml"),
            tenant_file("ACME", "127.0.1.0/24", &alice.name),
        )
        .unwrap();
        std::fs::write(
            tdir.join("beta.toml"),
            tenant_file("Beta", "127.0.2.0/24", &bob.name),
        )
        .unwrap();
        let config = main_config(&cert, &key, &tdir, "")
            .replacen(
                "[global]\n",
                &format!("[global]\nadmin-groups = [\"{}\"]\n", carol.name),
                1,
            )
            .replacen(
                "[global.web]\n",
                &format!("[global.web]\npam-service = \"{}\"\n", service.name),
                1,
            );
        let d = common::TestDaemon::start(&config);
        let api = Api::new(d.addr("web"), &cert);
        (d, api, aside)
    };
    let from = "127.0.0.40";
    let post = |from: &str, path: &str, body: &str| {
        api.request(from, "POST", path, &[FORM], body.as_bytes())
    };
    let get = |path: &str, cookie: &str| api.request(from, "GET", path, &[("Cookie", cookie)], b"");

    // The sign-in page offers the password form.
    let page = api.request(from, "GET", "/t/acme/signin", &[], b"");
    assert!(page.body.contains("name=\"password\""), "{}", page.body);

    // alice, acme's admin, with her password: a session for acme only.
    let r = post(
        from,
        "/t/acme/signin",
        &format!("user={}&password={password}", alice.name),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/t/acme/"));
    let cookie = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = get("/t/acme/", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("ACME"), "{}", page.body);
    assert!(page
        .body
        .contains(&format!("user {} (password)", alice.name)));
    assert_eq!(
        get("/t/beta/", &cookie).status,
        404,
        "another tenant's page"
    );
    let admin = get("/admin/", &cookie);
    assert_eq!(admin.status, 303, "a tenant admin has no global pages");
    assert_eq!(admin.header("location"), Some("/admin/signin"));

    // A wrong token's answer, which every refused password sign-in must equal.
    let wrong_token = post("127.0.0.41", "/t/acme/signin", "token=prt_nope_nope");
    assert_eq!(wrong_token.status, 401);
    let refusals = [
        (
            "a wrong password",
            format!("user={}&password=wrong", alice.name),
        ),
        (
            "an admin of another tenant",
            format!("user={}&password={password}", bob.name),
        ),
        (
            "a user who does not exist",
            format!("user=prtz{pid}&password={password}"),
        ),
        ("no password", format!("user={}&password=", alice.name)),
    ];
    for (i, (what, form)) in refusals.iter().enumerate() {
        let r = post(&format!("127.0.0.{}", 42 + i), "/t/acme/signin", form);
        assert_eq!(r.status, wrong_token.status, "{what}: {}", r.body);
        assert_eq!(r.body, wrong_token.body, "{what}");
        assert_eq!(r.header("set-cookie"), None, "{what}");
    }
    // alice is no global admin; bob's sign-in on his own tenant's page works.
    let r = post(
        "127.0.0.46",
        "/admin/signin",
        &format!("user={}&password={password}", alice.name),
    );
    assert_eq!(r.status, 401);
    let r = post(
        from,
        "/t/beta/signin",
        &format!("user={}&password={password}", bob.name),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/t/beta/"));

    // carol, in a global admin group: the global pages.
    let r = post(
        from,
        "/admin/signin",
        &format!("user={}&password={password}", carol.name),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/admin/"));
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = get("/admin/", &cookie);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Beta") && page.body.contains("ACME"),
        "{}",
        page.body
    );

    // Failed password sign-ins count with failed tokens: past the limit,
    // even the right password is refused from that address.
    let limited = "127.0.0.47";
    for _ in 0..MAX_FAILED_SIGN_INS - 1 {
        assert_eq!(
            post(limited, "/t/acme/signin", "token=prt_nope_nope").status,
            401
        );
    }
    let r = post(
        limited,
        "/t/acme/signin",
        &format!("user={}&password=wrong", alice.name),
    );
    assert_eq!(r.status, 401);
    let r = post(
        limited,
        "/t/acme/signin",
        &format!("user={}&password={password}", alice.name),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    drop(d);
}
