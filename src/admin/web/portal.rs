//! The web portal: server-rendered HTML, no JavaScript, no external
//! assets. `/t/<tenant>/` for a tenant's admins (held and recent jobs with
//! release and cancel, devices with their health and an address form,
//! workflows, inputs and admins as editable JSON, tokens, audit log) and
//! `/admin/` for global admins (tenants with their counts and health,
//! provision, offboard, any tenant's view).
//!
//! Sign-in is by token (a tenant's own or a global one) or by a tenant or
//! global admin's unix password through PAM ([`super::password`]); failed
//! sign-ins of either kind count against the address like the API's and
//! are answered alike. Every action is a form POST
//! that carries the session's CSRF token, and a POST another site's page
//! sends (`Origin` of another origin, or `Sec-Fetch-Site: cross-site`) is
//! refused before anything else. Every action goes through the API's own
//! handlers ([`super::api::route`]): the same validation, reload and audit.
//!
//! The PIN release page `/t/<tenant>/release` is [`super::release`].

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::api::{self, ApiRequest};
use super::session::{self, Session};
use super::state::{Caller, Reply, Web};
use crate::admin::tokens::{self, TokenScope};
use crate::config::ids::TenantId;
use crate::config::DEFAULT_PAM_SERVICE;

/// Held jobs listed on a tenant's page, at most.
pub const MAX_HELD_SHOWN: usize = 200;

/// Recent (not held) jobs listed on a tenant's page.
pub const RECENT_SHOWN: usize = 20;

/// Audit entries shown on a tenant's page (the latest).
pub const AUDIT_SHOWN: usize = 50;

/// A portal request, as [`super`] hands it over.
pub struct PortalRequest {
    /// The method.
    pub method: String,
    /// The path, split at `/` (no empty segments).
    pub path: Vec<String>,
    /// The query's pairs, decoded.
    pub query: Vec<(String, String)>,
    /// The form's pairs, decoded (POST).
    pub form: Vec<(String, String)>,
    /// The session id from the cookie.
    pub cookie: Option<String>,
    /// `Origin`, if sent.
    pub origin: Option<String>,
    /// `Sec-Fetch-Site`, if sent.
    pub fetch_site: Option<String>,
    /// `Host`.
    pub host: Option<String>,
    /// Over TLS.
    pub tls: bool,
    /// The caller's address.
    pub peer: IpAddr,
}

impl PortalRequest {
    /// A form field.
    pub fn field(&self, k: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
    }
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
    }
    /// A POST sent by another site's page.
    pub fn cross_site(&self) -> bool {
        if self
            .fetch_site
            .as_deref()
            .is_some_and(|s| s != "same-origin" && s != "none")
        {
            return true;
        }
        let scheme = if self.tls { "https" } else { "http" };
        match (&self.origin, &self.host) {
            (Some(o), Some(h)) => *o != format!("{scheme}://{h}"),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The one "not found" page: another tenant's pages look like none.
pub fn not_found() -> Reply {
    let mut r = page("Not found", "", "<p>There is no such page.</p>");
    r.status = 404;
    r
}

/// `s` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The answer to a form posted from another site (403): nothing is done.
pub fn cross_site_refused(req: &PortalRequest) -> Reply {
    tracing::info!(ip = %req.peer, path = ?req.path, "cross-site form post refused");
    let mut r = page(
        "Refused",
        "",
        "<p class=\"err\">A form sent from another site was refused.</p>",
    );
    r.status = 403;
    r
}

/// A whole page: the header, `nav`, the title and `body` (HTML).
pub fn page(title: &str, nav: &str, body: &str) -> Reply {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · printroute</title><style>{STYLE}</style></head>\
<body><header><strong>printroute</strong> {nav}</header><main><h1>{t}</h1>{body}</main></body></html>\n",
        t = esc(title)
    );
    Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        headers: vec![
            (
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
                    .into(),
            ),
            ("x-frame-options", "DENY".into()),
        ],
        body: html.into_bytes(),
    }
}

/// The page's only style: plain, readable, no external assets.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#111}header{background:#234;color:#fff;padding:.6em 1em}\
header a{color:#fff}header button{color:#fff;background:#456;border:1px solid #fff}main{padding:1em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#eee}\
form.inline{display:inline}textarea{width:100%;font-family:monospace}.msg{background:#efe;padding:.5em}\
.err{background:#fee;padding:.5em}.down{color:#a00;font-weight:bold}.up{color:#070}";

fn redirect(to: &str) -> Reply {
    Reply {
        status: 303,
        content_type: "text/plain; charset=utf-8",
        headers: vec![("location", to.to_owned())],
        body: Vec::new(),
    }
}

fn message(req: &PortalRequest) -> String {
    match (req.param("done"), req.param("error")) {
        (Some(m), _) => format!("<p class=\"msg\" role=\"status\">{}</p>", esc(m)),
        (_, Some(e)) => format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)),
        _ => String::new(),
    }
}

fn back(to: &str, done: &str) -> Reply {
    redirect(&format!("{to}?done={}", url_encode(done)))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An API answer that refused: the page that says why (every problem).
fn refused(r: &Reply, back_to: &str) -> Reply {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let mut body = format!(
        "<p class=\"err\" role=\"alert\">{}</p>",
        esc(v["error"].as_str().unwrap_or("refused"))
    );
    if let Some(ps) = v["problems"].as_array() {
        body.push_str("<ul>");
        for p in ps {
            let _ = write!(
                body,
                "<li><code>{}</code>: {}</li>",
                esc(p["key"].as_str().unwrap_or("")),
                esc(p["message"].as_str().unwrap_or(""))
            );
        }
        body.push_str("</ul>");
    }
    let _ = write!(
        body,
        "<p>Nothing was changed. <a href=\"{}\">Back</a></p>",
        esc(back_to)
    );
    let mut p = page("Refused", "", &body);
    p.status = r.status;
    p
}

async fn call(
    web: &Web,
    caller: &Caller,
    peer: IpAddr,
    method: &str,
    path: &[&str],
    body: Option<Value>,
) -> Reply {
    let req = ApiRequest {
        method,
        path: path.to_vec(),
        query: Vec::new(),
        body,
        peer,
    };
    api::route(web, caller, &req).await
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Answers one portal request.
pub async fn answer(web: &Web, req: &PortalRequest) -> Reply {
    let session = req.cookie.as_deref().and_then(|c| web.sessions.get(c));
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let post = req.method == "POST";
    if post && req.cross_site() {
        return cross_site_refused(req);
    }
    match path.as_slice() {
        [] => redirect("/admin/"),
        ["signout"] if post => {
            if let Some(c) = &req.cookie {
                if session
                    .as_ref()
                    .is_some_and(|s| s.csrf_ok(req.field("csrf")))
                {
                    web.sessions.end(c);
                }
            }
            let mut r = redirect("/admin/signin");
            r.headers
                .push(("set-cookie", session::clear_cookie(req.tls)));
            r
        }
        ["admin", "signin"] => signin(web, req, None).await,
        ["t", t, "signin"] => match TenantId::parse(t) {
            Ok(id) => signin(web, req, Some(id)).await,
            Err(_) => not_found(),
        },
        ["admin", rest @ ..] => {
            let Some(s) = session.filter(|s| s.caller.is_global()) else {
                return redirect("/admin/signin");
            };
            if post && !s.csrf_ok(req.field("csrf")) {
                return csrf_refused();
            }
            admin_route(web, req, &s, rest).await
        }
        ["t", t, rest @ ..] => {
            let Ok(id) = TenantId::parse(t) else {
                return not_found();
            };
            let Some(s) = session else {
                return redirect(&format!("/t/{id}/signin"));
            };
            if !s.caller.sees(&id) || web.admin.snapshot.load().tenant_index(&id).is_none() {
                return not_found();
            }
            if post && !s.csrf_ok(req.field("csrf")) {
                return csrf_refused();
            }
            tenant_route(web, req, &s, &id, rest).await
        }
        _ => not_found(),
    }
}

fn csrf_refused() -> Reply {
    let mut r = page(
        "Refused",
        "",
        "<p class=\"err\">The form's security token is missing or stale; reload the page and try again.</p>",
    );
    r.status = 403;
    r
}

/// The sign-in page and form (`tenant`: a tenant's; none: the global one).
async fn signin(web: &Web, req: &PortalRequest, tenant: Option<TenantId>) -> Reply {
    let here = match &tenant {
        Some(t) => format!("/t/{t}/"),
        None => "/admin/".to_owned(),
    };
    if req.method == "POST" {
        if let Some(wait) = web.limiter.blocked(req.peer) {
            let mut r = page("Sign in", "", &format!("<p class=\"err\" role=\"alert\">Too many failed sign-ins from your address; try again in {} seconds.</p>", wait.as_secs().max(1)));
            r.status = 429;
            return r.with_header("retry-after", wait.as_secs().max(1).to_string());
        }
        let caller = match req.field("user") {
            // The password form: the user's unix password, through PAM.
            Some(user) => {
                let snapshot = web.admin.snapshot.load_full();
                let service = snapshot
                    .config
                    .global
                    .web
                    .as_ref()
                    .map_or(DEFAULT_PAM_SERVICE, |w| w.pam_service.as_str());
                let password = req.field("password").unwrap_or("");
                web.passwords
                    .sign_in(
                        &snapshot.config,
                        service,
                        req.peer,
                        user.trim(),
                        password,
                        tenant.as_ref(),
                    )
                    .await
            }
            None => {
                let presented = req.field("token").unwrap_or("").trim();
                let record = web.tokens.verify(&web.data_dir(), presented);
                record
                    .filter(|r| match (&r.scope, &tenant) {
                        (TokenScope::Global, _) => true,
                        (TokenScope::Tenant(mine), Some(t)) => mine == t,
                        (TokenScope::Tenant(_), None) => false,
                    })
                    .map(|r| Caller::from_token(&r))
            }
        };
        if let Some(caller) = caller {
            tracing::info!(ip = %req.peer, who = %caller.who, "portal sign-in");
            let id = web.sessions.start(caller);
            let mut out = redirect(&here);
            out.headers
                .push(("set-cookie", session::set_cookie(&id, req.tls)));
            return out;
        }
        web.limiter.failed(req.peer);
        tracing::info!(ip = %req.peer, "portal sign-in failed");
        let mut r = signin_form(&here, true);
        r.status = 401;
        return r;
    }
    signin_form(&here, false)
}

fn signin_form(here: &str, failed: bool) -> Reply {
    let action = format!("{here}signin");
    let err = if failed {
        "<p class=\"err\" role=\"alert\">Sign-in failed.</p>"
    } else {
        ""
    };
    page(
        "Sign in",
        "",
        &format!(
            "{err}<form method=\"post\" action=\"{a}\"><p><label for=\"token\">API token</label><br>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" size=\"80\" required></p>\
<p><button type=\"submit\">Sign in</button></p></form>\
<p>Tokens are made by the central admin: <code>printroute token create --tenant ID --name NAME</code>.</p>\
<h2>Or with your system account</h2>\
<form method=\"post\" action=\"{a}\"><p><label for=\"user\">User name</label><br>\
<input id=\"user\" name=\"user\" autocomplete=\"username\" required></p>\
<p><label for=\"password\">Password</label><br>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
<p><button type=\"submit\">Sign in</button></p></form>",
            a = esc(&action)
        ),
    )
}

fn nav(s: &Session) -> String {
    let home = match &s.caller.scope {
        TokenScope::Global => "<a href=\"/admin/\">All tenants</a>".to_owned(),
        TokenScope::Tenant(t) => format!("<a href=\"/t/{t}/\">{t}</a>"),
    };
    format!(
        "· {home} · {} <form class=\"inline\" method=\"post\" action=\"/signout\">{}<button type=\"submit\">Sign out</button></form>",
        esc(&s.caller.who),
        csrf_field(s)
    )
}

fn csrf_field(s: &Session) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", s.csrf)
}

async fn tenant_route(
    web: &Web,
    req: &PortalRequest,
    s: &Session,
    id: &TenantId,
    rest: &[&str],
) -> Reply {
    let t = id.as_str();
    let here = format!("/t/{t}/");
    let post = req.method == "POST";
    let c = &s.caller;
    match rest {
        [] if !post => tenant_page(web, req, s, id).await,
        ["jobs", job, action @ ("release" | "cancel")] if post => {
            let body = match (*action, req.field("to")) {
                ("release", Some(to)) if !to.is_empty() => Some(json!({ "to": to })),
                _ => None,
            };
            let r = call(
                web,
                c,
                req.peer,
                "POST",
                &["tenants", t, "jobs", job, action],
                body,
            )
            .await;
            if r.status == 200 {
                back(&here, &format!("job {job}: {action}d"))
            } else {
                refused(&r, &here)
            }
        }
        ["devices", name] if post => {
            let current = call(
                web,
                c,
                req.peer,
                "GET",
                &["tenants", t, "devices", name],
                None,
            )
            .await;
            if current.status != 200 {
                return not_found();
            }
            let mut device = json_of(&current);
            device["uri"] = json!(req.field("uri").unwrap_or("").trim());
            let r = call(
                web,
                c,
                req.peer,
                "PUT",
                &["tenants", t, "devices", name],
                Some(device),
            )
            .await;
            if r.status < 300 {
                back(&here, &format!("device {name} saved"))
            } else {
                refused(&r, &here)
            }
        }
        [kind @ ("workflows" | "inputs" | "admins"), name @ ..] if post && name.len() <= 1 => {
            let text = req.field("json").unwrap_or("");
            let value: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    let r = Reply::error(400, format!("not JSON: {e}"));
                    return refused(&r, &here);
                }
            };
            let mut path = vec!["tenants", t, kind];
            path.extend(name.iter().copied());
            let r = call(web, c, req.peer, "PUT", &path, Some(value)).await;
            if r.status < 300 {
                back(&here, &format!("{kind} saved"))
            } else {
                refused(&r, &here)
            }
        }
        _ => not_found(),
    }
}

async fn tenant_page(web: &Web, req: &PortalRequest, s: &Session, id: &TenantId) -> Reply {
    let t = id.as_str();
    let c = &s.caller;
    let get = |p: &'static str| {
        let path = ["tenants", t, p];
        async move { json_of(&call(web, c, req.peer, "GET", &path, None).await) }
    };
    let jobs = get("jobs").await;
    let devices = get("devices").await;
    let states = get("device-state").await;
    let workflows = get("workflows").await;
    let inputs = get("inputs").await;
    let admins = get("admins").await;
    let audit = get("audit").await;
    let csrf = csrf_field(s);
    let mut b = message(req);

    let jobs = jobs.as_array().cloned().unwrap_or_default();
    let device_names: Vec<String> = devices
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let options: String =
        std::iter::once("<option value=\"\">as its workflow says</option>".to_owned())
            .chain(
                device_names
                    .iter()
                    .map(|d| format!("<option value=\"{0}\">{0}</option>", esc(d))),
            )
            .collect();
    let row = |j: &Value| {
        format!(
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            j["id"],
            esc(j["user"].as_str().unwrap_or("")),
            esc(j["name"].as_str().unwrap_or("")),
            esc(j["state"].as_str().unwrap_or("")),
            j["size"]
        )
    };
    b.push_str("<h2>Held jobs</h2><table><tr><th>id</th><th>user</th><th>name</th><th>state</th><th>bytes</th><th>release</th><th>cancel</th></tr>");
    for j in jobs
        .iter()
        .filter(|j| j["state"] == "held")
        .take(MAX_HELD_SHOWN)
    {
        let n = &j["id"];
        let _ = write!(
            b,
            "<tr>{}<td><form method=\"post\" action=\"/t/{t}/jobs/{n}/release\">{csrf}<label>to <select name=\"to\" aria-label=\"device for job {n}\">{options}</select></label> <button type=\"submit\">Release {n}</button></form></td>\
<td><form method=\"post\" action=\"/t/{t}/jobs/{n}/cancel\">{csrf}<button type=\"submit\">Cancel {n}</button></form></td></tr>",
            row(j)
        );
    }
    b.push_str("</table><h2>Recent jobs</h2><table><tr><th>id</th><th>user</th><th>name</th><th>state</th><th>bytes</th></tr>");
    let mut recent: Vec<&Value> = jobs.iter().filter(|j| j["state"] != "held").collect();
    recent.sort_by_key(|j| std::cmp::Reverse(j["id"].as_u64()));
    for j in recent.into_iter().take(RECENT_SHOWN) {
        let _ = write!(b, "<tr>{}</tr>", row(j));
    }
    b.push_str("</table><h2>Devices</h2><table><tr><th>device</th><th>health</th><th>queue</th><th>last error</th><th>address</th></tr>");
    for name in &device_names {
        let st = &states[name];
        let health = st["state"].as_str().unwrap_or("unknown");
        let uri = devices[name]["uri"].as_str().unwrap_or("");
        let _ = write!(
            b,
            "<tr><td>{n}</td><td class=\"{h}\">{h}</td><td>{q}</td><td>{e}</td><td><form method=\"post\" action=\"/t/{t}/devices/{n}\">{csrf}\
<input name=\"uri\" value=\"{u}\" size=\"40\" aria-label=\"address of {n}\"> <button type=\"submit\">Save {n}</button></form></td></tr>",
            n = esc(name),
            h = esc(health),
            q = st["queue-depth"],
            e = esc(st["last-error"].as_str().unwrap_or("")),
            u = esc(uri),
        );
    }
    b.push_str("</table><h2>Workflows</h2>");
    for (name, w) in workflows.as_object().into_iter().flatten() {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/t/{t}/workflows/{n}\">{csrf}<h3>{n}</h3><textarea name=\"json\" rows=\"4\" aria-label=\"workflow {n}\">{j}</textarea><button type=\"submit\">Save workflow {n}</button></form>",
            n = esc(name),
            j = esc(&serde_json::to_string_pretty(w).unwrap_or_default())
        );
    }
    for (title, kind, v) in [("Inputs", "inputs", &inputs), ("Admins", "admins", &admins)] {
        let _ = write!(
            b,
            "<h2>{title}</h2><form method=\"post\" action=\"/t/{t}/{kind}\">{csrf}<textarea name=\"json\" rows=\"5\" aria-label=\"{kind}\">{j}</textarea><button type=\"submit\">Save {kind}</button></form>",
            j = esc(&serde_json::to_string_pretty(v).unwrap_or_default())
        );
    }
    b.push_str("<h2>Tokens</h2><table><tr><th>id</th><th>name</th><th>expires</th></tr>");
    for tok in tokens::read(&web.data_dir()).unwrap_or_default() {
        if tok.scope == TokenScope::Tenant(id.clone()) {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&tok.id),
                esc(&tok.name),
                tok.expires
                    .map_or("never".to_owned(), |e| format!("{e} (Unix time)"))
            );
        }
    }
    b.push_str("</table><h2>Audit log</h2><table><tr><th>when (Unix time)</th><th>who</th><th>what</th></tr>");
    for e in audit
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .take(AUDIT_SHOWN)
    {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            e["at"],
            esc(e["who"].as_str().unwrap_or("")),
            esc(e["action"].as_str().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    let name = web
        .admin
        .snapshot
        .load()
        .config
        .tenant(id)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    page(&format!("{name} ({t})"), &nav(s), &b)
}

async fn admin_route(web: &Web, req: &PortalRequest, s: &Session, rest: &[&str]) -> Reply {
    let post = req.method == "POST";
    let c = &s.caller;
    match rest {
        [] if !post => admin_page(web, req, s),
        ["tenants"] if post => {
            let ranges: Vec<&str> = req
                .field("ranges")
                .unwrap_or("")
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            let id = req.field("id").unwrap_or("").trim();
            let body = json!({ "id": id, "name": req.field("name").unwrap_or("").trim(), "ranges": ranges });
            let r = call(web, c, req.peer, "POST", &["tenants"], Some(body)).await;
            if r.status == 201 {
                back("/admin/", &format!("tenant {id} provisioned"))
            } else {
                refused(&r, "/admin/")
            }
        }
        ["offboard"] if post => {
            let id = req.field("id").unwrap_or("").trim().to_owned();
            let body = json!({ "confirm": req.field("confirm").unwrap_or("").trim() });
            let r = call(web, c, req.peer, "DELETE", &["tenants", &id], Some(body)).await;
            if r.status == 200 {
                back("/admin/", &format!("tenant {id} offboarded and purged"))
            } else {
                refused(&r, "/admin/")
            }
        }
        _ => not_found(),
    }
}

fn admin_page(web: &Web, req: &PortalRequest, s: &Session) -> Reply {
    let snapshot = web.admin.snapshot.load_full();
    let csrf = csrf_field(s);
    let mut b = message(req);
    b.push_str("<h2>Tenants</h2><table><tr><th>tenant</th><th>name</th><th>ranges</th><th>jobs</th><th>devices up / down / unknown</th><th>file</th></tr>");
    for (t, store) in snapshot.config.tenants.iter().zip(&snapshot.stores) {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for j in store.jobs().unwrap_or_default() {
            *counts.entry(j.state.as_str()).or_default() += 1;
        }
        let jobs: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let (mut up, mut down, mut unknown) = (0, 0, 0);
        for d in t.devices.values() {
            match web.admin.dispatcher.device_health(&t.id, d) {
                Some(h) if h.retry_in.is_some() => down += 1,
                Some(_) => up += 1,
                None => unknown += 1,
            }
        }
        let ranges: Vec<String> = t.ranges.iter().map(ToString::to_string).collect();
        let _ = write!(
            b,
            "<tr><td><a href=\"/t/{id}/\">{id}</a></td><td>{n}</td><td>{r}</td><td>{j}</td><td>{up} / <span class=\"{dc}\">{down}</span> / {unknown}</td><td>{f}</td></tr>",
            id = t.id,
            n = esc(&t.name),
            r = esc(&ranges.join(", ")),
            j = esc(&jobs.join(", ")),
            dc = if down > 0 { "down" } else { "" },
            f = snapshot.config.tenant_files.get(&t.id).map_or("main file".to_owned(), |p| esc(&p.display().to_string())),
        );
    }
    let _ = write!(
        b,
        "</table><h2>Provision a tenant</h2><form method=\"post\" action=\"/admin/tenants\">{csrf}\
<p><label>id <input name=\"id\" required pattern=\"[a-z0-9][a-z0-9_-]*\"></label> \
<label>name <input name=\"name\"></label> <label>ranges <input name=\"ranges\" size=\"40\" placeholder=\"10.3.0.0/16, 2001:db8:3::/48\"></label> \
<button type=\"submit\">Provision</button></p></form>\
<h2>Offboard a tenant</h2><form method=\"post\" action=\"/admin/offboard\">{csrf}\
<p><label>tenant <input name=\"id\" required></label> <label>type its id again to confirm <input name=\"confirm\" required></label> \
<button type=\"submit\">Offboard and purge</button></p></form>"
    );
    page("All tenants", &nav(s), &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: Option<&str>, site: Option<&str>) -> PortalRequest {
        PortalRequest {
            method: "POST".into(),
            path: vec![],
            query: vec![],
            form: vec![],
            cookie: None,
            origin: origin.map(Into::into),
            fetch_site: site.map(Into::into),
            host: Some("127.0.0.1:8631".into()),
            tls: true,
            peer: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn posts_from_other_sites_are_told_apart() {
        assert!(!req(None, None).cross_site());
        assert!(!req(Some("https://127.0.0.1:8631"), Some("same-origin")).cross_site());
        assert!(req(Some("https://evil.example"), None).cross_site());
        assert!(
            req(Some("http://127.0.0.1:8631"), None).cross_site(),
            "scheme differs"
        );
        assert!(req(None, Some("cross-site")).cross_site());
        assert!(req(None, Some("same-site")).cross_site());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
