//! PIN release (secure print): `/t/<tenant>/release`, where a user who
//! sent a job with a `job-password` (PWG 5100.11) to a holding printer
//! releases it with their user name and that PIN, onto one of the
//! tenant's devices.
//!
//! The page answers only clients whose address routes to the tenant
//! (`global.web.release-from = "tenant-ranges"`, the default), or also a
//! browser signed in for the tenant (`"token"`); anyone else gets the
//! portal's "not found". It lists only the user's held jobs whose PIN
//! matches. Each wrong PIN counts against every held PIN job of that user
//! it failed to open; after [`MAX_PIN_TRIES`] a job is locked for
//! [`PIN_LOCK`] ([`super::state::PinTries`]) and is shown to nobody, right PIN or not. Jobs without a
//! PIN keep the owner/admin release of the portal, API and CLI.

use std::fmt::Write as _;

use super::portal::{cross_site_refused, esc, not_found, page, PortalRequest};
use super::session::Session;
use super::state::{Reply, Web};
pub use super::state::{MAX_PIN_TRIES, PIN_LOCK};
use crate::admin::control::{handle, Request, Scope};
use crate::config::ids::{JobId, TenantId};
use crate::config::ReleaseFrom;
use crate::store::job::{pin_matches, Job, JobState};

/// Whether the caller may open tenant `t`'s release page.
fn allowed(web: &Web, req: &PortalRequest, t: &TenantId, session: Option<&Session>) -> bool {
    let snapshot = web.admin.snapshot.load();
    let Some(i) = snapshot.tenant_index(t) else {
        return false;
    };
    let from_ranges = snapshot
        .route(req.peer)
        .is_some_and(|r| r.tenant as usize == i);
    let by_session = session.is_some_and(|s| s.caller.sees(t));
    match snapshot.config.global.web.as_ref().map(|w| w.release_from) {
        Some(ReleaseFrom::Token) => from_ranges || by_session,
        _ => from_ranges,
    }
}

/// Answers `/t/<t>/release` and `/t/<t>/release/<job>`.
pub async fn answer(web: &Web, req: &PortalRequest, t: &TenantId, rest: &[&str]) -> Reply {
    let session = req.cookie.as_deref().and_then(|c| web.sessions.get(c));
    if !allowed(web, req, t, session.as_ref()) {
        return not_found();
    }
    if req.method == "POST" && req.cross_site() {
        return cross_site_refused(req);
    }
    if req.method == "POST" {
        if let Some(wait) = web.limiter.blocked(req.peer) {
            let mut r = page(
                "Release my jobs",
                "",
                &format!("<p class=\"err\" role=\"alert\">Too many wrong PINs from your address; try again in {} seconds.</p>", wait.as_secs().max(1)),
            );
            r.status = 429;
            return r;
        }
    }
    let user = req.field("user").unwrap_or("").trim().to_owned();
    let pin = req.field("pin").unwrap_or("").to_owned();
    match (req.method.as_str(), rest) {
        ("GET", []) => form(t, "", ""),
        ("POST", []) => list(web, req, t, &user, &pin),
        ("POST", [job]) => {
            let Ok(n) = job.parse::<u32>() else {
                return not_found();
            };
            release(web, req, t, JobId(n), &user, &pin).await
        }
        _ => not_found(),
    }
}

fn form(t: &TenantId, user: &str, note: &str) -> Reply {
    page(
        "Release my jobs",
        "",
        &format!(
            "{note}<form method=\"post\" action=\"/t/{t}/release\">\
<p><label for=\"user\">User name</label><br><input id=\"user\" name=\"user\" value=\"{u}\" required autocomplete=\"username\"></p>\
<p><label for=\"pin\">PIN</label><br><input id=\"pin\" name=\"pin\" type=\"password\" required inputmode=\"numeric\" autocomplete=\"off\"></p>\
<p><button type=\"submit\">Show my jobs</button></p></form>",
            u = esc(user)
        ),
    )
}

/// The user's held jobs with a PIN, each checked against `pin` (a wrong
/// one counts against the job); the ones it opens.
fn open_jobs(web: &Web, req: &PortalRequest, t: &TenantId, user: &str, pin: &str) -> Vec<Job> {
    let Some(store) = web.admin.store.tenant(t) else {
        return Vec::new();
    };
    let mut opened = Vec::new();
    let mut tried = false;
    for j in store.jobs().unwrap_or_default() {
        let Some(hash) = &j.pin else { continue };
        if j.state != JobState::Held || j.user != user || web.pin_tries.locked(t, j.id) {
            continue;
        }
        tried = true;
        if pin_matches(hash, pin.as_bytes()) {
            opened.push(j);
        } else {
            web.pin_tries.wrong(t, j.id);
        }
    }
    if opened.is_empty() {
        // Wrong PINs and unknown users count against the address too.
        web.limiter.failed(req.peer);
        tracing::info!(ip = %req.peer, tenant = %t, tried, "PIN release: nothing opened");
    }
    opened
}

fn list(web: &Web, req: &PortalRequest, t: &TenantId, user: &str, pin: &str) -> Reply {
    let jobs = open_jobs(web, req, t, user, pin);
    if jobs.is_empty() {
        return form(
            t,
            user,
            "<p class=\"err\" role=\"alert\">No held jobs for this user name and PIN.</p>",
        );
    }
    let devices: Vec<String> = web
        .admin
        .snapshot
        .load()
        .config
        .tenant(t)
        .map(|c| c.devices.keys().cloned().collect())
        .unwrap_or_default();
    let options: String = devices
        .iter()
        .map(|d| format!("<option value=\"{0}\">{0}</option>", esc(d)))
        .collect();
    let mut b =
        String::from("<table><tr><th>job</th><th>name</th><th>bytes</th><th>print on</th></tr>");
    for j in jobs {
        let _ = write!(
            b,
            "<tr><td>{id}</td><td>{name}</td><td>{size}</td><td><form method=\"post\" action=\"/t/{t}/release/{id}\">\
<input type=\"hidden\" name=\"user\" value=\"{u}\"><input type=\"hidden\" name=\"pin\" value=\"{p}\">\
<select name=\"to\" aria-label=\"device for job {id}\">{options}</select> <button type=\"submit\">Print job {id}</button></form></td></tr>",
            id = j.id.0,
            name = esc(&j.name),
            size = j.size,
            u = esc(user),
            p = esc(pin),
        );
    }
    b.push_str("</table>");
    page(&format!("Held jobs of {user}"), "", &b)
}

async fn release(
    web: &Web,
    req: &PortalRequest,
    t: &TenantId,
    id: JobId,
    user: &str,
    pin: &str,
) -> Reply {
    let opened = open_jobs(web, req, t, user, pin)
        .into_iter()
        .any(|j| j.id == id);
    if !opened {
        return form(
            t,
            user,
            "<p class=\"err\" role=\"alert\">No held jobs for this user name and PIN.</p>",
        );
    }
    let to = req.field("to").filter(|d| !d.is_empty()).map(str::to_owned);
    let r = handle(
        Request::Release {
            tenant: t.to_string(),
            id: id.0,
            to: to.clone(),
        },
        &Scope::Tenants(vec![t.clone()]),
        &web.admin,
        &web.reload,
    )
    .await;
    if r.ok {
        web.pin_tries.clear(t, id);
        tracing::info!(tenant = %t, job = %id, user, to = ?to, "released with its PIN");
        let on = to.map_or_else(
            || "its workflow's device".to_owned(),
            |d| format!("device {d}"),
        );
        page(
            "Released",
            "",
            &format!(
                "<p class=\"msg\" role=\"status\">Job {} is printing on {}.</p><p><a href=\"/t/{t}/release\">Release more</a></p>",
                id.0,
                esc(&on)
            ),
        )
    } else {
        let mut p = page(
            "Not released",
            "",
            &format!("<p class=\"err\">{}</p>", esc(&r.error.unwrap_or_default())),
        );
        p.status = 409;
        p
    }
}
