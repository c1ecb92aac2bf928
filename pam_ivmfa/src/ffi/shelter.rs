//! What the caller of a setuid program (`su`, `sudo`) must not be able to do to the module.
//!
//! Such a program runs as root but keeps much of its caller's state, and its caller may signal
//! it (the real uid matches). While the module works, it is sheltered from both:
//!
//! - The caller's file-size limit is lifted and SIGXFSZ ignored, so `ulimit -f` cannot cut the
//!   store's writes short at an offset the caller chose. (Every attempt is counted before its
//!   code is judged anyway; this keeps such a caller from denying logins for nothing.)
//! - The real uid is root, so the caller can no longer stop the process (SIGSTOP needs a
//!   matching uid) while it holds a user's lock, which would hold up every login of that user;
//!   and the stop signals a terminal sends regardless of uid (SIGTSTP, SIGTTIN, SIGTTOU) are
//!   blocked. The application's conversation runs lowered, with the caller's real uid and
//!   signal mask, as the application expects: no lock is held while it runs.
//!
//! Everything is put back before the module returns. Nothing here is changed unless it needs
//! to be, so a process that already runs unlimited, or as root, sees no system call at all.

use std::mem::MaybeUninit;
use std::ptr;

/// The process state the module changed, to be put back.
pub(super) struct Shelter {
    limit: Option<libc::rlimit>,
    xfsz: Option<libc::sigaction>,
    /// The caller's real uid, while the process runs with real uid 0.
    ruid: Option<libc::uid_t>,
    /// The signal mask before the stop signals were blocked.
    mask: Option<libc::sigset_t>,
}

/// Lowers a [`Shelter`] for a conversation; raises it again on drop.
pub(super) struct Lowered<'a>(&'a Shelter);

impl Shelter {
    pub(super) fn raise() -> Shelter {
        let mut shelter = Shelter {
            limit: lift_file_size_limit(),
            xfsz: ignore(libc::SIGXFSZ),
            ruid: None,
            mask: None,
        };
        shelter.shield();
        shelter
    }

    /// Real uid 0 and the stop signals blocked, remembering what they were.
    fn shield(&mut self) {
        // SAFETY: getuid(2) takes nothing and cannot fail.
        let ruid = unsafe { libc::getuid() };
        // SAFETY: geteuid(2) likewise.
        let euid = unsafe { libc::geteuid() };
        // Only a setuid-root process has anything to hide from its caller, and only it may.
        // SAFETY: setresuid(2) with -1 leaves the effective and saved uids alone; a process
        // with effective uid 0 may set its real uid to 0 and back.
        if euid == 0 && ruid != 0 && unsafe { libc::setresuid(0, u32::MAX, u32::MAX) } == 0 {
            self.ruid = Some(ruid);
        }
        self.mask = block_stop_signals();
    }

    /// Puts the caller's real uid and signal mask back until the guard drops.
    pub(super) fn lowered(&self) -> Lowered<'_> {
        self.unshield();
        Lowered(self)
    }

    fn unshield(&self) {
        if let Some(ruid) = self.ruid {
            // SAFETY: as in shield(); the effective uid is still 0, so this cannot be refused.
            unsafe { libc::setresuid(ruid, u32::MAX, u32::MAX) };
        }
        if let Some(mask) = &self.mask {
            // SAFETY: pthread_sigmask(3) reads the mask saved by block_stop_signals(), which
            // the kernel wrote; the old mask is not wanted.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, ptr::null_mut()) };
        }
    }
}

impl Drop for Lowered<'_> {
    fn drop(&mut self) {
        if self.0.ruid.is_some() {
            // SAFETY: as in Shelter::shield(), where the same call succeeded.
            unsafe { libc::setresuid(0, u32::MAX, u32::MAX) };
        }
        if self.0.mask.is_some() {
            // The mask to put back at the end is the one saved when the shelter was raised.
            let _ = block_stop_signals();
        }
    }
}

impl Drop for Shelter {
    fn drop(&mut self) {
        self.unshield();
        if let Some(old) = &self.limit {
            // SAFETY: setrlimit(2) reads the valid struct it is given; lowering a limit back to
            // what it was is always allowed.
            unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, old) };
        }
        if let Some(old) = &self.xfsz {
            // SAFETY: sigaction(2) reads the action saved by ignore(), which the kernel wrote;
            // the old action is not wanted.
            unsafe { libc::sigaction(libc::SIGXFSZ, old, ptr::null_mut()) };
        }
    }
}

/// Raises RLIMIT_FSIZE to unlimited (or, without CAP_SYS_RESOURCE, the soft limit to the hard
/// one). Returns the limit to put back, if it was changed.
fn lift_file_size_limit() -> Option<libc::rlimit> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into the valid struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut old) } != 0
        || old.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit(2) reads the valid struct it is given. Raising the hard limit needs
    // CAP_SYS_RESOURCE; without it, the soft limit goes as far as the hard one allows.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &unlimited) } != 0 {
        let raised = libc::rlimit {
            rlim_cur: old.rlim_max,
            rlim_max: old.rlim_max,
        };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &raised) };
    }
    Some(old)
}

/// Ignores `signal`, unless it is ignored already. Returns the action to put back.
fn ignore(signal: libc::c_int) -> Option<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction(2) only writes the current one into `old`,
    // which is zeroed, a valid bit pattern for the C struct.
    if unsafe { libc::sigaction(signal, ptr::null(), old.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: zeroed, then written by the kernel: initialised either way.
    let old = unsafe { old.assume_init() };
    if old.sa_sigaction == libc::SIG_IGN {
        return None;
    }
    let mut new = old;
    new.sa_sigaction = libc::SIG_IGN;
    // SAFETY: sigaction(2) reads `new`, a copy of a valid action with the handler replaced.
    (unsafe { libc::sigaction(signal, &new, ptr::null_mut()) } == 0).then_some(old)
}

/// Blocks the stop signals a terminal sends whatever the uid. Returns the mask to put back.
fn block_stop_signals() -> Option<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset(3) initialises the set we own.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for signal in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        // SAFETY: `set` was initialised by sigemptyset above; the signals are valid.
        unsafe { libc::sigaddset(set.as_mut_ptr(), signal) };
    }
    // SAFETY: pthread_sigmask(3) reads the initialised `set` and writes the old mask into
    // `old`; it changes the calling thread's mask only.
    if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), old.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: written by pthread_sigmask above.
    Some(unsafe { old.assume_init() })
}
