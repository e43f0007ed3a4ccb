//! IPP operations (RFC 8011 section 4) of a tenant's printer.
//!
//! Every request is checked as RFC 8011 section 4.1 asks (version,
//! request-id, the operation group and its first two attributes, the
//! target), then routed: a job id is looked up only in the routed tenant's
//! store, so another tenant's job is simply not found.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::request::{Access, ConnCtx, Document, Reply};
use std::sync::Arc;

use crate::config::ids::{JobId, ListenerName, TenantId};
use crate::dispatch::capabilities::{self, Printer, GENERIC_MAKE_AND_MODEL};
use crate::dispatch::mirror;
use crate::snapshot::{ReceiveSlot, Routed};
use crate::store::counts::Listing;
use crate::store::job::{now_ms, Job, JobState, NewJob};
use crate::store::{SpoolWriter, StoreError, TenantStore};
use crate::wire::ipp::{self as codec, group, op, status, tag, Attribute, Group, Message, Value};
use crate::wire::sniff::{sniff, SNIFF_LIMIT};

/// Operations a printer supports, advertised in `operations-supported`.
pub const OPERATIONS: &[u16] = &[
    op::PRINT_JOB,
    op::VALIDATE_JOB,
    op::CREATE_JOB,
    op::SEND_DOCUMENT,
    op::CANCEL_JOB,
    op::GET_JOB_ATTRIBUTES,
    op::GET_JOBS,
    op::GET_PRINTER_ATTRIBUTES,
    op::HOLD_JOB,
    op::RELEASE_JOB,
    op::CANCEL_MY_JOBS,
    op::CLOSE_JOB,
    op::IDENTIFY_PRINTER,
    op::GET_PRINTERS,
    op::CUPS_GET_DEFAULT,
    op::CUPS_GET_PRINTERS,
];

/// Document formats accepted. printroute routes documents unchanged, so
/// these are the formats its tenants' printers commonly take; the bytes are
/// never converted.
pub const DOCUMENT_FORMATS: &[&str] = &[
    "application/octet-stream",
    "application/pdf",
    "application/postscript",
    "application/vnd.hp-pcl",
    "application/vnd.hp-pclxl",
    "application/PCLm",
    "image/pwg-raster",
    "image/urf",
    "image/jpeg",
    "text/plain",
];

/// How long a job made by Create-Job waits for its Send-Document (RFC 8011
/// section 5.4.30 `multiple-operation-time-out`) before it is dropped.
pub const MULTIPLE_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Most jobs of one tenant between Create-Job and their last document.
pub const MAX_OPEN_JOBS_PER_TENANT: usize = 64;

/// Most jobs one Get-Jobs answer lists (a client may ask for fewer with `limit`).
pub const MAX_GET_JOBS: usize = 1000;

/// User recorded when a request names none.
pub const UNKNOWN_USER: &str = "anonymous";

/// Job name recorded when a request names none.
pub const UNTITLED: &str = "untitled";

/// A job made by Create-Job that has not been committed yet.
struct OpenJob {
    new: NewJob,
    hold: bool,
    writer: Option<SpoolWriter>,
    created_ms: u64,
    deadline: Instant,
}

/// Open jobs of every tenant, by tenant and reserved id.
static OPEN_JOBS: LazyLock<Mutex<HashMap<(TenantId, JobId), OpenJob>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn open_jobs() -> std::sync::MutexGuard<'static, HashMap<(TenantId, JobId), OpenJob>> {
    // A panic elsewhere cannot leave the map half-changed: keep using it.
    let mut map = OPEN_JOBS.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    map.retain(|_, j| j.deadline > now);
    map
}

/// The printer a request addresses, from its HTTP path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A printer: `None` for `/ipp/print`, the queue otherwise.
    Printer(Option<String>),
    /// `/jobs/...` or `/`: job operations only (the job's printer is implied).
    Jobs,
    /// Nothing we serve.
    Unknown,
}

fn target_of(path: &str) -> Target {
    let queue = |q: &str| {
        if !q.is_empty() && q.len() <= codec::MAX_NAME_LEN && !q.contains('/') {
            Target::Printer(Some(q.to_owned()))
        } else {
            Target::Unknown
        }
    };
    match path {
        "/ipp/print" | "/ipp/print/" => Target::Printer(None),
        "/" | "/jobs" | "/jobs/" => Target::Jobs,
        p if p.starts_with("/jobs/") => Target::Jobs,
        p => match p
            .strip_prefix("/ipp/print/")
            .or_else(|| p.strip_prefix("/printers/"))
        {
            Some(q) => queue(q),
            None => Target::Unknown,
        },
    }
}

/// Everything an operation needs.
struct Req<'a> {
    ctx: &'a ConnCtx,
    routed: &'a Routed,
    host: &'a str,
    /// The printer's path as the client named it (for `printer-uri-supported`).
    path: String,
    queue: Option<String>,
    /// A request to the server rather than one printer (Get-Jobs posted to
    /// `/` naming no printer, as `lpstat -o` does): it sees every printer
    /// of the tenant on this listener.
    server_wide: bool,
    msg: Message,
}

impl Req<'_> {
    fn op_attr(&self, name: &str) -> Option<&Attribute> {
        self.msg.attr(group::OPERATION, name)
    }
    fn op_str(&self, name: &str) -> Option<&str> {
        self.op_attr(name)?.values.first()?.as_str()
    }
    fn user(&self) -> String {
        self.op_str("requesting-user-name")
            .map(crate::wire::sniff::clean)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| UNKNOWN_USER.to_owned())
    }
    /// True when the requesting user may change a job of `owner`: its owner
    /// or one of the tenant's admin users (RFC 8011 4.3.3, 4.3.5, 4.3.6:
    /// the job's owner or an operator).
    fn may_change(&self, owner: &str) -> bool {
        let user = self.user();
        user == owner || self.routed.tenant().admins.unix_users.contains(&user)
    }
    fn scheme(&self) -> &'static str {
        if self.ctx.secure {
            "ipps"
        } else {
            "ipp"
        }
    }
    fn printer_uri(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host, self.path)
    }
    fn job_uri(&self, id: JobId) -> String {
        format!("{}://{}/jobs/{}", self.scheme(), self.host, id)
    }
    fn store(&self) -> &std::sync::Arc<TenantStore> {
        self.routed.store()
    }
    fn tenant_id(&self) -> &TenantId {
        &self.routed.tenant().id
    }
}

/// A response under construction.
struct Resp {
    msg: Message,
    unsupported: Group,
    close: bool,
}

impl Resp {
    fn new(version: (u8, u8), request_id: i32, status: u16, message: &str) -> Resp {
        let mut g = Group::new(group::OPERATION);
        g.push(Attribute::new(
            "attributes-charset",
            Value::charset("utf-8"),
        ));
        g.push(Attribute::new(
            "attributes-natural-language",
            Value::language("en"),
        ));
        if !message.is_empty() {
            g.push(Attribute::new("status-message", Value::text(message)));
        }
        Resp {
            msg: Message {
                version,
                code: status,
                request_id,
                groups: vec![g],
            },
            unsupported: Group::new(group::UNSUPPORTED),
            close: false,
        }
    }
    fn status(&mut self, status: u16, message: &str) {
        self.msg.code = status;
        let g = &mut self.msg.groups[0];
        g.attributes.retain(|a| a.name != "status-message");
        g.push(Attribute::new("status-message", Value::text(message)));
    }
    fn group(&mut self, g: Group) {
        self.msg.groups.push(g);
    }
    fn finish(mut self) -> Reply {
        if !self.unsupported.attributes.is_empty() {
            // RFC 8011 section 4.1.7: the unsupported group follows the operation group.
            let g = std::mem::replace(&mut self.unsupported, Group::new(group::UNSUPPORTED));
            self.msg.groups.insert(1, g);
        }
        Reply {
            message: self.msg,
            close: self.close,
        }
    }
}

/// An error reply built from whatever of the request head arrived.
pub(crate) fn error_reply(head: &[u8], status: u16, message: &str, close: bool) -> Reply {
    let request_id = head
        .get(4..8)
        .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mut r = Resp::new((1, 1), request_id, status, message);
    r.close = close;
    r.finish()
}

/// Answers one decoded request.
pub(crate) async fn handle(
    ctx: &ConnCtx,
    host: &str,
    path: &str,
    msg: Message,
    mut doc: Document,
) -> Reply {
    let version = msg.version;
    let mut resp = Resp::new(
        if matches!(version, (1, 1) | (2, 0)) {
            version
        } else {
            (1, 1)
        },
        msg.request_id,
        status::OK,
        "",
    );
    // Anything short of reading the document to its end leaves bytes on
    // the connection: close it after the reply.
    resp.close = !doc.ended;
    if let Err((code, text)) = check_request(&msg) {
        resp.status(code, text);
        return resp.finish();
    }
    let routed = match &ctx.access {
        Access::Tenant(r) => r,
        Access::NoTenant => {
            ctx.shared
                .refused(&ctx.listener, ctx.peer, "address of no tenant");
            resp.status(status::NOT_AUTHORIZED, "this address belongs to no tenant");
            resp.close = true;
            return resp.finish();
        }
        Access::Busy => {
            resp.status(status::BUSY, "too many connections; try again later");
            resp.close = true;
            return resp.finish();
        }
    };
    let mut target = target_of(path);
    let mut path = path.to_owned();
    // CUPS's own clients (`lp -h HOST:PORT -d QUEUE`) post to `/` and name
    // the printer in printer-uri (RFC 8011 section 4.1.5 makes printer-uri
    // the target; the HTTP path is only where it was sent).
    if target == Target::Jobs {
        if let Some(p) = msg
            .attr(group::OPERATION, "printer-uri")
            .and_then(|a| a.values.first())
            .and_then(Value::as_str)
            .and_then(uri_path)
        {
            if let t @ Target::Printer(_) = target_of(&p) {
                target = t;
                path = p;
            }
        }
    }
    let mut server_wide = false;
    let (queue, printer_path) = match target {
        // The server's operations: they answer for the tenant's printers
        // on this listener, whichever path they were posted to.
        _ if is_server_op(msg.code) => {
            server_wide = true;
            (None, "/ipp/print".to_owned())
        }
        Target::Printer(q) => {
            if routed.input(&ctx.listener, q.as_deref()).is_none() {
                ctx.shared.refused(
                    &ctx.listener,
                    ctx.peer,
                    "no such IPP printer for the tenant",
                );
                resp.status(status::NOT_FOUND, "no such printer");
                return resp.finish();
            }
            (q, path.trim_end_matches('/').to_owned())
        }
        Target::Jobs if is_job_op(msg.code) => (None, "/ipp/print".to_owned()),
        Target::Jobs if msg.code == op::GET_JOBS => {
            server_wide = true;
            (None, "/ipp/print".to_owned())
        }
        _ => {
            resp.status(status::NOT_FOUND, "no such printer");
            return resp.finish();
        }
    };
    if !matches!(msg.code, op::PRINT_JOB | op::SEND_DOCUMENT) {
        doc.skip_rest(ctx.idle_timeout()).await;
        resp.close = !doc.ended;
    }
    let req = Req {
        ctx,
        routed,
        host,
        path: printer_path,
        queue,
        server_wide,
        msg,
    };
    let result = match req.msg.code {
        op::PRINT_JOB => print_job(&req, &mut resp, &mut doc).await,
        op::VALIDATE_JOB => validate_job(&req, &mut resp).map(|_| ()),
        op::CREATE_JOB => create_job(&req, &mut resp),
        op::SEND_DOCUMENT => send_document(&req, &mut resp, &mut doc).await,
        op::CLOSE_JOB => close_job(&req, &mut resp).await,
        op::CANCEL_JOB => cancel_job(&req, &mut resp).await,
        op::CANCEL_MY_JOBS => cancel_my_jobs(&req, &mut resp).await,
        op::GET_JOB_ATTRIBUTES => get_job_attributes(&req, &mut resp),
        // These read records (Get-Jobs up to its limit; the first
        // Get-Printer-Attributes of a tenant its unfinished ones, to count
        // them): blocking work, kept off the runtime threads that every
        // tenant's connections share (the daemon's runtime is
        // multi-threaded, which `block_in_place` needs).
        op::GET_JOBS => tokio::task::block_in_place(|| get_jobs(&req, &mut resp)),
        op::GET_PRINTER_ATTRIBUTES => {
            tokio::task::block_in_place(|| get_printer_attributes(&req, &mut resp))
        }
        op::HOLD_JOB => hold_job(&req, &mut resp),
        op::RELEASE_JOB => release_job(&req, &mut resp),
        op::IDENTIFY_PRINTER => identify_printer(&req).await,
        op::GET_PRINTERS | op::CUPS_GET_PRINTERS => {
            tokio::task::block_in_place(|| list_printers(&req, &mut resp, false))
        }
        op::CUPS_GET_DEFAULT => {
            tokio::task::block_in_place(|| list_printers(&req, &mut resp, true))
        }
        _ => Err((status::OPERATION_NOT_SUPPORTED, "operation not supported")),
    };
    if let Err((code, text)) = result {
        resp.status(code, text);
    }
    if doc.ended {
        resp.close = false;
    }
    resp.finish()
}

/// Operations addressed to the server (or system), not to one printer:
/// they need no printer-uri and list the tenant's own printers only.
fn is_server_op(code: u16) -> bool {
    matches!(
        code,
        op::GET_PRINTERS | op::CUPS_GET_DEFAULT | op::CUPS_GET_PRINTERS
    )
}

/// The path of an `ipp://` or `ipps://` URI (`/` when it names none).
fn uri_path(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("ipp://")
        .or_else(|| uri.strip_prefix("ipps://"))?;
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    // Query and fragment are not part of the printer's name.
    let path = path.split(['?', '#']).next().unwrap_or("/");
    Some(path.to_owned())
}

fn is_job_op(code: u16) -> bool {
    matches!(
        code,
        op::SEND_DOCUMENT
            | op::CLOSE_JOB
            | op::CANCEL_JOB
            | op::GET_JOB_ATTRIBUTES
            | op::HOLD_JOB
            | op::RELEASE_JOB
    )
}

type OpResult = Result<(), (u16, &'static str)>;

/// RFC 8011 section 4.1: version, request-id, operation attributes.
fn check_request(msg: &Message) -> OpResult {
    // RFC 8011 section 4.1.8: only the versions we implement.
    if !matches!(msg.version, (1, 1) | (2, 0)) {
        return Err((
            status::VERSION_NOT_SUPPORTED,
            "only IPP/1.1 and IPP/2.0 are supported",
        ));
    }
    // RFC 8011 section 4.1.1: request-id is 1..2^31-1.
    if msg.request_id <= 0 {
        return Err((status::BAD_REQUEST, "request-id must be positive"));
    }
    // RFC 8011 section 4.1.4: the operation group comes first, and starts
    // with attributes-charset then attributes-natural-language.
    let Some(g) = msg.groups.first().filter(|g| g.tag == group::OPERATION) else {
        return Err((status::BAD_REQUEST, "missing operation attributes"));
    };
    if msg
        .groups
        .iter()
        .filter(|g| g.tag == group::OPERATION)
        .count()
        > 1
    {
        return Err((status::BAD_REQUEST, "more than one operation group"));
    }
    let (Some(cs), Some(nl)) = (g.attributes.first(), g.attributes.get(1)) else {
        return Err((
            status::BAD_REQUEST,
            "attributes-charset and attributes-natural-language must come first",
        ));
    };
    if cs.name != "attributes-charset"
        || nl.name != "attributes-natural-language"
        || cs.values.len() != 1
        || nl.values.len() != 1
        || cs.values[0].tag() != tag::CHARSET
        || nl.values[0].tag() != tag::NATURAL_LANGUAGE
    {
        return Err((
            status::BAD_REQUEST,
            "attributes-charset and attributes-natural-language must come first",
        ));
    }
    let charset = cs.values[0].as_str().unwrap_or("").to_ascii_lowercase();
    if charset != "utf-8" && charset != "us-ascii" {
        return Err((status::CHARSET_NOT_SUPPORTED, "charset not supported"));
    }
    // RFC 8011 section 4.1.5: the target is printer-uri or job-uri.
    let uri = |n: &str| {
        g.get(n)
            .filter(|a| a.values.len() == 1 && a.values[0].tag() == tag::URI)
            .is_some()
    };
    if !uri("printer-uri") && !uri("job-uri") && !is_server_op(msg.code) {
        return Err((status::BAD_REQUEST, "missing printer-uri or job-uri"));
    }
    Ok(())
}

/// The job a job operation targets: `job-uri`, or `printer-uri` + `job-id`.
fn target_job(req: &Req<'_>) -> Result<JobId, (u16, &'static str)> {
    if let Some(uri) = req.op_str("job-uri") {
        let id = uri
            .rsplit('/')
            .next()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|n| (1..=crate::config::ids::MAX_JOB_ID).contains(n));
        return id.map(JobId).ok_or((status::NOT_FOUND, "no such job"));
    }
    let id = req
        .op_attr("job-id")
        .and_then(|a| a.values.first())
        .and_then(|v| match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        })
        .ok_or((status::BAD_REQUEST, "missing job-id"))?;
    u32::try_from(id)
        .ok()
        .filter(|&n| n >= 1)
        .map(JobId)
        .ok_or((status::NOT_FOUND, "no such job"))
}

/// What the job creation checks let through.
struct Validated {
    /// The document format the client named.
    format: Option<String>,
    /// Held until released (`job-hold-until`).
    hold: bool,
    /// The supported job template attributes, as the job record keeps them
    /// (with the document's `compression`, when it came compressed).
    job_attributes: Option<String>,
    /// The hashed `job-password` (PWG 5100.11), on a printer whose workflow holds.
    pin: Option<String>,
    /// The document's `compression`, when it comes compressed (its bytes
    /// are not sniffed).
    compression: Option<Attribute>,
}

/// Longest `job-password` taken, in octets (`job-password-supported`,
/// PWG 5100.11 section 7.1.1: integer(0:255)).
pub const MAX_JOB_PASSWORD_LEN: usize = 255;

/// Whether the request's printer holds its jobs (its workflow has a `hold`
/// step): only such a printer takes a `job-password`.
fn holds(req: &Req<'_>) -> bool {
    req.routed
        .input(&req.ctx.listener, req.queue.as_deref())
        .and_then(|i| req.routed.tenant().workflows.get(&i.workflow))
        .is_some_and(|w| {
            w.steps
                .iter()
                .any(|s| matches!(s, crate::config::Step::Hold { .. }))
        })
}

/// What the printer of the request's input presents: its devices'
/// capabilities (none: the workflow forwards nowhere, or no device is known yet).
fn printer(req: &Req<'_>) -> Option<Arc<Printer>> {
    let input = req.routed.input(&req.ctx.listener, req.queue.as_deref())?;
    req.ctx
        .shared
        .capabilities
        .printer(req.routed.tenant(), &input.workflow)
}

fn is_octet_stream(f: &str) -> bool {
    f.eq_ignore_ascii_case("application/octet-stream")
}

/// Refuses a document whose format (as named, or as sniffed from an
/// octet-stream) no device of the printer prints: RFC 8011 section
/// 4.1.7 and 13.1.4.11 `client-error-document-format-not-supported`.
fn check_format(req: &Req<'_>, resp: &mut Resp, format: Option<&str>) -> OpResult {
    let Some(p) = printer(req) else {
        return Ok(());
    };
    let f = format.unwrap_or("application/octet-stream");
    if mirror::format_supported(&p.attributes, f) {
        return Ok(());
    }
    req.ctx.shared.refused(
        &req.ctx.listener,
        req.ctx.peer,
        "document format no device prints",
    );
    resp.unsupported
        .push(Attribute::new("document-format", Value::mime(f)));
    Err((
        status::DOCUMENT_FORMAT_NOT_SUPPORTED,
        "no device of this printer prints this document format",
    ))
}

/// Job creation checks shared by Print-Job, Validate-Job and Create-Job:
/// compression, the document format and the job template attributes
/// against what the printer's devices print (RFC 8011 section 4.2.1.2).
fn validate_job(req: &Req<'_>, resp: &mut Resp) -> Result<Validated, (u16, &'static str)> {
    let fidelity = matches!(
        req.op_attr("ipp-attribute-fidelity")
            .and_then(|a| a.values.first()),
        Some(Value::Boolean(true))
    );
    let printer = printer(req);
    // A compressed document goes to the devices as it came, when every one
    // of them takes that compression (RFC 8011 section 4.2.1.1).
    let compression = match req.op_attr(mirror::COMPRESSION) {
        None => None,
        Some(a) => match a.values.as_slice() {
            [v] if v.as_str() == Some("none") => None,
            [v] if printer.as_ref().is_some_and(|p| {
                v.as_str()
                    .is_some_and(|c| mirror::compression_supported(&p.attributes, c))
            }) =>
            {
                Some(a.clone())
            }
            _ => {
                resp.unsupported.push(a.clone());
                return Err((
                    status::COMPRESSION_NOT_SUPPORTED,
                    "compression not supported",
                ));
            }
        },
    };
    let format = match req.op_attr("document-format") {
        Some(a) => {
            let f = a.values.first().and_then(Value::as_str).unwrap_or("");
            let supported = match &printer {
                // An octet-stream is checked once its bytes are sniffed.
                Some(p) => is_octet_stream(f) || mirror::format_supported(&p.attributes, f),
                None => DOCUMENT_FORMATS.iter().any(|s| s.eq_ignore_ascii_case(f)),
            };
            if !supported {
                resp.unsupported.push(a.clone());
                return Err((
                    status::DOCUMENT_FORMAT_NOT_SUPPORTED,
                    "document format not supported",
                ));
            }
            Some(f.to_owned())
        }
        None => None,
    };
    let mut hold = false;
    // A Job Template attribute (RFC 8011 section 5.2.2); CUPS clients also
    // send it among the operation attributes.
    let hold_until = req
        .msg
        .attr(group::JOB, "job-hold-until")
        .or_else(|| req.op_attr("job-hold-until"));
    if let Some(a) = hold_until {
        match a.values.first().and_then(Value::as_str) {
            Some("indefinite") if a.values.len() == 1 => hold = true,
            Some("no-hold") if a.values.len() == 1 => {}
            _ => {
                resp.unsupported.push(a.clone());
                if fidelity {
                    return Err((
                        status::ATTRIBUTES_NOT_SUPPORTED,
                        "job-hold-until value not supported",
                    ));
                }
                resp.status(status::OK_IGNORED, "job-hold-until value ignored");
            }
        }
    }
    // PWG 5100.11 section 7.1: a PIN the job is released with, sent in
    // the clear (`job-password-encryption` "none", all we support).
    let mut pin = None;
    if let Some(a) = req.op_attr("job-password") {
        let encryption = req.op_str("job-password-encryption").unwrap_or("none");
        match a.values.as_slice() {
            [Value::OctetString(p)]
                if holds(req)
                    && encryption == "none"
                    && !p.is_empty()
                    && p.len() <= MAX_JOB_PASSWORD_LEN =>
            {
                pin = Some(crate::store::job::hash_pin(p));
            }
            _ => {
                resp.unsupported.push(a.clone());
                if fidelity {
                    return Err((
                        status::ATTRIBUTES_NOT_SUPPORTED,
                        "job-password not supported by this printer",
                    ));
                }
                resp.status(status::OK_IGNORED, "job-password ignored");
            }
        }
    }
    let template: Vec<Attribute> = req
        .msg
        .group(group::JOB)
        .map(|g| g.attributes.clone())
        .unwrap_or_default();
    let accepted = match &printer {
        Some(p) => {
            let checked = mirror::check_template(&p.attributes, &template);
            if !checked.unsupported.is_empty() {
                resp.unsupported.attributes.extend(checked.unsupported);
                // RFC 8011 section 4.2.1.2: refused under fidelity, else
                // the job goes on without them.
                if fidelity {
                    return Err((
                        status::ATTRIBUTES_NOT_SUPPORTED,
                        "job template attributes or values no device of this printer supports",
                    ));
                }
                resp.status(
                    status::OK_IGNORED,
                    "unsupported job template attributes ignored",
                );
            }
            checked.accepted
        }
        None => template
            .into_iter()
            .filter(|a| !mirror::is_own_template(&a.name))
            .collect(),
    };
    let mut kept = accepted;
    kept.extend(compression.clone());
    Ok(Validated {
        format,
        hold,
        job_attributes: mirror::encode_job_attributes(&kept),
        pin,
        compression,
    })
}

fn new_job(
    req: &Req<'_>,
    format: Option<String>,
    job_attributes: Option<String>,
    pin: Option<String>,
) -> NewJob {
    let name = req
        .op_str("job-name")
        .or_else(|| req.op_str("document-name"))
        .map(crate::wire::sniff::clean)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| UNTITLED.to_owned());
    let workflow = req
        .routed
        .input(&req.ctx.listener, req.queue.as_deref())
        .map(|i| i.workflow.clone())
        .unwrap_or_default();
    NewJob {
        listener: req.ctx.listener.clone(),
        queue: req.queue.clone(),
        peer: req.ctx.peer,
        user: req.user(),
        name,
        format,
        workflow,
        ipp_job_attributes: job_attributes,
        pin,
    }
}

/// Why receiving a document failed, as an IPP status.
fn store_error(req: &Req<'_>, e: &StoreError) -> (u16, &'static str) {
    match e {
        StoreError::TooLarge { .. } => {
            req.ctx.shared.refused(
                &req.ctx.listener,
                req.ctx.peer,
                "job refused by a tenant limit",
            );
            (
                status::REQUEST_ENTITY_TOO_LARGE,
                "document exceeds max-job-size",
            )
        }
        StoreError::QuotaExceeded { .. } => {
            req.ctx.shared.refused(
                &req.ctx.listener,
                req.ctx.peer,
                "job refused by a tenant limit",
            );
            // A tenant at its spool quota is refused in IPP's own
            // way, server-error-not-accepting-jobs (RFC 8011 13.1.5.7), not a
            // generic temporary error.
            (
                status::NOT_ACCEPTING_JOBS,
                "tenant spool quota exceeded; try later",
            )
        }
        StoreError::DiskFull => {
            req.ctx
                .shared
                .refused(&req.ctx.listener, req.ctx.peer, "spool disk full");
            (
                status::NOT_ACCEPTING_JOBS,
                "the spool's disk is full; try later",
            )
        }
        StoreError::CommitFailed(_) | StoreError::Poisoned => {
            tracing::error!(tenant = %req.tenant_id(), peer = %req.ctx.peer, error = %e, "IPP job not committed");
            // Temporary: the client keeps the job and sends it again.
            (
                status::SERVICE_UNAVAILABLE,
                "the job could not be stored; try later",
            )
        }
        e => {
            tracing::error!(tenant = %req.tenant_id(), peer = %req.ctx.peer, error = %e, "IPP job storage failed");
            (status::INTERNAL_ERROR, "storage failed")
        }
    }
}

/// Streams the document into a new spool file; returns it and its first bytes.
async fn receive(
    req: &Req<'_>,
    doc: &mut Document,
) -> Result<(SpoolWriter, Vec<u8>), (u16, &'static str)> {
    let mut writer = req
        .routed
        .spool_writer()
        .await
        .map_err(|e| store_error(req, &e))?;
    let mut head = Vec::new();
    let mut chunk = std::mem::take(&mut doc.first);
    loop {
        if !chunk.is_empty() {
            if head.len() < SNIFF_LIMIT {
                let take = chunk.len().min(SNIFF_LIMIT - head.len());
                head.extend_from_slice(&chunk[..take]);
            }
            writer
                .write(&chunk)
                .await
                .map_err(|e| store_error(req, &e))?;
        }
        if doc.ended {
            return Ok((writer, head));
        }
        match tokio::time::timeout(req.ctx.idle_timeout(), doc.body.frame()).await {
            Ok(Some(Ok(frame))) => {
                chunk = frame.into_data().unwrap_or_default();
                doc.ended = hyper::body::Body::is_end_stream(&doc.body);
            }
            Ok(None) => {
                doc.ended = true;
                chunk = bytes::Bytes::new();
            }
            Ok(Some(Err(_))) => return Err((status::BAD_REQUEST, "document broke off")),
            Err(_) => {
                req.ctx.shared.refused(
                    &req.ctx.listener,
                    req.ctx.peer,
                    "IPP client idle mid-document",
                );
                return Err((status::REQUEST_TIMEOUT, "document timed out"));
            }
        }
    }
}

/// The format to record: the client's, or what the bytes show when it said
/// octet-stream (compressed bytes show nothing: the devices sniff them).
fn record_format(given: Option<String>, head: &[u8], compressed: bool) -> Option<String> {
    match given {
        Some(f) if !f.eq_ignore_ascii_case("application/octet-stream") => Some(f),
        _ if compressed => None,
        _ => sniff(head).format.map(str::to_owned),
    }
}

/// Commits and starts a received job; only then may success go out.
async fn commit(
    req: &Req<'_>,
    writer: SpoolWriter,
    new: NewJob,
    reserved: Option<JobId>,
    hold: bool,
) -> Result<Job, (u16, &'static str)> {
    let store = req.store();
    let job = match reserved {
        Some(id) => store.commit_reserved(writer, new, id).await,
        None => store.commit_new(writer, new).await,
    }
    .map_err(|e| store_error(req, &e))?;
    tracing::info!(tenant = %job.tenant, job = %job.id, peer = %req.ctx.peer, user = %job.user, size = job.size, held = hold, "IPP job accepted");
    if hold {
        req.ctx.shared.dispatcher.submit_held(store.clone(), job.id);
    } else {
        req.ctx
            .shared
            .dispatcher
            .submit_committed(store.clone(), job.clone());
    }
    Ok(job)
}

/// A receive slot of the tenant (held until the job is committed), or
/// `server-error-busy` (RFC 8011 13.1.5.8) when it is at `max-receives`.
async fn receive_slot(req: &Req<'_>) -> Result<ReceiveSlot, (u16, &'static str)> {
    match req.routed.receive_slot().await {
        Some(slot) => Ok(slot),
        None => {
            req.ctx
                .shared
                .refused(&req.ctx.listener, req.ctx.peer, "tenant at max-receives");
            Err((
                status::BUSY,
                "too many jobs being received; try again later",
            ))
        }
    }
}

async fn print_job(req: &Req<'_>, resp: &mut Resp, doc: &mut Document) -> OpResult {
    let Validated {
        format,
        hold,
        job_attributes,
        pin,
        compression,
    } = validate_job(req, resp)?;
    let _receive_slot = receive_slot(req).await?;
    let (writer, head) = receive(req, doc).await?;
    if writer.size() == 0 {
        return Err((status::BAD_REQUEST, "Print-Job without document data"));
    }
    let format = record_format(format, &head, compression.is_some());
    // Refused: the writer is dropped with its spool file, nothing is stored.
    check_format(req, resp, format.as_deref())?;
    let new = new_job(req, format, job_attributes, pin);
    let job = commit(req, writer, new, None, hold).await?;
    let state = if hold { JobState::Held } else { job.state };
    resp.group(job_group(
        req,
        &JobView::Committed(&job),
        Some(state),
        &summary(),
    ));
    Ok(())
}

fn create_job(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let Validated {
        format,
        hold,
        job_attributes,
        pin,
        ..
    } = validate_job(req, resp)?;
    let tenant = req.tenant_id().clone();
    let mut open = open_jobs();
    if open.keys().filter(|(t, _)| *t == tenant).count() >= MAX_OPEN_JOBS_PER_TENANT {
        return Err((status::BUSY, "too many open jobs; try again later"));
    }
    let id = req
        .store()
        .reserve_job_id()
        .map_err(|_| (status::INTERNAL_ERROR, "no job id left"))?;
    let job = OpenJob {
        new: new_job(req, format, job_attributes, pin),
        hold,
        writer: None,
        created_ms: now_ms(),
        deadline: Instant::now() + MULTIPLE_OPERATION_TIMEOUT,
    };
    resp.group(job_group(req, &JobView::Open(id, &job), None, &summary()));
    open.insert((tenant, id), job);
    Ok(())
}

async fn send_document(req: &Req<'_>, resp: &mut Resp, doc: &mut Document) -> OpResult {
    let id = target_job(req)?;
    // RFC 8011 section 4.3.1: last-document is REQUIRED.
    let last = match req.op_attr("last-document").and_then(|a| a.values.first()) {
        Some(Value::Boolean(b)) => *b,
        _ => return Err((status::BAD_REQUEST, "missing last-document")),
    };
    let _receive_slot = receive_slot(req).await?;
    let key = (req.tenant_id().clone(), id);
    let Some(mut job) = open_jobs().remove(&key) else {
        return Err(match req.store().job(id) {
            Ok(Some(_)) => (status::NOT_POSSIBLE, "job already has its document"),
            _ => (status::NOT_FOUND, "no such job"),
        });
    };
    let (format, compression) = match validate_job(req, resp) {
        Ok(v) => (v.format, v.compression),
        Err(e) => {
            open_jobs().insert(key, job);
            return Err(e);
        }
    };
    let (writer, head) = match receive(req, doc).await {
        Ok(w) => w,
        Err(e) => {
            open_jobs().insert(key, job);
            return Err(e);
        }
    };
    if writer.size() > 0 {
        if job.writer.as_ref().is_some_and(|w| w.size() > 0) {
            open_jobs().insert(key, job);
            return Err((
                status::MULTIPLE_DOCUMENT_JOBS_NOT_SUPPORTED,
                "a job takes one document",
            ));
        }
        let named = job.new.format.clone();
        let format = record_format(
            format.or(job.new.format.take()),
            &head,
            compression.is_some(),
        );
        if let Err(e) = check_format(req, resp, format.as_deref()) {
            // The document is dropped; the job stays open for another.
            job.new.format = named;
            open_jobs().insert(key, job);
            return Err(e);
        }
        job.new.format = format;
        // The compression is this document's (RFC 8011 section 4.3.1).
        job.new.ipp_job_attributes =
            mirror::with_compression(job.new.ipp_job_attributes.as_deref(), compression);
        job.writer = Some(writer);
    }
    if !last {
        job.deadline = Instant::now() + MULTIPLE_OPERATION_TIMEOUT;
        resp.group(job_group(req, &JobView::Open(id, &job), None, &summary()));
        open_jobs().insert(key, job);
        return Ok(());
    }
    finish_open(req, resp, id, job).await
}

/// Commits an open job whose last document arrived.
async fn finish_open(req: &Req<'_>, resp: &mut Resp, id: JobId, mut job: OpenJob) -> OpResult {
    let Some(writer) = job.writer.take().filter(|w| w.size() > 0) else {
        return Err((status::BAD_REQUEST, "the job has no document data"));
    };
    let hold = job.hold;
    let committed = commit(req, writer, job.new, Some(id), hold).await?;
    let state = if hold {
        JobState::Held
    } else {
        committed.state
    };
    resp.group(job_group(
        req,
        &JobView::Committed(&committed),
        Some(state),
        &summary(),
    ));
    Ok(())
}

async fn close_job(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let id = target_job(req)?;
    let Some(job) = open_jobs().remove(&(req.tenant_id().clone(), id)) else {
        return Err(match req.store().job(id) {
            Ok(Some(_)) => (status::NOT_POSSIBLE, "job is already closed"),
            _ => (status::NOT_FOUND, "no such job"),
        });
    };
    finish_open(req, resp, id, job).await
}

async fn cancel_job(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let _ = resp;
    let id = target_job(req)?;
    {
        let mut open = open_jobs();
        let key = (req.tenant_id().clone(), id);
        if let Some(j) = open.get(&key) {
            if !req.may_change(&j.new.user) {
                return Err(NOT_OWNER);
            }
            // Never committed: dropping its writer deletes the partial document.
            open.remove(&key);
            return Ok(());
        }
    }
    check_owner(req, id)?;
    let note = format!("canceled over IPP by {}", req.user());
    match req
        .ctx
        .shared
        .dispatcher
        .cancel(req.store(), id, &note)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => match req.store().job(id) {
            Ok(Some(_)) => Err((status::NOT_POSSIBLE, "job is already finished")),
            Ok(None) => Err((status::NOT_FOUND, "no such job")),
            Err(_) => Err((status::INTERNAL_ERROR, "storage failed")),
        },
        Err(_) => Err((status::INTERNAL_ERROR, "storage failed")),
    }
}

async fn cancel_my_jobs(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let _ = resp;
    let user = req.user();
    let tenant = req.tenant_id().clone();
    // This printer's open jobs of the user, as Get-Jobs lists them.
    open_jobs().retain(|(t, _), o| {
        !(*t == tenant
            && o.new.listener == req.ctx.listener
            && (req.server_wide || o.new.queue == req.queue)
            && o.new.user == user)
    });
    // The committed ones from the index of unfinished jobs: only the
    // user's are read, not every record of the tenant.
    let listing = Listing {
        listener: &req.ctx.listener,
        queue: (!req.server_wide).then_some(req.queue.as_deref()),
        owner: Some(user.as_str()),
        limit: usize::MAX,
    };
    let ids = req
        .store()
        .unfinished_ids(&listing)
        .map_err(|_| (status::INTERNAL_ERROR, "storage failed"))?;
    let note = format!("canceled over IPP (Cancel-My-Jobs) by {user}");
    for id in ids {
        let j = match req.store().job(id) {
            Ok(Some(j)) => j,
            Ok(None) => continue,
            Err(_) => return Err((status::INTERNAL_ERROR, "storage failed")),
        };
        if j.state.is_final() || j.user != user || !on_printer(req, &j) {
            continue;
        }
        if req
            .ctx
            .shared
            .dispatcher
            .cancel(req.store(), j.id, &note)
            .await
            .is_err()
        {
            return Err((status::INTERNAL_ERROR, "storage failed"));
        }
    }
    Ok(())
}

/// Refusal of a job operation by someone who is neither the job's owner nor a tenant admin.
const NOT_OWNER: (u16, &str) = (
    status::NOT_AUTHORIZED,
    "only the job's owner or a tenant admin may do this",
);

/// Refuses (not-authorized) a committed job of another owner; an unknown job passes (not found later).
fn check_owner(req: &Req<'_>, id: JobId) -> Result<(), (u16, &'static str)> {
    match req.store().job(id) {
        Ok(Some(j)) if !req.may_change(&j.user) => Err(NOT_OWNER),
        Ok(_) => Ok(()),
        Err(_) => Err((status::INTERNAL_ERROR, "storage failed")),
    }
}

fn hold_job(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let _ = resp;
    let id = target_job(req)?;
    if let Some(j) = open_jobs().get_mut(&(req.tenant_id().clone(), id)) {
        if !req.may_change(&j.new.user) {
            return Err(NOT_OWNER);
        }
        j.hold = true;
        return Ok(());
    }
    check_owner(req, id)?;
    match req.store().job(id) {
        Ok(Some(j)) if j.state == JobState::Held => Ok(()),
        Ok(Some(_)) => Err((status::NOT_POSSIBLE, "the job is past holding")),
        Ok(None) => Err((status::NOT_FOUND, "no such job")),
        Err(_) => Err((status::INTERNAL_ERROR, "storage failed")),
    }
}

fn release_job(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let _ = resp;
    let id = target_job(req)?;
    if let Some(j) = open_jobs().get_mut(&(req.tenant_id().clone(), id)) {
        if !req.may_change(&j.new.user) {
            return Err(NOT_OWNER);
        }
        if !j.hold {
            return Err((status::NOT_POSSIBLE, "the job is not held"));
        }
        j.hold = false;
        return Ok(());
    }
    check_owner(req, id)?;
    match req.store().job(id) {
        Ok(Some(_)) => {
            if req.ctx.shared.dispatcher.release(req.tenant_id(), id) {
                Ok(())
            } else {
                Err((status::NOT_POSSIBLE, "the job is not held"))
            }
        }
        Ok(None) => Err((status::NOT_FOUND, "no such job")),
        Err(_) => Err((status::INTERNAL_ERROR, "storage failed")),
    }
}

/// A job as IPP shows it: committed, or open (made by Create-Job, no document yet).
enum JobView<'a> {
    Committed(&'a Job),
    Open(JobId, &'a OpenJob),
}

/// Which attributes a reply should carry.
enum Wanted {
    All,
    Names(Vec<String>),
}

impl Wanted {
    fn has(&self, name: &str) -> bool {
        match self {
            Wanted::All => true,
            Wanted::Names(n) => n.iter().any(|x| x == name),
        }
    }
}

/// `requested-attributes` (RFC 8011 section 4.2.5.1), or `default`.
fn wanted(req: &Req<'_>, default: &[&str]) -> Wanted {
    match req.op_attr("requested-attributes") {
        None => {
            if default == ["all"] {
                Wanted::All
            } else {
                Wanted::Names(default.iter().map(|s| (*s).to_owned()).collect())
            }
        }
        Some(a) => {
            let names: Vec<String> = a
                .values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            if names.iter().any(|n| {
                matches!(
                    n.as_str(),
                    "all" | "printer-description" | "job-template" | "job-description"
                )
            }) {
                Wanted::All
            } else {
                Wanted::Names(names)
            }
        }
    }
}

/// The short set of a job-creation reply (RFC 8011 section 4.2.1.2).
fn summary() -> Wanted {
    Wanted::Names(
        [
            "job-id",
            "job-uri",
            "job-state",
            "job-state-reasons",
            "job-state-message",
            "number-of-intervening-jobs",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    )
}

fn state_enum(s: JobState) -> i32 {
    match s {
        JobState::Pending => 3,
        JobState::Held => 4,
        JobState::Processing => 5,
        JobState::Canceled => 7,
        JobState::Aborted => 8,
        JobState::Completed => 9,
    }
}

fn state_reason(s: JobState) -> &'static str {
    match s {
        JobState::Pending => "none",
        JobState::Held => "job-hold-until-specified",
        JobState::Processing => "job-printing",
        JobState::Canceled => "job-canceled-by-user",
        JobState::Aborted => "aborted-by-system",
        JobState::Completed => "job-completed-successfully",
    }
}

fn secs(ms: u64) -> i32 {
    i32::try_from(ms / 1000).unwrap_or(i32::MAX)
}

fn job_group(req: &Req<'_>, job: &JobView<'_>, state: Option<JobState>, wanted: &Wanted) -> Group {
    let mut g = Group::new(group::JOB);
    let mut add = |name: &str, v: Value| {
        if wanted.has(name) {
            g.push(Attribute::new(name, v));
        }
    };
    let no_value = || Value::OutOfBand(tag::NO_VALUE);
    match job {
        JobView::Committed(j) => {
            let state = state.unwrap_or(j.state);
            let processing = j
                .history
                .iter()
                .find(|e| e.state == JobState::Processing)
                .map(|e| e.at_ms);
            let completed = state
                .is_final()
                .then(|| j.history.last().map_or(j.created_ms, |e| e.at_ms));
            let printer = match &j.queue {
                Some(q) => format!("ipp://{}/ipp/print/{q}", req.host),
                None => format!("ipp://{}/ipp/print", req.host),
            };
            add("job-id", Value::Integer(j.id.0 as i32));
            add("job-uri", Value::uri(&req.job_uri(j.id)));
            add("job-printer-uri", Value::uri(&printer));
            add("job-name", Value::name(&j.name));
            add("job-originating-user-name", Value::name(&j.user));
            add("job-state", Value::Enum(state_enum(state)));
            add("job-state-reasons", Value::keyword(state_reason(state)));
            let message = j.history.last().map_or("", |e| e.note.as_str());
            add(
                "job-state-message",
                Value::text(truncate(message, codec::MAX_TEXT_LEN)),
            );
            add("number-of-documents", Value::Integer(1));
            add(
                "job-k-octets",
                Value::Integer(i32::try_from(j.size.div_ceil(1024)).unwrap_or(i32::MAX)),
            );
            add(
                "job-hold-until",
                Value::keyword(if state == JobState::Held {
                    "indefinite"
                } else {
                    "no-hold"
                }),
            );
            add(
                "document-format",
                Value::mime(j.format.as_deref().unwrap_or("application/octet-stream")),
            );
            add("time-at-creation", Value::Integer(secs(j.created_ms)));
            add(
                "time-at-processing",
                processing.map_or_else(no_value, |t| Value::Integer(secs(t))),
            );
            add(
                "time-at-completed",
                completed.map_or_else(no_value, |t| Value::Integer(secs(t))),
            );
            add("job-printer-up-time", Value::Integer(secs(now_ms())));
            add("number-of-intervening-jobs", Value::Integer(0));
        }
        JobView::Open(id, o) => {
            add("job-id", Value::Integer(id.0 as i32));
            add("job-uri", Value::uri(&req.job_uri(*id)));
            add("job-printer-uri", Value::uri(&req.printer_uri()));
            add("job-name", Value::name(&o.new.name));
            add("job-originating-user-name", Value::name(&o.new.user));
            add("job-state", Value::Enum(if o.hold { 4 } else { 3 }));
            add("job-state-reasons", Value::keyword("job-incoming"));
            add("job-state-message", Value::text("waiting for the document"));
            add("number-of-documents", Value::Integer(0));
            add(
                "job-hold-until",
                Value::keyword(if o.hold { "indefinite" } else { "no-hold" }),
            );
            add("time-at-creation", Value::Integer(secs(o.created_ms)));
            add("time-at-processing", no_value());
            add("time-at-completed", no_value());
            add("job-printer-up-time", Value::Integer(secs(now_ms())));
            add("number-of-intervening-jobs", Value::Integer(0));
        }
    }
    g
}

use crate::wire::truncate_str as truncate;

/// A job's group with its ids only (`job-id`, `job-uri`, as wanted): the
/// default Get-Jobs answer (RFC 8011 section 4.2.6.1), made without its record.
fn id_group(req: &Req<'_>, id: JobId, wanted: &Wanted) -> Group {
    let mut g = Group::new(group::JOB);
    if wanted.has("job-id") {
        g.push(Attribute::new("job-id", Value::Integer(id.0 as i32)));
    }
    if wanted.has("job-uri") {
        g.push(Attribute::new("job-uri", Value::uri(&req.job_uri(id))));
    }
    g
}

/// True when a job came in through this printer.
fn on_printer(req: &Req<'_>, j: &Job) -> bool {
    j.listener == req.ctx.listener && (req.server_wide || j.queue == req.queue)
}

fn get_job_attributes(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let id = target_job(req)?;
    let want = wanted(req, &["all"]);
    if let Some(o) = open_jobs().get(&(req.tenant_id().clone(), id)) {
        resp.group(job_group(req, &JobView::Open(id, o), None, &want));
        return Ok(());
    }
    match req.store().job(id) {
        Ok(Some(j)) => {
            resp.group(job_group(req, &JobView::Committed(&j), None, &want));
            Ok(())
        }
        Ok(None) => Err((status::NOT_FOUND, "no such job")),
        Err(_) => Err((status::INTERNAL_ERROR, "storage failed")),
    }
}

fn get_jobs(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let which = req.op_str("which-jobs").unwrap_or("not-completed");
    let (open, done) = match which {
        "not-completed" => (true, false),
        "completed" => (false, true),
        "all" => (true, true),
        _ => {
            if let Some(a) = req.op_attr("which-jobs") {
                resp.unsupported.push(a.clone());
            }
            return Err((
                status::ATTRIBUTES_NOT_SUPPORTED,
                "which-jobs value not supported",
            ));
        }
    };
    let limit = match req.op_attr("limit").and_then(|a| a.values.first()) {
        Some(Value::Integer(n)) if *n >= 1 => (*n as usize).min(MAX_GET_JOBS),
        Some(_) => return Err((status::BAD_REQUEST, "limit must be a positive integer")),
        None => MAX_GET_JOBS,
    };
    let my_jobs = matches!(
        req.op_attr("my-jobs").and_then(|a| a.values.first()),
        Some(Value::Boolean(true))
    );
    let user = req.user();
    let want = wanted(req, &["job-id", "job-uri"]);
    let mine = |j: &Job| on_printer(req, j) && (!my_jobs || j.user == user);
    let mut groups = Vec::new();
    // RFC 8011 section 4.2.6.2: not-completed jobs in processing order,
    // completed ones most recent first. Records are read only until the
    // limit is reached: the cost follows `limit`, not the backlog.
    if open {
        let tenant = req.tenant_id();
        let map = open_jobs();
        let mut ids: Vec<&JobId> = map
            .iter()
            .filter(|((t, _), o)| {
                // The printer's own, as `on_printer` says of committed ones.
                t == tenant
                    && o.new.listener == req.ctx.listener
                    && (req.server_wide || o.new.queue == req.queue)
                    && (!my_jobs || o.new.user == user)
            })
            .map(|((_, id), _)| id)
            .collect();
        ids.sort();
        for id in ids {
            if groups.len() >= limit {
                break;
            }
            if let Some(o) = map.get(&(tenant.clone(), *id)) {
                groups.push(job_group(req, &JobView::Open(*id, o), None, &want));
            }
        }
        drop(map);
        // Which jobs, from the store's index of unfinished ones: no record
        // is read to pick them, whatever the backlog or the other queues
        // hold. Only an answer that wants more than ids reads theirs.
        let listing = Listing {
            listener: &req.ctx.listener,
            queue: (!req.server_wide).then_some(req.queue.as_deref()),
            owner: my_jobs.then_some(user.as_str()),
            limit: limit - groups.len(),
        };
        let ids = req
            .store()
            .unfinished_ids(&listing)
            .map_err(|_| (status::INTERNAL_ERROR, "storage failed"))?;
        let ids_only = match &want {
            Wanted::All => false,
            Wanted::Names(n) => n.iter().all(|n| n == "job-id" || n == "job-uri"),
        };
        for id in ids {
            if ids_only {
                groups.push(id_group(req, id, &want));
                continue;
            }
            match req.store().job(id) {
                // Finished since it was listed: no longer not-completed.
                Ok(Some(j)) if !j.state.is_final() => {
                    groups.push(job_group(req, &JobView::Committed(&j), None, &want));
                }
                Ok(_) => {}
                Err(_) => return Err((status::INTERNAL_ERROR, "storage failed")),
            }
        }
    }
    if done {
        for j in req.store().finished_jobs_newest_first_past_backlog() {
            if groups.len() >= limit {
                break;
            }
            let j = j.map_err(|_| (status::INTERNAL_ERROR, "storage failed"))?;
            if j.state.is_final() && mine(&j) {
                groups.push(job_group(req, &JobView::Committed(&j), None, &want));
            }
        }
    }
    for g in groups {
        resp.group(g);
    }
    Ok(())
}

/// Identify-Printer (PWG 5100.13 section 5.2): passed on to the one IPP
/// device behind the printer; for a pool, or a device that cannot be
/// asked, there is no one device to identify and the request is a no-op.
async fn identify_printer(req: &Req<'_>) -> OpResult {
    let Some((uri, verify)) = printer(req).and_then(|p| p.single_ipp.clone()) else {
        return Ok(());
    };
    let extra: Vec<Attribute> = ["identify-actions", "message"]
        .iter()
        .filter_map(|n| req.op_attr(n).cloned())
        .collect();
    match capabilities::identify(&uri, &verify, extra).await {
        Ok(code) if code < 0x0100 => Ok(()),
        Ok(_) => Err((
            status::NOT_POSSIBLE,
            "the device refused to identify itself",
        )),
        Err(_) => Err((status::SERVICE_UNAVAILABLE, "the device cannot be reached")),
    }
}

fn media_size(x: i32, y: i32) -> Value {
    Value::Collection(vec![
        Attribute::new("x-dimension", Value::Integer(x)),
        Attribute::new("y-dimension", Value::Integer(y)),
    ])
}

/// RFC 2579 DateAndTime (RFC 8010 section 3.9 `dateTime`) of a Unix time, in UTC.
fn date_time(unix_secs: u64) -> Value {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    let [y0, y1] = year.to_be_bytes();
    Value::DateTime([
        y0,
        y1,
        month,
        day,
        (rem / 3600) as u8,
        (rem / 60 % 60) as u8,
        (rem % 60) as u8,
        0,
        b'+',
        0,
        0,
    ])
}

/// The capabilities a printer presents when it mirrors no device: a
/// workflow that only holds or stores, or devices never reached yet. The
/// documents pass unchanged; this is what tenants' printers commonly take.
fn generic_capabilities() -> Vec<Attribute> {
    let kw = |v: &[&str]| v.iter().map(|s| Value::keyword(s)).collect::<Vec<_>>();
    let a4 = "iso_a4_210x297mm";
    let letter = "na_letter_8.5x11in";
    vec![
        Attribute::new(
            "document-format-default",
            Value::mime("application/octet-stream"),
        ),
        Attribute::many(
            "document-format-supported",
            DOCUMENT_FORMATS.iter().map(|f| Value::mime(f)).collect(),
        ),
        // A router renders nothing: no colour engine, no page speed, one
        // copy, the document's own media, sides, quality and resolution.
        Attribute::new("color-supported", Value::Boolean(false)),
        Attribute::new("pages-per-minute", Value::Integer(0)),
        Attribute::new("copies-default", Value::Integer(1)),
        Attribute::new("copies-supported", Value::Range(1, 1)),
        Attribute::new("finishings-default", Value::Enum(3)),
        Attribute::new("finishings-supported", Value::Enum(3)),
        Attribute::new("job-sheets-default", Value::keyword("none")),
        Attribute::new("job-sheets-supported", Value::keyword("none")),
        Attribute::new("media-default", Value::keyword(a4)),
        Attribute::many("media-supported", kw(&[a4, letter])),
        Attribute::many("media-ready", kw(&[a4, letter])),
        Attribute::many("media-col-supported", kw(&["media-size", "media-type"])),
        Attribute::new(
            "media-col-default",
            Value::Collection(vec![
                Attribute::new("media-size", media_size(21000, 29700)),
                Attribute::new("media-type", Value::keyword("stationery")),
            ]),
        ),
        Attribute::many(
            "media-size-supported",
            vec![media_size(21000, 29700), media_size(21590, 27940)],
        ),
        Attribute::new("media-type-supported", Value::keyword("stationery")),
        Attribute::new(
            "orientation-requested-default",
            Value::OutOfBand(tag::NO_VALUE),
        ),
        Attribute::new("orientation-requested-supported", Value::Enum(3)),
        Attribute::new("output-bin-default", Value::keyword("auto")),
        Attribute::new("output-bin-supported", Value::keyword("auto")),
        Attribute::new("print-quality-default", Value::Enum(4)),
        Attribute::new("print-quality-supported", Value::Enum(4)),
        Attribute::new("printer-resolution-default", Value::Resolution(600, 600, 3)),
        Attribute::new(
            "printer-resolution-supported",
            Value::Resolution(600, 600, 3),
        ),
        Attribute::new("sides-default", Value::keyword("one-sided")),
        Attribute::new("sides-supported", Value::keyword("one-sided")),
        Attribute::new("number-up-default", Value::Integer(1)),
        Attribute::new("number-up-supported", Value::Integer(1)),
    ]
}

/// `printer-device-id` (IEEE 1284) of a printer whose devices give none.
fn device_id(make_and_model: &str, caps: &[Attribute]) -> String {
    let clean = |s: &str| s.replace([';', ':'], " ");
    let cmd: Vec<&str> = caps
        .iter()
        .find(|a| a.name == "document-format-supported")
        .map(|a| {
            a.values
                .iter()
                .filter_map(|v| match v.as_str()? {
                    "application/pdf" => Some("PDF"),
                    "application/postscript" => Some("PS"),
                    "application/vnd.hp-pcl" => Some("PCL"),
                    "application/vnd.hp-pclxl" => Some("PCLXL"),
                    "image/pwg-raster" => Some("PWG"),
                    "image/urf" => Some("URF"),
                    "image/jpeg" => Some("JPEG"),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "MFG:printroute;MDL:{};CMD:{};",
        clean(make_and_model),
        cmd.join(",")
    )
}

/// Most printers whose attribute sets are kept built ([`printer_description`]);
/// past it the kept sets are dropped and built again as asked.
pub const MAX_KEPT_PRINTER_DESCRIPTIONS: usize = 1024;

/// What a kept attribute set was built from: the printer (tenant,
/// listener, queue, the path and host the client named it by, TLS).
type DescriptionKey = (TenantId, ListenerName, Option<String>, String, String, bool);

/// A printer's attribute set, built once per snapshot and device answer.
struct KeptDescription {
    loaded_at: std::time::SystemTime,
    mirrored: Option<Arc<Printer>>,
    attributes: Arc<Vec<Attribute>>,
}

/// Printers' attribute sets, kept between requests: a client polls
/// Get-Printer-Attributes before and during every job.
static DESCRIPTIONS: LazyLock<Mutex<HashMap<DescriptionKey, KeptDescription>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The attributes of the request's printer that change only with the
/// snapshot or what its devices say, built once and kept.
fn printer_description(req: &Req<'_>, mirrored: &Option<Arc<Printer>>) -> Arc<Vec<Attribute>> {
    let key: DescriptionKey = (
        req.tenant_id().clone(),
        req.ctx.listener.clone(),
        req.queue.clone(),
        req.path.clone(),
        req.host.to_owned(),
        req.ctx.secure,
    );
    let loaded_at = req.routed.snapshot.loaded_at;
    let same_devices = |kept: &KeptDescription| match (&kept.mirrored, mirrored) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    {
        let kept = DESCRIPTIONS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = kept.get(&key) {
            if k.loaded_at == loaded_at && same_devices(k) {
                return k.attributes.clone();
            }
        }
    }
    let attributes = Arc::new(build_printer_description(req, mirrored));
    let mut kept = DESCRIPTIONS.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() >= MAX_KEPT_PRINTER_DESCRIPTIONS {
        kept.clear();
    }
    kept.insert(
        key,
        KeptDescription {
            loaded_at,
            mirrored: mirrored.clone(),
            attributes: attributes.clone(),
        },
    );
    attributes
}

fn get_printer_attributes(req: &Req<'_>, resp: &mut Resp) -> OpResult {
    let want = wanted(req, &["all"]);
    let queued = req
        .store()
        .queued_on(&req.ctx.listener, req.queue.as_deref())
        .map_err(|_| (status::INTERNAL_ERROR, "storage failed"))?;
    let mirrored = printer(req);
    let (pool_state, mut reasons) = mirrored
        .as_ref()
        .map_or((3, vec!["none".to_owned()]), |p| p.state.clone());
    let state = if pool_state == 5 {
        5
    } else if queued > 0 {
        4
    } else {
        3
    };
    if reasons.is_empty() {
        reasons.push("none".to_owned());
    }
    let mut g = Group::new(group::PRINTER);
    for a in printer_description(req, &mirrored).iter() {
        if want.has(&a.name) {
            g.push(a.clone());
        }
    }
    // What changes from one request to the next.
    let now = [
        Attribute::new("printer-state", Value::Enum(state)),
        Attribute::many(
            "printer-state-reasons",
            reasons.iter().map(|r| Value::keyword(r)).collect(),
        ),
        Attribute::new(
            "printer-state-message",
            Value::text(if state == 5 {
                "the printer's devices are stopped"
            } else {
                "accepting jobs"
            }),
        ),
        Attribute::new(
            "queued-job-count",
            Value::Integer(i32::try_from(queued).unwrap_or(i32::MAX)),
        ),
        Attribute::new("printer-up-time", Value::Integer(secs(now_ms()))),
        Attribute::new("printer-current-time", date_time(now_ms() / 1000)),
    ];
    for a in now {
        if want.has(&a.name) {
            g.push(a);
        }
    }
    resp.group(g);
    Ok(())
}

/// Builds what [`printer_description`] keeps: every printer attribute but
/// the state, the queue count and the clock.
fn build_printer_description(req: &Req<'_>, mirrored: &Option<Arc<Printer>>) -> Vec<Attribute> {
    let tenant = req.routed.tenant();
    let name = req.queue.clone().unwrap_or_else(|| "print".to_owned());
    let kw = |v: &[&str]| v.iter().map(|s| Value::keyword(s)).collect::<Vec<_>>();
    let max_k = i32::try_from(tenant.limits.max_job_size.div_ceil(1024)).unwrap_or(i32::MAX);
    let mut caps = match mirrored {
        Some(p) => p.attributes.clone(),
        None => generic_capabilities(),
    };
    // printroute sniffs an octet-stream: it always takes one, and checks
    // what the bytes are against the devices.
    if let Some(f) = caps
        .iter_mut()
        .find(|a| a.name == "document-format-supported")
    {
        if !f
            .values
            .iter()
            .any(|v| v.as_str().is_some_and(is_octet_stream))
        {
            f.values.insert(0, Value::mime("application/octet-stream"));
        }
    }
    // Uncompressed documents always; compressed ones when every device
    // takes them so (they pass on as they came).
    match caps.iter_mut().find(|a| a.name == "compression-supported") {
        Some(c) if !c.values.iter().any(|v| v.as_str() == Some("none")) => {
            c.values.insert(0, Value::keyword("none"));
        }
        Some(_) => {}
        None => caps.push(Attribute::new(
            "compression-supported",
            Value::keyword("none"),
        )),
    }
    let make_and_model = mirrored
        .as_ref()
        .map_or(GENERIC_MAKE_AND_MODEL, |p| p.make_and_model.as_str())
        .to_owned();
    let loaded = req
        .routed
        .snapshot
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let http_base = format!(
        "{}://{}",
        if req.ctx.secure { "https" } else { "http" },
        req.host
    );
    // RFC 8011 section 5.4.1-5.4.3: one URI per way in, aligned lists.
    let ways: Vec<(&str, &str)> = match req.ctx.tls {
        None => vec![("ipp", "none")],
        Some(true) => vec![("ipps", "tls")],
        Some(false) => vec![("ipps", "tls"), ("ipp", "none")],
    };
    let mut attrs = vec![
        Attribute::many(
            "printer-uri-supported",
            ways.iter()
                .map(|(s, _)| Value::uri(&format!("{s}://{}{}", req.host, req.path)))
                .collect(),
        ),
        Attribute::many(
            "uri-security-supported",
            ways.iter().map(|(_, t)| Value::keyword(t)).collect(),
        ),
        Attribute::many(
            "uri-authentication-supported",
            ways.iter().map(|_| Value::keyword("none")).collect(),
        ),
        Attribute::new(
            "printer-name",
            Value::name(truncate(&name, codec::MAX_NAME_LEN)),
        ),
        Attribute::new(
            "printer-uuid",
            Value::uri(&mirror::printer_uuid(
                &tenant.id.to_string(),
                &req.ctx.listener.0,
                req.queue.as_deref(),
            )),
        ),
        Attribute::new("printer-location", Value::text("")),
        Attribute::new(
            "printer-info",
            Value::text(truncate(&format!("{} ({name})", tenant.name), 127)),
        ),
        Attribute::new(
            "printer-organization",
            Value::text(truncate(&tenant.name, codec::MAX_TEXT_LEN)),
        ),
        Attribute::new("printer-organizational-unit", Value::text("")),
        Attribute::new("printer-geo-location", Value::OutOfBand(tag::UNKNOWN)),
        Attribute::new(
            "printer-more-info",
            Value::uri(&format!("{http_base}{}", req.path)),
        ),
        Attribute::new(
            "printer-supply-info-uri",
            Value::uri(&format!("{http_base}{}", req.path)),
        ),
        Attribute::many(
            "printer-icons",
            vec![
                Value::uri(&format!("{http_base}/{ICON_SMALL}")),
                Value::uri(&format!("{http_base}/{ICON}")),
                Value::uri(&format!("{http_base}/{ICON_LARGE}")),
            ],
        ),
        Attribute::new(
            "printer-make-and-model",
            Value::text(truncate(&make_and_model, 127)),
        ),
        Attribute::new("printer-is-accepting-jobs", Value::Boolean(true)),
        Attribute::new(
            "printer-config-change-time",
            Value::Integer(secs(loaded * 1000)),
        ),
        Attribute::new("printer-config-change-date-time", date_time(loaded)),
        Attribute::new(
            "printer-state-change-time",
            Value::Integer(secs(loaded * 1000)),
        ),
        Attribute::new("printer-state-change-date-time", date_time(loaded)),
        Attribute::many(
            "operations-supported",
            OPERATIONS
                .iter()
                .map(|o| Value::Enum(i32::from(*o)))
                .collect(),
        ),
        Attribute::new("charset-configured", Value::charset("utf-8")),
        Attribute::many(
            "charset-supported",
            vec![Value::charset("utf-8"), Value::charset("us-ascii")],
        ),
        Attribute::new("natural-language-configured", Value::language("en")),
        Attribute::new(
            "generated-natural-language-supported",
            Value::language("en"),
        ),
        Attribute::many("ipp-versions-supported", kw(&["1.1", "2.0"])),
        Attribute::many("ipp-features-supported", kw(&["ipp-everywhere"])),
        Attribute::new("job-ids-supported", Value::Boolean(true)),
        Attribute::new("preferred-attributes-supported", Value::Boolean(false)),
        Attribute::new(
            "printer-get-attributes-supported",
            Value::keyword("document-format"),
        ),
        // Documents pass unchanged: no PDL override is attempted.
        Attribute::new("pdl-override-supported", Value::keyword("not-attempted")),
        Attribute::new("multiple-document-jobs-supported", Value::Boolean(false)),
        Attribute::new(
            "multiple-operation-time-out",
            Value::Integer(MULTIPLE_OPERATION_TIMEOUT.as_secs() as i32),
        ),
        Attribute::new(
            "multiple-operation-time-out-action",
            Value::keyword("abort-job"),
        ),
        Attribute::new("job-k-octets-supported", Value::Range(0, max_k)),
        Attribute::new("job-hold-until-default", Value::keyword("no-hold")),
        Attribute::many("job-hold-until-supported", kw(&["no-hold", "indefinite"])),
        Attribute::many(
            "which-jobs-supported",
            kw(&["completed", "not-completed", "all"]),
        ),
    ];
    if holds(req) {
        // PWG 5100.11 section 7.2: this printer holds its jobs, so a job
        // may carry a PIN its owner releases it with.
        attrs.push(Attribute::new(
            "job-password-supported",
            Value::Integer(MAX_JOB_PASSWORD_LEN as i32),
        ));
        attrs.push(Attribute::new(
            "job-password-encryption-supported",
            Value::keyword("none"),
        ));
    }
    if !caps.iter().any(|a| a.name == "printer-device-id") {
        attrs.push(Attribute::new(
            "printer-device-id",
            Value::text(&device_id(&make_and_model, &caps)),
        ));
    }
    if !caps.iter().any(|a| a.name == "identify-actions-supported") {
        // No one device to identify (a pool, a socket device): a no-op display.
        attrs.push(Attribute::new(
            "identify-actions-supported",
            Value::keyword("display"),
        ));
        attrs.push(Attribute::new(
            "identify-actions-default",
            Value::keyword("display"),
        ));
    }
    attrs.append(&mut caps);
    attrs
}

/// Paths of the printer icons (PWG 5100.13 `printer-icons`), served by GET.
pub(crate) const ICON_SMALL: &str = "icon-sm.png";
/// See [`ICON_SMALL`].
pub(crate) const ICON: &str = "icon.png";
/// See [`ICON_SMALL`].
pub(crate) const ICON_LARGE: &str = "icon-lg.png";
/// CUPS-Get-Printers and Get-Printers (PWG 5100.22 section 7.1.7): one
/// printer group per printer of the tenant on this listener, its default
/// printer (no queue) first, then by name; never another tenant's.
/// CUPS-Get-Default (`default_only`): the first of them.
fn list_printers(req: &Req<'_>, resp: &mut Resp, default_only: bool) -> OpResult {
    let limit = match req.op_attr("limit").and_then(|a| a.values.first()) {
        Some(Value::Integer(n)) if *n >= 1 => *n as usize,
        Some(_) => return Err((status::BAD_REQUEST, "limit must be a positive integer")),
        None => usize::MAX,
    };
    let mut queues: Vec<Option<String>> = req
        .routed
        .tenant()
        .inputs
        .iter()
        .filter(|i| i.listener == req.ctx.listener)
        .map(|i| i.queue.clone())
        .collect();
    queues.sort();
    queues.dedup();
    if default_only {
        queues.truncate(1);
        if queues.is_empty() {
            return Err((status::NOT_FOUND, "no default printer"));
        }
    }
    for queue in queues.into_iter().take(limit) {
        let path = match &queue {
            Some(q) => format!("/ipp/print/{q}"),
            None => "/ipp/print".to_owned(),
        };
        let printer = Req {
            ctx: req.ctx,
            routed: req.routed,
            host: req.host,
            path,
            queue,
            server_wide: false,
            msg: req.msg.clone(),
        };
        let mut one = Resp::new(req.msg.version, req.msg.request_id, status::OK, "");
        get_printer_attributes(&printer, &mut one)?;
        if let Some(g) = one.msg.groups.into_iter().find(|g| g.tag == group::PRINTER) {
            resp.group(g);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_paths_map_to_queues() {
        assert_eq!(target_of("/ipp/print"), Target::Printer(None));
        assert_eq!(
            target_of("/ipp/print/secure"),
            Target::Printer(Some("secure".into()))
        );
        assert_eq!(
            target_of("/printers/secure"),
            Target::Printer(Some("secure".into()))
        );
        assert_eq!(target_of("/jobs/12"), Target::Jobs);
        assert_eq!(target_of("/ipp/print/a/b"), Target::Unknown);
        assert_eq!(target_of("/admin"), Target::Unknown);
    }

    fn request(groups: Vec<Group>) -> Message {
        Message {
            version: (2, 0),
            code: op::GET_PRINTER_ATTRIBUTES,
            request_id: 1,
            groups,
        }
    }

    #[test]
    fn request_checks_follow_rfc_8011_section_4_1() {
        let mut op = Group::new(group::OPERATION);
        op.push(Attribute::new(
            "attributes-charset",
            Value::charset("utf-8"),
        ));
        op.push(Attribute::new(
            "attributes-natural-language",
            Value::language("en"),
        ));
        op.push(Attribute::new(
            "printer-uri",
            Value::uri("ipp://x/ipp/print"),
        ));
        assert_eq!(check_request(&request(vec![op.clone()])), Ok(()));
        let mut m = request(vec![op.clone()]);
        m.request_id = 0;
        assert_eq!(check_request(&m).unwrap_err().0, status::BAD_REQUEST);
        let mut m = request(vec![op.clone()]);
        m.version = (0, 0);
        assert_eq!(
            check_request(&m).unwrap_err().0,
            status::VERSION_NOT_SUPPORTED
        );
        let mut swapped = op.clone();
        swapped.attributes.swap(0, 1);
        assert_eq!(
            check_request(&request(vec![swapped])).unwrap_err().0,
            status::BAD_REQUEST
        );
        let mut no_target = op;
        no_target.attributes.pop();
        assert_eq!(
            check_request(&request(vec![no_target])).unwrap_err().0,
            status::BAD_REQUEST
        );
    }
}
