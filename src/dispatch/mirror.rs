//! What an IPP printer of printroute says it can print, and what it
//! refuses: the capabilities of the devices its workflow forwards to
//! (asked over IPP, or configured for socket and lpd devices), intersected
//! over a pool so that a job accepted can go to any device of it; and the
//! check of a job's format and job template attributes against them
//! (RFC 8011 sections 3.2.1.2 and 4.2.1.2, PWG 5100.14).
//!
//! Pure: attribute values in, attribute values out. Fetching and caching
//! live in [`super::capabilities`].

use crate::config::{media_dimensions, Declared};
use crate::wire::ipp::{self as codec, group, tag, Attribute, Group, Message, Value};

/// Printer attributes printroute answers itself, never a device's: who and
/// where the printer is, its state and queue, the operations and protocol
/// features printroute implements. Everything else a device says is a
/// capability and is mirrored.
pub const OWNED: &[&str] = &[
    "charset-configured",
    "charset-supported",
    "document-password-supported",
    "generated-natural-language-supported",
    "ipp-features-supported",
    "ipp-versions-supported",
    "job-hold-until-default",
    "job-hold-until-supported",
    "job-ids-supported",
    "job-k-octets-supported",
    "job-password-encryption-supported",
    "job-password-supported",
    "multiple-document-jobs-supported",
    "multiple-operation-time-out",
    "multiple-operation-time-out-action",
    "natural-language-configured",
    "operations-supported",
    "overrides-supported",
    "pdl-override-supported",
    "preferred-attributes-supported",
    "printer-config-change-date-time",
    "printer-config-change-time",
    "printer-current-time",
    "printer-dns-sd-name",
    "printer-geo-location",
    "printer-get-attributes-supported",
    "printer-icons",
    "printer-id",
    "printer-info",
    "printer-is-accepting-jobs",
    "printer-location",
    "printer-make-and-model",
    "printer-more-info",
    "printer-name",
    "printer-organization",
    "printer-organizational-unit",
    "printer-settable-attributes-supported",
    "printer-state",
    "printer-state-change-date-time",
    "printer-state-change-time",
    "printer-state-message",
    "printer-state-reasons",
    "printer-strings-languages-supported",
    "printer-strings-uri",
    "printer-supply-info-uri",
    "printer-up-time",
    "printer-uri-supported",
    "printer-uuid",
    "queued-job-count",
    "reference-uri-schemes-supported",
    "uri-authentication-supported",
    "uri-security-supported",
    "which-jobs-supported",
];

/// Prefixes of printer attributes printroute answers itself (features it
/// does not offer: notifications, printer-side URIs).
const OWNED_PREFIXES: &[&str] = &["notify-", "xri-", "printer-alert", "destination-"];

/// Attributes that describe one device's supplies, trays and alerts: shown
/// for a single-device printer, never for a pool (whose devices differ).
const ONE_DEVICE_PREFIXES: &[&str] = &[
    "marker-",
    "printer-supply",
    "printer-input-tray",
    "printer-output-tray",
    "printer-firmware-",
    "printer-device-id",
    "printer-serial-number",
];

/// Job template attributes printroute handles itself; never checked
/// against the devices nor passed on.
const OWN_TEMPLATE: &[&str] = &["job-hold-until", "job-originating-host-name"];

/// True for a job template attribute printroute handles itself.
pub fn is_own_template(name: &str) -> bool {
    OWN_TEMPLATE.contains(&name)
}

/// Operation attributes a device lists in `job-creation-attributes-supported`
/// that printroute does not pass on: they stay out of that list.
const NOT_PASSED_ON: &[&str] = &[
    "document-access",
    "document-charset",
    "document-message",
    "document-metadata",
    "document-natural-language",
    "document-password",
    "job-password",
    "job-password-encryption",
    "overrides",
    "job-mandatory-attributes",
];

/// True for an attribute a device's answer may set for printroute's printer.
pub fn is_capability(name: &str) -> bool {
    !OWNED.contains(&name) && !OWNED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The capability attributes of a device's Get-Printer-Attributes answer.
pub fn capabilities_of(printer: &[Attribute]) -> Vec<Attribute> {
    printer
        .iter()
        .filter(|a| is_capability(&a.name))
        .map(|a| {
            if a.name == "job-creation-attributes-supported" {
                let values = a
                    .values
                    .iter()
                    .filter(|v| v.as_str().is_none_or(|s| !NOT_PASSED_ON.contains(&s)))
                    .cloned()
                    .collect();
                Attribute::many(&a.name, values)
            } else {
                a.clone()
            }
        })
        .filter(|a| !a.values.is_empty())
        .collect()
}

fn media_size(x: i32, y: i32) -> Value {
    Value::Collection(vec![
        Attribute::new("x-dimension", Value::Integer(x)),
        Attribute::new("y-dimension", Value::Integer(y)),
    ])
}

/// Margins (hundredths of mm) a device that cannot be asked is taken to
/// need on every edge: what most office printers cannot print into.
pub const DECLARED_MARGIN: i32 = 423;

/// The capabilities of a `socket://` or `lpd://` device, from its config.
pub fn declared(d: &Declared) -> Vec<Attribute> {
    let kw = |v: &[String]| v.iter().map(|s| Value::keyword(s)).collect::<Vec<_>>();
    let sized: Vec<(&String, (i32, i32))> = d
        .media
        .iter()
        .filter_map(|m| Some((m, media_dimensions(m)?)))
        .collect();
    let margin = |n: &str| Attribute::new(n, Value::Integer(DECLARED_MARGIN));
    let col = |name: &str, (x, y): (i32, i32)| {
        Value::Collection(vec![
            Attribute::new("media-size", media_size(x, y)),
            Attribute::new("media-size-name", Value::keyword(name)),
            margin("media-bottom-margin"),
            margin("media-left-margin"),
            margin("media-right-margin"),
            margin("media-top-margin"),
        ])
    };
    let modes: &[&str] = if d.color {
        &["monochrome", "color"]
    } else {
        &["monochrome"]
    };
    let mut out = vec![
        Attribute::many(
            "document-format-supported",
            d.formats.iter().map(|f| Value::mime(f)).collect(),
        ),
        // The bytes reach the device as they are: it gets no compressed document.
        Attribute::new("compression-supported", Value::keyword("none")),
        Attribute::new("color-supported", Value::Boolean(d.color)),
        Attribute::new("copies-default", Value::Integer(1)),
        Attribute::new("copies-supported", Value::Range(1, 1)),
        Attribute::new("finishings-default", Value::Enum(3)),
        Attribute::new("finishings-supported", Value::Enum(3)),
        Attribute::many("media-supported", kw(&d.media)),
        Attribute::many("media-ready", kw(&d.media)),
        Attribute::many(
            "media-size-supported",
            sized.iter().map(|(_, (x, y))| media_size(*x, *y)).collect(),
        ),
        Attribute::many(
            "media-col-database",
            sized.iter().map(|(n, s)| col(n, *s)).collect(),
        ),
        Attribute::many(
            "media-col-ready",
            sized.iter().map(|(n, s)| col(n, *s)).collect(),
        ),
        Attribute::many(
            "media-col-supported",
            [
                "media-bottom-margin",
                "media-left-margin",
                "media-right-margin",
                "media-size",
                "media-size-name",
                "media-top-margin",
            ]
            .iter()
            .map(|s| Value::keyword(s))
            .collect(),
        ),
        Attribute::new(
            "media-bottom-margin-supported",
            Value::Integer(DECLARED_MARGIN),
        ),
        Attribute::new(
            "media-left-margin-supported",
            Value::Integer(DECLARED_MARGIN),
        ),
        Attribute::new(
            "media-right-margin-supported",
            Value::Integer(DECLARED_MARGIN),
        ),
        Attribute::new(
            "media-top-margin-supported",
            Value::Integer(DECLARED_MARGIN),
        ),
        Attribute::many(
            "print-color-mode-supported",
            modes.iter().map(|s| Value::keyword(s)).collect(),
        ),
        Attribute::new("print-color-mode-default", Value::keyword("monochrome")),
        Attribute::many("sides-supported", kw(&d.sides)),
        Attribute::new("sides-default", Value::keyword("one-sided")),
        Attribute::new("orientation-requested-supported", Value::Enum(3)),
        Attribute::new("print-quality-supported", Value::Enum(4)),
        Attribute::new("print-quality-default", Value::Enum(4)),
        Attribute::new(
            "printer-resolution-supported",
            Value::Resolution(600, 600, 3),
        ),
        Attribute::new("printer-resolution-default", Value::Resolution(600, 600, 3)),
        Attribute::many(
            "job-creation-attributes-supported",
            [
                "copies",
                "finishings",
                "media",
                "media-col",
                "orientation-requested",
                "print-color-mode",
                "print-quality",
                "printer-resolution",
                "sides",
            ]
            .iter()
            .map(|s| Value::keyword(s))
            .collect(),
        ),
    ];
    if let Some(m) = d.media.first() {
        out.push(Attribute::new("media-default", Value::keyword(m)));
        if let Some((n, s)) = sized.first() {
            out.push(Attribute::new("media-col-default", col(n, *s)));
        }
    }
    out.retain(|a| !a.values.is_empty());
    out
}

/// Two values are the same capability: strings compare by text whatever
/// their tag (a `name` and a `keyword` of `job-sheets`), the rest exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn is_margin(name: &str) -> bool {
    name.starts_with("media-") && name.ends_with("-margin-supported")
}

/// What every device of a pool can do: attributes all of them have,
/// each intersected as its kind asks (RFC 8011 section 5.4: `xxx-supported`
/// value sets; ranges narrowed; booleans and-ed; `xxx-default` kept when
/// still supported). One device's attributes come back unchanged.
pub fn intersect(sets: &[Vec<Attribute>]) -> Vec<Attribute> {
    let Some((first, rest)) = sets.split_first() else {
        return Vec::new();
    };
    if rest.is_empty() {
        return first.clone();
    }
    let mut out = Vec::new();
    for a in first {
        if ONE_DEVICE_PREFIXES.iter().any(|p| a.name.starts_with(p)) {
            continue;
        }
        let others: Option<Vec<&Attribute>> = rest
            .iter()
            .map(|s| s.iter().find(|b| b.name == a.name))
            .collect();
        let Some(others) = others else {
            continue;
        };
        if let Some(merged) = merge(a, &others) {
            out.push(merged);
        }
    }
    // Defaults: kept when their value is still supported, else the first supported value.
    let supported: Vec<Attribute> = out.clone();
    for a in out.iter_mut() {
        let Some(base) = a.name.strip_suffix("-default") else {
            continue;
        };
        let Some(s) = supported
            .iter()
            .find(|s| s.name == format!("{base}-supported"))
        else {
            continue;
        };
        let ok = a
            .values
            .iter()
            .all(|v| s.values.iter().any(|w| same(v, w) || value_in(v, w)));
        if !ok {
            if let Some(v) = s.values.first().filter(|v| !matches!(v, Value::Range(..))) {
                a.values = vec![v.clone()];
            }
        }
    }
    out
}

/// True when `v` lies in the range `w`.
fn value_in(v: &Value, w: &Value) -> bool {
    matches!((v, w), (Value::Integer(i), Value::Range(lo, hi)) if lo <= i && i <= hi)
}

fn merge(a: &Attribute, others: &[&Attribute]) -> Option<Attribute> {
    let name = a.name.as_str();
    let all = || std::iter::once(a).chain(others.iter().copied());
    // Booleans: what every device can (color-supported, page-ranges-supported).
    if a.values.len() == 1 {
        if let Value::Boolean(_) = a.values[0] {
            let b = all().all(|x| matches!(x.values.as_slice(), [Value::Boolean(true)]));
            return Some(Attribute::new(name, Value::Boolean(b)));
        }
    }
    // Ranges: the part every device covers (copies-supported).
    if let [Value::Range(..)] = a.values.as_slice() {
        let mut lo = i32::MIN;
        let mut hi = i32::MAX;
        for x in all() {
            match x.values.as_slice() {
                [Value::Range(l, h)] => {
                    lo = lo.max(*l);
                    hi = hi.min(*h);
                }
                _ => return None,
            }
        }
        return (lo <= hi).then(|| Attribute::new(name, Value::Range(lo, hi)));
    }
    if name.ends_with("-supported") || name.ends_with("-database") || name.ends_with("-ready") {
        let values: Vec<Value> = a
            .values
            .iter()
            .filter(|v| others.iter().all(|o| o.values.iter().any(|w| same(v, w))))
            .cloned()
            .collect();
        if !values.is_empty() {
            return Some(Attribute::many(name, values));
        }
        // Margins: the largest one every device can print with.
        if is_margin(name) {
            let max = all()
                .flat_map(|x| x.values.iter().filter_map(Value::as_int))
                .max()?;
            return Some(Attribute::new(name, Value::Integer(max)));
        }
        return None;
    }
    if name.ends_with("-default") {
        return Some(a.clone());
    }
    // Anything else: kept when every device says the same.
    others
        .iter()
        .all(|o| {
            o.values.len() == a.values.len()
                && o.values.iter().zip(&a.values).all(|(x, y)| same(x, y))
        })
        .then(|| a.clone())
}

/// The printer state of a pool from its devices' `printer-state` and
/// `printer-state-reasons`: stopped only when every device is, with the
/// reasons every device gives; else idle with none.
pub fn pool_state(devices: &[(i32, Vec<String>)]) -> (i32, Vec<String>) {
    const STOPPED: i32 = 5;
    if devices.is_empty() || devices.iter().any(|(s, _)| *s != STOPPED) {
        return (3, vec!["none".to_owned()]);
    }
    let mut reasons: Vec<String> = devices[0]
        .1
        .iter()
        .filter(|r| *r != "none" && devices.iter().all(|(_, rs)| rs.contains(r)))
        .cloned()
        .collect();
    if reasons.is_empty() {
        reasons.push("none".to_owned());
    }
    (STOPPED, reasons)
}

/// True when the devices print documents of `format` (`application/octet-stream`
/// only when a device takes unknown bytes as they are).
pub fn format_supported(caps: &[Attribute], format: &str) -> bool {
    caps.iter()
        .find(|a| a.name == "document-format-supported")
        .is_some_and(|a| {
            a.values
                .iter()
                .any(|v| v.as_str().is_some_and(|f| f.eq_ignore_ascii_case(format)))
        })
}

/// A job's template attributes split into those the devices support and
/// those they do not.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    /// Supported: passed on to IPP devices.
    pub accepted: Vec<Attribute>,
    /// Not supported: go back in the unsupported group (RFC 8011 4.1.7).
    pub unsupported: Vec<Attribute>,
}

fn find<'a>(caps: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    caps.iter().find(|a| a.name == name)
}

/// True when a `media-size` collection matches one of `media-size-supported`
/// (whose dimensions may be ranges, for custom sizes).
fn size_supported(caps: &[Attribute], size: &Value) -> bool {
    let Value::Collection(m) = size else {
        return false;
    };
    let dim = |c: &[Attribute], n: &str| {
        c.iter()
            .find(|a| a.name == n)
            .and_then(|a| a.values.first().cloned())
    };
    let (Some(Value::Integer(x)), Some(Value::Integer(y))) =
        (dim(m, "x-dimension"), dim(m, "y-dimension"))
    else {
        return false;
    };
    let fits = |v: Option<Value>, n: i32| match v {
        Some(Value::Integer(i)) => i == n,
        Some(Value::Range(lo, hi)) => lo <= n && n <= hi,
        _ => false,
    };
    find(caps, "media-size-supported").is_some_and(|a| {
        a.values.iter().any(|s| match s {
            Value::Collection(c) => {
                fits(dim(c, "x-dimension"), x) && fits(dim(c, "y-dimension"), y)
            }
            _ => false,
        })
    })
}

/// One value of a job template attribute against its `xxx-supported`.
fn value_supported(caps: &[Attribute], name: &str, v: &Value) -> bool {
    if name == "media-col" {
        let Value::Collection(members) = v else {
            return false;
        };
        let listed = find(caps, "media-col-supported");
        return members.iter().all(|m| {
            if listed.is_some_and(|l| !l.values.iter().any(|x| x.as_str() == Some(&m.name))) {
                return false;
            }
            match m.name.as_str() {
                "media-size" => m.values.iter().all(|s| size_supported(caps, s)),
                "media-size-name" => m.values.iter().all(|s| value_supported(caps, "media", s)),
                "media-key" => true,
                n => m.values.iter().all(|s| value_supported(caps, n, s)),
            }
        });
    }
    let Some(s) = find(caps, &format!("{name}-supported")) else {
        return false;
    };
    match (v, s.values.as_slice()) {
        (_, [Value::Boolean(b)]) => *b,
        // `job-priority-supported` and the like: an integer is the most.
        (Value::Integer(i), [Value::Integer(max)]) if !is_margin(&s.name) => (1..=*max).contains(i),
        _ => s
            .values
            .iter()
            .any(|w| same(v, w) || value_in(v, w) || template_match(v, w)),
    }
}

/// A `finishings-col` value is supported when one of `finishings-col-supported`
/// (or the database) has its `finishing-template`.
fn template_match(v: &Value, w: &Value) -> bool {
    let key = |x: &Value| match x {
        Value::Collection(c) => c
            .iter()
            .find(|a| a.name == "finishing-template")
            .and_then(|a| a.values.first()?.as_str().map(str::to_owned)),
        _ => None,
    };
    matches!((key(v), key(w)), (Some(a), Some(b)) if a == b)
}

/// Checks a request's job template attributes (its job group) against the
/// devices' capabilities (RFC 8011 section 4.2.1.2: an attribute or value
/// not supported is ignored, or the job refused under `ipp-attribute-fidelity`).
pub fn check_template(caps: &[Attribute], job: &[Attribute]) -> Checked {
    let mut out = Checked::default();
    let finishings_col = find(caps, "finishings-col-database");
    for a in job {
        if OWN_TEMPLATE.contains(&a.name.as_str()) {
            continue;
        }
        let ok = !a.values.is_empty()
            && a.values.iter().all(|v| {
                value_supported(caps, &a.name, v)
                    || (a.name == "finishings-col"
                        && finishings_col
                            .is_some_and(|d| d.values.iter().any(|w| template_match(v, w))))
            });
        if ok {
            out.accepted.push(a.clone());
        } else {
            out.unsupported.push(a.clone());
        }
    }
    out
}

/// The accepted job template attributes as a job record keeps them:
/// the RFC 8010 encoding of a job group, lower-case hex.
pub fn encode_job_attributes(attrs: &[Attribute]) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let mut g = Group::new(group::JOB);
    g.attributes = attrs.to_vec();
    let bytes = codec::encode(&Message {
        version: (2, 0),
        code: 0,
        request_id: 1,
        groups: vec![g],
    });
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The job group a job record keeps (see [`encode_job_attributes`]); none
/// when absent or unreadable.
pub fn decode_job_attributes(hex: &str) -> Option<Group> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let (m, _) = codec::decode(&bytes?, codec::REQUEST_LIMITS).ok()?;
    m.groups.into_iter().find(|g| g.tag == group::JOB)
}

/// The `compression` of a document printroute passes on as it came
/// (RFC 8011 section 4.2.1.1; the devices list it in `compression-supported`).
/// An operation attribute, kept in the job record's attribute group under
/// this name and sent in the operation group of the outbound request.
pub const COMPRESSION: &str = "compression";

/// True when every device of the printer takes documents compressed with
/// `compression` (`none` always).
pub fn compression_supported(caps: &[Attribute], compression: &str) -> bool {
    compression == "none"
        || find(caps, "compression-supported")
            .is_some_and(|a| a.values.iter().any(|v| v.as_str() == Some(compression)))
}

/// A job record's attributes (see [`encode_job_attributes`]) with the
/// document's compression set to `compression` (none: uncompressed).
pub fn with_compression(recorded: Option<&str>, compression: Option<Attribute>) -> Option<String> {
    let mut attrs = recorded
        .and_then(decode_job_attributes)
        .map(|g| g.attributes)
        .unwrap_or_default();
    attrs.retain(|a| a.name != COMPRESSION);
    attrs.extend(compression);
    encode_job_attributes(&attrs)
}

/// The compression of a job's document as the record keeps it (see
/// [`COMPRESSION`]); none when it came uncompressed.
pub fn outbound_compression(job: &crate::store::job::Job) -> Option<Attribute> {
    job.ipp_job_attributes
        .as_deref()
        .and_then(decode_job_attributes)?
        .attributes
        .into_iter()
        .find(|a| a.name == COMPRESSION)
}

/// The job group of an outbound Print-Job or Create-Job: the job template
/// attributes printroute accepted, and `job-originating-host-name` (the
/// address the job came from, RFC 8011 section 5.3.17).
pub fn outbound_job_group(job: &crate::store::job::Job) -> Group {
    let mut g = job
        .ipp_job_attributes
        .as_deref()
        .and_then(decode_job_attributes)
        .unwrap_or_else(|| Group::new(group::JOB));
    g.attributes
        .retain(|a| !is_own_template(&a.name) && a.name != COMPRESSION);
    g.push(Attribute::new(
        "job-originating-host-name",
        Value::name(&job.peer.ip().to_string()),
    ));
    g
}

/// A stable `urn:uuid:` for a printer (RFC 4122 layout, name-based on
/// SHA-256): the same tenant, listener and queue give the same one across
/// restarts and nodes.
pub fn printer_uuid(tenant: &str, listener: &str, queue: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"printroute printer\0");
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(listener.as_bytes());
    h.update(b"\0");
    h.update(queue.unwrap_or("").as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// The no-value out-of-band value, for attributes that have none now.
pub fn no_value() -> Value {
    Value::OutOfBand(tag::NO_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kws(name: &str, v: &[&str]) -> Attribute {
        Attribute::many(name, v.iter().map(|s| Value::keyword(s)).collect())
    }

    fn duplex_color() -> Vec<Attribute> {
        vec![
            Attribute::many(
                "document-format-supported",
                vec![Value::mime("application/pdf"), Value::mime("image/urf")],
            ),
            kws("sides-supported", &["one-sided", "two-sided-long-edge"]),
            kws("sides-default", &["two-sided-long-edge"]),
            Attribute::new("color-supported", Value::Boolean(true)),
            Attribute::new("copies-supported", Value::Range(1, 999)),
            Attribute::many(
                "media-left-margin-supported",
                vec![Value::Integer(0), Value::Integer(340)],
            ),
            Attribute::new("printer-make-and-model", Value::text("A")),
            Attribute::new("marker-levels", Value::Integer(50)),
            Attribute::new("pages-per-minute", Value::Integer(20)),
        ]
    }

    fn simplex_mono() -> Vec<Attribute> {
        vec![
            Attribute::many(
                "document-format-supported",
                vec![
                    Value::mime("application/pdf"),
                    Value::mime("application/postscript"),
                ],
            ),
            kws("sides-supported", &["one-sided"]),
            kws("sides-default", &["one-sided"]),
            Attribute::new("color-supported", Value::Boolean(false)),
            Attribute::new("copies-supported", Value::Range(1, 99)),
            Attribute::many("media-left-margin-supported", vec![Value::Integer(635)]),
            Attribute::new("marker-levels", Value::Integer(50)),
            Attribute::new("pages-per-minute", Value::Integer(20)),
        ]
    }

    #[test]
    fn a_pool_prints_what_every_device_prints() {
        let p = intersect(&[duplex_color(), simplex_mono()]);
        let get = |n: &str| p.iter().find(|a| a.name == n).map(|a| a.values.clone());
        assert_eq!(
            get("document-format-supported"),
            Some(vec![Value::mime("application/pdf")])
        );
        assert_eq!(
            get("sides-supported"),
            Some(vec![Value::keyword("one-sided")])
        );
        // The first device's default is no longer supported: the first supported value instead.
        assert_eq!(
            get("sides-default"),
            Some(vec![Value::keyword("one-sided")])
        );
        assert_eq!(get("color-supported"), Some(vec![Value::Boolean(false)]));
        assert_eq!(get("copies-supported"), Some(vec![Value::Range(1, 99)]));
        // No common margin: the widest one, which both can print with.
        assert_eq!(
            get("media-left-margin-supported"),
            Some(vec![Value::Integer(635)])
        );
        // One device's supplies and what only one says are not the pool's.
        assert_eq!(get("marker-levels"), None);
        assert_eq!(get("printer-make-and-model"), None);
        assert_eq!(get("pages-per-minute"), Some(vec![Value::Integer(20)]));
        // One device: unchanged.
        assert_eq!(intersect(&[duplex_color()]), duplex_color());
    }

    #[test]
    fn jobs_are_checked_against_the_supported_values() {
        let caps = intersect(&[duplex_color()]);
        assert!(format_supported(&caps, "application/pdf"));
        assert!(!format_supported(&caps, "application/postscript"));
        let job = vec![
            kws("sides", &["two-sided-long-edge"]),
            Attribute::new("copies", Value::Integer(1000)),
            kws("print-color-mode", &["color"]),
            kws("job-hold-until", &["indefinite"]),
        ];
        let c = check_template(&caps, &job);
        assert_eq!(c.accepted, vec![job[0].clone()]);
        // copies out of range; print-color-mode not listed at all.
        assert_eq!(c.unsupported, vec![job[1].clone(), job[2].clone()]);
    }

    #[test]
    fn media_col_is_checked_member_by_member() {
        let d = Declared::default();
        let caps = declared(&d);
        let col = |x: i32, y: i32| {
            Attribute::new(
                "media-col",
                Value::Collection(vec![Attribute::new("media-size", media_size(x, y))]),
            )
        };
        let c = check_template(&caps, &[col(21000, 29700), col(10477, 24130)]);
        assert_eq!(c.accepted.len(), 1);
        assert_eq!(c.unsupported, vec![col(10477, 24130)]);
        let c = check_template(
            &caps,
            &[
                kws("media", &["na_letter_8.5x11in"]),
                kws("sides", &["two-sided-long-edge"]),
            ],
        );
        assert_eq!(c.unsupported, vec![kws("sides", &["two-sided-long-edge"])]);
    }

    #[test]
    fn declared_devices_default_to_postscript_and_pcl() {
        let caps = declared(&Declared::default());
        assert!(format_supported(&caps, "application/postscript"));
        assert!(format_supported(&caps, "application/vnd.hp-pcl"));
        assert!(!format_supported(&caps, "application/pdf"));
    }

    #[test]
    fn compressed_documents_go_only_to_devices_that_take_them() {
        let eve = vec![kws("compression-supported", &["deflate", "gzip", "none"])];
        assert!(compression_supported(&eve, "gzip"));
        assert!(!compression_supported(&eve, "compress"));
        let socket = declared(&Declared::default());
        assert!(compression_supported(&socket, "none"));
        assert!(!compression_supported(&socket, "gzip"));
        // A pool of both: only uncompressed documents.
        let pool = intersect(&[eve, socket]);
        assert!(!compression_supported(&pool, "gzip"));
        assert!(compression_supported(&pool, "none"));
        // Send-Document sets the compression of the job's one document.
        let sides = kws("sides", &["one-sided"]);
        let gzip = kws(COMPRESSION, &["gzip"]);
        let kept = encode_job_attributes(std::slice::from_ref(&sides));
        let packed = with_compression(kept.as_deref(), Some(gzip.clone())).unwrap();
        assert_eq!(
            decode_job_attributes(&packed).unwrap().attributes,
            [sides.clone(), gzip]
        );
        let plain = with_compression(Some(&packed), None).unwrap();
        assert_eq!(decode_job_attributes(&plain).unwrap().attributes, [sides]);
    }

    #[test]
    fn job_attributes_survive_the_record() {
        let attrs = vec![
            kws("sides", &["two-sided-long-edge"]),
            Attribute::new(
                "media-col",
                Value::Collection(vec![Attribute::new("media-size", media_size(21000, 29700))]),
            ),
        ];
        let hex = encode_job_attributes(&attrs).unwrap();
        assert_eq!(decode_job_attributes(&hex).unwrap().attributes, attrs);
        assert_eq!(encode_job_attributes(&[]), None);
        assert!(decode_job_attributes("zz").is_none());
    }

    #[test]
    fn pool_state_is_stopped_only_when_every_device_is() {
        let stopped = |r: &[&str]| (5, r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            pool_state(&[
                stopped(&["media-empty", "toner-low"]),
                stopped(&["media-empty"])
            ]),
            (5, vec!["media-empty".to_owned()])
        );
        assert_eq!(pool_state(&[stopped(&["media-empty"]), (3, vec![])]).0, 3);
    }

    #[test]
    fn printer_uuids_are_stable_and_distinct() {
        let a = printer_uuid("acme", "ipp", None);
        assert_eq!(a, printer_uuid("acme", "ipp", None));
        assert_ne!(a, printer_uuid("acme", "ipp", Some("secure")));
        assert_ne!(a, printer_uuid("globex", "ipp", None));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
    }
}
