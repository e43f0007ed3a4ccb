//! User, job name and format from the head of a RAW stream (pure).
//!
//! Print drivers put the job's owner and name into a PJL header
//! (`@PJL SET USERNAME = "alice"`, `@PJL JOB NAME = "report"`, ...) or into
//! PostScript DSC comments (`%%For: (alice)`, `%%Title: (report)`).

/// How many leading bytes of a RAW stream are examined.
pub const SNIFF_LIMIT: usize = 16 << 10;

/// Longest user or job name kept; longer ones are cut.
pub const MAX_NAME_LEN: usize = 255;

/// What the head of a document says about it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sniffed {
    /// The job's owner.
    pub user: Option<String>,
    /// The job's name.
    pub name: Option<String>,
    /// The document format (MIME type), if recognisable.
    pub format: Option<&'static str>,
}

/// Reads PJL and PostScript header lines of `head` (the first bytes of a stream).
pub fn sniff(head: &[u8]) -> Sniffed {
    let head = &head[..head.len().min(SNIFF_LIMIT)];
    let mut out = Sniffed::default();
    let mut language: Option<&'static str> = None;
    for raw_line in head.split(|&b| b == b'\n') {
        let line = trim_line(raw_line);
        // A PJL header may start after UEL (ESC%-12345X) on the same line.
        let line = match find(line, b"@PJL") {
            Some(i) if line[..i].iter().all(|&b| b != b'@') => &line[i..],
            _ => line,
        };
        if let Some(rest) = strip_prefix_ci(line, b"@PJL") {
            pjl_line(rest, &mut out, &mut language);
        } else if let Some(rest) = line.strip_prefix(b"%%For:") {
            set_once(&mut out.user, dsc_text(rest));
        } else if let Some(rest) = line.strip_prefix(b"%%Title:") {
            set_once(&mut out.name, dsc_text(rest));
        }
    }
    out.format = language.or_else(|| format_of(head));
    out
}

fn pjl_line(rest: &[u8], out: &mut Sniffed, language: &mut Option<&'static str>) {
    let text = String::from_utf8_lossy(rest);
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let value_after_eq = |s: &str| s.split_once('=').map(|(_, v)| unquote(v));
    if upper.starts_with("SET USERNAME")
        || upper.starts_with("SET USER ")
        || upper.starts_with("SET USER=")
    {
        set_once(&mut out.user, value_after_eq(t));
    } else if upper.starts_with("SET JOBNAME") {
        set_once(&mut out.name, value_after_eq(t));
    } else if upper.starts_with("JOB NAME") || upper.starts_with("JOB ") {
        // @PJL JOB NAME = "report" [DISPLAY = "..."]
        if let Some(i) = upper.find("NAME") {
            let after = &t[i + 4..];
            if let Some((_, v)) = after.split_once('=') {
                set_once(&mut out.name, Some(first_value(v)));
            }
        }
    } else if upper.starts_with("SET JOBATTR") || upper.starts_with("JOBATTR") {
        // @PJL SET JOBATTR="@JOAU=alice" / "JobAcct1=alice" / "@JOBN=report"
        if let Some(v) = value_after_eq(t) {
            if let Some((k, val)) = v.split_once('=') {
                let k = k.trim_start_matches('@').to_ascii_uppercase();
                match k.as_str() {
                    "JOAU" | "JOBACCT1" | "USERNAME" | "USER" => {
                        set_once(&mut out.user, Some(unquote(val)))
                    }
                    "JOBN" | "JOBNAME" => set_once(&mut out.name, Some(unquote(val))),
                    _ => {}
                }
            }
        }
    } else if upper.starts_with("COMMENT") {
        // @PJL COMMENT "Username: alice; App Filename: report" or "username=alice"
        let body = unquote(&t[7..]);
        for part in body.split([';', ',']) {
            let (k, v) = match part.split_once([':', '=']) {
                Some(kv) => kv,
                None => continue,
            };
            let k = k.trim().to_ascii_lowercase();
            let v = unquote(v);
            match k.as_str() {
                "username" | "user" | "user name" => set_once(&mut out.user, Some(v)),
                "app filename" | "jobname" | "job name" | "document" => {
                    set_once(&mut out.name, Some(v))
                }
                _ => {}
            }
        }
    } else if upper.starts_with("ENTER LANGUAGE") {
        *language = match value_after_eq(t).map(|v| v.to_ascii_uppercase()).as_deref() {
            Some("POSTSCRIPT") => Some("application/postscript"),
            Some("PCL") | Some("PCLXL") => Some("application/vnd.hp-pcl"),
            Some("PDF") => Some("application/pdf"),
            _ => None,
        };
    }
}

fn format_of(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if head.starts_with(b"%!") {
        Some("application/postscript")
    } else if head.starts_with(b"\x1bE") || head.starts_with(b"\x1b%-12345X") {
        Some("application/vnd.hp-pcl")
    } else {
        None
    }
}

fn set_once(slot: &mut Option<String>, v: Option<String>) {
    if slot.is_none() {
        if let Some(v) = v.map(|v| clean(&v)).filter(|v| !v.is_empty()) {
            *slot = Some(v);
        }
    }
}

/// Keeps printable characters only, trims white space at both ends and
/// cuts at [`MAX_NAME_LEN`] bytes; cleaning a cleaned text changes nothing.
pub fn clean(s: &str) -> String {
    super::clean_text(s, MAX_NAME_LEN)
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    let v = v.strip_prefix('"').unwrap_or(v);
    let v = v.strip_suffix('"').unwrap_or(v);
    v.trim().to_owned()
}

fn first_value(v: &str) -> String {
    let v = v.trim();
    if let Some(rest) = v.strip_prefix('"') {
        rest.split('"').next().unwrap_or("").to_owned()
    } else {
        v.split_whitespace().next().unwrap_or("").to_owned()
    }
}

fn dsc_text(rest: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(rest);
    let s = s.trim();
    let s = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(s);
    Some(s.to_owned())
}

fn trim_line(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let start = l
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(l.len());
    &l[start..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn strip_prefix_ci<'a>(l: &'a [u8], p: &[u8]) -> Option<&'a [u8]> {
    (l.len() >= p.len() && l[..p.len()].eq_ignore_ascii_case(p)).then(|| &l[p.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pjl_header_gives_user_name_and_language() {
        let head = b"\x1b%-12345X@PJL JOB NAME = \"Quarterly report\" DISPLAY = \"x\"\r\n\
            @PJL SET USERNAME = \"alice\"\r\n@PJL ENTER LANGUAGE = POSTSCRIPT\r\n%!PS-Adobe-3.0\n";
        let s = sniff(head);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.name.as_deref(), Some("Quarterly report"));
        assert_eq!(s.format, Some("application/postscript"));
    }

    #[test]
    fn jobattr_and_comment_forms() {
        let s = sniff(b"@PJL SET JOBATTR=\"@JOAU=bob\"\n@PJL SET JOBNAME=\"memo\"\n");
        assert_eq!(
            (s.user.as_deref(), s.name.as_deref()),
            (Some("bob"), Some("memo"))
        );
        let s = sniff(b"@PJL COMMENT \"Username: carol; App Filename: slides.pptx\"\n");
        assert_eq!(
            (s.user.as_deref(), s.name.as_deref()),
            (Some("carol"), Some("slides.pptx"))
        );
    }

    #[test]
    fn postscript_dsc_comments() {
        let s = sniff(b"%!PS-Adobe-3.0\n%%Title: (Budget 2027)\n%%For: (dave)\n%%EndComments\n");
        assert_eq!(s.user.as_deref(), Some("dave"));
        assert_eq!(s.name.as_deref(), Some("Budget 2027"));
        assert_eq!(s.format, Some("application/postscript"));
        assert_eq!(sniff(b"%PDF-1.7\n").format, Some("application/pdf"));
        assert_eq!(sniff(b"plain text"), Sniffed::default());
    }

    #[test]
    fn names_are_cleaned_and_bounded() {
        let long = format!("@PJL SET USERNAME = \"{}\x07\"\n", "é".repeat(300));
        let s = sniff(long.as_bytes());
        let u = s.user.unwrap();
        assert!(u.len() <= MAX_NAME_LEN && !u.contains('\x07'));
        let cut_after_space = format!("{} {}", "a".repeat(MAX_NAME_LEN - 1), "b".repeat(9));
        assert_eq!(clean(&cut_after_space), "a".repeat(MAX_NAME_LEN - 1));
    }

    proptest! {
        #[test]
        fn any_bytes_sniff_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let s = sniff(&bytes);
            prop_assert!(s.user.is_none_or(|u| u.len() <= MAX_NAME_LEN));
        }
    }
}
