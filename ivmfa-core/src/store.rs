//! The store: a root-owned directory tree under `store` (default `/var/lib/ivmfa`).
//!
//! ```text
//! <store>/                 0700
//!   users/                 0700
//!     <name>/              0700
//!       secret.toml        0600  the enrollment (changes at enrollment only)
//!       state.toml         0600  replay watermark, failure counters (every login)
//!       lock               0600  flock(2)ed while state is read and written
//!   archive/               0700
//!     <name>.<time>.toml   0600  enrollments removed or replaced, kept for the record
//! ```
//!
//! Every directory on the way is checked before use, every file is read through
//! [`Policy`], every write is atomic and durable. State can only be touched through a
//! [`UserLock`], so no code path can change it without holding the user's lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::enrollment::Enrollment;
use crate::error::{Error, Result};
use crate::safefile::{self, Policy};
use crate::state::State;
use crate::username::UserName;

const SECRET_FILE: &str = "secret.toml";
const STATE_FILE: &str = "state.toml";
const LOCK_FILE: &str = "lock";
/// Our files are a few hundred bytes; anything near this is not ours.
const MAX_FILE_LEN: u64 = 64 * 1024;

pub struct Store {
    root: PathBuf,
    policy: Policy,
}

/// Proof that the user's lock is held; released on drop (closing the descriptor unlocks).
pub struct UserLock {
    _file: File,
    dir: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>, euid: u32) -> Store {
        Store {
            root: root.into(),
            policy: Policy {
                owner: euid,
                max_len: MAX_FILE_LEN,
                private: true,
            },
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn users_dir(&self) -> PathBuf {
        self.root.join("users")
    }

    fn user_dir(&self, user: &UserName) -> PathBuf {
        self.users_dir().join(user.as_str())
    }

    /// Checks each directory from the root down to the user's. `Ok(false)` as soon as one is
    /// missing: a missing store means nobody has enrolled yet.
    fn user_dir_present(&self, user: &UserName) -> Result<bool> {
        for dir in [self.root.clone(), self.users_dir(), self.user_dir(user)] {
            if !self.policy.check_dir(&dir)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn ensure_user_dir(&self, user: &UserName) -> Result<PathBuf> {
        for dir in [self.root.clone(), self.users_dir(), self.user_dir(user)] {
            self.policy.ensure_dir(&dir)?;
        }
        Ok(self.user_dir(user))
    }

    /// The user's enrollment, or `None` if the user has not enrolled.
    pub fn load_enrollment(&self, user: &UserName) -> Result<Option<Enrollment>> {
        if !self.user_dir_present(user)? {
            return Ok(None);
        }
        let path = self.user_dir(user).join(SECRET_FILE);
        match self.policy.read_text(&path)? {
            Some(text) => Enrollment::from_toml(&text, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Takes the user's lock, creating the user's directory if needed. Blocks while another
    /// process holds it; holders never wait for a person, only for disk I/O.
    pub fn lock(&self, user: &UserName) -> Result<UserLock> {
        let dir = self.ensure_user_dir(user)?;
        let path = dir.join(LOCK_FILE);
        let file = self.policy.open_lock_file(&path)?;
        file.lock().map_err(|e| Error::io(&path, "lock", e))?;
        Ok(UserLock { _file: file, dir })
    }

    /// Writes the enrollment (a new one, or new recovery codes for the current one).
    pub fn save_enrollment(&self, lock: &UserLock, enrollment: &Enrollment) -> Result<()> {
        safefile::remove_stale_temps(&lock.dir)?;
        let text = enrollment.to_toml()?;
        safefile::write_atomic(&lock.dir, SECRET_FILE, text.as_bytes())
    }

    /// Re-reads the enrollment while holding the lock, for read-modify-write.
    pub fn reload_enrollment(&self, lock: &UserLock) -> Result<Option<Enrollment>> {
        let path = lock.dir.join(SECRET_FILE);
        match self.policy.read_text(&path)? {
            Some(text) => Enrollment::from_toml(&text, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Moves the user's enrollment into `archive/` (never deleting it) and forgets the
    /// state. Returns where the enrollment went, or `None` if there was none.
    pub fn archive_enrollment(
        &self,
        lock: &UserLock,
        user: &UserName,
        now: u64,
    ) -> Result<Option<PathBuf>> {
        let secret = lock.dir.join(SECRET_FILE);
        if self.reload_enrollment(lock)?.is_none() {
            return Ok(None);
        }
        let archive = self.root.join("archive");
        self.policy.ensure_dir(&archive)?;
        let mut target = archive.join(format!("{user}.{now}.toml"));
        let mut n = 1;
        while target.exists() {
            target = archive.join(format!("{user}.{now}.{n}.toml"));
            n += 1;
        }
        std::fs::rename(&secret, &target).map_err(|e| Error::io(&secret, "archive", e))?;
        safefile::sync_dir(&archive)?;
        match std::fs::remove_file(lock.dir.join(STATE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(lock.dir.join(STATE_FILE), "remove", e)),
        }
        safefile::sync_dir(&lock.dir)?;
        Ok(Some(target))
    }

    /// Names of the users with a directory in the store, sorted. Entries that cannot be user
    /// names are skipped.
    pub fn users(&self) -> Result<Vec<UserName>> {
        let dir = self.users_dir();
        if !self.policy.check_dir(&self.root)? || !self.policy.check_dir(&dir)? {
            return Ok(Vec::new());
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, "list", e))?;
        let mut users: Vec<UserName> = entries
            .flatten()
            .filter_map(|e| UserName::parse(&e.file_name().to_string_lossy()))
            .collect();
        users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(users)
    }

    pub fn load_state(&self, lock: &UserLock) -> Result<State> {
        let path = lock.dir.join(STATE_FILE);
        match self.policy.read_text(&path)? {
            Some(text) => State::from_toml(&text, &path),
            None => Ok(State::default()),
        }
    }

    pub fn save_state(&self, lock: &UserLock, state: &State) -> Result<()> {
        safefile::write_atomic(&lock.dir, STATE_FILE, state.to_toml()?.as_bytes())
    }
}
