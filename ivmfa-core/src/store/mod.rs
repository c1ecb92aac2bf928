//! The store: a root-owned directory tree under `store` (default `/var/lib/ivmfa`).
//!
//! ```text
//! <store>/                 0700
//!   users/                 0700
//!     <name>/              0700
//!       secret.toml        0600  the enrollment (changes at enrollment only)
//!       state              0600  replay watermark, failure counters (every login)
//!       lock               0600  flock(2)ed while state is read and written
//!       ticket.toml        0600  an approved reset: the next login enrolls afresh
//!       notice.toml        0600  a denied reset's reason, shown once at the next login
//!   requests/              0700
//!     <name>.toml          0600  a pending reset request (lost device)
//!   archive/               0700
//!     <name>.<time>.toml   0600  enrollments removed or replaced, kept for the record
//! ```
//!
//! Every directory on the way is checked before use, every file is read through
//! [`Policy`], every write is atomic and durable: the state by [`slotfile`], the rest by
//! `safefile::write_atomic`. State can only be touched through a
//! [`UserLock`], so no code path can change it without holding the user's lock.

pub mod safefile;
pub mod slotfile;

use std::fs::{File, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::enrollment::{Enrollment, Kind};
use crate::error::{Error, Result};
use crate::reset::{Notice, Record, ResetRequest, Ticket};
use crate::state::{self, State};
use crate::username::UserName;
use safefile::Policy;

const SECRET_FILE: &str = "secret.toml";
const STATE_FILE: &str = "state";
/// Where ivmfa 0.1.0 kept the state (plain TOML, replaced whole); read until the first write.
const LEGACY_STATE_FILE: &str = "state.toml";
const LOCK_FILE: &str = "lock";
const TICKET_FILE: &str = "ticket.toml";
const NOTICE_FILE: &str = "notice.toml";
/// Our files are a few hundred bytes; anything near this is not ours.
const MAX_FILE_LEN: u64 = 64 * 1024;
/// Longest wait for a user's lock. A holder needs it for milliseconds of disk I/O.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

pub struct Store {
    root: PathBuf,
    policy: Policy,
}

/// The state as read from the store.
pub struct LoadedState {
    pub state: State,
    /// The file has a damaged slot (a write cut short by a crash, or damage), so the state
    /// from before the last write may be in use: worth a word in the log.
    pub damaged_slot: bool,
}

/// A state written under the lock but not yet flushed: every later reader sees it, even if
/// this process dies now. `Self::commit` makes it durable as it is; [`Self::replace`] puts a
/// different state in its place and makes that durable. This is how an attempt is counted
/// before its code is judged: the failure goes in first, and a right code replaces it.
pub struct PendingState<'a> {
    pending: slotfile::Pending<'a>,
    lock: &'a UserLock,
}

impl PendingState<'_> {
    pub(crate) fn commit(self) -> Result<()> {
        self.pending.commit()?;
        self.lock.written();
        Ok(())
    }

    pub fn replace(self, state: &State) -> Result<()> {
        self.pending.replace(state.to_toml()?.as_bytes())?;
        self.lock.written();
        Ok(())
    }
}

/// Proof that the user's lock is held; released on drop (closing the descriptor unlocks).
///
/// The lock file's first byte also says whether a state write is under way: `1` from before a
/// write until it is flushed, `0` after. Only processes see it (it is never flushed): a `1`
/// found by the next holder means the last writer died between writing and flushing, so the
/// newest slot may exist only in memory and is flushed before the other slot is overwritten.
pub struct UserLock {
    file: File,
    dir: PathBuf,
}

impl UserLock {
    fn writer_died(&self) -> bool {
        let mut byte = [0u8; 1];
        // Unreadable: assume the worst, which costs one flush.
        !matches!(self.file.read_at(&mut byte, 0), Ok(0) | Ok(1) if byte[0] != b'1')
    }

    fn mark_writing(&self, writing: bool) -> Result<()> {
        let byte = if writing { b"1" } else { b"0" };
        self.file
            .write_all_at(byte, 0)
            .map_err(|e| Error::io(self.dir.join(LOCK_FILE), "write", e))
    }

    /// Best effort: if this fails, the next writer flushes once for nothing.
    fn written(&self) {
        let _ = self.mark_writing(false);
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>, euid: u32) -> Store {
        Store {
            root: root.into(),
            policy: Policy {
                owner: euid,
                max_len: MAX_FILE_LEN,
                private: true,
                strict_owner: false,
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
        self.read_enrollment(&self.user_dir(user))
    }

    fn read_enrollment(&self, dir: &Path) -> Result<Option<Enrollment>> {
        let path = dir.join(SECRET_FILE);
        match self.policy.read_text(&path)? {
            Some(text) => Enrollment::from_toml(&text, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Takes the user's lock, creating the user's directory if needed. Holders never wait for
    /// a person, only for disk I/O, so the lock is normally free within milliseconds; but a
    /// caller can stop a process that holds it (SIGSTOP to its own `su`), so the wait ends
    /// after [`LOCK_WAIT`] with [`Error::Busy`] instead of hanging every later login.
    pub fn lock(&self, user: &UserName) -> Result<UserLock> {
        let dir = if self.user_dir_present(user)? {
            self.user_dir(user)
        } else {
            self.ensure_user_dir(user)?
        };
        let path = dir.join(LOCK_FILE);
        let file = self.policy.open_lock_file(&path)?;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(UserLock { file, dir }),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Busy {
                        path,
                        waited: LOCK_WAIT.as_secs(),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, "lock", e)),
            }
        }
    }

    /// Writes the enrollment (a new one, or new recovery codes for the current one).
    pub fn save_enrollment(&self, lock: &UserLock, enrollment: &Enrollment) -> Result<()> {
        safefile::remove_stale_temps(&lock.dir)?;
        let text = enrollment.to_toml()?;
        safefile::write_atomic(&lock.dir, SECRET_FILE, text.as_bytes())
    }

    /// Puts a new enrollment in place: an approved reset's ticket is spent (the new enrollment
    /// is what it allowed), and the state starts at `step`, so the code that confirmed the
    /// enrollment cannot log in as well. A watermark already further on is kept: the new
    /// secret may be the old one provisioned again, and a code used must stay used.
    ///
    /// For a counter-based token, `step` is the counter it is expected to show next (the one
    /// after a confirming code); the same key provisioned again keeps its counter if that is
    /// further on, and a new key starts at `step`.
    pub fn install_enrollment(
        &self,
        lock: &UserLock,
        enrollment: &Enrollment,
        step: u64,
    ) -> Result<()> {
        let mut state = self.kept_state(lock)?;
        match enrollment.kind {
            Kind::Totp => state.last_step = state.last_step.max(step),
            Kind::Hotp => {
                let next = state
                    .hotp_next(&enrollment.secret)
                    .map_or(step, |n| n.max(step));
                state.set_hotp_next(&enrollment.secret, next);
            }
        }
        // The state first (it may need a new 24 KiB file): should that fail, no enrollment
        // goes live without its watermark.
        self.save_state(lock, &state)?;
        self.remove_ticket(lock)?;
        self.save_enrollment(lock, enrollment)
    }

    /// What of the state outlives an enrollment: the last accepted step and the steps refused
    /// in advance, which belong to the time, not to a secret, and keep the codes used or
    /// reported for the same secret provisioned again from working; likewise a token's
    /// counter, which names its key. Failure counts, used recovery codes and grace periods
    /// go: a grace period was earned with the old device, which may be the one lost. A state
    /// too damaged to read keeps nothing: whoever asks is about to replace it.
    fn kept_state(&self, lock: &UserLock) -> Result<State> {
        let state = match self.load_state(lock) {
            Ok(loaded) => loaded.state,
            Err(Error::Corrupt { .. }) => State::default(),
            Err(e) => return Err(e),
        };
        Ok(State {
            last_step: state.last_step,
            refused: state.refused,
            hotp: state.hotp,
            ..State::default()
        })
    }

    /// Re-reads the enrollment while holding the lock, for read-modify-write.
    pub fn reload_enrollment(&self, lock: &UserLock) -> Result<Option<Enrollment>> {
        self.read_enrollment(&lock.dir)
    }

    /// Moves the user's enrollment into `archive/` (never deleting it) and forgets the
    /// state but for what outlives an enrollment (see `kept_state`). Returns where the
    /// enrollment went, or `None` if there was none.
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
        let kept = self.kept_state(lock)?;
        std::fs::rename(&secret, &target).map_err(|e| Error::io(&secret, "archive", e))?;
        safefile::sync_dir(&archive)?;
        self.save_state(lock, &kept)?;
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

    /// The user's state file, to name in a message.
    pub fn state_path(&self, lock: &UserLock) -> PathBuf {
        lock.dir.join(STATE_FILE)
    }

    pub fn load_state(&self, lock: &UserLock) -> Result<LoadedState> {
        self.read_state(&lock.dir)
    }

    fn read_state(&self, dir: &Path) -> Result<LoadedState> {
        let path = dir.join(STATE_FILE);
        if let Some(contents) = slotfile::read(&self.policy, &path, state::STATE_HINT)? {
            return Ok(LoadedState {
                state: State::from_toml(&contents.text, &path)?,
                damaged_slot: contents.damaged,
            });
        }
        let legacy = dir.join(LEGACY_STATE_FILE);
        let state = match self.policy.read_text(&legacy)? {
            Some(text) => State::from_legacy_toml(&text, &legacy)?,
            None => State::default(),
        };
        Ok(LoadedState {
            state,
            damaged_slot: false,
        })
    }

    /// Reads the state without the lock, for a decision that changes nothing (is the user
    /// backing off?); anything that changes state re-reads it under the lock. A writer may be
    /// rewriting the newest slot meanwhile (a right code replacing the failure written before
    /// it was judged); this then reads the other, older slot and may report damage that is
    /// not there. Should it find no intact slot, it asks again under the lock, where the
    /// answer is final.
    pub fn peek_state(&self, user: &UserName) -> Result<LoadedState> {
        if !self.user_dir_present(user)? {
            return Ok(LoadedState {
                state: State::default(),
                damaged_slot: false,
            });
        }
        match self.read_state(&self.user_dir(user)) {
            Err(Error::Corrupt { .. }) => self.load_state(&self.lock(user)?),
            other => other,
        }
    }

    /// Whether a declined reset's notice waits for the user (checked without the lock).
    pub(crate) fn has_notice(&self, user: &UserName) -> bool {
        self.user_dir(user).join(NOTICE_FILE).exists()
    }

    pub fn save_state(&self, lock: &UserLock, state: &State) -> Result<()> {
        self.begin_state(lock, state)?.commit()
    }

    /// Writes the state for every process to see, but does not flush it yet: see
    /// [`PendingState`].
    pub(crate) fn begin_state<'a>(
        &self,
        lock: &'a UserLock,
        state: &State,
    ) -> Result<PendingState<'a>> {
        let text = state.to_toml()?;
        let flush_first = lock.writer_died();
        lock.mark_writing(true)?;
        let pending = slotfile::begin(
            &self.policy,
            &lock.dir,
            STATE_FILE,
            text.as_bytes(),
            flush_first,
        )?;
        if pending.created {
            // Best effort: the new file is in place and wins over the old one from now on.
            let _ = self.remove(&lock.dir, LEGACY_STATE_FILE);
        }
        Ok(PendingState { pending, lock })
    }

    fn read_record<T: Record>(&self, path: &Path) -> Result<Option<T>> {
        let Some(text) = self.policy.read_text(path)? else {
            return Ok(None);
        };
        crate::domain::format::parse_versioned(
            &text,
            path,
            T::HINT,
            crate::reset::FORMAT_VERSION,
            T::version,
        )
        .map(Some)
    }

    fn write_record<T: Record>(&self, dir: &Path, name: &str, record: &T) -> Result<()> {
        safefile::remove_stale_temps(dir)?;
        let text = toml::to_string(record)
            .map_err(|e| Error::Invalid(format!("cannot encode {name}: {e}")))?;
        safefile::write_atomic(dir, name, text.as_bytes())
    }

    /// Removes a file if present; `Ok(false)` if it was not there.
    fn remove(&self, dir: &Path, name: &str) -> Result<bool> {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => safefile::sync_dir(dir).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, "remove", e)),
        }
    }

    fn requests_dir(&self) -> PathBuf {
        self.root.join("requests")
    }

    fn request_name(user: &UserName) -> String {
        format!("{user}.toml")
    }

    /// The user's pending reset request, if any.
    pub fn reset_request(&self, user: &UserName) -> Result<Option<ResetRequest>> {
        let dir = self.requests_dir();
        if !self.policy.check_dir(&self.root)? || !self.policy.check_dir(&dir)? {
            return Ok(None);
        }
        self.read_record(&dir.join(Self::request_name(user)))
    }

    /// Files a reset request unless one is pending; `Ok(false)` if one was.
    pub(crate) fn file_reset_request(
        &self,
        _held: &UserLock,
        user: &UserName,
        request: &ResetRequest,
    ) -> Result<bool> {
        if self.reset_request(user)?.is_some() {
            return Ok(false);
        }
        let dir = self.requests_dir();
        self.policy.ensure_dir(&dir)?;
        self.write_record(&dir, &Self::request_name(user), request)?;
        Ok(true)
    }

    /// Closes the user's request; `Ok(false)` if none was pending.
    pub fn close_reset_request(&self, _held: &UserLock, user: &UserName) -> Result<bool> {
        if self.reset_request(user)?.is_none() {
            return Ok(false);
        }
        self.remove(&self.requests_dir(), &Self::request_name(user))
    }

    /// Every pending request, oldest first. A file that cannot be read is an error: an
    /// administrator must not overlook a request because its file is damaged.
    pub fn reset_requests(&self) -> Result<Vec<ResetRequest>> {
        let dir = self.requests_dir();
        if !self.policy.check_dir(&self.root)? || !self.policy.check_dir(&dir)? {
            return Ok(Vec::new());
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, "list", e))?;
        let mut requests = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(safefile::TEMP_PREFIX) {
                continue;
            }
            if let Some(r) = self.read_record::<ResetRequest>(&entry.path())? {
                requests.push(r);
            }
        }
        requests.sort_by_key(|r| r.time);
        Ok(requests)
    }

    /// The user's reset ticket, if an administrator approved a reset.
    pub fn ticket(&self, user: &UserName) -> Result<Option<Ticket>> {
        if !self.user_dir_present(user)? {
            return Ok(None);
        }
        self.read_record(&self.user_dir(user).join(TICKET_FILE))
    }

    pub fn save_ticket(&self, lock: &UserLock, ticket: &Ticket) -> Result<()> {
        self.write_record(&lock.dir, TICKET_FILE, ticket)
    }

    pub fn remove_ticket(&self, lock: &UserLock) -> Result<bool> {
        self.remove(&lock.dir, TICKET_FILE)
    }

    pub fn save_notice(&self, lock: &UserLock, notice: &Notice) -> Result<()> {
        self.write_record(&lock.dir, NOTICE_FILE, notice)
    }

    /// Reads and removes the notice, so it is shown once.
    pub(crate) fn take_notice(&self, lock: &UserLock) -> Result<Option<Notice>> {
        let notice = self.read_record(&lock.dir.join(NOTICE_FILE))?;
        if notice.is_some() {
            self.remove(&lock.dir, NOTICE_FILE)?;
        }
        Ok(notice)
    }
}
