//! The admin API, `/api/v1/…`: what each route does, for whom.
//!
//! Global tokens list, provision, change the central part of (name,
//! ranges, limits, node) and offboard tenants, and may do everything a
//! tenant's token may. A tenant's token reads and changes its own
//! tenant's devices, workflows, inputs and admins, lists, inspects,
//! releases and cancels its jobs, and reads its device state, metrics and
//! audit log. Any path under another tenant answers [`Reply::not_found`],
//! byte for byte what a tenant that does not exist answers.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::edit::{self, Change};
use super::state::{Caller, Reply, Web};
use crate::admin::control::{handle, Request, Response};
use crate::config::ids::{JobId, TenantId};
use crate::config::tenant_file_name;

/// The OpenAPI document the API serves at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Keys of a tenant only a global token may set (the central part).
pub const CENTRAL_KEYS: &[&str] = &["name", "ranges", "limits", "node"];

/// A request as the API sees it.
pub struct ApiRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// The path after `/api/v1`, split at `/` (no empty segments).
    pub path: Vec<&'a str>,
    /// The query string's pairs (not percent-decoded: ids and states need none).
    pub query: Vec<(&'a str, &'a str)>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The caller's address.
    pub peer: IpAddr,
}

impl ApiRequest<'_> {
    fn query(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(q, _)| *q == k).map(|(_, v)| *v)
    }
}

/// Answers one API request of a signed-in caller.
pub async fn route(web: &Web, caller: &Caller, req: &ApiRequest<'_>) -> Reply {
    let m = req.method;
    match req.path.as_slice() {
        ["tenants"] => match m {
            "GET" => list_tenants(web, caller),
            "POST" => provision(web, caller, req).await,
            _ => method_not_allowed("GET, POST"),
        },
        ["tenants", t, rest @ ..] => {
            // Visibility first: another tenant's paths answer like nothing.
            let Some(id) = TenantId::parse(t)
                .ok()
                .filter(|id| caller.sees(id))
                .filter(|id| web.admin.snapshot.load().tenant_index(id).is_some())
            else {
                return Reply::not_found();
            };
            tenant_route(web, caller, req, &id, rest).await
        }
        _ => Reply::not_found(),
    }
}

async fn tenant_route(
    web: &Web,
    caller: &Caller,
    req: &ApiRequest<'_>,
    id: &TenantId,
    rest: &[&str],
) -> Reply {
    let m = req.method;
    match rest {
        [] => match m {
            "GET" => show_tenant(web, id),
            "PATCH" => change_central(web, caller, req, id).await,
            "DELETE" => offboard(web, caller, req, id).await,
            _ => method_not_allowed("GET, PATCH, DELETE"),
        },
        [kind @ ("devices" | "workflows")] => match m {
            "GET" => own_part(web, id, table_key(kind)),
            _ => method_not_allowed("GET"),
        },
        [kind @ ("devices" | "workflows"), name] => {
            let key = table_key(kind);
            match m {
                "GET" => match own_part(web, id, key) {
                    r if r.status != 200 => r,
                    _ => match edit::tenant_source(&web.admin.snapshot.load().config, id) {
                        Ok(src) => match src.table.get(key).and_then(|t| t.get(*name)) {
                            Some(v) => Reply::ok(edit::to_json(v)),
                            None => Reply::not_found(),
                        },
                        Err(r) => r,
                    },
                },
                "PUT" => put_named(web, caller, req, id, key, name).await,
                "DELETE" => delete_named(web, caller, id, key, name).await,
                _ => method_not_allowed("GET, PUT, DELETE"),
            }
        }
        [kind @ ("inputs" | "admins")] => {
            let key = if *kind == "inputs" { "input" } else { "admins" };
            match m {
                "GET" => own_part(web, id, key),
                "PUT" => put_whole(web, caller, req, id, key).await,
                _ => method_not_allowed("GET, PUT"),
            }
        }
        ["jobs"] => match m {
            "GET" => list_jobs(web, req, id).await,
            _ => method_not_allowed("GET"),
        },
        ["jobs", job, action @ ..] => {
            let Ok(n) = job.parse::<u32>() else {
                return Reply::not_found();
            };
            let exists = web
                .admin
                .store
                .tenant(id)
                .and_then(|s| s.job(JobId(n)).ok().flatten())
                .is_some();
            if !exists {
                return Reply::not_found();
            }
            let tenant = id.to_string();
            match (m, action) {
                ("GET", []) => control(web, caller, Request::Job { tenant, id: n }).await,
                ("POST", ["release"]) => {
                    let to = req
                        .body
                        .as_ref()
                        .and_then(|b| b.get("to"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    control(web, caller, Request::Release { tenant, id: n, to }).await
                }
                ("POST", ["cancel"]) => {
                    control(web, caller, Request::Cancel { tenant, id: n }).await
                }
                (_, [] | ["release"] | ["cancel"]) => {
                    method_not_allowed(if action.is_empty() { "GET" } else { "POST" })
                }
                _ => Reply::not_found(),
            }
        }
        ["device-state"] if m == "GET" => device_state(web, id),
        ["metrics"] if m == "GET" => Reply::text(
            "text/plain; version=0.0.4; charset=utf-8",
            tenant_metrics(&crate::admin::metrics::render(&web.admin), id),
        ),
        ["audit"] if m == "GET" => Reply::ok(json!(edit::read_audit(&web.data_dir(), Some(id)))),
        ["device-state" | "metrics" | "audit"] => method_not_allowed("GET"),
        _ => Reply::not_found(),
    }
}

fn method_not_allowed(allow: &str) -> Reply {
    Reply::error(405, "method not allowed").with_header("allow", allow.to_owned())
}

fn table_key(kind: &str) -> &'static str {
    if kind == "devices" {
        "device"
    } else {
        "workflow"
    }
}

fn global_only(caller: &Caller, what: &str) -> Option<Reply> {
    (!caller.is_global()).then(|| Reply::error(403, format!("only a global token may {what}")))
}

/// Does a control request as the caller; errors become 409 (the job is not
/// held, has ended, the device is unknown...).
async fn control(web: &Web, caller: &Caller, req: Request) -> Reply {
    let Response { ok, error, data } =
        handle(req, &caller.control_scope(), &web.admin, &web.reload).await;
    if ok {
        Reply::ok(data)
    } else {
        Reply::error(409, error.unwrap_or_default())
    }
}

/// The tenant's jobs, filtered by `state` and `user`: read and written out
/// on the blocking pool (10,000 records take a while, and the runtime's
/// threads serve the print protocols), straight into JSON.
async fn list_jobs(web: &Web, req: &ApiRequest<'_>, id: &TenantId) -> Reply {
    let Some(store) = web.admin.store.tenant(id) else {
        return Reply::ok(json!([]));
    };
    let state = req.query("state").map(str::to_owned);
    let user = req.query("user").map(str::to_owned);
    let listed = tokio::task::spawn_blocking(move || {
        let jobs = store.jobs().map_err(|e| format!("storage: {e}"))?;
        let shown: Vec<_> = jobs
            .into_iter()
            .filter(|j| state.as_deref().is_none_or(|s| s == j.state.as_str()))
            .filter(|j| user.as_deref().is_none_or(|u| u == j.user))
            .map(crate::admin::control::shown)
            .collect();
        serde_json::to_vec(&shown).map_err(|e| e.to_string())
    })
    .await;
    match listed {
        Ok(Ok(body)) => Reply {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        },
        Ok(Err(e)) => Reply::error(500, e),
        Err(e) => Reply::error(500, format!("job list failed: {e}")),
    }
}

fn list_tenants(web: &Web, caller: &Caller) -> Reply {
    let snapshot = web.admin.snapshot.load();
    let c = &snapshot.config;
    let list: Vec<Value> = c
        .tenants
        .iter()
        .filter(|t| caller.sees(&t.id))
        .map(|t| {
            json!({
                "id": t.id,
                "name": t.name,
                "ranges": t.ranges,
                "devices": t.devices.len(),
                "managed-by-api": c.tenant_files.contains_key(&t.id),
            })
        })
        .collect();
    Reply::ok(json!(list))
}

fn show_tenant(web: &Web, id: &TenantId) -> Reply {
    let config = web.admin.snapshot.load().config.clone();
    match edit::tenant_source(&config, id) {
        Ok(src) => Reply::ok(json!({
            "id": id,
            "file": src.file,
            "settings": edit::to_json(&toml::Value::Table(src.table)),
        })),
        Err(r) => r,
    }
}

fn own_part(web: &Web, id: &TenantId, key: &str) -> Reply {
    let config = web.admin.snapshot.load().config.clone();
    match edit::tenant_source(&config, id) {
        Ok(src) => Reply::ok(src.table.get(key).map_or_else(
            || if key == "input" { json!([]) } else { json!({}) },
            edit::to_json,
        )),
        Err(r) => r,
    }
}

/// Reads the tenant's table, lets `f` change it, and applies the result.
async fn change<F>(
    web: &Web,
    caller: &Caller,
    id: &TenantId,
    action: String,
    f: F,
) -> Result<(Value, Value), Reply>
where
    F: FnOnce(&mut toml::Table) -> Result<(Value, Value), Reply>,
{
    let _one = web.edits.lock().await;
    let config = web.admin.snapshot.load().config.clone();
    let mut src = edit::tenant_source(&config, id)?;
    let file = edit::managed_file(&src, id)?;
    let (before, after) = f(&mut src.table)?;
    let text = edit::render(id, &src.table)?;
    edit::apply(
        web,
        &file,
        Some(text),
        Change {
            tenant: Some(id),
            caller,
            action,
            before: before.clone(),
            after: after.clone(),
        },
    )
    .await?;
    Ok((before, after))
}

fn body<'a>(req: &'a ApiRequest<'_>) -> Result<&'a Value, Reply> {
    req.body
        .as_ref()
        .ok_or_else(|| Reply::error(400, "a JSON body is required"))
}

async fn put_named(
    web: &Web,
    caller: &Caller,
    req: &ApiRequest<'_>,
    id: &TenantId,
    key: &str,
    name: &str,
) -> Reply {
    let value = match body(req).and_then(|b| edit::to_toml(key, b)) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !value.is_table() {
        return Reply::error(400, format!("a {key} is a JSON object"));
    }
    let result = change(web, caller, id, format!("put {key} {name}"), |t| {
        let section = t
            .entry(key)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section) = section.as_table_mut() else {
            return Err(Reply::error(
                409,
                format!("{key} is not a table in the file"),
            ));
        };
        let before = section.get(name).map_or(Value::Null, edit::to_json);
        let after = edit::to_json(&value);
        section.insert(name.to_owned(), value);
        Ok((before, after))
    })
    .await;
    match result {
        Ok((before, after)) => Reply::json(if before.is_null() { 201 } else { 200 }, &after),
        Err(r) => r,
    }
}

async fn delete_named(web: &Web, caller: &Caller, id: &TenantId, key: &str, name: &str) -> Reply {
    let result = change(web, caller, id, format!("delete {key} {name}"), |t| {
        let removed = t
            .get_mut(key)
            .and_then(|s| s.as_table_mut())
            .and_then(|s| s.remove(name));
        match removed {
            Some(v) => Ok((edit::to_json(&v), Value::Null)),
            None => Err(Reply::not_found()),
        }
    })
    .await;
    match result {
        Ok(_) => Reply::ok(json!({ "deleted": name })),
        Err(r) => r,
    }
}

async fn put_whole(
    web: &Web,
    caller: &Caller,
    req: &ApiRequest<'_>,
    id: &TenantId,
    key: &str,
) -> Reply {
    let value = match body(req).and_then(|b| edit::to_toml(key, b)) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = change(web, caller, id, format!("put {key}"), |t| {
        let before = t.get(key).map_or(Value::Null, edit::to_json);
        let after = edit::to_json(&value);
        t.insert(key.to_owned(), value);
        Ok((before, after))
    })
    .await;
    match result {
        Ok((_, after)) => Reply::ok(after),
        Err(r) => r,
    }
}

/// Sets the central keys given in the body (a global token only).
async fn change_central(web: &Web, caller: &Caller, req: &ApiRequest<'_>, id: &TenantId) -> Reply {
    if let Some(r) = global_only(caller, "change a tenant's name, ranges, limits or node") {
        return r;
    }
    let Some(fields) = req.body.as_ref().and_then(Value::as_object) else {
        return Reply::error(
            400,
            "a JSON object of name, ranges, limits, node is required",
        );
    };
    if let Some(k) = fields.keys().find(|k| !CENTRAL_KEYS.contains(&k.as_str())) {
        return Reply::error(
            400,
            format!(
                "{k:?} is not a central key ({}); use the tenant's own routes",
                CENTRAL_KEYS.join(", ")
            ),
        );
    }
    let mut values = Vec::new();
    for (k, v) in fields {
        match edit::to_toml(k, v) {
            Ok(t) => values.push((k.clone(), t)),
            Err(r) => return r,
        }
    }
    let result = change(web, caller, id, "change central part".into(), |t| {
        let (mut before, mut after) = (Map::new(), Map::new());
        for (k, v) in values {
            before.insert(k.clone(), t.get(&k).map_or(Value::Null, edit::to_json));
            after.insert(k.clone(), edit::to_json(&v));
            t.insert(k, v);
        }
        Ok((Value::Object(before), Value::Object(after)))
    })
    .await;
    match result {
        Ok(_) => show_tenant(web, id),
        Err(r) => r,
    }
}

/// `POST /tenants`: a new tenant file with id, name, ranges, limits, node.
async fn provision(web: &Web, caller: &Caller, req: &ApiRequest<'_>) -> Reply {
    if let Some(r) = global_only(caller, "provision a tenant") {
        return r;
    }
    let Some(fields) = req.body.as_ref().and_then(Value::as_object) else {
        return Reply::error(
            400,
            "a JSON object with id, name, ranges (and limits, node) is required",
        );
    };
    let Some(id) = fields.get("id").and_then(Value::as_str) else {
        return Reply::error(400, "id is required");
    };
    let id = match TenantId::parse(id) {
        Ok(id) => id,
        Err(e) => return Reply::error(400, e.to_string()),
    };
    let mut table = toml::Table::new();
    for (k, v) in fields.iter().filter(|(k, _)| *k != "id") {
        if !CENTRAL_KEYS.contains(&k.as_str()) {
            return Reply::error(
                400,
                format!(
                    "{k:?} is not a key a tenant is provisioned with ({})",
                    CENTRAL_KEYS.join(", ")
                ),
            );
        }
        match edit::to_toml(k, v) {
            Ok(t) => {
                table.insert(k.clone(), t);
            }
            Err(r) => return r,
        }
    }
    let _one = web.edits.lock().await;
    let config = web.admin.snapshot.load().config.clone();
    let Some(dir) = &config.global.tenants_dir else {
        return Reply::error(
            409,
            "global.tenants-dir is not set: tenants can be provisioned only into it",
        );
    };
    let known = config.tenant(&id).is_some()
        || web.admin.store.tenant(&id).is_some()
        || web
            .admin
            .store
            .registered_tenants()
            .is_ok_and(|r| r.contains(&id));
    if known {
        return Reply::error(
            409,
            format!("tenant {id} exists (or still has data: purge it first)"),
        );
    }
    let file = dir.join(tenant_file_name(&id));
    let text = match edit::render(&id, &table) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let after = edit::to_json(&toml::Value::Table(table));
    let change = Change {
        tenant: Some(&id),
        caller,
        action: "provision".into(),
        before: Value::Null,
        after: after.clone(),
    };
    match edit::apply(web, &file, Some(text), change).await {
        Ok(_) => {
            edit::audit(
                &web.data_dir(),
                Change {
                    tenant: None,
                    caller,
                    action: format!("provision {id}"),
                    before: Value::Null,
                    after: after.clone(),
                },
            );
            Reply::json(201, &json!({ "id": id, "file": file, "settings": after }))
        }
        Err(r) => r,
    }
}

/// `DELETE /tenants/{id}` with `{"confirm": id}` (or `?confirm=id`):
/// removes the tenant's file, reloads, and purges its data.
async fn offboard(web: &Web, caller: &Caller, req: &ApiRequest<'_>, id: &TenantId) -> Reply {
    if let Some(r) = global_only(caller, "offboard a tenant") {
        return r;
    }
    let confirm = req
        .body
        .as_ref()
        .and_then(|b| b.get("confirm"))
        .and_then(Value::as_str)
        .or_else(|| req.query("confirm"));
    if confirm != Some(id.as_str()) {
        return Reply::error(400, format!("offboarding deletes every job and document of tenant {id}: confirm by repeating its id ({{\"confirm\": \"{id}\"}})"));
    }
    let _one = web.edits.lock().await;
    let config = web.admin.snapshot.load().config.clone();
    let src = match edit::tenant_source(&config, id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let file = match edit::managed_file(&src, id) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let before = edit::to_json(&toml::Value::Table(src.table));
    let change = Change {
        tenant: None,
        caller,
        action: format!("offboard {id}"),
        before,
        after: Value::Null,
    };
    if let Err(r) = edit::apply(web, &file, None, change).await {
        return r;
    }
    let purged = handle(
        Request::Purge {
            tenant: id.to_string(),
            force: false,
        },
        &caller.control_scope(),
        &web.admin,
        &web.reload,
    )
    .await;
    // Its audit log goes with its data.
    let _ = std::fs::remove_file(edit::audit_path(&web.data_dir(), Some(id)));
    let nothing_stored = purged
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("no such tenant"));
    if purged.ok || nothing_stored {
        Reply::ok(json!({ "offboarded": id, "purged": purged.data }))
    } else {
        Reply::error(
            500,
            format!(
                "tenant {id} was removed from the config, but the purge failed: {}",
                purged.error.unwrap_or_default()
            ),
        )
    }
}

fn device_state(web: &Web, id: &TenantId) -> Reply {
    let snapshot = web.admin.snapshot.load();
    let Some(i) = snapshot.tenant_index(id) else {
        return Reply::not_found();
    };
    let tenant = &snapshot.config.tenants[i];
    let store = &snapshot.stores[i];
    let active: Vec<_> = store
        .active_jobs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|j| store.job(j).ok().flatten())
        .collect();
    let mut out = Map::new();
    for (name, d) in &tenant.devices {
        let health = web.admin.dispatcher.device_health(id, d);
        // The latest failure any unfinished job met on it.
        let prefix = format!("{name} (");
        let last_error = active
            .iter()
            .flat_map(|j| j.history.iter())
            .filter(|e| {
                e.note.starts_with(&prefix)
                    && (e.note.contains(" failed: ") || e.note.contains(" refused the job: "))
            })
            .max_by_key(|e| e.last_ms.unwrap_or(e.at_ms))
            .map(|e| e.note.clone());
        out.insert(
            name.clone(),
            json!({
                "uri": d.uri.to_string(),
                "state": match health.and_then(|h| h.retry_in) { Some(_) => "down", None if health.is_some() => "up", None => "unknown" },
                "retry-in-seconds": health.and_then(|h| h.retry_in).map(|d| d.as_secs()),
                "queue-depth": health.map_or(0, |h| h.waiting),
                "last-error": last_error,
                // What an IPP device last said about itself.
                "reported": web.admin.capabilities.device_report(id, name).map(|r| {
                    r.into_iter()
                        .map(|(k, v)| (k.to_owned(), json!(v)))
                        .collect::<Map<String, Value>>()
                }),
            }),
        );
    }
    Reply::ok(Value::Object(out))
}

/// The lines of a Prometheus text exposition that concern tenant `id`
/// (with the HELP and TYPE lines of their families).
pub fn tenant_metrics(all: &str, id: &TenantId) -> String {
    let label = format!("tenant=\"{id}\"");
    let mut out = String::new();
    let mut header = String::new();
    for line in all.lines() {
        if line.starts_with('#') {
            if line.starts_with("# HELP") {
                header.clear();
            }
            if line != "# EOF" {
                header.push_str(line);
                header.push('\n');
            }
            continue;
        }
        let labels = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(l, _)| l);
        if labels.is_some_and(|l| l.split(',').any(|kv| kv == label)) {
            out.push_str(&header);
            header.clear();
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_metrics_keep_only_that_tenants_samples() {
        let all = "# HELP a_jobs Jobs.\n# TYPE a_jobs counter\na_jobs_total{tenant=\"acme\",event=\"x\"} 1\na_jobs_total{tenant=\"acme-2\",event=\"x\"} 5\n# HELP b Other.\n# TYPE b gauge\nb{tenant=\"globex\"} 2\nc 3\n# EOF\n";
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(
            tenant_metrics(all, &acme),
            "# HELP a_jobs Jobs.\n# TYPE a_jobs counter\na_jobs_total{tenant=\"acme\",event=\"x\"} 1\n# EOF\n"
        );
    }

    #[test]
    fn the_openapi_document_is_json_and_names_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/tenants",
            "/tenants/{tenant}",
            "/tenants/{tenant}/devices",
            "/tenants/{tenant}/devices/{name}",
            "/tenants/{tenant}/workflows",
            "/tenants/{tenant}/workflows/{name}",
            "/tenants/{tenant}/inputs",
            "/tenants/{tenant}/admins",
            "/tenants/{tenant}/jobs",
            "/tenants/{tenant}/jobs/{id}",
            "/tenants/{tenant}/jobs/{id}/release",
            "/tenants/{tenant}/jobs/{id}/cancel",
            "/tenants/{tenant}/device-state",
            "/tenants/{tenant}/metrics",
            "/tenants/{tenant}/audit",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
    }
}
