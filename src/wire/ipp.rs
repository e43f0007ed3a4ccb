//! IPP message encoding (RFC 8010 section 3): a pure decoder and encoder
//! over byte slices, with every limit checked while parsing.
//!
//! The decoder is incremental in the simplest way: it is handed the bytes
//! received so far and answers [`DecodeError::Incomplete`] until the
//! `end-of-attributes-tag` has arrived; what follows is the document, which
//! the caller streams to the spool without it ever passing through here.
//!
//! We keep our own codec rather than the `ipp` crate (8.x) because the
//! limits below must hold *while* parsing hostile input (attribute count,
//! value lengths per syntax, collection depth, bytes before the document):
//! the crate's parser has no such settings (its `IppParseError` knows only
//! invalid tags, invalid collections and I/O), so a peer could make it
//! build any number of attributes within one request. Decoding here is a
//! pure function of bytes, which also lets the property tests drive it.

use std::fmt;

/// IPP status codes (RFC 8011 Appendix B).
pub mod status {
    /// `successful-ok`.
    pub const OK: u16 = 0x0000;
    /// `successful-ok-ignored-or-substituted-attributes`.
    pub const OK_IGNORED: u16 = 0x0001;
    /// `client-error-bad-request`.
    pub const BAD_REQUEST: u16 = 0x0400;
    /// `client-error-not-authorized`.
    pub const NOT_AUTHORIZED: u16 = 0x0403;
    /// `client-error-not-possible`.
    pub const NOT_POSSIBLE: u16 = 0x0404;
    /// `client-error-timeout`.
    pub const REQUEST_TIMEOUT: u16 = 0x0405;
    /// `client-error-not-found`.
    pub const NOT_FOUND: u16 = 0x0406;
    /// `client-error-request-entity-too-large`.
    pub const REQUEST_ENTITY_TOO_LARGE: u16 = 0x0408;
    /// `client-error-request-value-too-long`.
    pub const REQUEST_VALUE_TOO_LONG: u16 = 0x0409;
    /// `client-error-document-format-not-supported`.
    pub const DOCUMENT_FORMAT_NOT_SUPPORTED: u16 = 0x040a;
    /// `client-error-attributes-or-values-not-supported`.
    pub const ATTRIBUTES_NOT_SUPPORTED: u16 = 0x040b;
    /// `client-error-charset-not-supported`.
    pub const CHARSET_NOT_SUPPORTED: u16 = 0x040d;
    /// `client-error-compression-not-supported`.
    pub const COMPRESSION_NOT_SUPPORTED: u16 = 0x040f;
    /// `server-error-internal-error`.
    pub const INTERNAL_ERROR: u16 = 0x0500;
    /// `server-error-operation-not-supported`.
    pub const OPERATION_NOT_SUPPORTED: u16 = 0x0501;
    /// `server-error-service-unavailable`.
    pub const SERVICE_UNAVAILABLE: u16 = 0x0502;
    /// `server-error-version-not-supported`.
    pub const VERSION_NOT_SUPPORTED: u16 = 0x0503;
    /// `server-error-temporary-error`.
    pub const TEMPORARY_ERROR: u16 = 0x0505;
    /// `server-error-not-accepting-jobs`.
    pub const NOT_ACCEPTING_JOBS: u16 = 0x0506;
    /// `server-error-busy`.
    pub const BUSY: u16 = 0x0507;
    /// `server-error-multiple-document-jobs-not-supported`.
    pub const MULTIPLE_DOCUMENT_JOBS_NOT_SUPPORTED: u16 = 0x0509;
}

/// Operation ids (RFC 8011 section 5.4.15, PWG 5100.11 for Close-Job and Cancel-My-Jobs).
pub mod op {
    /// Print-Job.
    pub const PRINT_JOB: u16 = 0x0002;
    /// Validate-Job.
    pub const VALIDATE_JOB: u16 = 0x0004;
    /// Create-Job.
    pub const CREATE_JOB: u16 = 0x0005;
    /// Send-Document.
    pub const SEND_DOCUMENT: u16 = 0x0006;
    /// Cancel-Job.
    pub const CANCEL_JOB: u16 = 0x0008;
    /// Get-Job-Attributes.
    pub const GET_JOB_ATTRIBUTES: u16 = 0x0009;
    /// Get-Jobs.
    pub const GET_JOBS: u16 = 0x000a;
    /// Get-Printer-Attributes.
    pub const GET_PRINTER_ATTRIBUTES: u16 = 0x000b;
    /// Hold-Job.
    pub const HOLD_JOB: u16 = 0x000c;
    /// Release-Job.
    pub const RELEASE_JOB: u16 = 0x000d;
    /// Cancel-My-Jobs.
    pub const CANCEL_MY_JOBS: u16 = 0x0039;
    /// Close-Job.
    pub const CLOSE_JOB: u16 = 0x003b;
    /// Identify-Printer (PWG 5100.13 section 5.2).
    pub const IDENTIFY_PRINTER: u16 = 0x003c;
    /// Get-Printers (PWG 5100.22 section 7.1.7): a system's printers.
    pub const GET_PRINTERS: u16 = 0x004f;
    /// CUPS-Get-Default (CUPS extension): the server's default printer.
    pub const CUPS_GET_DEFAULT: u16 = 0x4001;
    /// CUPS-Get-Printers (CUPS extension): the server's printers.
    pub const CUPS_GET_PRINTERS: u16 = 0x4002;
}

/// Delimiter tags (RFC 8010 section 3.5.1).
pub mod group {
    /// `operation-attributes-tag`.
    pub const OPERATION: u8 = 0x01;
    /// `job-attributes-tag`.
    pub const JOB: u8 = 0x02;
    /// `end-of-attributes-tag`.
    pub const END: u8 = 0x03;
    /// `printer-attributes-tag`.
    pub const PRINTER: u8 = 0x04;
    /// `unsupported-attributes-tag`.
    pub const UNSUPPORTED: u8 = 0x05;
}

/// Value tags (RFC 8010 section 3.5.2).
pub mod tag {
    /// Out-of-band `unsupported`.
    pub const UNSUPPORTED: u8 = 0x10;
    /// Out-of-band `unknown`.
    pub const UNKNOWN: u8 = 0x12;
    /// Out-of-band `no-value`.
    pub const NO_VALUE: u8 = 0x13;
    /// `integer`.
    pub const INTEGER: u8 = 0x21;
    /// `boolean`.
    pub const BOOLEAN: u8 = 0x22;
    /// `enum`.
    pub const ENUM: u8 = 0x23;
    /// `octetString`.
    pub const OCTET_STRING: u8 = 0x30;
    /// `dateTime`.
    pub const DATE_TIME: u8 = 0x31;
    /// `resolution`.
    pub const RESOLUTION: u8 = 0x32;
    /// `rangeOfInteger`.
    pub const RANGE_OF_INTEGER: u8 = 0x33;
    /// `begCollection`.
    pub const BEG_COLLECTION: u8 = 0x34;
    /// `textWithLanguage`.
    pub const TEXT_WITH_LANGUAGE: u8 = 0x35;
    /// `nameWithLanguage`.
    pub const NAME_WITH_LANGUAGE: u8 = 0x36;
    /// `endCollection`.
    pub const END_COLLECTION: u8 = 0x37;
    /// `textWithoutLanguage`.
    pub const TEXT: u8 = 0x41;
    /// `nameWithoutLanguage`.
    pub const NAME: u8 = 0x42;
    /// `keyword`.
    pub const KEYWORD: u8 = 0x44;
    /// `uri`.
    pub const URI: u8 = 0x45;
    /// `uriScheme`.
    pub const URI_SCHEME: u8 = 0x46;
    /// `charset`.
    pub const CHARSET: u8 = 0x47;
    /// `naturalLanguage`.
    pub const NATURAL_LANGUAGE: u8 = 0x48;
    /// `mimeMediaType`.
    pub const MIME_MEDIA_TYPE: u8 = 0x49;
    /// `memberAttrName`.
    pub const MEMBER_ATTR_NAME: u8 = 0x4a;
    /// The extension tag: the real tag follows in the value (RFC 8010 3.5.2).
    pub const EXTENSION: u8 = 0x7f;
}

/// Limits of one decode.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most attributes plus values (collection members included) in one message.
    pub max_attributes: usize,
    /// Deepest nesting of collections.
    pub max_depth: usize,
    /// Apply the RFC 8011 section 5.1 `MAX` lengths of each syntax.
    pub syntax_lengths: bool,
}

/// Most attributes plus values a request may carry: CUPS's largest
/// legitimate requests (Create-Printer with every attribute) stay far below.
pub const MAX_REQUEST_ATTRIBUTES: usize = 2_000;

/// Deepest collection nesting in a request; `media-col` → `media-size` is 2,
/// PWG 5100.x templates reach 4.
pub const MAX_REQUEST_DEPTH: usize = 8;

/// Limits for requests from clients: strict.
pub const REQUEST_LIMITS: Limits = Limits {
    max_attributes: MAX_REQUEST_ATTRIBUTES,
    max_depth: MAX_REQUEST_DEPTH,
    syntax_lengths: true,
};

/// Limits for responses from printers we forward to: a printer's full
/// attribute set is large (thousands of values), but still bounded.
pub const RESPONSE_LIMITS: Limits = Limits {
    max_attributes: 50_000,
    max_depth: 16,
    syntax_lengths: false,
};

/// RFC 8011 section 5.1.2: `text(MAX)` is 1023 octets.
pub const MAX_TEXT_LEN: usize = 1023;
/// RFC 8011 section 5.1.3: `name(MAX)` is 255 octets.
pub const MAX_NAME_LEN: usize = 255;
/// RFC 8011 section 5.1.4: keywords are at most 255 octets.
pub const MAX_KEYWORD_LEN: usize = 255;
/// RFC 8011 section 5.1.6: `uri` is at most 1023 octets.
pub const MAX_URI_LEN: usize = 1023;
/// RFC 8011 sections 5.1.7-5.1.9: `uriScheme`, `charset`, `naturalLanguage` are at most 63 octets.
pub const MAX_SHORT_TOKEN_LEN: usize = 63;
/// RFC 8011 section 5.1.10: `mimeMediaType` is at most 255 octets.
pub const MAX_MIME_LEN: usize = 255;
/// RFC 8011 section 5.1.11: `octetString(MAX)` is 1023 octets.
pub const MAX_OCTET_STRING_LEN: usize = 1023;
/// RFC 8010 section 3.1.4: attribute names are keywords (255 octets).
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 255;

/// One attribute value (RFC 8010 section 3.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An out-of-band value (`unsupported`, `unknown`, `no-value`, ...): tag 0x10-0x1f.
    OutOfBand(u8),
    /// `integer`.
    Integer(i32),
    /// `boolean`.
    Boolean(bool),
    /// `enum`.
    Enum(i32),
    /// `octetString`.
    OctetString(Vec<u8>),
    /// `dateTime` (RFC 2579 DateAndTime, 11 octets).
    DateTime([u8; 11]),
    /// `resolution`: cross-feed, feed, units (3 = dpi, 4 = dpcm).
    Resolution(i32, i32, u8),
    /// `rangeOfInteger`.
    Range(i32, i32),
    /// `textWithLanguage`: language, text.
    TextWithLanguage(String, String),
    /// `nameWithLanguage`: language, name.
    NameWithLanguage(String, String),
    /// Any character-string syntax (text, name, keyword, uri, ...), by its tag.
    String(u8, String),
    /// `collection` (RFC 8010 section 3.1.6): member attributes in order.
    Collection(Vec<Attribute>),
    /// A value of an unassigned tag, kept as it came.
    Other(u8, Vec<u8>),
}

impl Value {
    /// A `keyword`.
    pub fn keyword(s: &str) -> Value {
        Value::String(tag::KEYWORD, s.to_owned())
    }
    /// A `nameWithoutLanguage`.
    pub fn name(s: &str) -> Value {
        Value::String(tag::NAME, s.to_owned())
    }
    /// A `textWithoutLanguage`.
    pub fn text(s: &str) -> Value {
        Value::String(tag::TEXT, s.to_owned())
    }
    /// A `uri`.
    pub fn uri(s: &str) -> Value {
        Value::String(tag::URI, s.to_owned())
    }
    /// A `mimeMediaType`.
    pub fn mime(s: &str) -> Value {
        Value::String(tag::MIME_MEDIA_TYPE, s.to_owned())
    }
    /// A `charset`.
    pub fn charset(s: &str) -> Value {
        Value::String(tag::CHARSET, s.to_owned())
    }
    /// A `naturalLanguage`.
    pub fn language(s: &str) -> Value {
        Value::String(tag::NATURAL_LANGUAGE, s.to_owned())
    }

    /// The value tag it is encoded with.
    pub fn tag(&self) -> u8 {
        match self {
            Value::OutOfBand(t) | Value::String(t, _) | Value::Other(t, _) => *t,
            Value::Integer(_) => tag::INTEGER,
            Value::Boolean(_) => tag::BOOLEAN,
            Value::Enum(_) => tag::ENUM,
            Value::OctetString(_) => tag::OCTET_STRING,
            Value::DateTime(_) => tag::DATE_TIME,
            Value::Resolution(..) => tag::RESOLUTION,
            Value::Range(..) => tag::RANGE_OF_INTEGER,
            Value::TextWithLanguage(..) => tag::TEXT_WITH_LANGUAGE,
            Value::NameWithLanguage(..) => tag::NAME_WITH_LANGUAGE,
            Value::Collection(_) => tag::BEG_COLLECTION,
        }
    }

    /// The text of any string syntax (with or without language).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(_, s) | Value::TextWithLanguage(_, s) | Value::NameWithLanguage(_, s) => {
                Some(s)
            }
            _ => None,
        }
    }

    /// The number of an `integer` or `enum`.
    pub fn as_int(&self) -> Option<i32> {
        match self {
            Value::Integer(i) | Value::Enum(i) => Some(*i),
            _ => None,
        }
    }
}

/// An attribute: a name and one or more values (RFC 8010 section 3.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The name.
    pub name: String,
    /// The values, at least one.
    pub values: Vec<Value>,
}

impl Attribute {
    /// An attribute of one value.
    pub fn new(name: &str, value: Value) -> Attribute {
        Attribute {
            name: name.to_owned(),
            values: vec![value],
        }
    }
    /// An attribute of several values.
    pub fn many(name: &str, values: Vec<Value>) -> Attribute {
        Attribute {
            name: name.to_owned(),
            values,
        }
    }
}

/// An attribute group: its delimiter tag and attributes (RFC 8010 section 3.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The delimiter tag (see [`group`]).
    pub tag: u8,
    /// Its attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl Group {
    /// An empty group.
    pub fn new(tag: u8) -> Group {
        Group {
            tag,
            attributes: Vec::new(),
        }
    }
    /// The first attribute of that name.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
    /// Adds an attribute.
    pub fn push(&mut self, a: Attribute) {
        self.attributes.push(a);
    }
}

/// A request or response (RFC 8010 section 3.1.1), without its document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `version-number`: major, minor.
    pub version: (u8, u8),
    /// `operation-id` of a request, `status-code` of a response.
    pub code: u16,
    /// `request-id`.
    pub request_id: i32,
    /// The attribute groups, in order.
    pub groups: Vec<Group>,
}

impl Message {
    /// The first group of a tag.
    pub fn group(&self, tag: u8) -> Option<&Group> {
        self.groups.iter().find(|g| g.tag == tag)
    }

    /// An attribute of the first group of a tag.
    pub fn attr(&self, group: u8, name: &str) -> Option<&Attribute> {
        self.group(group)?.get(name)
    }
}

/// Why bytes are not (yet) an IPP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// More bytes are needed.
    Incomplete,
    /// The bytes break RFC 8010 (the reason, for logs).
    Malformed(&'static str),
    /// A value is longer than its syntax allows (RFC 8011 section 5.1):
    /// `client-error-request-value-too-long`.
    ValueTooLong(String),
    /// More attributes than [`Limits::max_attributes`].
    TooManyAttributes,
    /// Collections nested deeper than [`Limits::max_depth`].
    TooDeep,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete => f.write_str("message is incomplete"),
            DecodeError::Malformed(why) => write!(f, "malformed message: {why}"),
            DecodeError::ValueTooLong(name) => write!(f, "value of {name:?} is too long"),
            DecodeError::TooManyAttributes => f.write_str("too many attributes"),
            DecodeError::TooDeep => f.write_str("collections nested too deep"),
        }
    }
}

impl std::error::Error for DecodeError {}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
    count: usize,
}

type R<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Incomplete)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Incomplete)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    /// A SIGNED-SHORT length (RFC 8010 section 3.1.1); negative is malformed.
    fn len(&mut self) -> R<usize> {
        let b = self.take(2)?;
        let n = i16::from_be_bytes([b[0], b[1]]);
        usize::try_from(n).map_err(|_| DecodeError::Malformed("negative length"))
    }
    fn count_one(&mut self) -> R<()> {
        self.count += 1;
        if self.count > self.limits.max_attributes {
            return Err(DecodeError::TooManyAttributes);
        }
        Ok(())
    }
    fn name(&mut self) -> R<String> {
        let n = self.len()?;
        if n > MAX_ATTRIBUTE_NAME_LEN {
            return Err(DecodeError::Malformed("attribute name too long"));
        }
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| DecodeError::Malformed("name is not UTF-8"))?;
        if !s.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(DecodeError::Malformed("name is not a keyword"));
        }
        Ok(s.to_owned())
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn utf8(b: &[u8]) -> R<String> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| DecodeError::Malformed("string is not UTF-8"))
}

/// The RFC 8011 section 5.1 maximum of a string syntax, if it has one.
fn syntax_max(t: u8) -> Option<usize> {
    Some(match t {
        tag::TEXT | tag::TEXT_WITH_LANGUAGE => MAX_TEXT_LEN,
        tag::NAME | tag::NAME_WITH_LANGUAGE => MAX_NAME_LEN,
        tag::KEYWORD | tag::MEMBER_ATTR_NAME => MAX_KEYWORD_LEN,
        tag::URI => MAX_URI_LEN,
        tag::URI_SCHEME | tag::CHARSET | tag::NATURAL_LANGUAGE => MAX_SHORT_TOKEN_LEN,
        tag::MIME_MEDIA_TYPE => MAX_MIME_LEN,
        tag::OCTET_STRING => MAX_OCTET_STRING_LEN,
        _ => return None,
    })
}

/// Decodes one value of tag `t` from its `value` octets (not collections).
fn decode_value(t: u8, v: &[u8], name: &str, limits: &Limits) -> R<Value> {
    let fixed = |n: usize| {
        if v.len() == n {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "wrong length for a fixed-size value",
            ))
        }
    };
    if limits.syntax_lengths {
        if let Some(max) = syntax_max(t) {
            // With-language values carry two 2-octet lengths besides the text.
            let slack = if matches!(t, tag::TEXT_WITH_LANGUAGE | tag::NAME_WITH_LANGUAGE) {
                4 + MAX_SHORT_TOKEN_LEN
            } else {
                0
            };
            if v.len() > max + slack {
                return Err(DecodeError::ValueTooLong(name.to_owned()));
            }
        }
    }
    Ok(match t {
        0x10..=0x1f => Value::OutOfBand(t),
        tag::INTEGER => {
            fixed(4)?;
            Value::Integer(be_i32(v))
        }
        tag::ENUM => {
            fixed(4)?;
            Value::Enum(be_i32(v))
        }
        tag::BOOLEAN => {
            fixed(1)?;
            match v[0] {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => return Err(DecodeError::Malformed("boolean is neither 0 nor 1")),
            }
        }
        tag::OCTET_STRING => Value::OctetString(v.to_vec()),
        tag::DATE_TIME => {
            fixed(11)?;
            let mut d = [0u8; 11];
            d.copy_from_slice(v);
            Value::DateTime(d)
        }
        tag::RESOLUTION => {
            fixed(9)?;
            Value::Resolution(be_i32(&v[0..4]), be_i32(&v[4..8]), v[8])
        }
        tag::RANGE_OF_INTEGER => {
            fixed(8)?;
            Value::Range(be_i32(&v[0..4]), be_i32(&v[4..8]))
        }
        tag::TEXT_WITH_LANGUAGE | tag::NAME_WITH_LANGUAGE => {
            // RFC 8010 section 3.9: a SHORT length and language, a SHORT length and text.
            let mut r = Reader {
                buf: v,
                pos: 0,
                limits: *limits,
                count: 0,
            };
            let bad = |_| DecodeError::Malformed("bad with-language value");
            let ln = r.len().map_err(bad)?;
            let lang = utf8(r.take(ln).map_err(bad)?)?;
            let tn = r.len().map_err(bad)?;
            let text = utf8(r.take(tn).map_err(bad)?)?;
            if r.pos != v.len() {
                return Err(DecodeError::Malformed(
                    "with-language value has extra octets",
                ));
            }
            if t == tag::TEXT_WITH_LANGUAGE {
                Value::TextWithLanguage(lang, text)
            } else {
                Value::NameWithLanguage(lang, text)
            }
        }
        tag::TEXT
        | tag::NAME
        | tag::KEYWORD
        | tag::URI
        | tag::URI_SCHEME
        | tag::CHARSET
        | tag::NATURAL_LANGUAGE
        | tag::MIME_MEDIA_TYPE => Value::String(t, utf8(v)?),
        tag::EXTENSION => return Err(DecodeError::Malformed("extension tag is not supported")),
        0x20..=0x7e => Value::Other(t, v.to_vec()),
        _ => return Err(DecodeError::Malformed("invalid value tag")),
    })
}

/// Reads the members of a collection up to its `endCollection`
/// (RFC 8010 section 3.1.6), the `begCollection` already read.
fn decode_collection(r: &mut Reader<'_>, depth: usize) -> R<Vec<Attribute>> {
    if depth > r.limits.max_depth {
        return Err(DecodeError::TooDeep);
    }
    let mut members: Vec<Attribute> = Vec::new();
    loop {
        let t = r.u8()?;
        if t < 0x10 {
            return Err(DecodeError::Malformed("delimiter inside a collection"));
        }
        if r.len()? != 0 {
            return Err(DecodeError::Malformed("collection member has a name"));
        }
        let vlen = r.len()?;
        let v = r.take(vlen)?;
        match t {
            tag::END_COLLECTION => {
                if members.last().is_some_and(|m| m.values.is_empty()) {
                    return Err(DecodeError::Malformed("collection member without value"));
                }
                return Ok(members);
            }
            tag::MEMBER_ATTR_NAME => {
                if members.last().is_some_and(|m| m.values.is_empty()) {
                    return Err(DecodeError::Malformed("collection member without value"));
                }
                r.count_one()?;
                let name = utf8(v)?;
                if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_LEN {
                    return Err(DecodeError::Malformed("bad member name"));
                }
                members.push(Attribute {
                    name,
                    values: Vec::new(),
                });
            }
            _ => {
                r.count_one()?;
                let Some(m) = members.last_mut() else {
                    return Err(DecodeError::Malformed(
                        "collection value before a member name",
                    ));
                };
                let value = if t == tag::BEG_COLLECTION {
                    Value::Collection(decode_collection(r, depth + 1)?)
                } else {
                    let name = m.name.clone();
                    decode_value(t, v, &name, &r.limits)?
                };
                m.values.push(value);
            }
        }
    }
}

/// Decodes a message from the start of `buf`; returns it and the offset of
/// the first byte after `end-of-attributes-tag` (the document, if any).
pub fn decode(buf: &[u8], limits: Limits) -> Result<(Message, usize), DecodeError> {
    let mut r = Reader {
        buf,
        pos: 0,
        limits,
        count: 0,
    };
    let h = r.take(8)?;
    let mut msg = Message {
        version: (h[0], h[1]),
        code: u16::from_be_bytes([h[2], h[3]]),
        request_id: be_i32(&h[4..8]),
        groups: Vec::new(),
    };
    loop {
        let t = r.u8()?;
        if t < 0x10 {
            match t {
                group::END => return Ok((msg, r.pos)),
                0x00 => return Err(DecodeError::Malformed("reserved delimiter tag 0x00")),
                _ => {
                    r.count_one()?;
                    msg.groups.push(Group::new(t));
                    continue;
                }
            }
        }
        let Some(g) = msg.groups.last_mut() else {
            return Err(DecodeError::Malformed("attribute before any group"));
        };
        let name = r.name()?;
        let vlen = r.len()?;
        let v = r.take(vlen)?;
        r.count_one()?;
        let attr_name = if name.is_empty() {
            // An additional value of the previous attribute (RFC 8010 section 3.1.5).
            match g.attributes.last() {
                Some(a) => a.name.clone(),
                None => return Err(DecodeError::Malformed("additional value without attribute")),
            }
        } else {
            name.clone()
        };
        let value = match t {
            tag::BEG_COLLECTION => Value::Collection(decode_collection(&mut r, 1)?),
            tag::END_COLLECTION | tag::MEMBER_ATTR_NAME => {
                return Err(DecodeError::Malformed(
                    "collection tag outside a collection",
                ))
            }
            _ => decode_value(t, v, &attr_name, &limits)?,
        };
        if name.is_empty() {
            if let Some(a) = g.attributes.last_mut() {
                a.values.push(value);
            }
        } else {
            g.attributes.push(Attribute {
                name,
                values: vec![value],
            });
        }
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Lengths are SIGNED-SHORT; values are built by us and stay far below.
    let n = u16::try_from(n)
        .unwrap_or(i16::MAX as u16)
        .min(i16::MAX as u16);
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_value(out: &mut Vec<u8>, name: &str, value: &Value) {
    out.push(value.tag());
    put_len(out, name.len());
    out.extend_from_slice(name.as_bytes());
    let mut v = Vec::new();
    match value {
        Value::OutOfBand(_) => {}
        Value::Integer(i) | Value::Enum(i) => v.extend_from_slice(&i.to_be_bytes()),
        Value::Boolean(b) => v.push(u8::from(*b)),
        Value::OctetString(b) | Value::Other(_, b) => v.extend_from_slice(b),
        Value::DateTime(d) => v.extend_from_slice(d),
        Value::Resolution(x, y, u) => {
            v.extend_from_slice(&x.to_be_bytes());
            v.extend_from_slice(&y.to_be_bytes());
            v.push(*u);
        }
        Value::Range(a, b) => {
            v.extend_from_slice(&a.to_be_bytes());
            v.extend_from_slice(&b.to_be_bytes());
        }
        Value::TextWithLanguage(l, s) | Value::NameWithLanguage(l, s) => {
            put_len(&mut v, l.len());
            v.extend_from_slice(l.as_bytes());
            put_len(&mut v, s.len());
            v.extend_from_slice(s.as_bytes());
        }
        Value::String(_, s) => v.extend_from_slice(s.as_bytes()),
        Value::Collection(members) => {
            put_len(out, 0);
            for m in members {
                out.push(tag::MEMBER_ATTR_NAME);
                put_len(out, 0);
                put_len(out, m.name.len());
                out.extend_from_slice(m.name.as_bytes());
                for mv in &m.values {
                    put_value(out, "", mv);
                }
            }
            out.push(tag::END_COLLECTION);
            put_len(out, 0);
            put_len(out, 0);
            return;
        }
    }
    put_len(out, v.len());
    out.extend_from_slice(&v);
}

/// Encodes a message, ending with `end-of-attributes-tag`.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(&[msg.version.0, msg.version.1]);
    out.extend_from_slice(&msg.code.to_be_bytes());
    out.extend_from_slice(&msg.request_id.to_be_bytes());
    for g in &msg.groups {
        out.push(g.tag);
        for a in &g.attributes {
            for (i, v) in a.values.iter().enumerate() {
                put_value(&mut out, if i == 0 { &a.name } else { "" }, v);
            }
        }
    }
    out.push(group::END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        let mut op = Group::new(group::OPERATION);
        op.push(Attribute::new(
            "attributes-charset",
            Value::charset("utf-8"),
        ));
        op.push(Attribute::new(
            "attributes-natural-language",
            Value::language("en"),
        ));
        op.push(Attribute::many(
            "requested-attributes",
            vec![Value::keyword("all"), Value::keyword("media-col-default")],
        ));
        let mut job = Group::new(group::JOB);
        job.push(Attribute::new(
            "media-col",
            Value::Collection(vec![Attribute::new(
                "media-size",
                Value::Collection(vec![
                    Attribute::new("x-dimension", Value::Integer(21000)),
                    Attribute::new("y-dimension", Value::Integer(29700)),
                ]),
            )]),
        ));
        job.push(Attribute::new(
            "printer-resolution",
            Value::Resolution(600, 600, 3),
        ));
        job.push(Attribute::new(
            "job-name",
            Value::NameWithLanguage("en".into(), "report".into()),
        ));
        Message {
            version: (2, 0),
            code: 2,
            request_id: 7,
            groups: vec![op, job],
        }
    }

    #[test]
    fn round_trip_with_collections_and_document_offset() {
        let m = sample();
        let mut bytes = encode(&m);
        let head = bytes.len();
        bytes.extend_from_slice(b"%PDF-1.4 document");
        let (d, off) = decode(&bytes, REQUEST_LIMITS).unwrap();
        assert_eq!(d, m);
        assert_eq!(off, head);
        for cut in 0..head {
            assert_eq!(
                decode(&bytes[..cut], REQUEST_LIMITS),
                Err(DecodeError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        let m = sample();
        let good = encode(&m);
        // A wrong length of a fixed-size value.
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[1, 0x21, 0, 1, b'x', 0, 3, 0, 0, 0, 3]);
        assert!(matches!(
            decode(&b, REQUEST_LIMITS),
            Err(DecodeError::Malformed(_))
        ));
        // A value before any group.
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[0x21, 0, 1, b'x', 0, 4, 0, 0, 0, 3, 3]);
        assert!(matches!(
            decode(&b, REQUEST_LIMITS),
            Err(DecodeError::Malformed(_))
        ));
        // A negative length.
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[1, 0x44, 0xff, 0xff]);
        assert!(matches!(
            decode(&b, REQUEST_LIMITS),
            Err(DecodeError::Malformed(_))
        ));
        // Collections nested past the limit.
        let mut b = good[..8].to_vec();
        b.push(1);
        b.extend_from_slice(&[0x34, 0, 1, b'c', 0, 0]);
        for _ in 0..(MAX_REQUEST_DEPTH + 2) {
            b.extend_from_slice(&[0x4a, 0, 0, 0, 1, b'm', 0x34, 0, 0, 0, 0]);
        }
        assert_eq!(decode(&b, REQUEST_LIMITS), Err(DecodeError::TooDeep));
        // A text value longer than text(MAX).
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[1, 0x41, 0, 1, b't']);
        b.extend_from_slice(&2000u16.to_be_bytes());
        b.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(
            decode(&b, REQUEST_LIMITS),
            Err(DecodeError::ValueTooLong("t".into()))
        );
        // Too many values.
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[1, 0x21, 0, 1, b'n', 0, 4, 0, 0, 0, 1]);
        for _ in 0..MAX_REQUEST_ATTRIBUTES {
            b.extend_from_slice(&[0x21, 0, 0, 0, 4, 0, 0, 0, 1]);
        }
        b.push(3);
        assert_eq!(
            decode(&b, REQUEST_LIMITS),
            Err(DecodeError::TooManyAttributes)
        );
    }

    fn string_tag() -> impl Strategy<Value = u8> {
        prop::sample::select(vec![
            tag::TEXT,
            tag::NAME,
            tag::KEYWORD,
            tag::URI,
            tag::URI_SCHEME,
            tag::CHARSET,
            tag::NATURAL_LANGUAGE,
            tag::MIME_MEDIA_TYPE,
        ])
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(vec![0x10u8, 0x12, 0x13, 0x15]).prop_map(Value::OutOfBand),
            any::<i32>().prop_map(Value::Integer),
            any::<i32>().prop_map(Value::Enum),
            any::<bool>().prop_map(Value::Boolean),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::OctetString),
            any::<[u8; 11]>().prop_map(Value::DateTime),
            (any::<i32>(), any::<i32>(), any::<u8>())
                .prop_map(|(x, y, u)| Value::Resolution(x, y, u)),
            (any::<i32>(), any::<i32>()).prop_map(|(a, b)| Value::Range(a, b)),
            ("[a-z-]{0,8}", ".{0,20}").prop_map(|(l, t)| Value::TextWithLanguage(l, t)),
            ("[a-z-]{0,8}", ".{0,20}").prop_map(|(l, t)| Value::NameWithLanguage(l, t)),
            (string_tag(), "[ -~]{0,30}").prop_map(|(t, s)| Value::String(t, s)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop::collection::vec(
                ("[a-z][a-z-]{0,10}", prop::collection::vec(inner, 1..3))
                    .prop_map(|(name, values)| Attribute { name, values }),
                0..4,
            )
            .prop_map(Value::Collection)
        })
    }

    fn message() -> impl Strategy<Value = Message> {
        let attr = ("[a-z][a-z-]{0,20}", prop::collection::vec(value(), 1..4))
            .prop_map(|(name, values)| Attribute { name, values });
        let grp = (
            prop::sample::select(vec![1u8, 2, 4, 5, 6, 9]),
            prop::collection::vec(attr, 0..5),
        )
            .prop_map(|(tag, attributes)| Group { tag, attributes });
        (
            any::<(u8, u8)>(),
            any::<u16>(),
            any::<i32>(),
            prop::collection::vec(grp, 0..4),
        )
            .prop_map(|(version, code, request_id, groups)| Message {
                version,
                code,
                request_id,
                groups,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, REQUEST_LIMITS);
            let _ = decode(&bytes, RESPONSE_LIMITS);
        }

        #[test]
        fn mutated_messages_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut b = encode(&sample());
            let i = pos.index(b.len());
            b[i] = byte;
            let _ = decode(&b, REQUEST_LIMITS);
            let _ = decode(&b[..i], REQUEST_LIMITS);
        }

        #[test]
        fn encode_then_decode_is_identity(m in message()) {
            let bytes = encode(&m);
            let (d, off) = decode(&bytes, RESPONSE_LIMITS).unwrap();
            prop_assert_eq!(off, bytes.len());
            prop_assert_eq!(d, m);
        }
    }
}
