//! What each fuzz target asserts about its parser, one function per target.
//!
//! The targets in `fuzz_targets/` call these on libFuzzer's inputs; the
//! stable test `tests/fuzz_regressions.rs` includes this file and calls
//! them on every file of `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`,
//! so an input that once broke a parser keeps being checked without nightly.
//!
//! Beyond "no panic", each check asserts what the parser promises: limits
//! hold, cleaned text is clean, and where the value can be written back
//! (IPP messages, LPD lines and control files, device URIs) writing it back
//! and parsing again gives the same value.

use std::path::Path;
use std::time::Duration;

use printroute::config::units::{parse_duration, parse_size};
use printroute::config::{Config, DeviceUri, MAX_QUEUE_NAME_LEN};
use printroute::intake::lpd::read_line;
use printroute::wire::ipp::{self as codec, Attribute, DecodeError, Value};
use printroute::wire::lpd::{
    parse_command, parse_control_file, parse_subcommand, Command, ControlFile, Length, Subcommand,
    MAX_COMMAND_LINE, MAX_CONTROL_FILE, MAX_CONTROL_LINE, MAX_COPIES, MAX_DATA_FILES,
    MAX_FILE_NAME, MAX_LIST_ITEMS, PLACEHOLDER_LENGTH,
};
use printroute::wire::proxy::{self, Header, ProxyError};
use printroute::wire::sniff::{self, clean, SNIFF_LIMIT};

/// A target's check: panics when its parser breaks a promise.
pub type Check = fn(&[u8]);

/// Every target by name (the folder names under `fuzz/seeds` and
/// `fuzz/regressions`), with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("lpd_command", lpd_command),
    ("lpd_control", lpd_control),
    ("ipp_decode", ipp_decode),
    ("sniff", sniff),
    ("config", config),
    ("proxy_header", proxy_header),
];

/// A text field the parsers cleaned: non-empty, bounded, and already clean
/// (cleaning it again changes nothing).
fn assert_clean(what: &str, s: &str) {
    assert!(!s.is_empty(), "{what} is empty");
    assert!(
        s.len() <= sniff::MAX_NAME_LEN,
        "{what} is {} bytes",
        s.len()
    );
    assert_eq!(clean(s), s, "{what} is not clean");
}

/// Runs the async readers (on in-memory input) to completion.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    RT.with(|rt| rt.block_on(f))
}

/// LPD command and subcommand lines as the session reads them: split by
/// its line reader (at most [`MAX_COMMAND_LINE`] bytes a line), then each
/// line through the daemon-command and the receive-job-subcommand parsers.
pub fn lpd_command(data: &[u8]) {
    let mut lines = Vec::new();
    block_on(async {
        // A small buffer makes lines span several reads.
        let mut r = tokio::io::BufReader::with_capacity(61, data);
        while let Ok(Some(line)) = read_line(&mut r, MAX_COMMAND_LINE, Duration::from_secs(5)).await
        {
            lines.push(line);
        }
    });
    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
    assert!(total <= data.len(), "the reader returned more than it read");
    for line in &lines {
        assert!(line.len() <= MAX_COMMAND_LINE && !line.contains(&b'\n'));
        command_line(line);
        subcommand_line(line);
    }
    if lines.is_empty() {
        command_line(data);
        subcommand_line(data);
    }
}

fn command_line(line: &[u8]) {
    let Ok(cmd) = parse_command(line) else {
        return;
    };
    let queue = cmd.queue();
    assert!(!queue.is_empty() && queue.len() <= MAX_QUEUE_NAME_LEN);
    assert!(queue.bytes().all(|b| b.is_ascii_graphic()));
    // Written back as RFC 1179 section 5 lays it out, it parses the same.
    let mut again = Vec::new();
    let push_list = |again: &mut Vec<u8>, list: &[String]| {
        assert!(list.len() <= MAX_LIST_ITEMS);
        for item in list {
            assert_clean("list item", item);
            assert!(
                !item.contains([' ', '\t']),
                "list item {item:?} has white space"
            );
            again.push(b' ');
            again.extend_from_slice(item.as_bytes());
        }
    };
    match &cmd {
        Command::PrintWaiting { queue } => {
            again.extend_from_slice(format!("\x01{queue}").as_bytes())
        }
        Command::ReceiveJob { queue } => again.extend_from_slice(format!("\x02{queue}").as_bytes()),
        Command::QueueState { queue, long, list } => {
            again.push(if *long { 4 } else { 3 });
            again.extend_from_slice(queue.as_bytes());
            push_list(&mut again, list);
        }
        Command::Remove { queue, agent, list } => {
            assert_clean("agent", agent);
            again.extend_from_slice(format!("\x05{queue} {agent}").as_bytes());
            push_list(&mut again, list);
        }
    }
    assert_eq!(parse_command(&again).as_ref(), Ok(&cmd), "{again:?}");
}

fn subcommand_line(line: &[u8]) {
    let Ok(sub) = parse_subcommand(line) else {
        return;
    };
    let (code, length, name) = match &sub {
        Subcommand::Abort => return,
        Subcommand::ControlFile { length, name } => (2u8, length, name),
        Subcommand::DataFile { length, name } => (3u8, length, name),
    };
    assert!(!name.is_empty() && name.len() <= MAX_FILE_NAME);
    assert!(name.bytes().all(|b| b.is_ascii_graphic()));
    let n = match length {
        Length::Exact(n) => {
            assert!(*n > 0 && *n < PLACEHOLDER_LENGTH, "exact length {n}");
            *n
        }
        Length::UntilClose => 0,
    };
    let again = format!("{}{n} {name}", code as char);
    assert_eq!(parse_subcommand(again.as_bytes()).as_ref(), Ok(&sub));
}

/// The LPD control-file parser: limits hold, and the parsed file written
/// back (each print line `copies` times, its `N` line after it as BSD lpr
/// writes it) parses to the same file.
pub fn lpd_control(data: &[u8]) {
    let Ok(cf) = parse_control_file(data) else {
        return;
    };
    assert!(data.len() <= MAX_CONTROL_FILE);
    assert!(cf.files.len() <= MAX_DATA_FILES && cf.unlink.len() <= MAX_DATA_FILES);
    for (i, f) in cf.files.iter().enumerate() {
        assert!((1..=MAX_COPIES).contains(&f.copies), "{} copies", f.copies);
        assert!(f.format.is_ascii_lowercase());
        assert_clean("data file name", &f.data_file);
        assert!(
            cf.files[..i].iter().all(|g| g.data_file != f.data_file),
            "data file listed twice"
        );
        assert!(cf.prints(&f.data_file));
        if let Some(n) = &f.source_name {
            assert_clean("source name", n);
        }
    }
    let fields = [
        &cf.host,
        &cf.user,
        &cf.job_name,
        &cf.class,
        &cf.banner_user,
        &cf.mail,
        &cf.title,
    ];
    for s in fields.into_iter().flatten().chain(&cf.unlink) {
        assert_clean("control file field", s);
    }
    let again = write_control_file(&cf);
    // Lossy UTF-8 can triple a byte, so the text written back may pass a limit the input kept.
    if again.len() > MAX_CONTROL_FILE
        || again
            .split(|b| *b == b'\n')
            .any(|l| l.len() > MAX_CONTROL_LINE)
    {
        return;
    }
    let reparsed = parse_control_file(&again).expect("a written-back control file parses");
    assert_eq!(
        ControlFile {
            ignored: 0,
            ..reparsed
        },
        ControlFile { ignored: 0, ..cf },
        "{:?}",
        String::from_utf8_lossy(&again)
    );
}

fn write_control_file(cf: &ControlFile) -> Vec<u8> {
    let mut out = String::new();
    let mut line = |kind: char, value: &str| {
        out.push(kind);
        out.push_str(value);
        out.push('\n');
    };
    for (kind, v) in [
        ('H', &cf.host),
        ('P', &cf.user),
        ('J', &cf.job_name),
        ('C', &cf.class),
        ('L', &cf.banner_user),
        ('M', &cf.mail),
        ('T', &cf.title),
    ] {
        if let Some(v) = v {
            line(kind, v);
        }
    }
    if let Some(n) = cf.indent {
        line('I', &n.to_string());
    }
    if let Some(n) = cf.width {
        line('W', &n.to_string());
    }
    for f in &cf.files {
        for _ in 0..f.copies {
            line(f.format as char, &f.data_file);
        }
        if let Some(n) = &f.source_name {
            line('N', n);
        }
    }
    for u in &cf.unlink {
        line('U', u);
    }
    out.into_bytes()
}

/// The IPP request decoder: a decoded message stays within the request
/// limits, re-encodes and decodes to itself, decodes the same under the
/// looser response limits, and no prefix of it is anything but incomplete
/// (the listener parses again as more of the body arrives).
pub fn ipp_decode(data: &[u8]) {
    let limits = codec::REQUEST_LIMITS;
    let (msg, end) = match codec::decode(data, limits) {
        Ok(ok) => ok,
        Err(DecodeError::Incomplete) => {
            // More bytes may still make it a message; none can undo an error.
            return;
        }
        Err(e) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0x03; 16]);
            assert_eq!(
                codec::decode(&longer, limits).err(),
                Some(e),
                "more bytes changed an error"
            );
            return;
        }
    };
    assert!(end >= 9 && end <= data.len() && data[end - 1] == codec::group::END);
    let mut count = 0;
    for g in &msg.groups {
        count += 1;
        for a in &g.attributes {
            count += check_attribute(a, 1, &limits);
        }
    }
    assert!(count <= limits.max_attributes, "{count} attributes");
    // What follows the message is the document: it never changes the message.
    assert_eq!(codec::decode(&data[..end], limits), Ok((msg.clone(), end)));
    let step = (end / 64).max(1);
    for cut in (0..end).step_by(step).chain([end - 1]) {
        assert_eq!(
            codec::decode(&data[..cut], limits),
            Err(DecodeError::Incomplete),
            "cut at {cut}"
        );
    }
    assert_eq!(
        codec::decode(data, codec::RESPONSE_LIMITS),
        Ok((msg.clone(), end))
    );
    let bytes = codec::encode(&msg);
    assert_eq!(
        codec::decode(&bytes, limits),
        Ok((msg, bytes.len())),
        "re-encoded message differs"
    );
}

/// Checks an attribute's name, values and nesting (`depth` 1 at the top);
/// returns how many attributes and values it counts for, as the decoder
/// counts them: each value, and each collection member's name and values.
fn check_attribute(a: &Attribute, depth: usize, limits: &codec::Limits) -> usize {
    assert!(!a.name.is_empty() && a.name.len() <= codec::MAX_ATTRIBUTE_NAME_LEN);
    assert!(!a.values.is_empty(), "attribute {:?} without value", a.name);
    let mut count = 0;
    for v in &a.values {
        count += 1;
        match v {
            Value::Collection(members) => {
                assert!(depth <= limits.max_depth, "collection at depth {depth}");
                for m in members {
                    count += 1 + check_attribute(m, depth + 1, limits);
                }
            }
            Value::String(_, s) => assert!(s.len() <= codec::MAX_TEXT_LEN),
            Value::TextWithLanguage(l, s) | Value::NameWithLanguage(l, s) => {
                assert!(l.len() + s.len() <= codec::MAX_TEXT_LEN + codec::MAX_SHORT_TOKEN_LEN);
            }
            Value::OctetString(b) => assert!(b.len() <= codec::MAX_OCTET_STRING_LEN),
            Value::Other(_, b) => assert!(b.len() <= i16::MAX as usize),
            _ => {}
        }
    }
    count
}

/// PJL / PostScript DSC sniffing: names are clean and bounded, formats are
/// known, and nothing past [`SNIFF_LIMIT`] matters.
pub fn sniff(data: &[u8]) {
    let s = sniff::sniff(data);
    if let Some(u) = &s.user {
        assert_clean("user", u);
    }
    if let Some(n) = &s.name {
        assert_clean("job name", n);
    }
    if let Some(f) = s.format {
        assert!(
            [
                "application/postscript",
                "application/pdf",
                "application/vnd.hp-pcl"
            ]
            .contains(&f),
            "format {f}"
        );
    }
    if data.len() > SNIFF_LIMIT {
        assert_eq!(sniff::sniff(&data[..SNIFF_LIMIT]), s);
    }
}

/// The config loader and validator on text (never the file system), and
/// the value parsers it uses: a valid config routes every range of a
/// tenant to that tenant, binds only its own listeners and workflows, and
/// its device URIs print as URIs that parse back to themselves.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same text as a device URI, a size and a duration.
    check_device_uri(text);
    if let Ok(n) = parse_size(text) {
        assert_eq!(parse_size(&n.to_string()), Ok(n));
    }
    let _ = parse_duration(text);
    let config = match Config::parse(Path::new("/etc/printroute/printroute.toml"), text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without a problem");
            return;
        }
    };
    let table = config.routing_table();
    assert_eq!(table.len(), config.range_count());
    for (i, t) in config.tenants.iter().enumerate() {
        assert_eq!(config.tenant(&t.id).map(|x| &x.id), Some(&t.id));
        for r in &t.ranges {
            for ip in [r.network(), r.broadcast()] {
                let route = table.route(ip);
                assert_eq!(
                    route.map(|x| x.tenant as usize),
                    Some(i),
                    "{ip} of {r} (tenant {}) routes to {route:?}",
                    t.id
                );
                assert_eq!(route.map(|x| x.range), Some(r.trunc()));
            }
        }
        for d in t.devices.values() {
            check_device_uri(&d.uri.to_string());
        }
        for input in &t.inputs {
            assert!(config.listeners.iter().any(|l| l.name == input.listener));
            assert!(t.workflows.contains_key(&input.workflow));
        }
    }
}

fn check_device_uri(text: &str) {
    let Ok(uri) = DeviceUri::parse(text) else {
        return;
    };
    assert_ne!(uri.port(), 0, "{text:?} has port 0");
    assert!(!uri.host().is_empty());
    assert_eq!(
        DeviceUri::parse(&uri.to_string()),
        Ok(uri.clone()),
        "{text:?} printed as {uri}"
    );
}

/// The PROXY protocol v1/v2 header decoder and the reader the listeners
/// use: a header is never longer than the input or its version's limit,
/// decodes the same from its own bytes, and every prefix of it asks for
/// more; errors stay errors whatever follows; the reader takes exactly the
/// header's bytes; a proxied header written back as v1 and as v2 decodes
/// to itself.
pub fn proxy_header(data: &[u8]) {
    let decoded = proxy::decode(data);
    let mut rest = data;
    let read = block_on(printroute::intake::proxy::read_header(&mut rest));
    match decoded {
        Ok(Some((header, n))) => {
            assert!(n >= 12 && n <= data.len(), "header of {n} bytes");
            assert!(n <= proxy::V1_MAX_LEN.max(proxy::V2_MAX_LEN));
            if !data.starts_with(&proxy::V2_SIGNATURE) {
                assert!(n <= proxy::V1_MAX_LEN, "v1 header of {n} bytes");
            }
            assert_eq!(proxy::decode(&data[..n]), Ok(Some((header, n))));
            for cut in 0..n {
                assert_eq!(proxy::decode(&data[..cut]), Ok(None), "cut at {cut}");
            }
            assert_eq!(read, Ok(header));
            assert_eq!(rest.len(), data.len() - n, "the reader took payload bytes");
            if let Header::Proxied {
                source,
                destination,
            } = header
            {
                assert_eq!(source.is_ipv4(), destination.is_ipv4());
                for again in [write_v1(source, destination), write_v2(source, destination)] {
                    assert_eq!(
                        proxy::decode(&again),
                        Ok(Some((header, again.len()))),
                        "{again:?}"
                    );
                }
            }
        }
        Ok(None) => {
            assert!(
                data.len() < proxy::V2_MAX_LEN,
                "{} bytes and still incomplete",
                data.len()
            );
            assert!(matches!(read, Err(ProxyError::Io(_))), "{read:?}");
        }
        Err(e) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                proxy::decode(&longer),
                Err(e),
                "more bytes changed an error"
            );
            assert!(
                read.is_err(),
                "the reader took a header decode refuses: {read:?}"
            );
        }
    }
}

fn write_v1(source: std::net::SocketAddr, destination: std::net::SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

fn write_v2(source: std::net::SocketAddr, destination: std::net::SocketAddr) -> Vec<u8> {
    let mut body = Vec::new();
    let family = match (source.ip(), destination.ip()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11
        }
        (s, d) => {
            body.extend_from_slice(&to_v6(s).octets());
            body.extend_from_slice(&to_v6(d).octets());
            0x21
        }
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    let mut out = proxy::V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn to_v6(ip: std::net::IpAddr) -> std::net::Ipv6Addr {
    match ip {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
        std::net::IpAddr::V6(a) => a,
    }
}
