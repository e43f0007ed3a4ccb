//! The admin API over real HTTPS (a certificate made by openssl in the
//! test, rustls on both ends), with tokens made by the real CLI, tenants in
//! `tenants-dir` files, real RAW jobs from tenants' addresses and socat
//! printers.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::web::*;
use common::*;
use serde_json::{json, Value};

fn acme_file(device: &SocatDevice) -> String {
    format!(
        r#"name = "ACME"
ranges = ["127.0.1.0/24"]
[device.d1]
uri = "{}"
[workflow.direct]
steps = [{{ step = "forward", devices = ["d1"] }}]
[workflow.secure]
steps = [{{ step = "hold" }}, {{ step = "forward", devices = ["d1"] }}]
[[input]]
listener = "raw"
workflow = "direct"
"#,
        device.uri()
    )
}

#[test]
fn a_tenant_token_changes_its_devices_and_workflows_and_jobs_follow() {
    let (d1, d2) = (
        SocatDevice::start("127.0.1.9"),
        SocatDevice::start("127.0.1.10"),
    );
    let (d, api, aside) = start(
        "[tenant.globex]\nranges = [\"127.0.2.0/24\"]\n",
        &[("acme.toml", acme_file(&d1))],
    );
    let acme = token(&d, &["--tenant", "acme"], &[]);
    let t = Some(acme.as_str());
    let from = "127.0.0.1";

    // A first job goes to d1.
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"one\n"),
        RawOutcome::Acknowledged
    );
    d1.wait_for(1);

    // A device and a workflow through the API: the next job goes there.
    let r = api.call(
        from,
        "PUT",
        "/api/v1/tenants/acme/devices/d2",
        t,
        Some(&json!({ "uri": d2.uri() })),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.call(
        from,
        "PUT",
        "/api/v1/tenants/acme/workflows/direct",
        t,
        Some(&json!({ "steps": [{ "step": "forward", "devices": ["d2"] }] })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"two\n"),
        RawOutcome::Acknowledged
    );
    assert_eq!(d2.wait_for(1).len(), 1);
    assert_eq!(d1.received().len(), 1, "d1 got only the first job");
    let file = aside.tenant_file("acme");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains(&d2.uri()) && written.contains("[device.d2]"),
        "{written}"
    );

    // A change that would break the config: every error, nothing changed.
    let r = api.call(
        from,
        "PUT",
        "/api/v1/tenants/acme/inputs",
        t,
        Some(&json!([{ "listener": "nope", "workflow": "missing" }])),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let problems = r.json()["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 2, "{problems:?}");
    for p in &problems {
        assert_eq!(p["file"], json!(file), "{p}");
        assert!(
            p["key"]
                .as_str()
                .unwrap()
                .starts_with("tenant.acme.input[0]"),
            "{p}"
        );
    }
    let r = api.call(
        from,
        "PUT",
        "/api/v1/tenants/acme/devices/evil",
        t,
        Some(&json!({ "uri": "socket://127.0.2.9:9100" })),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .contains("lies in range 127.0.2.0/24 of tenant globex"),
        "{}",
        r.body
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        written,
        "file unchanged"
    );

    // The central part is not the tenant's to change.
    let r = api.call(
        from,
        "PATCH",
        "/api/v1/tenants/acme",
        t,
        Some(&json!({ "ranges": ["127.0.0.0/8"] })),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // A global token may, and an overlap is refused naming both tenants.
    let global = token(&d, &["--global"], &[]);
    let r = api.call(
        from,
        "PATCH",
        "/api/v1/tenants/acme",
        Some(&global),
        Some(&json!({ "ranges": ["127.0.1.0/24", "127.0.2.128/25"] })),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .contains("(tenant acme) overlaps 127.0.2.0/24 (tenant globex)"),
        "{}",
        r.body
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        written,
        "file unchanged"
    );

    // A held job, released through the API to a chosen device.
    let r = api.call(
        from,
        "PUT",
        "/api/v1/tenants/acme/inputs",
        t,
        Some(&json!([{ "listener": "raw", "workflow": "secure" }])),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        raw_send("127.0.1.5", d.addr("raw"), b"held\n"),
        RawOutcome::Acknowledged
    );
    let held = wait_until("a held job", || {
        let r = api.call(from, "GET", "/api/v1/tenants/acme/jobs?state=held", t, None);
        let jobs = r.json();
        jobs.as_array()
            .unwrap()
            .first()
            .map(|j| j["id"].as_u64().unwrap())
    });
    let r = api.call(
        from,
        "GET",
        &format!("/api/v1/tenants/acme/jobs/{held}"),
        t,
        None,
    );
    assert_eq!((r.status, r.json()["state"].clone()), (200, json!("held")));
    let r = api.call(
        from,
        "POST",
        &format!("/api/v1/tenants/acme/jobs/{held}/release"),
        t,
        Some(&json!({ "to": "d2" })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(d2.wait_for(2).len(), 2);
    assert_eq!(d1.received().len(), 1);
    let r = api.call(
        from,
        "POST",
        &format!("/api/v1/tenants/acme/jobs/{held}/cancel"),
        t,
        None,
    );
    assert_eq!(r.status, 409, "an ended job cannot be canceled: {}", r.body);

    // Device state and the tenant's own metrics.
    let r = api.call(from, "GET", "/api/v1/tenants/acme/device-state", t, None);
    assert_eq!(r.json()["d2"]["state"], json!("up"), "{}", r.body);
    assert_eq!(
        r.json()["d2"]["reported"],
        json!(null),
        "a socket device says nothing"
    );
    // An IPP device: its state shows what it says of itself.
    let eve = EvePrinter::start();
    let r = api.call(
        from,
        "PUT",
        "/api/v1/tenants/acme/devices/eve",
        t,
        Some(&json!({ "uri": eve.uri() })),
    );
    assert_eq!(r.status, 201, "a new device: {}", r.body);
    let reported = wait_until("the IPP device's own report", || {
        let r = api.call(from, "GET", "/api/v1/tenants/acme/device-state", t, None);
        let rep = r.json()["eve"]["reported"].clone();
        (!rep.is_null()).then_some(rep)
    });
    assert!(
        reported["printer-state"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
            && reported["document-format-supported"]
                .as_array()
                .is_some_and(|v| v.iter().any(|f| f == "application/pdf")),
        "{reported}"
    );
    let r = api.call(from, "GET", "/api/v1/tenants/acme/metrics", t, None);
    assert!(r.body.contains("tenant=\"acme\""), "{}", r.body);
    assert!(!r.body.contains("tenant=\"globex\""), "{}", r.body);

    // The audit log says who changed what.
    let r = api.call(from, "GET", "/api/v1/tenants/acme/audit", t, None);
    let log = r.json();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "put device d2",
            "put workflow direct",
            "put input",
            "put device eve"
        ]
    );
    let first = &log[0];
    assert!(
        first["who"].as_str().unwrap().starts_with("token ")
            && first["who"].as_str().unwrap().contains("(test)")
    );
    assert_eq!(first["before"], Value::Null);
    assert_eq!(first["after"]["uri"], json!(d2.uri()));

    // Hand edits plus a reload still work (the file is for people too).
    let edited = written.replace(&d2.uri(), &d1.uri());
    std::fs::write(&file, edited).unwrap();
    let (ok, out) = d.cli(&["reload"]);
    assert!(ok, "{out}");
    let r = api.call(from, "GET", "/api/v1/tenants/acme/devices/d2", t, None);
    assert_eq!(r.json()["uri"], json!(d1.uri()));
}

#[test]
fn a_global_token_provisions_a_tenant_whose_jobs_route_and_offboarding_purges_it() {
    let lobby = SocatDevice::start("127.0.3.9");
    let (d, api, aside) = start("", &[]);
    let g = token(&d, &["--global"], &[]);
    let g = Some(g.as_str());
    let from = "127.0.0.1";
    assert_eq!(
        raw_send("127.0.3.5", d.addr("raw"), b"x"),
        RawOutcome::Refused,
        "no tenant yet"
    );

    let r = api.call(from, "POST", "/api/v1/tenants", g, Some(&json!({ "id": "initech", "name": "Initech", "ranges": ["127.0.3.0/24"], "limits": { "spool-quota": "1 GiB" } })));
    assert_eq!(r.status, 201, "{}", r.body);
    let file = aside.tenant_file("initech");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("name = \"Initech\"") && text.contains("spool-quota = \"1 GiB\""),
        "{text}"
    );
    let r = api.call(
        from,
        "POST",
        "/api/v1/tenants",
        g,
        Some(&json!({ "id": "initech", "ranges": ["127.0.4.0/24"] })),
    );
    assert_eq!(r.status, 409, "{}", r.body);

    for (path, body) in [
        ("devices/lobby", json!({ "uri": lobby.uri() })),
        (
            "workflows/direct",
            json!({ "steps": [{ "step": "forward", "devices": ["lobby"] }] }),
        ),
        (
            "inputs",
            json!([{ "listener": "raw", "workflow": "direct" }]),
        ),
    ] {
        let r = api.call(
            from,
            "PUT",
            &format!("/api/v1/tenants/initech/{path}"),
            g,
            Some(&body),
        );
        assert!(r.status == 200 || r.status == 201, "{path}: {}", r.body);
    }
    assert_eq!(
        raw_send("127.0.3.5", d.addr("raw"), b"routed\n"),
        RawOutcome::Acknowledged
    );
    assert_eq!(lobby.wait_for(1).len(), 1);
    let r = api.call(from, "GET", "/api/v1/tenants", g, None);
    assert_eq!(r.json()[0]["id"], json!("initech"));
    let r = api.call(from, "GET", "/api/v1/tenants/initech/audit", g, None);
    assert_eq!(r.json().as_array().unwrap().len(), 4, "{}", r.body);

    // Offboarding: confirmed by repeating the id; removes the file and purges.
    assert!(d.data_dir().join("spool/initech").exists() || !d.live_jobs("initech").is_empty());
    let r = api.call(from, "DELETE", "/api/v1/tenants/initech", g, None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call(
        from,
        "DELETE",
        "/api/v1/tenants/initech",
        g,
        Some(&json!({ "confirm": "initech" })),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["purged"]["records"].as_u64().unwrap() >= 1,
        "{}",
        r.body
    );
    assert!(!file.exists());
    assert!(!d.data_dir().join("spool/initech").exists());
    assert!(!d.data_dir().join("audit/tenants/initech.jsonl").exists());
    assert_eq!(
        api.call(from, "GET", "/api/v1/tenants/initech", g, None)
            .status,
        404
    );
    assert_eq!(
        raw_send("127.0.3.5", d.addr("raw"), b"x"),
        RawOutcome::Refused
    );
    let (ok, out) = d.cli(&["jobs", "--tenant", "initech"]);
    assert!(!ok, "no data left: {out}");
    let global_log = std::fs::read_to_string(d.data_dir().join("audit/global.jsonl")).unwrap();
    assert!(
        global_log.contains("\"provision initech\"") && global_log.contains("\"offboard initech\""),
        "{global_log}"
    );
}

/// Every route of the API, with `{t}` for the tenant and `{j}` for a job id.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/tenants/{t}"),
    ("PATCH", "/api/v1/tenants/{t}"),
    ("DELETE", "/api/v1/tenants/{t}"),
    ("GET", "/api/v1/tenants/{t}/devices"),
    ("GET", "/api/v1/tenants/{t}/devices/lobby"),
    ("PUT", "/api/v1/tenants/{t}/devices/lobby"),
    ("DELETE", "/api/v1/tenants/{t}/devices/lobby"),
    ("GET", "/api/v1/tenants/{t}/workflows"),
    ("GET", "/api/v1/tenants/{t}/workflows/direct"),
    ("PUT", "/api/v1/tenants/{t}/workflows/direct"),
    ("DELETE", "/api/v1/tenants/{t}/workflows/direct"),
    ("GET", "/api/v1/tenants/{t}/inputs"),
    ("PUT", "/api/v1/tenants/{t}/inputs"),
    ("GET", "/api/v1/tenants/{t}/admins"),
    ("PUT", "/api/v1/tenants/{t}/admins"),
    ("GET", "/api/v1/tenants/{t}/jobs"),
    ("GET", "/api/v1/tenants/{t}/jobs/{j}"),
    ("POST", "/api/v1/tenants/{t}/jobs/{j}/release"),
    ("POST", "/api/v1/tenants/{t}/jobs/{j}/cancel"),
    ("GET", "/api/v1/tenants/{t}/device-state"),
    ("GET", "/api/v1/tenants/{t}/metrics"),
    ("GET", "/api/v1/tenants/{t}/audit"),
    ("PUT", "/api/v1/tenants/{t}/nonsense"),
];

#[test]
fn another_tenants_paths_answer_exactly_like_a_tenant_that_does_not_exist() {
    let globex_file = "name = \"Globex\"\nranges = [\"127.0.2.0/24\"]\n[workflow.secure]\nsteps = [{ step = \"hold\" }]\n[[input]]\nlistener = \"raw\"\nworkflow = \"secure\"\n";
    let d1 = SocatDevice::start("127.0.1.9");
    let (d, api, aside) = start(
        "",
        &[
            ("acme.toml", acme_file(&d1)),
            ("globex.toml", globex_file.into()),
        ],
    );
    // Globex has a held job 1; acme's token must not learn that.
    assert_eq!(
        raw_send("127.0.2.5", d.addr("raw"), b"secret\n"),
        RawOutcome::Acknowledged
    );
    wait_until("globex's job held", || {
        (d.live_jobs("globex").first()?.state.as_str() == "held").then_some(())
    });
    let acme = token(&d, &["--tenant", "acme"], &[]);
    let body = json!({ "uri": "socket://127.0.2.9:9100", "steps": [], "confirm": "globex" });
    for (method, route) in ROUTES {
        let path = |t: &str| route.replace("{t}", t).replace("{j}", "1");
        let other = api.call(
            "127.0.0.1",
            method,
            &path("globex"),
            Some(&acme),
            Some(&body),
        );
        let none = api.call(
            "127.0.0.1",
            method,
            &path("nosuch"),
            Some(&acme),
            Some(&body),
        );
        assert_eq!(
            other.status,
            404,
            "{method} {}: {}",
            path("globex"),
            other.body
        );
        assert_eq!(
            (other.status, &other.body),
            (none.status, &none.body),
            "{method} {route}"
        );
        assert_eq!(other.headers.len(), none.headers.len(), "{method} {route}");
    }
    // Nothing of globex changed: its job is still held, its file the same.
    assert_eq!(d.live_jobs("globex")[0].state.as_str(), "held");
    assert_eq!(
        std::fs::read_to_string(aside.tenant_file("globex")).unwrap(),
        globex_file
    );
    // And the tenant list shows acme only.
    let r = api.call("127.0.0.1", "GET", "/api/v1/tenants", Some(&acme), None);
    let ids: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, [json!("acme")]);
}

#[test]
fn requests_without_a_live_token_are_refused_and_failed_sign_ins_are_rate_limited() {
    let d1 = SocatDevice::start("127.0.1.9");
    let (d, api, _aside) = start("", &[("acme.toml", acme_file(&d1))]);
    let path = "/api/v1/tenants/acme/jobs";
    let good = token(&d, &["--tenant", "acme"], &[]);
    assert_eq!(
        api.call("127.0.0.1", "GET", path, Some(&good), None).status,
        200
    );

    // The OpenAPI document needs no token and describes the routes.
    let r = api.call("127.0.0.1", "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(r.status, 200);
    assert!(r.json()["paths"]["/tenants/{tenant}/jobs/{id}/release"]["post"].is_object());

    // No token, a wrong one, an expired one, a revoked one: 401, alike.
    let expired = token(&d, &["--tenant", "acme"], &["--expires", "0s"]);
    let revoked = token(&d, &["--tenant", "acme"], &[]);
    let list = Command::new(bin())
        .args(["token", "list", "--json", "--config"])
        .arg(&d.config_path)
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(!String::from_utf8_lossy(&list.stdout).contains(good.rsplit('_').next().unwrap()));
    let id = revoked.split('_').nth(1).unwrap();
    let out = Command::new(bin())
        .args(["token", "revoke", id, "--config"])
        .arg(&d.config_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut forged = good.clone();
    forged.pop();
    forged.push(if good.ends_with('a') { 'b' } else { 'a' });
    let from = "127.0.0.20";
    let mut refusals = Vec::new();
    let refused_tokens = [
        None,
        Some(forged.as_str()),
        Some(expired.as_str()),
        Some(revoked.as_str()),
    ];
    for t in refused_tokens {
        let r = api.call(from, "GET", path, t, None);
        assert_eq!(r.status, 401, "{t:?}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"printroute\"")
        );
        refusals.push(r.body);
    }
    refusals.dedup();
    assert_eq!(refusals.len(), 1, "every refusal looks the same");

    // A tenant token may not provision.
    let r = api.call(
        "127.0.0.1",
        "POST",
        "/api/v1/tenants",
        Some(&good),
        Some(&json!({ "id": "x", "ranges": ["127.0.9.0/24"] })),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Past the limit of failed sign-ins, an address is refused even with a
    // good token; another address is not.
    let limit = printroute::admin::web::state::MAX_FAILED_SIGN_INS as usize;
    for _ in refused_tokens.len()..limit {
        assert_eq!(api.call(from, "GET", path, Some(&forged), None).status, 401);
    }
    let r = api.call(from, "GET", path, Some(&good), None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        api.call("127.0.0.21", "GET", path, Some(&good), None)
            .status,
        200
    );

    // Plain HTTP on the TLS port gets no answer.
    let mut s = connect_from("127.0.0.1", d.addr("web")).unwrap();
    s.write_all(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("openapi"),
        "plain HTTP was served"
    );
}

#[test]
fn a_renewed_certificate_is_served_from_the_next_reload_on() {
    let (d, api, aside) = start("", &[]);
    assert!(api.handshake_ok("127.0.0.1"));
    let renewed = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(renewed.path());
    std::fs::copy(&cert, aside.dir.path().join("web.pem")).unwrap();
    std::fs::copy(&key, aside.dir.path().join("web.key")).unwrap();
    let (ok, out) = d.cli(&["reload"]);
    assert!(ok, "{out}");
    let new = Api::new(api.addr, &cert);
    assert!(
        new.handshake_ok("127.0.0.1"),
        "the renewed certificate is served"
    );
    assert!(!api.handshake_ok("127.0.0.1"), "the old one is not");
    let r = new.call("127.0.0.1", "GET", "/api/v1/openapi.json", None, None);
    assert_eq!(r.status, 200);
}
