//! libpam's entry points and calls: with `ivmfa-sys` (user database, euid) the only unsafe code.
//!
//! Everything here is a translation: C strings in, Rust values out, and back. No decision is
//! made here; see `ivmfa_core::auth` for those. Each unsafe block names the contract it relies
//! on (Linux-PAM's pam_get_item(3), pam_get_user(3), pam_conv(3), pam_syslog(3)).

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::{SystemTime, UNIX_EPOCH};

use ivmfa_core::auth::authenticate;
use ivmfa_core::ports::{Account, Conversation, Host, Login, Priority};
use ivmfa_core::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::{code, pam_code};

mod shelter;
use shelter::Shelter;

/// Opaque `pam_handle_t`.
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

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

// Item types and message styles from <security/_pam_types.h>.
const PAM_SERVICE: c_int = 1;
const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;
const PAM_AUTHTOK: c_int = 6;
const PAM_CONV: c_int = 5;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
/// The application asks for no informational or error messages (prompts still go out).
const PAM_SILENT: c_int = 0x8000;

/// The answer is cut here before it is even copied: one byte more than the core accepts, so a
/// longer answer is still refused as too long.
const MAX_ANSWER_COPY: usize = ivmfa_core::input::MAX_ANSWER_LEN + 1;
/// The same for the password and code in one answer (`forward_pass`).
const MAX_COMBINED_COPY: usize = ivmfa_core::combined::MAX_COMBINED_LEN + 1;

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
        -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

/// Asks for the code after the password: the `auth` entry point libpam calls.
///
/// # Safety
/// The contract of Linux-PAM's pam_sm_authenticate(3) with a module: `pamh` is the live
/// handle of the transaction, valid for the whole call and used by no other thread meanwhile;
/// `argv` points to `argc` pointers to NUL-terminated strings (the arguments on the module's
/// line of the PAM configuration), valid for the call. Beyond that contract, a null `pamh` is
/// refused with PAM_SERVICE_ERR, a null `argv` or an `argc` below 1 is read as no arguments,
/// and null entries of `argv` are skipped.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    if pamh.is_null() {
        return code::SERVICE_ERR;
    }
    // The real uid as the application left it: the shelter below makes it root for a setuid
    // caller, and who that caller is still matters (see Host::uid).
    let handle = Handle {
        pamh,
        caller_uid: ivmfa_sys::uid(),
        fleet: ivmfa_fleet::Client::new(ivmfa_sys::euid()),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: this function's contract (libpam's): argv holds argc entries, each a
        // NUL-terminated string valid for this call.
        let args = unsafe { read_args(argc, argv) };
        let user = match handle.user() {
            Ok(user) => user,
            // libpam's own code (a conversation or system error, never success) goes back
            // as it is, as modules do, so the application can tell "ask again" from failure.
            Err(rc) => {
                handle.log(
                    Priority::Error,
                    &format!("denied: libpam could not tell the user name (PAM code {rc})"),
                );
                return rc;
            }
        };
        let service = handle.string_item(PAM_SERVICE).unwrap_or_default();
        let rhost = handle.string_item(PAM_RHOST).filter(|h| !h.is_empty());
        let tty = handle.string_item(PAM_TTY).filter(|t| !t.is_empty());
        let authtok = handle.secret_item(PAM_AUTHTOK);
        let login = Login {
            user: &user,
            service: &service,
            rhost: rhost.as_deref(),
            tty: tty.as_deref(),
            authtok: authtok.as_deref().map(|p| p.as_str()),
        };
        // Everything from here on runs sheltered from the caller; see Shelter.
        let shelter = Shelter::raise();
        pam_code(authenticate(
            &args,
            &login,
            &handle,
            &mut PamConversation {
                handle: &handle,
                shelter: &shelter,
                silent: flags & PAM_SILENT != 0,
            },
        ))
    }));
    outcome.unwrap_or_else(|_| {
        // A panic is a bug; it must still end in a denial, never in PAM_SUCCESS.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            handle.log(Priority::Error, "internal error (panic); denying")
        }));
        code::SERVICE_ERR
    })
}

/// The `auth` stack's second step: this module has no credentials to set, so it succeeds.
///
/// # Safety
/// Linux-PAM's pam_sm_setcred(3) contract, as for [`pam_sm_authenticate`]; none of the
/// arguments is read, so any values are safe.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    code::SUCCESS
}

/// # Safety
/// `argv` must be null or point to `argc` pointers, each null or a NUL-terminated string.
unsafe fn read_args(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        .filter_map(|i| {
            // SAFETY: i < argc, and the caller guarantees argv has argc entries.
            let entry = unsafe { argv.add(i) };
            // SAFETY: in bounds (above), so one of the caller's initialised pointers.
            let arg = unsafe { *entry };
            (!arg.is_null()).then(|| {
                // SAFETY: a non-null entry is a NUL-terminated string (caller's guarantee).
                unsafe { CStr::from_ptr(arg) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

struct Handle {
    pamh: *mut PamHandle,
    caller_uid: u32,
    /// Connects only when a login with `backend = "postgres"` asks it something.
    fleet: ivmfa_fleet::Client,
}

impl Handle {
    fn user(&self) -> Result<String, c_int> {
        let mut user: *const c_char = ptr::null();
        // SAFETY: pamh is the live handle libpam gave us; pam_get_user(3) stores a pointer to
        // a string owned by libpam (valid until the item changes) or leaves it untouched.
        let rc = unsafe { pam_get_user(self.pamh, &mut user, ptr::null()) };
        if rc != code::SUCCESS {
            return Err(rc);
        }
        if user.is_null() {
            return Err(code::USER_UNKNOWN);
        }
        // SAFETY: on success the pointer is a NUL-terminated string owned by libpam; we copy it.
        Ok(unsafe { CStr::from_ptr(user) }
            .to_string_lossy()
            .into_owned())
    }

    fn raw_item(&self, item_type: c_int) -> Option<*const c_void> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: pamh is live; pam_get_item(3) only writes the item pointer, which stays owned
        // by libpam.
        let rc = unsafe { pam_get_item(self.pamh, item_type, &mut item) };
        (rc == code::SUCCESS && !item.is_null()).then_some(item)
    }

    fn string_item(&self, item_type: c_int) -> Option<String> {
        let item = self.raw_item(item_type)?;
        // SAFETY: PAM_SERVICE, PAM_RHOST and the other string items are NUL-terminated strings
        // owned by libpam; we copy before returning.
        Some(
            unsafe { CStr::from_ptr(item.cast::<c_char>()) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// A string item that holds a secret (PAM_AUTHTOK), copied into memory wiped on drop.
    fn secret_item(&self, item_type: c_int) -> Option<Zeroizing<String>> {
        let item = self.raw_item(item_type)?;
        // SAFETY: PAM_AUTHTOK is a NUL-terminated string owned by libpam, valid until the item
        // is set again; we copy it at once.
        let bytes = unsafe { CStr::from_ptr(item.cast::<c_char>()) }.to_bytes();
        let text = Zeroizing::new(String::from_utf8_lossy(bytes).into_owned());
        Some(text)
    }

    /// Sets PAM_AUTHTOK for the modules after this one. libpam keeps its own copy (and wipes
    /// it when replaced or at pam_end); ours is wiped on drop.
    fn set_authtok(&self, password: &str) -> Result<(), Error> {
        if password.bytes().any(|b| b == 0) {
            return Err(Error::System(
                "the password to hand on holds a NUL byte".into(),
            ));
        }
        let mut text = Zeroizing::new(Vec::with_capacity(password.len() + 1));
        text.extend_from_slice(password.as_bytes());
        text.push(0);
        // SAFETY: pamh is the live handle libpam gave us; pam_set_item(3) copies the
        // NUL-terminated string (checked above: one NUL, at the end) before returning, so
        // `text` need only outlive the call. Setting PAM_AUTHTOK is allowed to modules.
        let rc = unsafe { pam_set_item(self.pamh, PAM_AUTHTOK, text.as_ptr().cast()) };
        if rc != code::SUCCESS {
            return Err(Error::System(format!(
                "libpam refused to set PAM_AUTHTOK (PAM code {rc})"
            )));
        }
        Ok(())
    }

    /// Sends one message; returns the answer for prompts, cut after `cap` bytes.
    fn converse(
        &self,
        style: c_int,
        text: &str,
        cap: usize,
    ) -> Result<Option<Zeroizing<String>>, Error> {
        let conv = self
            .raw_item(PAM_CONV)
            .ok_or_else(|| Error::Conversation("the application set no conversation".into()))?
            .cast::<PamConv>();
        // SAFETY: the PAM_CONV item is the application's `struct pam_conv`, owned by libpam for
        // the life of the handle (pam_get_item(3)).
        let func = unsafe { (*conv).conv };
        // SAFETY: as above.
        let appdata = unsafe { (*conv).appdata_ptr };
        let func =
            func.ok_or_else(|| Error::Conversation("the conversation function is null".into()))?;
        let text = ivmfa_sys::c_text(text);
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let mut messages: *const PamMessage = &message;
        let mut responses: *mut PamResponse = ptr::null_mut();
        // SAFETY: pam_conv(3): one message, passed as an array of one pointer (the layout both
        // Linux-PAM and Solaris agree on for a single message); `message` and `text` outlive
        // the call. The application allocates `responses` with malloc, and we own it after.
        let rc = unsafe { func(1, &mut messages, &mut responses, appdata) };
        // SAFETY: `responses` is null or a malloc'ed array of one pam_response (see above).
        let answer = unsafe { take_response(responses, cap) };
        if rc != code::SUCCESS {
            return Err(Error::Conversation(format!(
                "the application's conversation returned {rc}"
            )));
        }
        Ok(answer)
    }
}

/// Copies (at most `cap` bytes of) the answer, then wipes and frees the C copy.
///
/// # Safety
/// `responses` must be null or a malloc'ed array of one `PamResponse` whose `resp` is null or a
/// malloc'ed NUL-terminated string, as pam_conv(3) requires; both are freed here.
unsafe fn take_response(responses: *mut PamResponse, cap: usize) -> Option<Zeroizing<String>> {
    if responses.is_null() {
        return None;
    }
    // SAFETY: non-null, points to one pam_response (function contract).
    let resp = unsafe { (*responses).resp };
    let answer = (!resp.is_null()).then(|| {
        // SAFETY: resp is a malloc'ed NUL-terminated string (function contract), so strlen(3)
        // finds its end.
        let len = unsafe { libc::strlen(resp) };
        // SAFETY: the len bytes before that NUL are the application's allocation, handed to us
        // (pam_conv(3)); nothing else refers to them until they are freed below.
        let bytes = unsafe { std::slice::from_raw_parts_mut(resp.cast::<u8>(), len) };
        let copy = Zeroizing::new(bytes[..len.min(cap)].to_vec());
        bytes.zeroize();
        // SAFETY: malloc'ed by the application (pam_conv(3)) and freed here exactly once; the
        // slice over it is not used again.
        unsafe { libc::free(resp.cast()) };
        // Not UTF-8 is not a code: a stand-in that the parser refuses.
        Zeroizing::new(
            std::str::from_utf8(&copy)
                .map(str::to_owned)
                .unwrap_or_else(|_| "\u{FFFD}".to_owned()),
        )
    });
    // SAFETY: the array itself was malloc'ed by the application (function contract).
    unsafe { libc::free(responses.cast()) };
    answer
}

impl Host for Handle {
    fn euid(&self) -> u32 {
        ivmfa_sys::euid()
    }

    fn now(&self) -> u64 {
        // A clock before 1970 yields time 0: every code is then wrong, which denies.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn random(&self, buf: &mut [u8]) -> Result<(), Error> {
        ivmfa_core::random::fill(buf)
    }

    fn notify(
        &self,
        program: &std::path::Path,
        env: &[(&'static str, String)],
        timeout: u64,
    ) -> Result<(), String> {
        ivmfa_sys::run_with_timeout(program, env, timeout)
    }

    fn uid(&self) -> u32 {
        self.caller_uid
    }

    fn account(&self, user: &str) -> Result<Option<Account>, Error> {
        ivmfa_sys::passwd_by_name(user)
            .map(|pw| {
                pw.map(|pw| Account {
                    name: pw.name,
                    uid: pw.uid,
                })
            })
            .map_err(|e| Error::System(format!("cannot read the user database: {e}")))
    }

    fn in_group(&self, user: &str, group: &str) -> Result<Option<bool>, Error> {
        ivmfa_sys::in_group(user, group)
            .map_err(|e| Error::System(format!("cannot read the group database: {e}")))
    }

    fn hand_on_password(&self, password: &str) -> Result<(), Error> {
        self.set_authtok(password)
    }

    fn fleet(&self) -> Option<&dyn ivmfa_core::fleet_api::FleetApi> {
        Some(&self.fleet)
    }

    fn log(&self, priority: Priority, message: &str) {
        use ivmfa_sys::Level;
        let level = match priority {
            Priority::Error => Level::Error,
            Priority::Warning => Level::Warning,
            Priority::Notice => Level::Notice,
            Priority::Info => Level::Info,
            Priority::Debug => Level::Debug,
        }
        .priority();
        let message = ivmfa_sys::c_text(message);
        // SAFETY: pam_syslog(3) is printf-like; the format is a literal "%s" with exactly one
        // NUL-terminated string argument, so nothing in `message` is interpreted. It logs to
        // LOG_AUTHPRIV with the service name prefixed.
        unsafe { pam_syslog(self.pamh, level, c"%s".as_ptr(), message.as_ptr()) };
    }
}

struct PamConversation<'a> {
    handle: &'a Handle,
    shelter: &'a Shelter,
    silent: bool,
}

impl PamConversation<'_> {
    /// The application's conversation runs as the application expects to run it: with the
    /// caller's real uid and signal mask (it may start an askpass program as the caller).
    fn converse(
        &self,
        style: c_int,
        text: &str,
        cap: usize,
    ) -> Result<Option<Zeroizing<String>>, Error> {
        let _lowered = self.shelter.lowered();
        self.handle.converse(style, text, cap)
    }

    fn ask(&self, style: c_int, prompt: &str, cap: usize) -> Result<Zeroizing<String>, Error> {
        self.converse(style, prompt, cap)?
            .ok_or_else(|| Error::Conversation("no answer to the prompt".into()))
    }
}

impl Conversation for PamConversation<'_> {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, Error> {
        self.ask(PAM_PROMPT_ECHO_OFF, prompt, MAX_ANSWER_COPY)
    }

    fn ask_shown(&mut self, prompt: &str) -> Result<Zeroizing<String>, Error> {
        self.ask(PAM_PROMPT_ECHO_ON, prompt, MAX_ANSWER_COPY)
    }

    fn ask_password_and_code(&mut self, prompt: &str) -> Result<Zeroizing<String>, Error> {
        self.ask(PAM_PROMPT_ECHO_OFF, prompt, MAX_COMBINED_COPY)
    }

    fn info(&mut self, text: &str) -> Result<(), Error> {
        if self.silent {
            return Ok(());
        }
        self.converse(PAM_TEXT_INFO, text, MAX_ANSWER_COPY)
            .map(drop)
    }

    fn error(&mut self, text: &str) -> Result<(), Error> {
        if self.silent {
            return Ok(());
        }
        self.converse(PAM_ERROR_MSG, text, MAX_ANSWER_COPY)
            .map(drop)
    }

    fn can_show_text(&self) -> bool {
        !self.silent
    }
}
