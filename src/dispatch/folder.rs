//! The `store` step: write the document into a tenant's folder, atomically
//! (temp file, sync, rename, sync the folder) and under a safe name, without
//! ever following or overwriting anything that is not the daemon's own.
//!
//! Whoever may write into a store folder (a scan or archive share) may plant
//! symlinks and hard links there, or swap the folder for a symlink. So the
//! folder is opened once per job as a directory handle that refuses a
//! symlink (unless the step says `follow-symlink = true`); every name is
//! resolved against that handle; the temporary file is created new
//! (`O_CREAT | O_EXCL | O_NOFOLLOW`) under an unpredictable name, so it is
//! never an existing file or link; and it is renamed into place without
//! replacing anything (`RENAME_NOREPLACE`): a taken name gains a suffix.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};

use crate::store::document::Document;
use crate::store::job::Job;
use crate::store::private;

/// Longest job-name part of a stored file's name.
pub const MAX_STORED_NAME_LEN: usize = 100;

/// Random bytes in a temporary file's name (hex-encoded).
const TEMP_NAME_RANDOM_BYTES: usize = 16;

/// New temporary names tried when one is taken, before giving up.
const MAX_TEMP_NAME_TRIES: u32 = 8;

/// Suffixes (`-1`, `-2`, ...) tried when a stored name is taken, before giving up.
pub const MAX_NAME_SUFFIXES: u32 = 1000;

/// The file name a job is stored under: `<id>-<job name made safe>`; never
/// contains a path separator, never starts with a dot.
pub fn stored_name(job: &Job) -> String {
    let mut safe: String = job
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe.truncate(MAX_STORED_NAME_LEN);
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        job.id.to_string()
    } else {
        format!("{}-{safe}", job.id)
    }
}

/// The `n`th other name for a taken `name`: `7-report.pdf` -> `7-report-1.pdf`.
pub fn suffixed_name(name: &str, n: u32) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{}-{n}{}", &name[..dot], &name[dot..]),
        _ => format!("{name}-{n}"),
    }
}

/// Copies the job's document into `folder`; returns the stored file's path.
/// `follow_symlink`: the folder may be a symlink.
pub async fn store(
    job: &Job,
    doc: Document,
    folder: &Path,
    follow_symlink: bool,
) -> io::Result<PathBuf> {
    let (job, folder) = (job.clone(), folder.to_owned());
    tokio::task::spawn_blocking(move || {
        let dir = open_folder(&folder, follow_symlink)?;
        let name = store_in(&dir, &job, &doc)?;
        Ok(folder.join(name))
    })
    .await
    .map_err(io::Error::other)?
}

/// Opens `folder` as a directory handle (created with the private mode if
/// missing); a symlink is refused unless `follow_symlink`.
fn open_folder(folder: &Path, follow_symlink: bool) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let open = |flags| rustix::fs::openat(CWD, folder, flags, Mode::empty());
    let nofollow = flags | OFlags::NOFOLLOW;
    let dir = match open(nofollow) {
        Err(rustix::io::Errno::NOENT) => {
            private::create_dir_all(folder)?;
            open(nofollow)
        }
        other => other,
    };
    match dir {
        Ok(d) => Ok(d),
        // O_NOFOLLOW on a symlink: ELOOP (ENOTDIR on some kernels with O_DIRECTORY).
        Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) if is_symlink(folder) => {
            if follow_symlink {
                Ok(open(flags)?)
            } else {
                Err(io::Error::other(format!(
                    "{} is a symlink; refused (set follow-symlink = true on the store step to allow it): {e}",
                    folder.display()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// A temporary name nobody can guess: `.printroute-<random hex>.tmp`.
fn temp_name() -> io::Result<String> {
    let mut bytes = [0u8; TEMP_NAME_RANDOM_BYTES];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(".printroute-{hex}.tmp"))
}

/// Writes the job into `dir` under a name of its own; returns the name.
fn store_in(dir: &OwnedFd, job: &Job, doc: &Document) -> io::Result<String> {
    let mode = Mode::from_raw_mode(private::file_mode());
    let create =
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut tries = 0;
    let (tmp, fd) = loop {
        let tmp = temp_name()?;
        match rustix::fs::openat(dir, tmp.as_str(), create, mode) {
            Ok(fd) => break (tmp, fd),
            Err(rustix::io::Errno::EXIST) if tries + 1 < MAX_TEMP_NAME_TRIES => tries += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let result = (|| {
        // The umask may have taken bits away: the policy's mode exactly.
        rustix::fs::fchmod(&fd, mode)?;
        let mut out = File::from(fd);
        io::copy(&mut doc.blocking_reader()?, &mut out)?;
        out.sync_all()?;
        drop(out);
        let name = place(dir, &tmp, &stored_name(job))?;
        rustix::fs::fsync(dir)?;
        Ok(name)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Renames `tmp` to `name` in `dir`, or to the first free suffixed name;
/// never replaces an existing entry.
fn place(dir: &OwnedFd, tmp: &str, name: &str) -> io::Result<String> {
    for n in 0..=MAX_NAME_SUFFIXES {
        let target = if n == 0 {
            name.to_owned()
        } else {
            suffixed_name(name, n)
        };
        match rename_noreplace(dir, tmp, &target) {
            Ok(()) => return Ok(target),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{name} and its {MAX_NAME_SUFFIXES} suffixed names are all taken"),
    ))
}

/// `renameat2(RENAME_NOREPLACE)`; where the file system does not support
/// it (EINVAL), a hard link of the new file under the target name (which
/// fails on an existing name too) and the temporary name's removal.
fn rename_noreplace(dir: &OwnedFd, tmp: &str, target: &str) -> rustix::io::Result<()> {
    match rustix::fs::renameat_with(dir, tmp, dir, target, RenameFlags::NOREPLACE) {
        Err(rustix::io::Errno::INVAL) => {
            rustix::fs::linkat(dir, tmp, dir, target, AtFlags::empty())?;
            rustix::fs::unlinkat(dir, tmp, AtFlags::empty())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ids::{JobId, ListenerName, TenantId};
    use crate::store::job::JobState;

    fn job(name: &str) -> Job {
        Job {
            tenant: TenantId::parse("a").unwrap(),
            id: JobId(7),
            listener: ListenerName("raw".into()),
            queue: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            user: "u".into(),
            name: name.into(),
            format: None,
            size: 0,
            sha256: String::new(),
            document_sealed: false,
            workflow: "w".into(),
            step: 0,
            state: JobState::Pending,
            created_ms: 0,
            hold_until_ms: None,
            step_started_ms: 0,
            delivering: None,
            history: vec![],
            history_dropped: 0,
            ipp_job_attributes: None,
            pin: None,
        }
    }

    #[test]
    fn stored_names_stay_inside_the_folder() {
        assert_eq!(stored_name(&job("report.pdf")), "7-report.pdf");
        assert_eq!(stored_name(&job("../../etc/passwd")), "7-_.._etc_passwd");
        assert_eq!(stored_name(&job("..")), "7");
        assert_eq!(stored_name(&job("")), "7");
        assert!(stored_name(&job(&"x/".repeat(500))).len() <= MAX_STORED_NAME_LEN + 2);
    }

    #[test]
    fn taken_names_gain_a_suffix_before_the_extension() {
        assert_eq!(suffixed_name("7-report.pdf", 1), "7-report-1.pdf");
        assert_eq!(suffixed_name("7", 2), "7-2");
        assert_eq!(suffixed_name("7-a.b.c", 3), "7-a.b-3.c");
    }
}
