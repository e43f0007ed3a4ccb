//! A real IPP printer for the tests: CUPS's `ippeveprinter`.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use super::{free_port, require, wait_until};

/// Starts of ippeveprinter tried (each on a port found free) before a test gives up.
const EVE_START_TRIES: u32 = 3;

/// How to run an `ippeveprinter` ([`EvePrinter::launch`]).
pub struct EveSpec<'a> {
    /// Its name (the service name it advertises and reports).
    pub name: &'a str,
    /// The formats it takes (`-f`).
    pub formats: &'a str,
    /// Its print command (`-c`): it runs once per job, and the printer
    /// answers `server-error-busy` to new jobs meanwhile.
    pub command: &'a str,
    /// Duplex (`-2`).
    pub duplex: bool,
    /// TLS with its own self-signed certificate (`-K`): `ipps://`.
    pub tls: bool,
}

impl Default for EveSpec<'_> {
    fn default() -> Self {
        EveSpec {
            name: "downstream",
            formats: "application/pdf,application/postscript,application/octet-stream",
            command: "/bin/true",
            duplex: false,
            tls: false,
        }
    }
}

/// A real IPP printer: ippeveprinter keeping every document, with a private
/// D-Bus for its DNS-SD library and DNS-SD registration off (`-r off`).
pub struct EvePrinter {
    pub port: u16,
    pub dir: tempfile::TempDir,
    eve: Option<Child>,
    dbus: Child,
}

impl EvePrinter {
    /// A printer that takes PDF, PostScript and unknown formats.
    pub fn start() -> EvePrinter {
        EvePrinter::launch(EveSpec::default())
    }

    /// With `command` as its print command.
    pub fn start_with_command(command: &str) -> EvePrinter {
        EvePrinter::launch(EveSpec {
            command,
            ..EveSpec::default()
        })
    }

    /// A printer that takes only `formats`, running `command` per job.
    pub fn start_with(formats: &str, command: &str) -> EvePrinter {
        EvePrinter::launch(EveSpec {
            formats,
            command,
            ..EveSpec::default()
        })
    }

    /// Starts a printer as `spec` says and waits until it listens.
    pub fn launch(spec: EveSpec<'_>) -> EvePrinter {
        let dir = tempfile::tempdir().unwrap();
        let bus = dir.path().join("bus");
        let mut dbus = Command::new(require("dbus-daemon"))
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("private D-Bus", || bus.exists().then_some(()));
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        // The port is found free, then released for ippeveprinter to bind:
        // another test may take it meanwhile. A printer that exits before
        // it listens is started again on another port; its error output
        // is kept for the failure message.
        let log = dir.path().join("ippeveprinter.log");
        let mut started = None;
        for _ in 0..EVE_START_TRIES {
            let port = free_port("127.0.0.1");
            let mut cmd = Command::new(require("ippeveprinter"));
            cmd.env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", bus.display()),
            )
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", bus.display()),
            )
            .args(["-r", "off", "-k", "-n", "localhost", "-c", spec.command])
            .args(["-f", spec.formats]);
            if spec.duplex {
                cmd.arg("-2");
            }
            if spec.tls {
                let keys = dir.path().join("keys");
                std::fs::create_dir_all(&keys).unwrap();
                cmd.arg("-K").arg(keys);
            }
            let mut eve = cmd
                .arg("-d")
                .arg(&spool)
                .args(["-p", &port.to_string(), spec.name])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let listening = wait_until("ippeveprinter to listen or exit", || {
                if TcpStream::connect(addr).is_ok() {
                    return Some(true);
                }
                eve.try_wait().unwrap().map(|_| false)
            });
            if listening {
                started = Some((port, eve));
                break;
            }
        }
        let Some((port, eve)) = started else {
            let _ = dbus.kill();
            let _ = dbus.wait();
            panic!(
                "ippeveprinter exited {EVE_START_TRIES} times before it listened: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        EvePrinter {
            port,
            dir,
            eve: Some(eve),
            dbus,
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// Its `ipp://` URI.
    pub fn uri(&self) -> String {
        format!("ipp://127.0.0.1:{}/ipp/print", self.port)
    }

    /// Stops the printer (its documents stay readable).
    pub fn stop(&mut self) {
        if let Some(mut e) = self.eve.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
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
        self.stop();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}
