//! The module's entry points called directly, as libpam calls them, with what a broken or
//! hostile caller might pass: a null handle, a negative argc, null and non-UTF-8 entries in
//! argv, a user name that is not UTF-8, conversations that fail, answer nothing or return
//! garbage. Every one must end in a PAM error code, never PAM_SUCCESS, and never abort the
//! process (an abort would kill this test binary).
//!
//! A panic inside the module: `pam_sm_authenticate` runs everything after its null check
//! inside `catch_unwind`, and turns a panic into PAM_SERVICE_ERR. No input reaches a panic
//! (the core, sys and module crates deny unwrap, expect and panic outside their tests), so
//! this table cannot trigger one without test-only code in the module; the cases below are
//! the inputs that come closest. A Rust conversation function that panicked would abort in
//! the application's own callback, before the module could see it, so none is tried.

use std::ffi::{CStr, CString};
use std::os::raw::c_int;

use ivmfa_tests::ffi::{Argv, BadConversation, EntryPoints, Handle, Script, Transaction};
use ivmfa_tests::*;

const PAM_SUCCESS: c_int = 0;
const PAM_SERVICE_ERR: c_int = 3;
const PAM_AUTH_ERR: c_int = 7;
const PAM_USER_UNKNOWN: c_int = 10;
const PAM_CONV_ERR: c_int = 19;

/// The enrolled user of every case (a system account Debian always has).
const USER: &str = "daemon";

enum Args {
    /// The fixture's module arguments (store= and config=), as libpam would pass them.
    Fixture,
    /// A null argv, with this argc.
    NullArgv(c_int),
    /// The fixture's arguments, but this (negative) argc.
    Argc(c_int),
    /// The fixture's arguments with null entries before, between and after them.
    NullEntries,
    /// A store= path that is not UTF-8 (in the fixture's directory; read as one with U+FFFD
    /// in it, which does not exist), then the fixture's config=.
    StoreNotUtf8,
}

enum Conversation {
    /// Answers the code prompt with these bytes.
    Answer(&'static [u8]),
    Bad(BadConversation),
}

struct Case {
    name: &'static str,
    null_handle: bool,
    /// PAM_USER as bytes (not necessarily UTF-8).
    user: &'static [u8],
    flags: c_int,
    args: Args,
    conversation: Conversation,
    expect: c_int,
    /// Whether the module got as far as asking for the code (through a working conversation).
    asked: bool,
}

const WRONG: Conversation = Conversation::Answer(b"000000");

fn case(name: &'static str, args: Args, conversation: Conversation, expect: c_int) -> Case {
    Case {
        name,
        null_handle: false,
        user: USER.as_bytes(),
        flags: 0,
        args,
        conversation,
        expect,
        asked: false,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            null_handle: true,
            ..case("null handle", Args::Fixture, WRONG, PAM_SERVICE_ERR)
        },
        Case {
            null_handle: true,
            ..case(
                "null handle, null argv",
                Args::NullArgv(-1),
                WRONG,
                PAM_SERVICE_ERR,
            )
        },
        // A negative argc is read as no arguments; the user is checked before the (default)
        // config would be read, so nothing outside the fixture is touched.
        Case {
            user: b"no-such-user-ivmfa",
            ..case("argc -1", Args::Argc(-1), WRONG, PAM_USER_UNKNOWN)
        },
        Case {
            user: b"no-such-user-ivmfa",
            ..case(
                "argc INT_MIN",
                Args::Argc(c_int::MIN),
                WRONG,
                PAM_USER_UNKNOWN,
            )
        },
        Case {
            user: b"no-such-user-ivmfa",
            ..case(
                "null argv, argc 3",
                Args::NullArgv(3),
                WRONG,
                PAM_USER_UNKNOWN,
            )
        },
        // Null entries are skipped and the others still read: the user is enrolled in the
        // fixture's store, so the code is asked for (and judged wrong).
        Case {
            asked: true,
            ..case(
                "null entries in argv",
                Args::NullEntries,
                WRONG,
                PAM_AUTH_ERR,
            )
        },
        // No store there: nobody is enrolled in it, and the module denies (as configured by
        // default, unenrolled=deny).
        case(
            "argv entry not UTF-8",
            Args::StoreNotUtf8,
            WRONG,
            PAM_AUTH_ERR,
        ),
        Case {
            user: b"\xff\xfedaemon",
            ..case(
                "user name not UTF-8",
                Args::Fixture,
                WRONG,
                PAM_USER_UNKNOWN,
            )
        },
        Case {
            flags: -1,
            asked: true,
            ..case("every flag bit set", Args::Fixture, WRONG, PAM_AUTH_ERR)
        },
        Case {
            asked: true,
            ..case(
                "answer not UTF-8",
                Args::Fixture,
                Conversation::Answer(b"\xff\xfe1234"),
                PAM_AUTH_ERR,
            )
        },
        case(
            "conversation fails",
            Args::Fixture,
            Conversation::Bad(BadConversation::Fails),
            PAM_CONV_ERR,
        ),
        case(
            "conversation returns no responses",
            Args::Fixture,
            Conversation::Bad(BadConversation::NoResponses),
            PAM_CONV_ERR,
        ),
        case(
            "conversation returns null answers",
            Args::Fixture,
            Conversation::Bad(BadConversation::NullAnswers),
            PAM_CONV_ERR,
        ),
        case(
            "conversation returns no PAM code",
            Args::Fixture,
            Conversation::Bad(BadConversation::GarbageCode),
            PAM_CONV_ERR,
        ),
    ]
}

fn c(text: String) -> CString {
    CString::new(text).unwrap()
}

#[test]
fn bad_calls_end_in_a_pam_error_not_an_abort() {
    let module = EntryPoints::load(&module_path().display().to_string()).unwrap();
    for case in cases() {
        // A fixture each, so no case's counted failure holds up another's login.
        let f = Fixture::new("");
        f.enroll(USER);
        let store = c(format!("store={}", f.store.display()));
        let config = c(format!("config={}", f.config.display()));
        let mut bad_store = format!("store={}/", f.dir.display()).into_bytes();
        bad_store.extend_from_slice(b"\xff\xfe");
        let bad_store = CString::new(bad_store).unwrap();
        let both: [Option<&CStr>; 2] = [Some(&store), Some(&config)];
        let with_nulls: [Option<&CStr>; 5] = [None, Some(&store), None, Some(&config), None];
        let not_utf8: [Option<&CStr>; 2] = [Some(&bad_store), Some(&config)];
        let argv = match case.args {
            Args::Fixture => Argv::Of(2, &both),
            Args::NullArgv(argc) => Argv::Null(argc),
            Args::Argc(argc) => Argv::Of(argc, &both),
            Args::NullEntries => Argv::Of(5, &with_nulls),
            Args::StoreNotUtf8 => Argv::Of(2, &not_utf8),
        };

        let answers = match case.conversation {
            Conversation::Answer(answer) => vec![answer.to_vec()],
            Conversation::Bad(_) => Vec::new(),
        };
        let confdir = f.dir.join("pam.d").display().to_string();
        let mut t = Transaction::start(&confdir, SERVICE, USER, Script::answering(answers))
            .unwrap_or_else(|rc| panic!("{}: pam_start_confdir: {rc}", case.name));
        assert_eq!(t.set_item_bytes(ffi::PAM_USER, case.user), PAM_SUCCESS);
        if let Conversation::Bad(bad) = case.conversation {
            assert_eq!(t.set_bad_conversation(bad), PAM_SUCCESS, "{}", case.name);
        }
        let handle = if case.null_handle {
            Handle::Null
        } else {
            Handle::Of(&mut t)
        };

        let rc = module.authenticate(handle, case.flags, &argv);
        assert_ne!(rc, PAM_SUCCESS, "{}", case.name);
        assert_eq!(
            rc, case.expect,
            "{}: transcript {:?}",
            case.name, t.script.transcript
        );
        let asked = t.script.transcript.iter().any(|l| l.starts_with("prompt-"));
        assert_eq!(
            asked, case.asked,
            "{}: transcript {:?}",
            case.name, t.script.transcript
        );
    }
}

/// pam_sm_setcred has no credentials to set and reads none of its arguments, so whatever it
/// is given it answers PAM_SUCCESS (as for a real handle) without touching them.
#[test]
fn setcred_reads_nothing_it_is_given() {
    let module = EntryPoints::load(&module_path().display().to_string()).unwrap();
    assert_eq!(
        module.setcred(Handle::Null, -1, &Argv::Null(-1)),
        PAM_SUCCESS
    );
    assert_eq!(
        module.setcred(Handle::Null, 0, &Argv::Of(1, &[None])),
        PAM_SUCCESS
    );
}
