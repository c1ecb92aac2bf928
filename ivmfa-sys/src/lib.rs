//! Safe wrappers over the few libc calls that both `pam_ivmfa.so` and `ivmfa-enroll` need.
//!
//! This crate is an FFI boundary like the module's `ffi` module: it is the only other place
//! with unsafe code, every block names the contract it relies on, and nothing here decides
//! who logs in (its one judgement is which programs it will run as root). The reentrant
//! `*_r` lookups go through NSS, so LDAP and SSSD users work too.

// Code loaded into every login fails closed with an error, never by a panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::raw::{c_char, c_int};
use std::path::PathBuf;
use std::ptr;

mod spawn;
pub use spawn::run_with_timeout;

/// An entry of the user database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The real uid of this process (the invoking user of a setuid program).
pub fn uid() -> u32 {
    // SAFETY: getuid(2) cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// Grows a buffer for the reentrant database calls until the entry fits.
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> Result<T, c_int>) -> io::Result<T> {
    let mut buf = vec![0u8; 1024];
    loop {
        match call(&mut buf) {
            Ok(value) => return Ok(value),
            Err(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(rc) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// # Safety
/// `ptr` must be null or a NUL-terminated string.
unsafe fn owned(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per the function contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// # Safety
/// `pwd` must have been filled by a successful getpw*_r call whose buffer is still alive.
unsafe fn from_passwd(pwd: &libc::passwd) -> Passwd {
    Passwd {
        // SAFETY: the string fields point into the caller's live buffer (function contract).
        name: unsafe { owned(pwd.pw_name) },
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        // SAFETY: as above.
        home: PathBuf::from(unsafe { owned(pwd.pw_dir) }),
    }
}

/// How to find a user.
enum UserKey<'a> {
    Name(&'a CStr),
    Uid(u32),
}

fn passwd(key: UserKey) -> io::Result<Option<Passwd>> {
    with_buffer(|buf| {
        // SAFETY: zeroed is a valid bit pattern for the plain C struct `passwd`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = ptr::null_mut();
        let (buf_ptr, buf_len) = (buf.as_mut_ptr().cast(), buf.len());
        let rc = match key {
            // SAFETY: getpwnam_r(3): the name is NUL-terminated; pwd and buf are ours and
            // writable for buf_len bytes; the strings stored point into buf, which we read (in
            // from_passwd) before buf is reused or dropped.
            UserKey::Name(name) => unsafe {
                libc::getpwnam_r(name.as_ptr(), &mut pwd, buf_ptr, buf_len, &mut found)
            },
            // SAFETY: getpwuid_r(3), the same contract as getpwnam_r(3) above.
            UserKey::Uid(uid) => unsafe {
                libc::getpwuid_r(uid, &mut pwd, buf_ptr, buf_len, &mut found)
            },
        };
        match rc {
            // SAFETY: success, and buf is alive (see above).
            0 => Ok((!found.is_null()).then(|| unsafe { from_passwd(&pwd) })),
            rc => Err(rc),
        }
    })
}

/// Looks a user up by name. `Ok(None)` if there is no such user.
pub fn passwd_by_name(name: &str) -> io::Result<Option<Passwd>> {
    passwd(UserKey::Name(&c_name(name)?))
}

/// Looks a user up by uid. `Ok(None)` if there is no such user.
pub fn passwd_by_uid(uid: u32) -> io::Result<Option<Passwd>> {
    passwd(UserKey::Uid(uid))
}

/// The gid of a group. `Ok(None)` if there is no such group.
pub fn group_gid(name: &str) -> io::Result<Option<u32>> {
    let cname = c_name(name)?;
    with_buffer(|buf| {
        // SAFETY: zeroed is a valid bit pattern for the plain C struct `group`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = ptr::null_mut();
        // SAFETY: getgrnam_r(3), same contract as getpwnam_r above; only gr_gid is read.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 => Ok((!found.is_null()).then_some(grp.gr_gid)),
            rc => Err(rc),
        }
    })
}

/// Whether `user` is a member of `group` (primary or supplementary). `Ok(None)` if the group
/// does not exist; `Ok(Some(false))` if the user does not.
pub fn in_group(user: &str, group: &str) -> io::Result<Option<bool>> {
    let Some(gid) = group_gid(group)? else {
        return Ok(None);
    };
    let Some(pw) = passwd_by_name(user)? else {
        return Ok(Some(false));
    };
    Ok(Some(
        pw.gid == gid || group_list(user, pw.gid)?.contains(&gid),
    ))
}

fn group_list(user: &str, primary: u32) -> io::Result<Vec<u32>> {
    let cname = c_name(user)?;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..8 {
        let mut count = c_int::try_from(groups.len()).unwrap_or(c_int::MAX);
        // SAFETY: getgrouplist(3): the name is NUL-terminated and `groups` has room for
        // `count` entries; on -1 it sets `count` to the number needed and we retry.
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), primary, groups.as_mut_ptr(), &mut count) };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        groups.resize(count.max(groups.len() * 2).min(1 << 16), 0);
    }
    Err(io::Error::other("the group list keeps growing"))
}

/// Columns of the terminal on `fd`, if it is one.
pub fn terminal_columns(fd: &impl AsRawFd) -> Option<u16> {
    // SAFETY: zeroed is a valid bit pattern for the plain C struct `winsize`.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` to the pointer; fd is borrowed and open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(size.ws_col)
}

/// syslog levels, as the module and the audit log use them.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub fn priority(self) -> c_int {
        match self {
            Level::Error => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        }
    }
}

/// Text for C (a log line, a message to the user); NUL bytes, where C would cut it, are
/// spelled out.
pub fn c_text(message: &str) -> CString {
    CString::new(message.replace('\0', "\\0")).unwrap_or_default()
}

/// Writes one line to syslog, facility authpriv, with `ident` as the program name. Goes
/// through the local socket only (no network fallback); a missing syslog daemon loses the line.
pub fn syslog_authpriv(ident: &'static CStr, level: Level, message: &str) {
    let level = level.priority();
    let message = c_text(message);
    // SAFETY: openlog(3) keeps the ident pointer, which is 'static.
    unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_AUTHPRIV) };
    // SAFETY: syslog(3) gets a literal "%s" format with one NUL-terminated argument, so the
    // message is never interpreted.
    unsafe { libc::syslog(libc::LOG_AUTHPRIV | level, c"%s".as_ptr(), message.as_ptr()) };
    // SAFETY: closelog(3) takes no arguments; it closes the descriptor openlog(3) may have
    // opened.
    unsafe { libc::closelog() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_is_uid_0() {
        let root = passwd_by_name("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert_eq!(passwd_by_uid(0).unwrap().unwrap().name, "root");
        assert_eq!(passwd_by_name("no-such-user-ivmfa").unwrap(), None);
    }

    #[test]
    fn group_membership() {
        assert_eq!(in_group("root", "root").unwrap(), Some(true));
        assert_eq!(in_group("root", "no-such-group-ivmfa").unwrap(), None);
        assert_eq!(in_group("no-such-user-ivmfa", "root").unwrap(), Some(false));
    }
}
