//! Checked reads and atomic, durable writes of root-owned files.
//!
//! Every file the module reads decides who logs in, so it is opened without following symbolic
//! links, and its type, owner, mode and size are checked on the open descriptor (not on the
//! path, which could change in between) before a byte is parsed. Writes go to a fresh temporary
//! file in the same directory, are flushed to disk, renamed over the old file and then the
//! directory itself is flushed: after a crash at any instant the old or the new file is there,
//! never a torn one. (The state, written at every login, is kept in a [`crate::slotfile`]
//! instead, which is created and replaced by `write_atomic` but updated in place.)

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Who may own the files we trust, and how private they must be.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The uid trusted to own the files besides root: the process's effective uid for the
    /// store and config, the user's own uid for a file in their home directory.
    pub owner: u32,
    /// Largest file we will read.
    pub max_len: u64,
    /// Secret-bearing files allow no group or other bits at all; the config file may be
    /// readable by others but never writable by them.
    pub private: bool,
    /// For a file in a user's home: owned by exactly `owner` (root's files there are not the
    /// user's to hand over) and with one link (not a hard link to someone else's file).
    pub strict_owner: bool,
}

/// Prefix of temporary files, so stale ones can be recognised and removed.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

const SYMLINK: &str = "it is a symbolic link; put the real file or directory in its place";

impl Policy {
    fn forbidden_bits(&self) -> u32 {
        if self.private {
            0o077
        } else {
            0o022
        }
    }

    fn check_meta(&self, path: &Path, meta: &fs::Metadata, want_dir: bool) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_symlink() {
            return Err(Error::unsafe_file(path, SYMLINK));
        }
        if want_dir && !ft.is_dir() {
            return Err(Error::unsafe_file(path, "it is not a directory"));
        }
        if !want_dir && !ft.is_file() {
            return Err(Error::unsafe_file(
                path,
                "it is not a regular file; put the real file in its place",
            ));
        }
        if self.strict_owner && (meta.uid() != self.owner || meta.nlink() != 1) {
            return Err(Error::unsafe_file(
                path,
                format!(
                    "it must be owned by uid {} alone and not be a hard link (owner uid {}, {} links)",
                    self.owner,
                    meta.uid(),
                    meta.nlink()
                ),
            ));
        }
        if meta.uid() != 0 && meta.uid() != self.owner {
            return Err(Error::unsafe_file(
                path,
                format!(
                    "it is owned by uid {}; only root (or uid {}) may own it: chown root {}",
                    meta.uid(),
                    self.owner,
                    path.display()
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & self.forbidden_bits() != 0 {
            let fix = if self.private { "go-rwx" } else { "go-w" };
            return Err(Error::unsafe_file(
                path,
                format!(
                    "its mode is {mode:04o}, which lets others {}: chmod {fix} {}",
                    if self.private { "in" } else { "change it" },
                    path.display()
                ),
            ));
        }
        if !want_dir && meta.len() > self.max_len {
            return Err(Error::unsafe_file(
                path,
                format!(
                    "it is {} bytes, more than the {} allowed",
                    meta.len(),
                    self.max_len
                ),
            ));
        }
        Ok(())
    }

    /// Checks a directory we are about to use, without following a symbolic link at `path`.
    /// `Ok(false)` if it does not exist.
    pub(crate) fn check_dir(&self, path: &Path) -> Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(meta) => self.check_meta(path, &meta, true).map(|()| true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, "inspect", e)),
        }
    }

    /// Creates `path` (mode 0700) if it is missing, then checks it.
    pub(crate) fn ensure_dir(&self, path: &Path) -> Result<()> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path, "create directory", e)),
        }
        self.check_dir(path).map(|_| ())
    }

    /// Opens a file without following symlinks and checks it on the descriptor. Returns it
    /// with what was checked, or `None` if it does not exist.
    fn open_checked(&self, path: &Path, access: Access) -> Result<Option<(File, fs::Metadata)>> {
        let mut options = OpenOptions::new();
        // O_NONBLOCK: a FIFO planted at this path must not hang the login; it fails the checks.
        options
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
        match access {
            Access::Read => {}
            Access::Update => {
                options.write(true);
            }
            Access::Lock => {
                options.write(true).create(true).truncate(false).mode(0o600);
            }
        }
        let file = match options.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::unsafe_file(path, SYMLINK))
            }
            Err(e) => return Err(Error::io(path, "open", e)),
        };
        let meta = file.metadata().map_err(|e| Error::io(path, "inspect", e))?;
        self.check_meta(path, &meta, false)?;
        Ok(Some((file, meta)))
    }

    /// Reads a whole checked file. `Ok(None)` if it does not exist. The buffer is wiped on drop.
    pub fn read(&self, path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match self.open_checked(path, Access::Read)? {
            Some((mut file, meta)) => self.read_opened(path, &mut file, &meta).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the rest of a file [`Self::open_checked`] opened, within the size cap.
    pub(crate) fn read_opened(
        &self,
        path: &Path,
        file: &mut File,
        meta: &fs::Metadata,
    ) -> Result<Zeroizing<Vec<u8>>> {
        // Sized from the checked length, so the common case is one read(2) and no regrowth.
        let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        // Read one byte past the cap so a file that grew after the check is still refused.
        file.take(self.max_len + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(path, "read", e))?;
        if buf.len() as u64 > self.max_len {
            return Err(Error::unsafe_file(path, "it grew past the size limit"));
        }
        Ok(buf)
    }

    /// Reads a checked file as UTF-8 text.
    pub fn read_text(&self, path: &Path) -> Result<Option<Zeroizing<String>>> {
        let Some(mut bytes) = self.read(path)? else {
            return Ok(None);
        };
        let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|_| {
            Error::corrupt(path, "it is not UTF-8 text", "replace it with a valid file")
        })?;
        Ok(Some(Zeroizing::new(text)))
    }

    /// Opens an existing file for reading and writing in place, checked like any other.
    /// `Ok(None)` if it does not exist.
    pub(crate) fn open_for_update(&self, path: &Path) -> Result<Option<(File, fs::Metadata)>> {
        self.open_checked(path, Access::Update)
    }

    /// Opens (creating if needed) a lock file and checks it like any other store file.
    pub(crate) fn open_lock_file(&self, path: &Path) -> Result<File> {
        match self.open_checked(path, Access::Lock)? {
            Some((file, _)) => Ok(file),
            // Only if the directory vanished in between.
            None => Err(Error::io(path, "open", ErrorKind::NotFound.into())),
        }
    }
}

/// How [`Policy::open_checked`] opens a file.
#[derive(Clone, Copy)]
enum Access {
    Read,
    /// Read and write an existing file.
    Update,
    /// Read and write, created 0600 if missing.
    Lock,
}

/// Replaces `dir/name` with `contents`, atomically and durably. The file is created 0600.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let target = dir.join(name);
    let temp = dir.join(temp_name(name));
    let result = write_then_rename(&temp, &target, contents);
    if result.is_err() {
        // Best effort: the temp file is useless now; a leftover is removed by remove_stale_temps.
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

fn write_then_rename(temp: &Path, target: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(temp)
        .map_err(|e| Error::io(temp, "create", e))?;
    file.write_all(contents)
        .map_err(|e| Error::io(temp, "write", e))?;
    // fdatasync: the data and the size; the rename and the directory flush do the rest.
    file.sync_data().map_err(|e| Error::io(temp, "flush", e))?;
    drop(file);
    fs::rename(temp, target).map_err(|e| Error::io(target, "replace", e))
}

/// Flushes a directory so that a rename or unlink in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "flush directory", e))
}

/// A name no other writer, in this process or another, will pick at the same time.
fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{name}.{}.{nanos}.{n}", std::process::id())
}

/// How old a temporary file must be before it counts as left behind: a live writer's file
/// exists for milliseconds, so this is far beyond any write.
pub(crate) const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// Removes temporary files left by writers that died before their rename. Call while holding
/// a lock that serialises writers of `dir`; a directory shared by several locks (requests/)
/// may hold another writer's live file, which its age protects: only files older than
/// [`STALE_AFTER`] go.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "list", e))?;
    let now = SystemTime::now();
    let mut removed = false;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path: PathBuf = entry.path();
        let age = fs::symlink_metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        // A file dated in the future (a clock set back) is left alone too: it is not in the
        // way, and will age.
        if age.is_some_and(|a| a >= STALE_AFTER) {
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, "remove", e)),
            }
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}
