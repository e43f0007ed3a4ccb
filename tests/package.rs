//! The Debian package installs, checks its shipped config and removes cleanly
//! on this machine: `scripts/package.sh` builds it (cargo-deb), `dpkg -i`
//! installs it, the installed binary accepts the installed config, the man
//! page and the completions are where man and the shells look, the unit
//! passes `systemd-analyze verify` and scores at most 2.0 in
//! `systemd-analyze security --offline=yes`; `apt-get remove` keeps the
//! config and the job data, `apt-get purge` deletes the config and still
//! keeps the job data.
//!
//! Needs root (it installs a package and creates the `printroute` user), and
//! dpkg, apt-get, man (Debian package `man-db`) and systemd-analyze (`systemd`).
//! A missing tool fails the test. Everything the test added to the machine
//! is taken away again at the end, also when it fails, so it can run again.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Debian package's name.
const PACKAGE: &str = "printroute";
/// Where the package installs the config (a conffile).
const CONFIG: &str = "/etc/printroute/printroute.toml";
/// The package's data dir, which only an admin ever deletes.
const DATA_DIR: &str = "/var/lib/printroute";
/// The installed unit (`/lib` is `/usr/lib` on Debian 12).
const UNIT: &str = "/lib/systemd/system/printroute.service";
/// Where bash-completion looks for the completion of `printroute`.
const BASH_COMPLETION: &str = "/usr/share/bash-completion/completions/printroute";
/// Where zsh and fish look for vendor completions.
const ZSH_COMPLETION: &str = "/usr/share/zsh/vendor-completions/_printroute";
const FISH_COMPLETION: &str = "/usr/share/fish/vendor_completions.d/printroute.fish";
/// Users and groups the package creates (debian/printroute.sysusers).
const SYSTEM_USER: &str = "printroute";
const ADMIN_GROUP: &str = "printroute-admin";
/// The hardening gate: exposure at most 2.0 (`--threshold` counts tenths).
const MAX_EXPOSURE: f64 = 2.0;
/// Building the package: installing cargo-deb (about a minute, once) plus a
/// release build from nothing (about 4 minutes on 2 cores).
const PACKAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Fails the test unless `tool` is on PATH; returns its path.
fn require(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed (the package test needs it)"))
}

/// Runs `cmd` to its end and returns its output; `what` names it in failures.
fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"))
}

/// Runs `cmd` and fails the test unless it succeeds; returns its stdout.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = run(cmd, what);
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exists(db: &str, name: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

/// The cargo target dir this test was built in (`<target>/debug/deps/package-*`),
/// so that the package's release build shares it (the test command has built
/// the release binary there already).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.ancestors()
        .nth(3)
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the .deb with scripts/package.sh; returns its path.
fn build_package() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh");
    let stdout = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(&script)
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .stdout(stdout.reopen().unwrap())
        // Its own process group, so that a timeout stops cargo and rustc too.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
    let deadline = Instant::now() + PACKAGE_BUILD_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "{} did not finish within {PACKAGE_BUILD_TIMEOUT:?}",
                script.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    stdout.reopen().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "{}: {status}", script.display());
    let deb = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "{} printed {out:?}, not the path of a .deb",
        script.display()
    );
    deb
}

/// What was on the machine before the test; dropping it puts the machine back.
struct Machine {
    had_user: bool,
    had_admin_group: bool,
    had_data_dir: bool,
    marker: PathBuf,
}

impl Machine {
    fn record() -> Machine {
        Machine {
            had_user: exists("passwd", SYSTEM_USER),
            had_admin_group: exists("group", ADMIN_GROUP),
            had_data_dir: Path::new(DATA_DIR).exists(),
            marker: Path::new(DATA_DIR).join("package-test-job-data"),
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).status();
        }
        let _ = std::fs::remove_file(&self.marker);
        if !self.had_data_dir {
            let _ = std::fs::remove_dir_all(DATA_DIR);
        }
        if !self.had_user && exists("passwd", SYSTEM_USER) {
            let _ = Command::new("userdel").arg(SYSTEM_USER).status();
        }
        if !self.had_user && exists("group", SYSTEM_USER) {
            let _ = Command::new("groupdel").arg(SYSTEM_USER).status();
        }
        if !self.had_admin_group && exists("group", ADMIN_GROUP) {
            let _ = Command::new("groupdel").arg(ADMIN_GROUP).status();
        }
    }
}

/// The overall exposure `systemd-analyze security` prints, e.g. 1.6.
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn package_installs_checks_its_config_and_removes_cleanly() {
    let is_root = run_ok(Command::new("id").arg("-u"), "id -u").trim() == "0";
    assert!(is_root, "the package test installs a .deb: run it as root");
    let dpkg = require("dpkg");
    let apt_get = require("apt-get");
    let man = require("man");
    let systemd_analyze = require("systemd-analyze");
    require("userdel");
    require("groupdel");

    // A run that died half-way may have left the package installed.
    if installed() {
        run_ok(
            Command::new(&dpkg).args(["--purge", PACKAGE]),
            "dpkg --purge (a previous run's package)",
        );
    }
    let deb = build_package();
    let machine = Machine::record();

    run_ok(Command::new(&dpkg).arg("-i").arg(&deb), "dpkg -i");

    // The installed binary accepts the installed config.
    let check = run_ok(
        Command::new("/usr/bin/printroute").args(["check", CONFIG]),
        "printroute check (installed)",
    );
    assert!(check.starts_with("ok: "), "{check}");

    // man finds printroute(8) and a page per subcommand.
    let page = run_ok(Command::new(&man).args(["-w", "printroute"]), "man -w");
    assert!(
        page.contains("man8/printroute.8"),
        "man -w printroute: {page}"
    );
    run_ok(
        Command::new(&man).args(["-w", "8", "printroute-serve"]),
        "man -w 8 printroute-serve",
    );

    // Completions, without the hidden generate-assets subcommand.
    for file in [BASH_COMPLETION, ZSH_COMPLETION, FISH_COMPLETION] {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains("release"), "{file} completes no subcommands");
        assert!(
            !text.contains("generate-assets"),
            "{file} offers generate-assets"
        );
    }

    // The system user owns the data dir; the daemon's user cannot log in.
    let uid: u32 = run_ok(
        Command::new("id").args(["-u", SYSTEM_USER]),
        "id -u printroute",
    )
    .trim()
    .parse()
    .unwrap();
    let data = std::fs::metadata(DATA_DIR).expect("the package creates /var/lib/printroute");
    assert_eq!(data.uid(), uid, "{DATA_DIR} belongs to {SYSTEM_USER}");
    assert!(
        exists("group", ADMIN_GROUP),
        "{ADMIN_GROUP} was not created"
    );

    // The unit: verified, and hardened to the agreed score.
    let verify = run(
        Command::new(&systemd_analyze).args(["verify", UNIT]),
        "systemd-analyze verify",
    );
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !verify_err.contains("printroute"),
        "systemd-analyze verify {UNIT}: {}\n{verify_err}",
        verify.status
    );
    let security = run(
        Command::new(&systemd_analyze).args([
            "security",
            "--offline=yes",
            &format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32),
            UNIT,
        ]),
        "systemd-analyze security",
    );
    let report = String::from_utf8_lossy(&security.stdout);
    let score = exposure(&report).unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security --offline=yes {UNIT}: {score}");
    assert!(
        security.status.success() && score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );

    // Job data the daemon would have written.
    std::fs::write(&machine.marker, b"a job").unwrap();

    run_ok(
        Command::new(&apt_get).args(["remove", "-y", PACKAGE]),
        "apt-get remove",
    );
    assert!(
        !Path::new("/usr/bin/printroute").exists(),
        "remove left the binary"
    );
    assert!(Path::new(CONFIG).is_file(), "remove deleted the config");
    assert!(machine.marker.is_file(), "remove deleted job data");

    run_ok(
        Command::new(&apt_get).args(["purge", "-y", PACKAGE]),
        "apt-get purge",
    );
    assert!(!Path::new(CONFIG).exists(), "purge kept the config");
    assert!(
        !Path::new("/etc/printroute").exists(),
        "purge kept /etc/printroute"
    );
    assert!(
        machine.marker.is_file(),
        "purge deleted job data in {DATA_DIR}"
    );
    assert!(!installed(), "{PACKAGE} is still installed after purge");
}

#[test]
fn exposure_is_read_from_the_report() {
    let report = "  NAME  DESCRIPTION  EXPOSURE\n\u{2192} Overall exposure level for printroute.service: 1.6 OK \u{1f642}\n";
    assert_eq!(exposure(report), Some(1.6));
    assert_eq!(exposure("nothing"), None);
}
