//! Config changes made through the admin API: a tenant's table read from
//! the file it lives in, changed, validated as a whole config with the
//! same validator as `check` (every problem returned, nothing written on
//! refusal), written atomically as a TOML file a person can read and edit,
//! applied by a reload, and recorded in the tenant's audit log.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::state::{Caller, Reply, Web};
use crate::config::ids::TenantId;
use crate::config::{tenant_file_name, Config, FileEdits};

/// Mode of a tenant's file the API writes: readable like the main config.
pub const TENANT_FILE_MODE: u32 = 0o644;

/// Folder of the data folder holding the audit logs.
pub const AUDIT_DIR: &str = "audit";

/// The audit log of changes to no single tenant (provisioning, offboarding).
pub const GLOBAL_AUDIT_LOG: &str = "global.jsonl";

/// Mode of the audit logs.
pub const AUDIT_LOG_MODE: u32 = 0o600;

/// Most audit entries one request returns (the latest ones).
pub const MAX_AUDIT_ENTRIES: usize = 1000;

/// Where a tenant is written: its own file, or a table of the main file.
#[derive(Debug, Clone)]
pub struct TenantSource {
    /// Its file in `tenants-dir`; none: it is in the main file.
    pub file: Option<PathBuf>,
    /// Its table as written.
    pub table: toml::Table,
}

/// A tenant's table as written, from its file or from the main file.
pub fn tenant_source(config: &Config, id: &TenantId) -> Result<TenantSource, Reply> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| Reply::error(500, format!("cannot read {}: {e}", p.display())))
    };
    let parse = |p: &Path, text: &str| {
        text.parse::<toml::Table>()
            .map_err(|e| Reply::error(500, format!("cannot parse {}: {e}", p.display())))
    };
    if let Some(f) = config.tenant_files.get(id) {
        let table = parse(f, &read(f)?)?;
        return Ok(TenantSource {
            file: Some(f.clone()),
            table,
        });
    }
    let main = parse(&config.path, &read(&config.path)?)?;
    let table = main
        .get("tenant")
        .and_then(|t| t.get(id.as_str()))
        .and_then(|t| t.as_table())
        .cloned()
        .unwrap_or_default();
    Ok(TenantSource { file: None, table })
}

/// The file a tenant the API changes must live in.
pub fn managed_file(src: &TenantSource, id: &TenantId) -> Result<PathBuf, Reply> {
    src.file.clone().ok_or_else(|| {
        Reply::error(
            409,
            format!("tenant {id} is defined in the main config file; move its table into global.tenants-dir as {} to change it through the API", tenant_file_name(id)),
        )
    })
}

/// A JSON value as TOML (objects become tables); an error names `what`.
pub fn to_toml(what: &str, v: &Value) -> Result<toml::Value, Reply> {
    toml::Value::try_from(v).map_err(|e| {
        Reply::error(
            400,
            format!("{what}: not a value a config file can hold: {e}"),
        )
    })
}

/// A TOML value as JSON.
pub fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// What one change does, for the audit log.
pub struct Change<'a> {
    /// The tenant it concerns; none: the global log.
    pub tenant: Option<&'a TenantId>,
    /// Who asked.
    pub caller: &'a Caller,
    /// What, e.g. `put device floor1`.
    pub action: String,
    /// The object before (null when new).
    pub before: Value,
    /// The object after (null when removed).
    pub after: Value,
}

/// Validates the config with `file` set to `text` (`None`: removed); if it
/// is valid, writes it atomically, reloads, and records `change`. The caller
/// holds [`Web::edits`].
pub async fn apply(
    web: &Web,
    file: &Path,
    text: Option<String>,
    change: Change<'_>,
) -> Result<String, Reply> {
    let main = web.admin.snapshot.load().config.path.clone();
    let mut edits = FileEdits::new();
    edits.insert(file.to_owned(), text.clone());
    let checked = tokio::task::spawn_blocking(move || Config::load_with(&main, &edits).map(|_| ()))
        .await
        .map_err(|e| Reply::error(500, format!("validation failed: {e}")))?;
    if let Err(e) = checked {
        let problems: Vec<Value> = e
            .problems
            .iter()
            .map(|p| {
                json!({
                    "file": p.file.as_ref().unwrap_or(&e.file),
                    "key": p.key,
                    "message": p.message,
                })
            })
            .collect();
        return Err(Reply::json(
            422,
            &json!({ "error": "the change was refused; nothing was changed", "problems": problems }),
        ));
    }
    let before = std::fs::read_to_string(file).ok();
    let write = |t: Option<&String>| match t {
        Some(t) => write_atomically(file, t.as_bytes()),
        None => match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => sync_parent(file),
        },
    };
    write(text.as_ref())
        .map_err(|e| Reply::error(500, format!("cannot write {}: {e}", file.display())))?;
    match reload(web).await {
        Ok(summary) => {
            audit(&web.data_dir(), change);
            Ok(summary)
        }
        Err(e) => {
            // The file is valid but the daemon could not take it (a
            // listener would not bind, say): put the old one back.
            let _ = write(before.as_ref());
            Err(Reply::error(
                500,
                format!("the change was valid but the reload failed, so it was undone: {e}"),
            ))
        }
    }
}

/// Asks the daemon to reload; its summary, or why not.
pub async fn reload(web: &Web) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    web.reload
        .send(tx)
        .await
        .map_err(|_| "the daemon is stopping".to_owned())?;
    rx.await.map_err(|_| "the daemon is stopping".to_owned())?
}

/// Writes `bytes` to `path` through a synced temporary file in the same
/// folder (named with a leading dot, which `tenants-dir` skips) and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(TENANT_FILE_MODE)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// A tenant's file as the API writes it: a comment naming what wrote it,
/// then the table in TOML.
pub fn render(id: &TenantId, table: &toml::Table) -> Result<String, Reply> {
    let body = toml::to_string_pretty(table)
        .map_err(|e| Reply::error(400, format!("cannot write tenant {id} as TOML: {e}")))?;
    Ok(format!(
        "# Tenant {id}: read with the main config (global.tenants-dir).\n\
# Written by printroute's admin API; edit by hand and reload if you like.\n\n{body}"
    ))
}

/// The audit log of a tenant (or the global one).
pub fn audit_path(data_dir: &Path, tenant: Option<&TenantId>) -> PathBuf {
    let dir = data_dir.join(AUDIT_DIR);
    match tenant {
        Some(t) => dir.join("tenants").join(format!("{t}.jsonl")),
        None => dir.join(GLOBAL_AUDIT_LOG),
    }
}

/// Appends one line to the audit log (failures are logged, not fatal: the
/// change is already in force).
pub fn audit(data_dir: &Path, change: Change<'_>) {
    use std::os::unix::fs::OpenOptionsExt;
    let path = audit_path(data_dir, change.tenant);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut line = serde_json::to_vec(&json!({
        "at": at,
        "who": change.caller.who,
        "tenant": change.tenant,
        "action": change.action,
        "before": change.before,
        "after": change.after,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(AUDIT_LOG_MODE)
                .open(&path)
        })
        .and_then(|mut f| f.write_all(&line).and_then(|()| f.sync_data()));
    if let Err(e) = written {
        tracing::error!(file = %path.display(), error = %e, "cannot write the audit log");
    }
}

/// The latest entries of an audit log, oldest first.
pub fn read_audit(data_dir: &Path, tenant: Option<&TenantId>) -> Vec<Value> {
    let text = std::fs::read_to_string(audit_path(data_dir, tenant)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(MAX_AUDIT_ENTRIES)..]
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
