//! A private CUPS scheduler for the tests: `cupsd -f` with its own
//! ServerRoot, spool, logs and state under a temp dir, listening on a free
//! port of 127.0.0.1, no authentication; killed on drop. Queues are made
//! the way admins make them, with `lpadmin -h`.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use super::{free_port, require, wait_until};

/// A running private cupsd.
pub struct Cupsd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its ServerRoot (config, PPDs, logs, spool under it).
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Cupsd {
    /// Starts cupsd and waits until it listens. `sync_on_close`: it syncs
    /// every spool file it writes (`SyncOnClose Yes`, durable intake).
    pub fn start(sync_on_close: bool) -> Cupsd {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["spool", "tmp", "cache", "state", "log", "ppd"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        // cupsd runs filters and backends as lp: they read the spool under it.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let port = free_port("127.0.0.1");
        std::fs::write(
            root.join("cupsd.conf"),
            format!(
                "Listen 127.0.0.1:{port}\nLogLevel info\nMaxJobs 0\nBrowsing No\n\
                 DefaultAuthType None\nWebInterface No\n\
                 <Location />\n  Order allow,deny\n  Allow all\n</Location>\n\
                 <Policy default>\n  <Limit All>\n    Order deny,allow\n    Allow all\n  </Limit>\n</Policy>\n"
            ),
        )
        .unwrap();
        let r = root.display();
        std::fs::write(
            root.join("cups-files.conf"),
            format!(
                "ServerRoot {r}\nRequestRoot {r}/spool\nTempDir {r}/tmp\nCacheDir {r}/cache\n\
                 StateDir {r}/state\nErrorLog {r}/log/error_log\nAccessLog {r}/log/access_log\n\
                 PageLog {r}/log/page_log\nPrintcap {r}/printcap\nServerBin /usr/lib/cups\n\
                 DataDir /usr/share/cups\nFileDevice Yes\nSyncOnClose {}\n",
                if sync_on_close { "Yes" } else { "No" }
            ),
        )
        .unwrap();
        let child = Command::new(require("cupsd"))
            .arg("-f")
            .arg("-c")
            .arg(root.join("cupsd.conf"))
            .arg("-s")
            .arg(root.join("cups-files.conf"))
            // No system D-Bus: cupsd would try to announce on it.
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let c = Cupsd { port, dir, child };
        wait_until("cupsd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        c
    }

    /// `127.0.0.1:PORT`, for `-h` of the CUPS commands.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs a CUPS command (`lpadmin`, `lp`, `lpstat`) against this cupsd
    /// (`-h` first); its success and output.
    pub fn run(&self, tool: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(require(tool))
            .arg("-h")
            .arg(self.host())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Its error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/error_log")).unwrap_or_default()
    }
}

impl Drop for Cupsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- cupsd error_log ---\n{}", self.log());
        }
    }
}
