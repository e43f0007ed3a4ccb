//! A real IPP printer for the tests: CUPS's `ippeveprinter`.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use super::{free_port, require, wait_until};

/// A real IPP printer: ippeveprinter keeping every document, with a private
/// D-Bus for its DNS-SD library and DNS-SD registration off (`-r off`).
pub struct EvePrinter {
    pub port: u16,
    pub dir: tempfile::TempDir,
    eve: Child,
    dbus: Child,
}

impl EvePrinter {
    /// A printer that takes PDF, PostScript and unknown formats.
    pub fn start() -> EvePrinter {
        EvePrinter::start_with_command("/bin/true")
    }

    /// With `command` as its print command (it runs once per job, and the
    /// printer answers `server-error-busy` to new jobs meanwhile).
    pub fn start_with_command(command: &str) -> EvePrinter {
        EvePrinter::start_with(
            "application/pdf,application/postscript,application/octet-stream",
            command,
        )
    }

    /// A printer that takes only `formats` (ippeveprinter's `-f`), running
    /// `command` per job.
    pub fn start_with(formats: &str, command: &str) -> EvePrinter {
        let dir = tempfile::tempdir().unwrap();
        let bus = dir.path().join("bus");
        let dbus = Command::new(require("dbus-daemon"))
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("private D-Bus", || bus.exists().then_some(()));
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let port = free_port("127.0.0.1");
        let eve = Command::new(require("ippeveprinter"))
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", bus.display()),
            )
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", bus.display()),
            )
            .args(["-r", "off", "-k", "-n", "localhost", "-c", command])
            .args(["-f", formats])
            .arg("-d")
            .arg(&spool)
            .args(["-p", &port.to_string(), "downstream"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until("ippeveprinter to listen", || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        EvePrinter {
            port,
            dir,
            eve,
            dbus,
        }
    }

    pub fn uri(&self) -> String {
        format!("ipp://127.0.0.1:{}/ipp/print", self.port)
    }

    /// Documents kept, as (file name, bytes).
    pub fn documents(&self) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(self.dir.path().join("spool"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".prn"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap_or_default(),
                )
            })
            .filter(|(_, d)| !d.is_empty())
            .collect()
    }
}

impl Drop for EvePrinter {
    fn drop(&mut self) {
        let _ = self.eve.kill();
        let _ = self.eve.wait();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}
