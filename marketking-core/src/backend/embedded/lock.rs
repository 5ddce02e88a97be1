//! The embedded store's process lock: an exclusive advisory lock on `<path>.lock`.
//!
//! The vectors are cached in memory, so a second process writing the same file would make the
//! first one's cache silently stale: a second open fails at once instead. The kernel releases
//! the lock when the process exits, however it exits, so a crash never leaves a stale lock.
//! The lock file is removed when the store closes (or fails to open), while the lock is still
//! held; an opener that locked a file which was removed meanwhile notices (the path no longer
//! names the file it locked) and starts over, so two owners can never coexist. The file is
//! opened close-on-exec; a child the owner spawns shares the lock only between fork and exec.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The held lock. Dropping it removes the lock file, then releases the lock.
#[derive(Debug)]
pub(super) struct ProcessLock {
    file: Option<File>,
    path: PathBuf,
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        // Removed while still locked: nobody can have locked this file in the meantime.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// `<path>.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// True when `path` still names the open `file` (it was not removed or replaced since).
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_named(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Takes the exclusive process lock for the store at `path`, or explains who holds it.
pub(super) fn acquire(path: &Path) -> Result<ProcessLock> {
    let lock_path = lock_path(path);
    // A few short retries before giving up: a child process spawned by this process at the
    // moment the store closed can hold the lock's file description until it calls exec.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::storage_with(format!("cannot open lock file {}", lock_path.display()), e))?;
        match file.try_lock() {
            // Its owner removed it between our open and our lock: start over on the new file.
            Ok(()) if !still_named(&file, &lock_path) && attempt <= 10 => continue,
            Ok(()) => {
                // Best effort: the pid only improves the error message of a second opener.
                let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id()));
                return Ok(ProcessLock { file: Some(file), path: lock_path });
            }
            Err(TryLockError::WouldBlock) if attempt <= 10 => std::thread::sleep(Duration::from_millis(25)),
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Locked { path: path.to_path_buf(), pid: holder.trim().parse().ok() });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::storage_with(format!("cannot lock {}", lock_path.display()), e))
            }
        }
    }
}
