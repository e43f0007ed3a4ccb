//! A newcomer's first hour: the daemon started on the shipped
//! `config/printroute.toml` as README.md says, and every line of the
//! README's "Try it" run as written, with the real clients it names (the
//! CUPS socket, lpd and ipp backends, ipptool, lp, lpstat, LPRng's lpr,
//! socat, printroute's admin commands). Each line's own comment in the
//! README says where its job lands; the test checks exactly that place got
//! the job and no other did.
//!
//! The lines are read from README.md, not copied here, so the README and
//! the test cannot drift apart. Substituted, and nothing else: the RAW
//! printer's files go to a temp folder instead of `/tmp/floor1.*`,
//! `target/release/printroute` is the binary under test, and the daemon's
//! state goes to a temp folder through `PRINTROUTE_DATA_DIR` (documented
//! in the README), so that an earlier run of the example is neither read
//! nor changed. The example's ports (9100, 5515, 6631 on loopback) are
//! fixed: it is the example a newcomer runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;

/// Where `scripts/lprng.sh` unpacks LPRng.
const LPRNG: &str = "/opt/printroute-test/lprng";

/// The document every line prints.
const DOC: &str = "/etc/hostname";

/// The README's `lpr` is LPRng's; it is unpacked beside CUPS (the package
/// conflicts with cups-bsd) and run in namespaces of its own: a mount
/// namespace that shows it the tests' `/etc/lprng` where `scripts/lprng.sh`
/// keeps that under its folder (the machine's `/etc/lprng` is never read or
/// changed), and a PID namespace (LPRng signals pids from lock files).
const LPR_WRAPPER: &str = r#"#!/bin/sh
set -e
export LPRNG=@LPRNG@
lpr="$LPRNG/root/usr/bin/lpr"
if [ -f "$LPRNG/etc/lprng/lpd.conf" ]; then
    exec unshare --mount --pid --fork --kill-child sh -c '
        set -e
        if [ ! -d /etc/lprng ]; then
            ns=$(mktemp -d)
            mount -t tmpfs -o mode=0755,size=1m printroute-lprng "$ns"
            mkdir -p "$ns/upper/lprng" "$ns/work"
            mount -t overlay -o "lowerdir=/etc,upperdir=$ns/upper,workdir=$ns/work" printroute-etc /etc
        fi
        mount --bind "$LPRNG/etc/lprng" /etc/lprng
        exec "$0" "$@"' "$lpr" "$@"
fi
exec unshare --pid --fork --kill-child "$lpr" "$@"
"#;

/// Where a README line says its job lands (from its comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lands {
    /// In acme's RAW printer floor1 (`/tmp/floor1.*`).
    Floor1,
    /// In globex's archive folder.
    Archive,
    /// Held in acme's queue.
    Held,
    /// Nothing printed: a look at printers and jobs.
    Nothing,
}

/// The README's "Try it" section: its shell lines, in order.
fn try_it_lines(readme: &str) -> Vec<String> {
    let section = readme
        .split_once("### Try it")
        .expect("README.md has a \"Try it\" section")
        .1;
    let section = section.split("\n## ").next().unwrap();
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block && !line.trim().is_empty() {
            lines.push(line.to_owned());
        }
    }
    lines
}

/// What a line's comment promises.
fn promise(line: &str) -> Lands {
    let comment = line.split_once(" # ").map_or("", |(_, c)| c);
    if comment.contains("lands in /tmp/floor1.*") {
        Lands::Floor1
    } else if comment.contains("lands in /tmp/printroute/archive/globex") {
        Lands::Archive
    } else if comment.contains("held in acme") {
        Lands::Held
    } else {
        Lands::Nothing
    }
}

/// Files in `dir` holding exactly `content`.
fn copies_in(dir: &Path, content: &[u8]) -> usize {
    stored_documents(dir)
        .iter()
        .filter(|(_, data)| data == content)
        .count()
}

struct World {
    root: PathBuf,
    dir: tempfile::TempDir,
    doc: Vec<u8>,
}

impl World {
    fn floor1(&self) -> PathBuf {
        self.dir.path().join("floor1")
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn archive(&self) -> PathBuf {
        self.data().join("archive/globex")
    }
    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// A README line as the test runs it (see the module doc).
    fn localise(&self, line: &str) -> String {
        line.replace(
            "/tmp/floor1.",
            &format!("{}/floor1.", self.floor1().display()),
        )
        .replace("target/release/printroute", bin())
    }

    /// Runs a shell line from the repository's folder, as a newcomer would.
    fn sh(&self, line: &str) -> Command {
        let mut c = Command::new(require("sh"));
        let path = format!(
            "{}:{}",
            self.bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.arg("-c")
            .arg(line)
            .current_dir(&self.root)
            .env("PATH", path)
            .env("PRINTROUTE_DATA_DIR", self.data())
            // The CUPS backends read the document from fd 4 otherwise.
            .stdin(Stdio::null());
        c
    }

    /// The job counts at each place a line may print to.
    fn counts(&self) -> (usize, usize, usize) {
        (
            copies_in(&self.floor1(), &self.doc),
            copies_in(&self.archive(), &self.doc),
            self.held(),
        )
    }

    /// acme's held jobs, as the admin command shows them.
    fn held(&self) -> usize {
        let out = self
            .sh(&self.localise(
                "target/release/printroute jobs --tenant acme --state held --json --config config/printroute.toml",
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "printroute jobs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().len()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_try_it_line_of_the_readme_prints_where_it_says() {
    for tool in [
        "socat", "ipptool", "lp", "lpstat", "socket", "lpd", "ipp", "unshare",
    ] {
        require(tool);
    }
    let lpr = Path::new(LPRNG).join("root/usr/bin/lpr");
    assert!(
        lpr.exists(),
        "LPRng is not unpacked at {LPRNG}: run the test command from README.md, which runs scripts/lprng.sh"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let w = World {
        root: root.clone(),
        dir: tempfile::tempdir().unwrap(),
        doc: std::fs::read(DOC).unwrap(),
    };
    std::fs::create_dir_all(w.floor1()).unwrap();
    std::fs::create_dir_all(w.bin_dir()).unwrap();
    let wrapper = w.bin_dir().join("lpr");
    std::fs::write(&wrapper, LPR_WRAPPER.replace("@LPRNG@", LPRNG)).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // The README's first command, `cargo run --release -- serve --config
    // config/printroute.toml`, runs this binary so.
    assert!(readme.contains("cargo run --release -- serve --config config/printroute.toml"));
    let log_path = w.dir.path().join("daemon.log");
    let mut daemon = Daemon(
        Command::new(bin())
            .args(["serve", "--config", "config/printroute.toml"])
            .current_dir(&root)
            .env("PRINTROUTE_DATA_DIR", w.data())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("the daemon to be ready", || {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!("the daemon exited ({status}); log:\n{}", log());
        }
        log().contains("printroute ready").then_some(())
    });

    let lines = try_it_lines(&readme);
    assert!(lines.len() >= 10, "Try it has its lines: {lines:#?}");
    let mut device: Option<Device> = None;
    let mut seen = Vec::new();
    for line in &lines {
        let run = w.localise(line);
        if line.trim_end().ends_with('&') {
            // The printer, started in the background.
            assert!(line.starts_with("socat -u TCP-LISTEN:9101"), "{line}");
            let cmd = format!("exec {}", run.trim_end().trim_end_matches('&'));
            device = Some(Device(w.sh(&cmd).spawn().unwrap()));
            wait_until("floor1 to listen", || {
                std::net::TcpStream::connect("127.0.1.50:9101")
                    .ok()
                    .map(|_| ())
            });
            // That probe was a connection: an empty file, not a job.
            continue;
        }
        assert!(device.is_some(), "the printer is started first");
        let lands = promise(line);
        let before = w.counts();
        let out = w.sh(&run).output().unwrap();
        assert!(out.status.success(), "{line}\n{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (floor1, archive, held) = before;
        let expected = match lands {
            // A release moves a held job on to floor1.
            Lands::Floor1 if line.contains(" release ") => (floor1 + 1, archive, held - 1),
            Lands::Floor1 => (floor1 + 1, archive, held),
            Lands::Archive => (floor1, archive + 1, held),
            Lands::Held => (floor1, archive, held + 1),
            Lands::Nothing => before,
        };
        let got = wait_until(&format!("{line}: its job where it says"), || {
            let now = w.counts();
            (now == expected).then_some(now)
        });
        seen.push(lands);
        // What the looking lines show.
        if line.starts_with("lpstat ") {
            for printer in ["print", "direct", "secure"] {
                assert!(
                    stdout.contains(&format!("printer {printer} ")),
                    "{line}: lists acme's printer {printer}\n{stdout}"
                );
            }
            assert!(
                !stdout.contains("archive"),
                "{line}: lists no printer of globex\n{stdout}"
            );
            assert!(
                stdout.contains("secure-"),
                "{line}: lists acme's held jobs\n{stdout}"
            );
        }
        if line.contains("printroute jobs") {
            assert!(
                stdout.contains("held") && stdout.contains("globex/1"),
                "{line}: shows every job\n{stdout}"
            );
        }
        eprintln!("ok {got:?}: {line}");
    }
    for place in [Lands::Floor1, Lands::Archive, Lands::Held] {
        assert!(seen.contains(&place), "a line prints to {place:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("lpr ")) && lines.iter().any(|l| l.starts_with("lp ")),
        "Try it shows lpr and lp"
    );
    drop(device);
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "daemon exit {status}; log:\n{}", log());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut daemon.0.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(
        stdout, "",
        "the daemon writes nothing on stdout unless asked (--announce)"
    );
    assert!(!log().contains("panicked"), "{}", log());
}

/// The daemon, killed if the test fails.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's RAW printer (socat), stopped with the test.
struct Device(Child);

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
