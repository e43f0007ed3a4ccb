//! Private by default: the modes printroute gives the folders and files it
//! creates (data dir, database folder, spool folders, documents, stored
//! copies), set explicitly at creation so that the process's umask neither
//! opens them up (`umask 0` would make them world-readable) nor closes them
//! more than the config asks.
//!
//! The mode is one process-wide policy, like the umask it replaces:
//! `global.group-readable` (set by the daemon with [`set_group_readable`]
//! before the store opens, and again on reload).

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Mode of a folder only the daemon's user may enter.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a file only the daemon's user may read.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Folder mode with `global.group-readable = true`: the group may read and enter.
pub const GROUP_DIR_MODE: u32 = 0o750;
/// File mode with `global.group-readable = true`: the group may read.
pub const GROUP_FILE_MODE: u32 = 0o640;

static GROUP_READABLE: AtomicBool = AtomicBool::new(false);

/// Sets the policy: folders and files created from now on are readable by
/// the daemon's group too (`true`) or by its user only (`false`, the default).
pub fn set_group_readable(on: bool) {
    GROUP_READABLE.store(on, Ordering::Relaxed);
}

/// Narrows the process's umask to the policy (0077, or 0027 when group
/// readable), for the files that code not ours creates under the data dir
/// (sled's database files and snapshots): printroute's own folders and
/// files get their modes explicitly and do not depend on it. The daemon
/// calls it at start and after each reload, after [`set_group_readable`].
pub fn narrow_umask() {
    let mask = 0o777 & !dir_mode();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
}

/// The mode a new folder gets under the current policy.
pub fn dir_mode() -> u32 {
    if GROUP_READABLE.load(Ordering::Relaxed) {
        GROUP_DIR_MODE
    } else {
        PRIVATE_DIR_MODE
    }
}

/// The mode a new file gets under the current policy.
pub fn file_mode() -> u32 {
    if GROUP_READABLE.load(Ordering::Relaxed) {
        GROUP_FILE_MODE
    } else {
        PRIVATE_FILE_MODE
    }
}

/// Like `std::fs::create_dir_all`, but every folder it creates gets
/// [`dir_mode`] exactly (whatever the umask); folders that exist are left as they are.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    let mode = dir_mode();
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        // The umask may have taken bits away: give the exact mode back.
        Ok(()) => std::fs::set_permissions(path, Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates (or truncates) a file for writing with [`file_mode`] exactly.
pub fn create_file(path: &Path) -> io::Result<File> {
    let mode = file_mode();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_folders_get_the_mode_whatever_exists_above() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            let m = std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, dir_mode(), "{p}");
        }
        let f = deep.join("f");
        drop(create_file(&f).unwrap());
        let m = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(m & 0o777, file_mode());
    }
}
