//! RFC 1179 wire format, pure: daemon commands, receive-job subcommands and
//! control files, parsed from byte slices. No sockets here; the LPD session
//! (`intake::lpd`) and the LPD device client (`dispatch::lpd`) read and
//! write lines and files and use these functions for their bytes.

use crate::wire::sniff::clean;

/// Longest queue name (LPD queue or IPP printer path segment).
pub const MAX_QUEUE_NAME_LEN: usize = 127;

/// Longest command or subcommand line (without its LF). RFC 1179 sets no
/// limit; queue names, agents and job lists of real clients fit easily.
pub const MAX_COMMAND_LINE: usize = 4096;

/// Largest control file accepted. A control file is a few lines per data
/// file; 52 data files with long names stay far below this.
pub const MAX_CONTROL_FILE: usize = 64 << 10;

/// Longest control file line (without its LF). RFC 1179 section 7 limits
/// most operands to 31-131 octets; real clients exceed that (long titles,
/// paths in `N`), so this is generous but bounded.
pub const MAX_CONTROL_LINE: usize = 4096;

/// Most data files one job may name. RFC 1179 section 6.3 numbers data
/// files `dfA`..`dfZ`, `dfa`..`dfz` within one job: 52 at most.
pub const MAX_DATA_FILES: usize = 52;

/// Most copies of one data file (repeated print lines, RFC 1179 section 7).
/// Copies are made by repeating the data in the spool document, so this
/// bounds that repetition (the job size limit bounds it too).
pub const MAX_COPIES: u32 = 100;

/// Longest file name in a receive-file subcommand (RFC 1179 section 6.2
/// names are `cfA` + 3 digits + host name; hosts may be long FQDNs).
pub const MAX_FILE_NAME: usize = 255;

/// Most entries of a job list in a queue-state or remove-jobs command.
pub const MAX_LIST_ITEMS: usize = 256;

/// A declared file length at or above this is a placeholder, not a size:
/// clients that cannot count in advance (Windows' LPR port monitor without
/// byte counting sends 125899906843000, printer firmware 999999999999) send
/// such a number and then stream the file until they close the connection.
/// No real print document is 64 GiB.
pub const PLACEHOLDER_LENGTH: u64 = 64 << 30;

/// Why a command, subcommand or control file is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty.
    #[error("empty command")]
    Empty,
    /// The command code is not one of RFC 1179's.
    #[error("unknown command code {0:#04x}")]
    UnknownCode(u8),
    /// The queue name is missing, too long or has bad characters.
    #[error("bad queue name")]
    BadQueue,
    /// An operand is missing or malformed.
    #[error("bad operand: {0}")]
    BadOperand(&'static str),
    /// The file length is not a decimal number.
    #[error("bad file length")]
    BadLength,
    /// The file name is missing, too long or unsafe.
    #[error("bad file name")]
    BadFileName,
    /// Too many list entries.
    #[error("list too long")]
    ListTooLong,
    /// The control file is larger than [`MAX_CONTROL_FILE`].
    #[error("control file too large")]
    ControlTooLarge,
    /// A control file line is longer than [`MAX_CONTROL_LINE`].
    #[error("control file line too long")]
    LineTooLong,
    /// The control file names more than [`MAX_DATA_FILES`] data files.
    #[error("too many data files")]
    TooManyDataFiles,
    /// A data file is printed more than [`MAX_COPIES`] times.
    #[error("too many copies")]
    TooManyCopies,
    /// The control file contains a NUL byte (it is text, RFC 1179 section 7).
    #[error("control file contains NUL")]
    Binary,
}

/// A daemon command (RFC 1179 section 5): the first line of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `01 queue LF`: print any waiting jobs (5.1).
    PrintWaiting {
        /// The queue.
        queue: String,
    },
    /// `02 queue LF`: receive a printer job (5.2).
    ReceiveJob {
        /// The queue.
        queue: String,
    },
    /// `03`/`04 queue SP list LF`: send queue state, short or long (5.3, 5.4).
    QueueState {
        /// The queue.
        queue: String,
        /// True for the long form (04).
        long: bool,
        /// User names and job numbers to list (empty: all).
        list: Vec<String>,
    },
    /// `05 queue SP agent SP list LF`: remove jobs (5.5).
    Remove {
        /// The queue.
        queue: String,
        /// Who asks.
        agent: String,
        /// User names and job numbers (empty: the agent's current job).
        list: Vec<String>,
    },
}

impl Command {
    /// The queue the command is for.
    pub fn queue(&self) -> &str {
        match self {
            Command::PrintWaiting { queue }
            | Command::ReceiveJob { queue }
            | Command::QueueState { queue, .. }
            | Command::Remove { queue, .. } => queue,
        }
    }
}

/// A declared file length (RFC 1179 sections 6.2, 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many bytes follow, then a NUL.
    Exact(u64),
    /// 0 or a placeholder (see [`PLACEHOLDER_LENGTH`]): the file runs until
    /// the peer closes its side.
    UntilClose,
}

/// A subcommand of "receive a printer job" (RFC 1179 section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subcommand {
    /// `01 LF`: abort the job (6.1).
    Abort,
    /// `02 count SP name LF`: receive control file (6.2).
    ControlFile {
        /// Its length.
        length: Length,
        /// Its name (`cfA` + job number + host).
        name: String,
    },
    /// `03 count SP name LF`: receive data file (6.3).
    DataFile {
        /// Its length.
        length: Length,
        /// Its name (`dfA` + job number + host).
        name: String,
    },
}

/// Strips one trailing CR: some clients end lines with CR LF.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits operands at runs of spaces or tabs (RFC 1179 section 3: "white space").
fn operands(rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    rest.split(|b| *b == b' ' || *b == b'\t')
        .filter(|s| !s.is_empty())
}

fn queue_name(bytes: &[u8]) -> Result<String, ParseError> {
    // Printable ASCII without space: the queue becomes a lookup key and a log field.
    if bytes.is_empty()
        || bytes.len() > MAX_QUEUE_NAME_LEN
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(ParseError::BadQueue);
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn list_item(bytes: &[u8]) -> String {
    clean(&String::from_utf8_lossy(bytes))
}

/// Parses a daemon command line (without its LF; a trailing CR is ignored).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = strip_cr(line);
    let (&code, rest) = line.split_first().ok_or(ParseError::Empty)?;
    let mut ops = operands(rest);
    let queue = queue_name(ops.next().unwrap_or_default())?;
    let list = |ops: &mut dyn Iterator<Item = &[u8]>| -> Result<Vec<String>, ParseError> {
        let mut v = Vec::new();
        for op in ops {
            if v.len() == MAX_LIST_ITEMS {
                return Err(ParseError::ListTooLong);
            }
            let item = list_item(op);
            if !item.is_empty() {
                v.push(item);
            }
        }
        Ok(v)
    };
    match code {
        1 => Ok(Command::PrintWaiting { queue }),
        2 => Ok(Command::ReceiveJob { queue }),
        3 | 4 => Ok(Command::QueueState {
            queue,
            long: code == 4,
            list: list(&mut ops)?,
        }),
        5 => {
            let agent = ops
                .next()
                .map(list_item)
                .filter(|a| !a.is_empty())
                .ok_or(ParseError::BadOperand("remove-jobs needs an agent"))?;
            Ok(Command::Remove {
                queue,
                agent,
                list: list(&mut ops)?,
            })
        }
        other => Err(ParseError::UnknownCode(other)),
    }
}

/// Parses a declared length: decimal digits; 0 and placeholders mean "until close".
pub fn parse_length(bytes: &[u8]) -> Result<Length, ParseError> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadLength);
    }
    // At most 20 digits: parse saturating so 99999999999999999999 is a placeholder too.
    let n = bytes.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Ok(if n == 0 || n >= PLACEHOLDER_LENGTH {
        Length::UntilClose
    } else {
        Length::Exact(n)
    })
}

fn file_name(bytes: &[u8]) -> Result<String, ParseError> {
    // Names are never used as paths (the store names spool files), but they
    // are matched against control file lines and logged: keep them printable.
    if bytes.is_empty()
        || bytes.len() > MAX_FILE_NAME
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(ParseError::BadFileName);
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Parses a receive-job subcommand line (without its LF; a trailing CR is ignored).
pub fn parse_subcommand(line: &[u8]) -> Result<Subcommand, ParseError> {
    let line = strip_cr(line);
    let (&code, rest) = line.split_first().ok_or(ParseError::Empty)?;
    match code {
        1 => Ok(Subcommand::Abort),
        2 | 3 => {
            let mut ops = operands(rest);
            let length = parse_length(ops.next().ok_or(ParseError::BadLength)?)?;
            let name = file_name(ops.next().ok_or(ParseError::BadFileName)?)?;
            if ops.next().is_some() {
                return Err(ParseError::BadOperand("extra operand after file name"));
            }
            Ok(if code == 2 {
                Subcommand::ControlFile { length, name }
            } else {
                Subcommand::DataFile { length, name }
            })
        }
        other => Err(ParseError::UnknownCode(other)),
    }
}

/// One data file a control file prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintFile {
    /// The data file's name, as in the receive-data-file subcommand.
    pub data_file: String,
    /// The print command letter of its first print line (`l`, `f`, `o`, ...).
    pub format: u8,
    /// How many print lines name it (RFC 1179 section 7: one per copy).
    pub copies: u32,
    /// Its source file name (`N` line), if given.
    pub source_name: Option<String>,
}

/// A parsed control file (RFC 1179 section 7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlFile {
    /// `H`: host name of the sender.
    pub host: Option<String>,
    /// `P`: user identification (the owner).
    pub user: Option<String>,
    /// `J`: job name for the banner page.
    pub job_name: Option<String>,
    /// `C`: class for the banner page.
    pub class: Option<String>,
    /// `L`: user name for the banner page.
    pub banner_user: Option<String>,
    /// `M`: mail when printed, to this user.
    pub mail: Option<String>,
    /// `T`: title for `pr`.
    pub title: Option<String>,
    /// `I`: indent.
    pub indent: Option<u32>,
    /// `W`: width.
    pub width: Option<u32>,
    /// The data files printed, in the order of their first print line.
    pub files: Vec<PrintFile>,
    /// `U` lines: data files to unlink after printing.
    pub unlink: Vec<String>,
    /// Lines of unknown or unused types that were skipped.
    pub ignored: u32,
}

impl ControlFile {
    /// The job's name: `J`, else the first `N`, else the first `T`.
    pub fn name(&self) -> Option<&str> {
        self.job_name
            .as_deref()
            .or_else(|| self.files.iter().find_map(|f| f.source_name.as_deref()))
            .or(self.title.as_deref())
    }

    /// The job's owner: `P`, else `L`.
    pub fn owner(&self) -> Option<&str> {
        self.user.as_deref().or(self.banner_user.as_deref())
    }

    /// True when `name` is a data file this control file prints.
    pub fn prints(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.data_file == name)
    }
}

fn text(bytes: &[u8]) -> Option<String> {
    Some(clean(&String::from_utf8_lossy(bytes))).filter(|s| !s.is_empty())
}

fn number(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Parses a control file. Lines end in LF (a CR before it is ignored); a
/// last line without LF counts; unknown line types are skipped.
pub fn parse_control_file(data: &[u8]) -> Result<ControlFile, ParseError> {
    if data.len() > MAX_CONTROL_FILE {
        return Err(ParseError::ControlTooLarge);
    }
    if data.contains(&0) {
        return Err(ParseError::Binary);
    }
    let mut cf = ControlFile::default();
    // An `N` line names the file of the print line next to it: BSD lpr writes
    // it after the print lines, LPRng and CUPS before. Attach it to the print
    // line before it unless that one has a name already, else to the next.
    let mut pending_name: Option<String> = None;
    let mut last_file: Option<usize> = None;
    for raw in data.split(|b| *b == b'\n') {
        let line = strip_cr(raw);
        if line.len() > MAX_CONTROL_LINE {
            return Err(ParseError::LineTooLong);
        }
        let Some((&kind, op)) = line.split_first() else {
            continue;
        };
        match kind {
            b'H' => cf.host = text(op),
            b'P' => cf.user = text(op),
            b'J' => cf.job_name = text(op),
            b'C' => cf.class = text(op),
            b'L' => cf.banner_user = text(op),
            b'M' => cf.mail = text(op),
            b'T' => cf.title = text(op),
            b'I' => cf.indent = number(op),
            b'W' => cf.width = number(op),
            b'U' => {
                if let Some(n) = text(op) {
                    if cf.unlink.len() < MAX_DATA_FILES {
                        cf.unlink.push(n);
                    }
                }
            }
            b'N' => {
                let name = text(op);
                match last_file {
                    Some(i) if cf.files[i].source_name.is_none() => cf.files[i].source_name = name,
                    _ => pending_name = name,
                }
            }
            // Print lines: every lower-case letter (RFC 1179 section 7 defines
            // c d f g l n o p r t v; LPRng adds others such as k and z).
            b'a'..=b'z' => {
                let Some(data_file) = text(op) else {
                    cf.ignored += 1;
                    continue;
                };
                if let Some(i) = cf.files.iter().position(|f| f.data_file == data_file) {
                    let f = &mut cf.files[i];
                    if f.copies >= MAX_COPIES {
                        return Err(ParseError::TooManyCopies);
                    }
                    f.copies += 1;
                    last_file = Some(i);
                } else {
                    if cf.files.len() == MAX_DATA_FILES {
                        return Err(ParseError::TooManyDataFiles);
                    }
                    cf.files.push(PrintFile {
                        data_file,
                        format: kind,
                        copies: 1,
                        source_name: pending_name.take(),
                    });
                    last_file = Some(cf.files.len() - 1);
                }
            }
            // Troff fonts (1-4), symbolic links (S) and everything unknown.
            _ => cf.ignored += 1,
        }
    }
    Ok(cf)
}

/// The MIME type a print command letter implies, if any (RFC 1179 section 7).
pub fn format_of_letter(letter: u8) -> Option<&'static str> {
    match letter {
        b'o' => Some("application/postscript"),
        b'f' | b'p' | b'r' => Some("text/plain"),
        b'd' => Some("application/x-dvi"),
        // `l` (raw, keep control characters) and the rest: sniff the data.
        _ => None,
    }
}

/// The LPD job number (3 digits, RFC 1179 section 6.2) of a per-tenant job id.
pub fn job_number(id: u32) -> u32 {
    id % 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_of_every_kind() {
        assert_eq!(
            parse_command(b"\x02lobby"),
            Ok(Command::ReceiveJob {
                queue: "lobby".into()
            })
        );
        assert_eq!(
            parse_command(b"\x01lobby\r"),
            Ok(Command::PrintWaiting {
                queue: "lobby".into()
            })
        );
        assert_eq!(
            parse_command(b"\x04lobby alice 12"),
            Ok(Command::QueueState {
                queue: "lobby".into(),
                long: true,
                list: vec!["alice".into(), "12".into()]
            })
        );
        assert_eq!(
            parse_command(b"\x05lobby  root\t7 bob\r"),
            Ok(Command::Remove {
                queue: "lobby".into(),
                agent: "root".into(),
                list: vec!["7".into(), "bob".into()]
            })
        );
        assert_eq!(parse_command(b""), Err(ParseError::Empty));
        assert_eq!(parse_command(b"\x09q"), Err(ParseError::UnknownCode(9)));
        assert_eq!(parse_command(b"\x02"), Err(ParseError::BadQueue));
        assert_eq!(parse_command(b"\x02q\x7f"), Err(ParseError::BadQueue));
        assert!(matches!(
            parse_command(b"\x05lobby"),
            Err(ParseError::BadOperand(_))
        ));
        let long_list = format!("\x03q{}", " x".repeat(MAX_LIST_ITEMS + 1));
        assert_eq!(
            parse_command(long_list.as_bytes()),
            Err(ParseError::ListTooLong)
        );
    }

    #[test]
    fn subcommands_with_real_and_placeholder_lengths() {
        assert_eq!(
            parse_subcommand(b"\x02123 cfA001host\r"),
            Ok(Subcommand::ControlFile {
                length: Length::Exact(123),
                name: "cfA001host".into()
            })
        );
        for placeholder in [
            &b"\x030 dfA001host"[..],
            b"\x03999999999999 dfA001host",
            b"\x03125899906843000 dfA001host",
            b"\x0399999999999999999999 dfA001host",
        ] {
            assert_eq!(
                parse_subcommand(placeholder),
                Ok(Subcommand::DataFile {
                    length: Length::UntilClose,
                    name: "dfA001host".into()
                }),
                "{placeholder:?}"
            );
        }
        assert_eq!(parse_subcommand(b"\x01"), Ok(Subcommand::Abort));
        assert_eq!(parse_subcommand(b"\x03-1 dfA"), Err(ParseError::BadLength));
        assert_eq!(
            parse_subcommand(b"\x03123456789012345678901 dfA"),
            Err(ParseError::BadLength)
        );
        assert_eq!(parse_subcommand(b"\x0312"), Err(ParseError::BadFileName));
        assert!(parse_subcommand(b"\x0312 a b").is_err());
        assert_eq!(parse_subcommand(b"\x07"), Err(ParseError::UnknownCode(7)));
    }

    #[test]
    fn control_file_of_every_line_type() {
        let cf = parse_control_file(
            b"Hclient.example\r\nPalice\nJquarterly report\nCA\nLAlice\nMalice\nTtitle\nI8\nW132\n\
              NQ3.txt\nfdfA042client\nfdfA042client\nUdfA042client\n\
              ldfB042client\nNraw.prn\nodfC042client\n1R\nSlink\nAid+42\nQlobby\nzdfD042client",
        )
        .unwrap();
        assert_eq!(cf.host.as_deref(), Some("client.example"));
        assert_eq!(cf.owner(), Some("alice"));
        assert_eq!(cf.name(), Some("quarterly report"));
        assert_eq!(cf.class.as_deref(), Some("A"));
        assert_eq!(cf.banner_user.as_deref(), Some("Alice"));
        assert_eq!(cf.mail.as_deref(), Some("alice"));
        assert_eq!(cf.title.as_deref(), Some("title"));
        assert_eq!((cf.indent, cf.width), (Some(8), Some(132)));
        assert_eq!(cf.unlink, vec!["dfA042client".to_string()]);
        let files: Vec<(&str, u8, u32, Option<&str>)> = cf
            .files
            .iter()
            .map(|f| {
                (
                    f.data_file.as_str(),
                    f.format,
                    f.copies,
                    f.source_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            files,
            vec![
                ("dfA042client", b'f', 2, Some("Q3.txt")),
                ("dfB042client", b'l', 1, Some("raw.prn")),
                ("dfC042client", b'o', 1, None),
                ("dfD042client", b'z', 1, None),
            ]
        );
        assert_eq!(cf.ignored, 4, "1, S, A and Q lines are skipped");
        assert!(cf.prints("dfC042client") && !cf.prints("dfX"));
    }

    #[test]
    fn control_file_limits() {
        assert_eq!(
            parse_control_file(&vec![b'J'; MAX_CONTROL_FILE + 1]),
            Err(ParseError::ControlTooLarge)
        );
        assert_eq!(
            parse_control_file(&vec![b'J'; MAX_CONTROL_LINE + 1]),
            Err(ParseError::LineTooLong)
        );
        assert_eq!(parse_control_file(b"Pa\0"), Err(ParseError::Binary));
        let many: String = (0..=MAX_DATA_FILES).map(|i| format!("ldf{i}\n")).collect();
        assert_eq!(
            parse_control_file(many.as_bytes()),
            Err(ParseError::TooManyDataFiles)
        );
        let copies = "ldfA\n".repeat(MAX_COPIES as usize + 1);
        assert_eq!(
            parse_control_file(copies.as_bytes()),
            Err(ParseError::TooManyCopies)
        );
        // Without J the job name is the first N.
        let cf = parse_control_file(b"Pbob\nldfA\nNfirst\nldfB\nNsecond\n").unwrap();
        assert_eq!(cf.name(), Some("first"));
        assert_eq!(cf.files[1].source_name.as_deref(), Some("second"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn control_file_parser_never_panics_and_stays_bounded(data in proptest::collection::vec(any::<u8>(), 0..8192)) {
            if let Ok(cf) = parse_control_file(&data) {
                prop_assert!(cf.files.len() <= MAX_DATA_FILES);
                prop_assert!(cf.unlink.len() <= MAX_DATA_FILES);
                prop_assert!(cf.files.iter().all(|f| f.copies >= 1 && f.copies <= MAX_COPIES));
                prop_assert!(cf.files.iter().all(|f| f.data_file.len() <= MAX_CONTROL_LINE));
            }
        }

        #[test]
        fn control_file_from_lines_of_known_types(lines in proptest::collection::vec(("[HPJCLNUMTIWlfo]", "[ -~]{0,40}"), 0..200)) {
            let text: String = lines.iter().map(|(k, v)| format!("{k}{v}\r\n")).collect();
            let _ = parse_control_file(text.as_bytes());
        }

        #[test]
        fn command_and_subcommand_parsers_never_panic(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(c) = parse_command(&line) {
                prop_assert!(!c.queue().is_empty() && c.queue().len() <= MAX_QUEUE_NAME_LEN);
                if let Command::QueueState { list, .. } | Command::Remove { list, .. } = &c {
                    prop_assert!(list.len() <= MAX_LIST_ITEMS);
                }
            }
            if let Ok(Subcommand::ControlFile { name, length } | Subcommand::DataFile { name, length }) = parse_subcommand(&line) {
                prop_assert!(name.len() <= MAX_FILE_NAME);
                if let Length::Exact(n) = length {
                    prop_assert!(n > 0 && n < PLACEHOLDER_LENGTH);
                }
            }
        }

        #[test]
        fn well_formed_subcommands_round_trip(n in 1u64..PLACEHOLDER_LENGTH, name in "[!-~]{1,64}") {
            let line = format!("\x03{n} {name}\r");
            prop_assert_eq!(parse_subcommand(line.as_bytes()), Ok(Subcommand::DataFile { length: Length::Exact(n), name }));
        }
    }
}
