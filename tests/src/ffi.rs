//! The application side of libpam, as sshd or login would use it: pam_start_confdir,
//! pam_authenticate, pam_end and a scripted conversation. The only unsafe code of the test
//! crate (the driver and the benchmark use it).

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

#[repr(C)]
pub struct PamHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

#[repr(C)]
struct PamConv {
    conv: unsafe extern "C" fn(
        c_int,
        *mut *const PamMessage,
        *mut *mut PamResponse,
        *mut c_void,
    ) -> c_int,
    appdata_ptr: *mut c_void,
}

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
pub const PAM_TTY: c_int = 3;
pub const PAM_USER: c_int = 2;
pub const PAM_RHOST: c_int = 4;
const PAM_FAIL_DELAY: c_int = 10;
const PAM_CONV: c_int = 5;
pub const PAM_SILENT: c_int = 0x8000;

#[link(name = "pam")]
extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
}

/// Turns a scripted answer into the one typed, given what was shown so far.
pub type AnswerWith = fn(Vec<u8>, &str) -> Vec<u8>;

/// What the scripted person answers, and what they were shown.
pub struct Script {
    pub answers: VecDeque<Vec<u8>>,
    pub transcript: Vec<String>,
    /// Before answering a prompt, create `<path>.waiting` and wait (up to 20 s) until `path`
    /// exists: lets a test act while a login sits at the prompt.
    pub hold_until: Option<std::path::PathBuf>,
    /// Fail the conversation on PAM_TEXT_INFO, like a client that cannot show text.
    pub refuse_info: bool,
    /// The text of every PAM_TEXT_INFO so far, for the phone to scan.
    pub shown: String,
    /// Turns a scripted answer into the one given, seeing what was shown (the phone).
    pub answer_with: Option<AnswerWith>,
}

impl Script {
    pub fn answering(answers: impl IntoIterator<Item = Vec<u8>>) -> Script {
        Script {
            answers: answers.into_iter().collect(),
            transcript: Vec::new(),
            hold_until: None,
            refuse_info: false,
            shown: String::new(),
            answer_with: None,
        }
    }
}

unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the &mut Script given to pam_start_confdir, alive for the handle.
    let script = unsafe { &mut *appdata.cast::<Script>() };
    let n = num_msg as usize;
    // SAFETY: calloc of n zeroed pam_response structs; libpam's module frees them.
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: i < num_msg, and Linux-PAM passes an array of num_msg pointers to messages
        // (pam_conv(3)).
        let entry = unsafe { msg.add(i) };
        // SAFETY: in bounds of that array, so one of its initialised pointers.
        let m = unsafe { *entry };
        // SAFETY: each points to a pam_message the module owns for the length of this call.
        let m = unsafe { &*m };
        let text = if m.msg.is_null() {
            String::new()
        } else {
            // SAFETY: message text is NUL-terminated, owned by the module for this call.
            unsafe { CStr::from_ptr(m.msg) }
                .to_string_lossy()
                .into_owned()
        };
        let style = match m.msg_style {
            1 => "prompt-hidden",
            2 => "prompt-shown",
            3 => "error",
            4 => "info",
            _ => "unknown",
        };
        script.transcript.push(format!("{style}: {text}"));
        if m.msg_style == 4 {
            if script.refuse_info {
                // SAFETY: replies came from calloc above and holds no strings yet.
                unsafe { free_replies(replies, n) };
                return PAM_CONV_ERR;
            }
            script.shown.push_str(&text);
            script.shown.push('\n');
        }
        if matches!(m.msg_style, 1 | 2) {
            if let Some(path) = &script.hold_until {
                let _ = std::fs::write(path.with_extension("waiting"), b"");
                for _ in 0..2000 {
                    if path.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            let answer_with = script.answer_with;
            let shown = &script.shown;
            let Some(answer) = script.answers.pop_front().map(|a| match answer_with {
                Some(f) => f(a, shown),
                None => a,
            }) else {
                // SAFETY: replies came from calloc above and holds no strings yet.
                unsafe { free_replies(replies, n) };
                return PAM_CONV_ERR;
            };
            // SAFETY: calloc(3) of len+1 zeroed bytes, which the module frees (pam_conv(3));
            // the last stays 0 and ends the string. An answer with NUL bytes in it is seen by
            // the module up to the first one, as from sshd.
            let buf = unsafe { libc::calloc(answer.len() + 1, 1) }.cast::<u8>();
            if buf.is_null() {
                // SAFETY: replies came from calloc above; its strings are null or calloc'ed.
                unsafe { free_replies(replies, n) };
                return PAM_BUF_ERR;
            }
            // SAFETY: buf has room for len+1 bytes and does not overlap the answer.
            unsafe { ptr::copy_nonoverlapping(answer.as_ptr(), buf, answer.len()) };
            // SAFETY: i < n, the length of the calloc'ed replies array.
            let reply = unsafe { replies.add(i) };
            // SAFETY: a zeroed pam_response of ours, in bounds (above).
            unsafe { (*reply).resp = buf.cast() };
        }
    }
    // SAFETY: resp is the module's out-pointer.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Ways an application's conversation function can let the module down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadConversation {
    /// Returns PAM_CONV_ERR.
    Fails = 1,
    /// Returns PAM_SUCCESS without a response array.
    NoResponses,
    /// Returns PAM_SUCCESS with a response array whose answers are null.
    NullAnswers,
    /// Returns a number that is no PAM code, without a response array.
    GarbageCode,
}

unsafe extern "C" fn converse_badly(
    num_msg: c_int,
    _msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let bad = [
        BadConversation::Fails,
        BadConversation::NoResponses,
        BadConversation::NullAnswers,
        BadConversation::GarbageCode,
    ]
    .into_iter()
    .find(|b| *b as usize == appdata as usize);
    if resp.is_null() {
        return PAM_CONV_ERR;
    }
    match bad {
        Some(BadConversation::NoResponses) => {
            // SAFETY: resp is the module's non-null out-pointer (pam_conv(3)).
            unsafe { *resp = ptr::null_mut() };
            PAM_SUCCESS
        }
        Some(BadConversation::NullAnswers) => {
            let n = usize::try_from(num_msg).unwrap_or(0).max(1);
            // SAFETY: calloc(3) of n zeroed pam_response structs (null answers); the module
            // frees them (pam_conv(3)).
            let replies = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) };
            // SAFETY: as above; null if calloc failed, which the module also survives.
            unsafe { *resp = replies.cast() };
            PAM_SUCCESS
        }
        Some(BadConversation::GarbageCode) => 0x7eee_eeee,
        Some(BadConversation::Fails) | None => PAM_CONV_ERR,
    }
}

/// # Safety
/// `replies` is a calloc'ed array of `n` responses whose strings are null or malloc'ed.
unsafe fn free_replies(replies: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: i < n, the array's length (function contract).
        let reply = unsafe { replies.add(i) };
        // SAFETY: in bounds, so an initialised pam_response.
        let resp = unsafe { (*reply).resp };
        // SAFETY: null or malloc'ed (function contract); free(3) accepts both.
        unsafe { libc::free(resp.cast()) };
    }
    // SAFETY: per the function contract.
    unsafe { libc::free(replies.cast()) };
}

/// One PAM transaction: start, set items, authenticate, end.
pub struct Transaction {
    pamh: *mut PamHandle,
    // Boxed so the pointers libpam keeps stay valid when the Transaction moves.
    _conv: Box<PamConv>,
    pub script: Box<Script>,
}

impl Transaction {
    pub fn start(confdir: &str, service: &str, user: &str, script: Script) -> Result<Self, c_int> {
        let mut script = Box::new(script);
        let conv = Box::new(PamConv {
            conv: converse,
            appdata_ptr: (&mut *script as *mut Script).cast(),
        });
        let service = CString::new(service).map_err(|_| PAM_BUF_ERR)?;
        let user = CString::new(user).map_err(|_| PAM_BUF_ERR)?;
        let confdir = CString::new(confdir).map_err(|_| PAM_BUF_ERR)?;
        let mut pamh = ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and live across the call (libpam copies
        // them); conv is boxed and outlives the handle, which pam_end closes in Drop.
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                user.as_ptr(),
                &*conv,
                confdir.as_ptr(),
                &mut pamh,
            )
        };
        if rc != PAM_SUCCESS {
            return Err(rc);
        }
        Ok(Transaction {
            pamh,
            _conv: conv,
            script,
        })
    }

    pub fn set_item(&mut self, item: c_int, value: &str) -> c_int {
        self.set_item_bytes(item, value.as_bytes())
    }

    /// A string item that need not be UTF-8 (C strings are bytes).
    pub fn set_item_bytes(&mut self, item: c_int, value: &[u8]) -> c_int {
        let Ok(value) = CString::new(value) else {
            return PAM_BUF_ERR;
        };
        // SAFETY: pamh is live; libpam copies string items.
        unsafe { pam_set_item(self.pamh, item, value.as_ptr().cast()) }
    }

    /// Replaces the conversation with one that misbehaves.
    pub fn set_bad_conversation(&mut self, bad: BadConversation) -> c_int {
        let conv = Box::new(PamConv {
            conv: converse_badly,
            // Not a pointer: which misbehaviour, read back in converse_badly.
            appdata_ptr: bad as usize as *mut c_void,
        });
        // SAFETY: pamh is live; pam_set_item(3) takes a `struct pam_conv` for PAM_CONV, which
        // stays alive in self (Linux-PAM copies it anyway).
        let rc = unsafe { pam_set_item(self.pamh, PAM_CONV, (&*conv as *const PamConv).cast()) };
        if rc == PAM_SUCCESS {
            self._conv = conv;
        }
        rc
    }

    /// Makes libpam skip the failure delay a module asks for (as a benchmark wants).
    pub fn skip_fail_delay(&mut self) -> c_int {
        extern "C" fn no_delay(_retval: c_int, _usec: std::os::raw::c_uint, _appdata: *mut c_void) {
        }
        let delay: extern "C" fn(c_int, std::os::raw::c_uint, *mut c_void) = no_delay;
        // SAFETY: PAM_FAIL_DELAY takes a function pointer of this signature (pam_fail_delay(3)).
        unsafe { pam_set_item(self.pamh, PAM_FAIL_DELAY, delay as *const c_void) }
    }

    /// The next answers the conversation gives.
    pub fn queue_answer(&mut self, answer: &[u8]) {
        self.script.answers.push_back(answer.to_vec());
    }

    pub fn authenticate(&mut self, flags: c_int) -> c_int {
        // SAFETY: pamh is live.
        unsafe { pam_authenticate(self.pamh, flags) }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: pamh came from pam_start_confdir and is ended exactly once.
        unsafe { pam_end(self.pamh, PAM_SUCCESS) };
    }
}

/// Loads a module the way libpam does, but with RTLD_NOW so any unresolved symbol fails now;
/// returns which of the two PAM entry points it exports.
pub fn dlopen_now(path: &str) -> Result<(bool, bool), String> {
    let cpath = CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: dlopen(3) with a NUL-terminated path; the handle is closed below.
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a NUL-terminated string or null.
        let err = unsafe { libc::dlerror() };
        let msg = if err.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: see above.
            unsafe { CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(msg);
    }
    // SAFETY: dlsym(3) on a live handle with a NUL-terminated name.
    let authenticate = unsafe { libc::dlsym(handle, c"pam_sm_authenticate".as_ptr()) };
    // SAFETY: as above.
    let setcred = unsafe { libc::dlsym(handle, c"pam_sm_setcred".as_ptr()) };
    let found = (!authenticate.is_null(), !setcred.is_null());
    // SAFETY: the handle came from dlopen above.
    unsafe { libc::dlclose(handle) };
    Ok(found)
}

/// The signature of both PAM entry points (pam_sm_authenticate(3), pam_sm_setcred(3)).
type EntryPoint = unsafe extern "C" fn(*mut PamHandle, c_int, c_int, *const *const c_char) -> c_int;

/// A module's entry points, dlopen()ed to be called directly, with arguments libpam would
/// never pass.
pub struct EntryPoints {
    lib: *mut c_void,
    authenticate: EntryPoint,
    setcred: EntryPoint,
}

/// The handle an entry point is given.
pub enum Handle<'a> {
    Null,
    /// A live transaction's handle, as libpam passes it.
    Of(&'a mut Transaction),
}

/// The `argc` and `argv` an entry point is given. Only what a caller can pass without itself
/// breaking the contract: a non-null `argv` always has at least `argc` entries.
pub enum Argv<'a> {
    /// A null `argv`, with this `argc`.
    Null(c_int),
    /// `argv` holds these entries (`None` is a null pointer); `argc` is negative or at most
    /// their number.
    Of(c_int, &'a [Option<&'a CStr>]),
}

impl EntryPoints {
    pub fn load(path: &str) -> Result<EntryPoints, String> {
        let cpath = CString::new(path).map_err(|e| e.to_string())?;
        // SAFETY: dlopen(3) with a NUL-terminated path; the handle is closed on drop.
        let lib = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            return Err(format!("cannot dlopen {path}"));
        }
        let entry = |name: &CStr| -> Result<EntryPoint, String> {
            // SAFETY: dlsym(3) on the live handle with a NUL-terminated name.
            let sym = unsafe { libc::dlsym(lib, name.as_ptr()) };
            if sym.is_null() {
                return Err(format!("{path} has no {}", name.to_string_lossy()));
            }
            // SAFETY: both PAM entry points have this C signature (pam_sm_authenticate(3),
            // pam_sm_setcred(3)); the module is linked NODELETE, so the code stays mapped.
            Ok(unsafe { std::mem::transmute::<*mut c_void, EntryPoint>(sym) })
        };
        let loaded = entry(c"pam_sm_authenticate").and_then(|authenticate| {
            Ok(EntryPoints {
                lib,
                authenticate,
                setcred: entry(c"pam_sm_setcred")?,
            })
        });
        if loaded.is_err() {
            // SAFETY: the handle came from dlopen above and is closed once.
            unsafe { libc::dlclose(lib) };
        }
        loaded
    }

    pub fn authenticate(&self, pamh: Handle, flags: c_int, argv: &Argv) -> c_int {
        Self::call(self.authenticate, pamh, flags, argv)
    }

    pub fn setcred(&self, pamh: Handle, flags: c_int, argv: &Argv) -> c_int {
        Self::call(self.setcred, pamh, flags, argv)
    }

    fn call(entry: EntryPoint, pamh: Handle, flags: c_int, argv: &Argv) -> c_int {
        let pamh = match pamh {
            Handle::Null => ptr::null_mut(),
            Handle::Of(t) => t.pamh,
        };
        let (argc, pointers): (c_int, Option<Vec<*const c_char>>) = match argv {
            Argv::Null(argc) => (*argc, None),
            Argv::Of(argc, entries) => {
                assert!(
                    usize::try_from(*argc).map_or(true, |n| n <= entries.len()),
                    "argc {argc} beyond the {} entries of argv",
                    entries.len()
                );
                let pointers = entries
                    .iter()
                    .map(|e| e.map_or(ptr::null(), CStr::as_ptr))
                    .collect();
                (*argc, Some(pointers))
            }
        };
        let argv = pointers.as_ref().map_or(ptr::null(), |p| p.as_ptr());
        // SAFETY: the entry point's C signature (above). The handle is null or live (borrowed
        // from its Transaction for the call); argv is null or holds at least argc pointers
        // (checked above), each null or a NUL-terminated string that outlives the call.
        unsafe { entry(pamh, flags, argc, argv) }
    }
}

impl Drop for EntryPoints {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen in load and is closed once.
        unsafe { libc::dlclose(self.lib) };
    }
}

/// This process's RLIMIT_FSIZE (soft, hard) and whether SIGXFSZ is ignored, to show that the
/// module puts back what it lifted.
pub fn file_size_limit() -> (u64, u64, bool) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into the valid struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) };
    // SAFETY: an all-zero sigaction is a valid value of the C struct, used as output only.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new action, sigaction(2) only writes the current one into `action`.
    unsafe { libc::sigaction(libc::SIGXFSZ, ptr::null(), &mut action) };
    (
        limit.rlim_cur,
        limit.rlim_max,
        action.sa_sigaction == libc::SIG_IGN,
    )
}

/// This process's real uid, to show that the module puts back the caller's.
pub fn real_uid() -> u32 {
    // SAFETY: getuid(2) cannot fail.
    unsafe { libc::getuid() }
}

/// What a host process may have done to its signals before a login, so a test can check
/// that the module's child does not inherit it (pam-driver's `--block-signals`, `--sigchld`).
pub mod host {
    use std::os::raw::c_int;

    /// Blocks `signals` in the calling thread (the one that goes on to call libpam).
    pub fn block(signals: &[c_int]) -> std::io::Result<()> {
        // SAFETY: all-zero bytes are a valid `sigset_t` (a plain bit array).
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigemptyset(3) initialises the set we own.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in signals {
            // SAFETY: sigaddset(3) on the initialised set; a bad signal only gives EINVAL.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        // SAFETY: pthread_sigmask(3) reads the set and changes only the calling thread's mask.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        match rc {
            0 => Ok(()),
            rc => Err(std::io::Error::from_raw_os_error(rc)),
        }
    }

    /// SIGCHLD ignored: the kernel reaps every child at once and waitpid(2) finds none.
    pub fn ignore_sigchld() -> std::io::Result<()> {
        set_sigchld(libc::SIG_IGN)
    }

    /// A SIGCHLD handler that reaps every child that ended, as daemons with their own
    /// children do.
    pub fn reap_on_sigchld() -> std::io::Result<()> {
        extern "C" fn reap(_: c_int) {
            // SAFETY: __errno_location(3) is async-signal-safe and returns this thread's
            // errno, valid for the thread's life.
            let errno = unsafe { libc::__errno_location() };
            // SAFETY: a valid pointer (above); saved so the interrupted code sees its own.
            let saved = unsafe { *errno };
            // SAFETY: waitpid(2) is async-signal-safe; a null status pointer is allowed.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            // SAFETY: as above; errno is put back.
            unsafe { *errno = saved };
        }
        let handler: extern "C" fn(c_int) = reap;
        set_sigchld(handler as libc::sighandler_t)
    }

    fn set_sigchld(handler: libc::sighandler_t) -> std::io::Result<()> {
        // SAFETY: all-zero bytes are a valid `struct sigaction` (plain integers and a bit set).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: sigemptyset(3) initialises the mask of our struct.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: sigaction(2) reads our struct, whose handler is SIG_IGN or an
        // extern "C" fn(c_int) that lives for the whole program; no old action is wanted.
        let rc = unsafe { libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
