//! Running the `notify_command` as root, from inside whatever process loaded the module.
//!
//! That process is sshd, su, login or a display manager, and any of them may have changed
//! what a child inherits: the working directory, umask, resource limits, ignored and blocked
//! signals, the real uid (su is setuid root, so its real uid is the caller's), descriptors.
//! The program gets none of that: its state is set here, field by field. It is also run only
//! if no one but root can have written it, since whoever can replace it runs code as root.
//!
//! The host may also ignore SIGCHLD (the kernel then reaps children itself) or reap every
//! child from its own handler, either of which hides the program's exit from us. So we do not
//! wait for the program: a supervisor process of ours does. It is our direct child, it forks
//! the program, waits for it and for everything it starts (as a child subreaper, orphans come
//! back to it), and at the deadline kills its whole process group. It reports to us over a
//! pipe; the end of that pipe, when the supervisor exits, is what we wait for, with a deadline
//! of our own in case it never comes.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::raw::{c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;
use std::ptr;
use std::time::{Duration, Instant};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Resource limits the program gets, soft and hard. Whatever the caller set is replaced: a
/// `ulimit -f 1`, `-n 4` or `-t 1` before `su` must not cripple a root program (nor should a
/// generous one carry over). No core dumps, since its memory holds the request; a
/// conventional 8 MiB stack and 1024 descriptors; no limit on time, file size or memory, as
/// for a service started by init (the timeout bounds the time). The number of processes is
/// not limited for root anyway. Without CAP_SYS_RESOURCE (in some containers) a hard limit
/// cannot be raised: then the soft one must still be reachable, or the program is not run.
const LIMITS: [(libc::__rlimit_resource_t, u64, u64); 7] = {
    const NONE: u64 = libc::RLIM64_INFINITY;
    [
        (libc::RLIMIT_CPU, NONE, NONE),
        (libc::RLIMIT_FSIZE, NONE, NONE),
        (libc::RLIMIT_DATA, NONE, NONE),
        (libc::RLIMIT_AS, NONE, NONE),
        (libc::RLIMIT_STACK, 8 << 20, NONE),
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_NOFILE, 1024, 4096),
    ]
};

/// How long past the timeout we wait for the supervisor's report before giving up on it.
const SLACK: Duration = Duration::from_secs(2);

/// The supervisor's reports: a tag and two numbers, written whole (a pipe write of at most
/// PIPE_BUF bytes is atomic, so reports never interleave or arrive cut).
const REPORT_LEN: usize = 12;
/// A step before the program runs failed: the step and errno.
const FAILED: u32 = 1;
/// The program ended: its wait status.
const ENDED: u32 = 2;
/// The deadline passed: the process group is being killed.
const KILLED: u32 = 3;

/// The steps a report of `FAILED` names.
const STEPS: [&str; 9] = [
    "start a session",
    "set up its descriptors",
    "become root (real and effective ids)",
    "set its resource limits",
    "change to /",
    "reset its signal mask",
    "become a child subreaper",
    "fork",
    "execute it",
];
const SESSION: u32 = 0;
const DESCRIPTORS: u32 = 1;
const ROOT: u32 = 2;
const RLIMITS: u32 = 3;
const CHDIR: u32 = 4;
const SIGNALS: u32 = 5;
const SUBREAPER: u32 = 6;
const FORK: u32 = 7;
const EXEC: u32 = 8;

/// Runs `program` as root with only `env` (and a standard PATH) in its environment, in a
/// known state whatever the calling process's: working directory `/`, umask 077, real and
/// effective uid and gid 0 and no supplementary groups, the `LIMITS` above, every signal at
/// its default action and none blocked, standard input, output and error on /dev/null and no
/// other descriptor (an sshd process has the client's socket open). It runs in a session and
/// process group of its own; once `timeout` seconds have passed, everything still in that
/// group is killed, whatever the host does with SIGCHLD, and this returns at most a couple of
/// seconds later. A program that leaves the group (setsid) is waited for until then but not
/// killed.
///
/// Only a program no one but root can have written is run: `program` must be an absolute
/// path without symbolic links in which every directory and the file itself are owned by
/// root and not writable by group or others, and the file a regular, executable one.
/// Otherwise, or if it fails, times out or cannot start, the error says why.
pub fn run_with_timeout(
    program: &Path,
    env: &[(&'static str, String)],
    timeout: u64,
) -> Result<(), String> {
    // Beyond any configurable value (300 s), and keeps the clock arithmetic far from overflow.
    let timeout = timeout.min(86_400);
    check_program(program)?;
    let plan = Plan::new(program, env, timeout).map_err(|e| format!("cannot start it: {e}"))?;
    let started = Instant::now();
    // SAFETY: fork(2). The child runs only `supervise`, which makes async-signal-safe calls on
    // memory prepared above and never returns (it ends in execve or _exit), so a host with
    // other threads cannot leave it stuck on a lock one of them held.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "cannot start it: cannot fork: {}",
            io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        // SAFETY: we are the fresh child; see supervise.
        unsafe { supervise(&plan) }
    }
    // Only the supervisor may hold the write end: its exit must close the pipe.
    let Plan {
        report_r,
        report_w,
        null,
        ..
    } = plan;
    drop((report_w, null));
    let outcome = read_reports(&report_r, started + Duration::from_secs(timeout) + SLACK);
    reap(pid, outcome.closed);
    outcome.verdict(timeout)
}

/// Why `program` may not be run as root, if it may not.
fn check_program(program: &Path) -> Result<(), String> {
    if !program.is_absolute() {
        return Err("refused to run it: it is not an absolute path".into());
    }
    let mut at = PathBuf::from("/");
    check_entry(&at, false)?;
    let mut names = program
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .peekable();
    if names.peek().is_none() {
        return Err("refused to run it: / is not a program".into());
    }
    while let Some(name) = names.next() {
        let Component::Normal(name) = name else {
            return Err("refused to run it: its path goes up with ..".into());
        };
        at.push(name);
        check_entry(&at, names.peek().is_none())?;
    }
    Ok(())
}

/// Checks one step of the path, from `/` down, so each entry is looked at only once its
/// directory is known to be root's alone (and so cannot change under us).
fn check_entry(path: &Path, is_program: bool) -> Result<(), String> {
    const RULE: &str = "the program and every directory above it must be owned by root, \
                        writable by root alone and not symbolic links";
    let meta = fs::symlink_metadata(path)
        .map_err(|e| format!("cannot start it: {}: {e}", path.display()))?;
    let refuse = |why: String| {
        Err(format!(
            "refused to run it: {} {why}; {RULE}",
            path.display()
        ))
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return refuse(match fs::read_link(path) {
            Ok(target) => format!("is a symbolic link (to {})", target.display()),
            Err(_) => "is a symbolic link".into(),
        });
    }
    if meta.uid() != 0 {
        return refuse(format!("is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o002 != 0 {
        return refuse("is writable by others".into());
    }
    if meta.mode() & 0o020 != 0 {
        return refuse("is writable by its group".into());
    }
    if !is_program && !kind.is_dir() {
        return refuse("is not a directory".into());
    }
    if is_program && !kind.is_file() {
        return refuse("is not a regular file".into());
    }
    if is_program && meta.mode() & 0o111 == 0 {
        return refuse("is not executable".into());
    }
    Ok(())
}

/// Everything the child needs, made before the fork: after it, the child may not allocate.
struct Plan {
    path: CString,
    argv: [*const c_char; 2],
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
    null: OwnedFd,
    report_r: OwnedFd,
    report_w: OwnedFd,
    /// Where the fallback for close_range stops.
    fd_limit: c_int,
    max_signal: c_int,
    timeout_ns: i64,
}

impl Plan {
    fn new(program: &Path, env: &[(&'static str, String)], timeout: u64) -> io::Result<Plan> {
        let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in it");
        let path = CString::new(program.as_os_str().as_bytes()).map_err(nul)?;
        let mut strings = vec![CString::new(PATH).map_err(nul)?];
        for (key, value) in env {
            strings.push(CString::new(format!("{key}={value}")).map_err(nul)?);
        }
        let mut envp: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        envp.push(ptr::null());
        let null = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into();
        let mut fds = [0 as c_int; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the read end is fresh from pipe2(2) and owned by nothing else.
        let report_r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        // SAFETY: likewise the write end.
        let report_w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
        // SAFETY: zeroed is a valid `rlimit`; getrlimit(2) fills it.
        let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: getrlimit(2) with a pointer to our struct.
        let fd_limit = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            c_int::try_from(limit.rlim_cur)
                .unwrap_or(1 << 20)
                .min(1 << 20)
        } else {
            1 << 16
        };
        Ok(Plan {
            argv: [path.as_ptr(), ptr::null()],
            path,
            _env: strings,
            envp,
            null,
            report_r,
            report_w,
            fd_limit,
            max_signal: libc::SIGRTMAX(),
            timeout_ns: i64::try_from(timeout).unwrap_or(0) * 1_000_000_000,
        })
    }
}

/// The supervisor: sets up the state the program gets, forks it, reaps it and whatever it
/// leaves behind, and kills the lot at the deadline. Reports go to the pipe.
///
/// # Safety
/// Only in the child of a fork, which this never returns from. Nothing in it allocates, and
/// every call is async-signal-safe: a system call, raw or through libc's plain wrapper.
unsafe fn supervise(plan: &Plan) -> ! {
    let mut out = plan.report_w.as_raw_fd();
    let fail = |out: c_int, step: u32| -> ! {
        report(out, FAILED, step, errno());
        // SAFETY: _exit(2) ends the child at once, without the host's atexit handlers.
        unsafe { libc::_exit(127) }
    };

    // Out of the caller's session and process group: no terminal signals reach it, and the
    // deadline's kill(0, SIGKILL) reaches exactly what the program started.
    // SAFETY: setsid(2) has no preconditions.
    if unsafe { libc::setsid() } < 0 {
        fail(out, SESSION);
    }
    // The limits first: a caller's `ulimit -n 10` would otherwise keep the descriptors below
    // from being set up at all.
    if set_limits().is_err() {
        fail(out, RLIMITS);
    }
    match descriptors(plan) {
        Ok(report) => out = report,
        Err(()) => fail(out, DESCRIPTORS),
    }
    if become_root().is_err() {
        fail(out, ROOT);
    }
    // SAFETY: chdir(2) with a NUL-terminated literal.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        fail(out, CHDIR);
    }
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0o077) };
    reset_dispositions(plan.max_signal);
    // The supervisor keeps SIGCHLD blocked, to wait for it with sigtimedwait without a race;
    // the program's child empties its mask below.
    let children = signal_set(&[libc::SIGCHLD]);
    if set_mask(&children).is_err() {
        fail(out, SIGNALS);
    }
    // Orphans of the program (a background job it leaves) become our children, so we can
    // tell when everything it started has ended.
    // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        fail(out, SUBREAPER);
    }

    let deadline = monotonic_ns() + plan.timeout_ns;
    // SAFETY: fork(2) in a process with one thread, whose libc state the first fork made
    // consistent (glibc resets its own locks in a child; no other thread can hold one).
    let program = unsafe { libc::fork() };
    if program < 0 {
        fail(out, FORK);
    }
    if program == 0 {
        if set_mask(&signal_set(&[])).is_err() {
            fail(out, SIGNALS);
        }
        // SAFETY: execve(2) with a NUL-terminated path and two NULL-terminated arrays of
        // NUL-terminated strings, all made before the first fork and still alive.
        unsafe { libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        fail(out, EXEC);
    }

    // Should the caller give up on us and close its end, a report must not kill the
    // supervisor with SIGPIPE while it still has a group to watch.
    set_disposition(libc::SIGPIPE, libc::SIG_IGN);
    loop {
        loop {
            let mut status: c_int = 0;
            // SAFETY: waitpid(2) with a pointer to our int.
            let ended = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if ended == program {
                report(out, ENDED, u32::from_ne_bytes(status.to_ne_bytes()), 0);
            } else if ended == 0 {
                break;
            } else if ended < 0 && errno() != libc::EINTR {
                // ECHILD: the program and everything it left behind have ended.
                // SAFETY: as in `fail`.
                unsafe { libc::_exit(0) };
            }
        }
        let left = deadline - monotonic_ns();
        if left <= 0 {
            report(out, KILLED, 0, 0);
            // Ourselves included: the caller then sees the pipe close.
            // SAFETY: kill(2) of our own process group; async-signal-safe.
            unsafe { libc::kill(0, libc::SIGKILL) };
            // SAFETY: as in `fail` (not reached if the kill above took us too).
            unsafe { libc::_exit(1) };
        }
        let wait = libc::timespec {
            tv_sec: (left / 1_000_000_000) as libc::time_t,
            tv_nsec: (left % 1_000_000_000) as libc::c_long,
        };
        // Returns on SIGCHLD (kept pending by the mask) or when the time is up.
        // SAFETY: sigtimedwait(2) reads our set and timespec; the siginfo is not wanted.
        unsafe { libc::sigtimedwait(&children, ptr::null_mut(), &wait) };
    }
}

/// In the supervisor: standard descriptors on /dev/null, the report pipe on 3 (closed by the
/// program's exec) and nothing else open. Both are first copied above 9, out of the way of
/// 0-3, in case the host had closed its standard descriptors and pipe2 or open returned one
/// of those numbers. Returns the report descriptor.
fn descriptors(plan: &Plan) -> Result<c_int, ()> {
    // SAFETY: fcntl(2) F_DUPFD_CLOEXEC on a descriptor the plan keeps open.
    let report = unsafe { libc::fcntl(plan.report_w.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    // SAFETY: as above.
    let null = unsafe { libc::fcntl(plan.null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if report < 0 || null < 0 {
        return Err(());
    }
    for fd in 0..3 {
        // SAFETY: dup2(2) of an open descriptor onto a standard one, which it replaces.
        if unsafe { libc::dup2(null, fd) } < 0 {
            return Err(());
        }
    }
    // SAFETY: dup3(2) as above; report is at least 10, so never equal to 3.
    if unsafe { libc::dup3(report, 3, libc::O_CLOEXEC) } < 0 {
        return Err(());
    }
    close_from(4, plan.fd_limit);
    Ok(3)
}

/// In the supervisor: real, effective and saved ids root and no supplementary groups (under
/// su the real uid and the groups are the caller's). Raw system calls, because libc's
/// wrappers would also try to change the ids of the host's other threads, which do not exist
/// in this child; with ids of 0 the legacy 16-bit calls of some 32-bit platforms do as well.
fn become_root() -> Result<(), ()> {
    // SAFETY: setgroups(2) with an empty list: a size of 0, and a null list it does not read.
    if unsafe { libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) } != 0 {
        return Err(());
    }
    // SAFETY: setresgid(2) with plain ids; it takes no pointer.
    if unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) } != 0 {
        return Err(());
    }
    // SAFETY: setresuid(2) with plain ids; it takes no pointer.
    if unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) } != 0 {
        return Err(());
    }
    Ok(())
}

/// In the supervisor: the [`LIMITS`], through the raw prlimit64(2) (getrlimit and setrlimit
/// are not on the async-signal-safe list).
fn set_limits() -> Result<(), ()> {
    let prlimit = |new: Option<&libc::rlimit64>,
                   old: Option<&mut libc::rlimit64>,
                   resource: libc::__rlimit_resource_t| {
        let new = new.map_or(ptr::null(), |n| n as *const libc::rlimit64);
        let old = old.map_or(ptr::null_mut(), |o| o as *mut libc::rlimit64);
        // SAFETY: prlimit64(2) on ourselves (pid 0), reading `new` and filling `old` when
        // given, both pointing at structs of ours.
        match unsafe { libc::syscall(libc::SYS_prlimit64, 0, resource, new, old) } {
            0 => Ok(()),
            _ => Err(()),
        }
    };
    for (resource, soft, hard) in LIMITS {
        let want = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        if prlimit(Some(&want), None, resource).is_ok() {
            continue;
        }
        // No right to raise the hard limit: keep it if the soft one fits under it.
        let mut now = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        prlimit(None, Some(&mut now), resource)?;
        if now.rlim_max < soft {
            return Err(());
        }
        let fits = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard.min(now.rlim_max),
        };
        prlimit(Some(&fits), None, resource)?;
    }
    Ok(())
}

/// In the supervisor: every disposition back to the default, since a signal ignored here
/// stays ignored across exec (caught ones are reset by exec itself). The raw system call,
/// because libc's sigaction refuses its two internal signals (32 and 33), which a host can
/// have inherited ignored like any other. An all-zero kernel `struct sigaction` is SIG_DFL
/// with no flags and an empty mask whatever the platform's field order; the buffer is larger
/// than any platform's. SIGKILL and SIGSTOP cannot be changed: those two fail, as expected.
fn reset_dispositions(max_signal: c_int) {
    let default = [0u64; 8];
    // The kernel's signal set: one bit per signal, in bytes.
    let set_size = usize::try_from(max_signal + 1).unwrap_or(64) / 8;
    for signal in 1..=max_signal {
        // SAFETY: rt_sigaction(2) reads a struct sigaction from our zeroed buffer and writes
        // nothing back (null old action).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                ptr::null_mut::<u64>(),
                set_size,
            )
        };
    }
}

fn set_disposition(signal: c_int, handler: libc::sighandler_t) {
    // SAFETY: all-zero bytes are a valid `struct sigaction` (plain integers and a bit set).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    // SAFETY: sigemptyset(3) initialises the mask of our struct.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: sigaction(2) reads our initialised struct and writes nothing back (null old
    // action).
    unsafe { libc::sigaction(signal, &action, ptr::null_mut()) };
}

fn signal_set(signals: &[c_int]) -> libc::sigset_t {
    // SAFETY: all-zero bytes are a valid `sigset_t` (a plain bit array).
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset(3) initialises the set we own.
    unsafe { libc::sigemptyset(&mut set) };
    for &signal in signals {
        // SAFETY: sigaddset(3) on the set initialised above; an invalid signal number only
        // makes it fail with EINVAL.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

fn set_mask(set: &libc::sigset_t) -> Result<(), ()> {
    // SAFETY: sigprocmask(2) reads our set; we have a single thread, so it is that thread's.
    match unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, ptr::null_mut()) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn report(fd: c_int, tag: u32, a: u32, b: i32) {
    let mut message = [0u8; REPORT_LEN];
    let fields = [tag.to_ne_bytes(), a.to_ne_bytes(), b.to_ne_bytes()];
    for (chunk, field) in message.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field);
    }
    // SAFETY: write(2) of our own buffer. Nothing to do if it fails: the caller has gone.
    unsafe { libc::write(fd, message.as_ptr().cast(), REPORT_LEN) };
}

fn monotonic_ns() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) fills our struct; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    // time_t and long are 32 bits on some platforms, where these conversions are not idle.
    #[allow(clippy::useless_conversion)]
    let (secs, nanos) = (i64::from(now.tv_sec), i64::from(now.tv_nsec));
    secs * 1_000_000_000 + nanos
}

/// Closes every descriptor from `first` up: close_range(2), or one by one before Linux 5.9.
fn close_from(first: c_int, limit: c_int) {
    // SAFETY: close_range(2) on descriptors of this process, which nothing in it uses any
    // more; it takes no pointer.
    if unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0) } != 0 {
        for fd in first..limit {
            // SAFETY: close(2), as above; a descriptor that is not open gives EBADF.
            unsafe { libc::close(fd) };
        }
    }
}

/// What the supervisor reported.
#[derive(Default)]
struct Outcome {
    failed: Option<(u32, i32)>,
    ended: Option<ExitStatus>,
    killed: bool,
    /// The pipe closed: the supervisor has exited.
    closed: bool,
    garbled: bool,
}

fn read_reports(pipe: &OwnedFd, give_up: Instant) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return outcome;
        }
        let mut poll = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = c_int::try_from(left.as_millis().max(1)).unwrap_or(c_int::MAX);
        // SAFETY: poll(2) on one pollfd of ours.
        if unsafe { libc::poll(&mut poll, 1, ms) } <= 0 {
            // Time up (checked above) or interrupted, by the host's SIGCHLD handler say.
            continue;
        }
        let mut message = [0u8; REPORT_LEN];
        // SAFETY: read(2) into our buffer of REPORT_LEN bytes.
        let n = unsafe { libc::read(pipe.as_raw_fd(), message.as_mut_ptr().cast(), REPORT_LEN) };
        match usize::try_from(n) {
            Ok(0) => {
                outcome.closed = true;
                return outcome;
            }
            Ok(REPORT_LEN) => {}
            Ok(_) => outcome.garbled = true,
            Err(_) => continue,
        }
        let mut words = [0u32; 3];
        for (word, bytes) in words.iter_mut().zip(message.chunks_exact(4)) {
            let mut four = [0u8; 4];
            four.copy_from_slice(bytes);
            *word = u32::from_ne_bytes(four);
        }
        let [tag, a, b] = words;
        match tag {
            FAILED => {
                outcome
                    .failed
                    .get_or_insert((a, i32::from_ne_bytes(b.to_ne_bytes())));
            }
            ENDED => {
                let status = i32::from_ne_bytes(a.to_ne_bytes());
                outcome.ended = Some(ExitStatus::from_raw(status));
            }
            KILLED => outcome.killed = true,
            _ => outcome.garbled = true,
        }
    }
}

/// Collects the supervisor's exit status so it leaves no zombie. The host may have reaped it
/// already (waitpid then fails with ECHILD), and the pipe closes a moment before the process
/// is waitable, so this polls briefly rather than blocking on a pid that, once reaped by the
/// host, is not ours to wait for.
fn reap(pid: libc::pid_t, exited: bool) {
    let give_up = Instant::now() + Duration::from_secs(if exited { 1 } else { 0 });
    loop {
        // SAFETY: waitpid(2) on our own child, not blocking.
        let rc = unsafe { libc::waitpid(pid, ptr::null_mut(), libc::WNOHANG) };
        if rc != 0 || Instant::now() >= give_up {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Outcome {
    fn verdict(self, timeout: u64) -> Result<(), String> {
        if let Some((step, errno)) = self.failed {
            let step = usize::try_from(step)
                .ok()
                .and_then(|i| STEPS.get(i))
                .unwrap_or(&"prepare it");
            let why = io::Error::from_raw_os_error(errno);
            return Err(format!("cannot start it: cannot {step}: {why}"));
        }
        match (self.ended, self.killed) {
            (Some(status), false) if status.success() => Ok(()),
            (Some(status), false) => Err(format!("it ended with {status}")),
            (Some(status), true) => Err(format!(
                "it ended with {status}, but what it started ran longer than {timeout} s and \
                 was killed"
            )),
            (None, true) => Err(format!("it ran longer than {timeout} s and was killed")),
            (None, false) if self.garbled => Err("its supervisor's report was garbled".into()),
            (None, false) if self.closed => Err("its supervisor ended without a report".into()),
            (None, false) => Err(format!(
                "no word from its supervisor {} s after the timeout",
                SLACK.as_secs()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_program_root_alone_can_have_written_passes() {
        assert_eq!(check_program(Path::new("/usr/bin/true")), Ok(()));
        let refused = |path: &str, why: &str| {
            let err = check_program(Path::new(path)).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        };
        refused("usr/bin/true", "not an absolute path");
        refused("/usr/bin/../bin/true", "..");
        refused("/", "not a program");
        refused("/usr/bin", "is not a regular file");
        refused("/etc/passwd", "is not executable");
        refused("/usr/bin/true/x", "is not a directory");
        refused("/no/such/program", "cannot start it: /no:");
        // The sticky, world-writable temporary directory is no place for a root program.
        refused("/tmp/x", "/tmp is writable by others");
        if fs::symlink_metadata("/bin").is_ok_and(|m| m.file_type().is_symlink()) {
            refused("/bin/true", "/bin is a symbolic link (to usr/bin)");
        }
    }

    #[test]
    fn reports_survive_the_pipe() {
        let mut fds = [0 as c_int; 2];
        // SAFETY: as in Plan::new.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: a fresh descriptor from pipe2(2), owned by nothing else.
        let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        // SAFETY: as above.
        let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
        report(w.as_raw_fd(), FAILED, EXEC, libc::ENOENT);
        report(w.as_raw_fd(), ENDED, 3 << 8, 0);
        drop(w);
        let outcome = read_reports(&r, Instant::now() + Duration::from_secs(5));
        assert!(outcome.closed && !outcome.killed && !outcome.garbled);
        assert_eq!(outcome.failed, Some((EXEC, libc::ENOENT)));
        assert_eq!(outcome.ended.and_then(|s| s.code()), Some(3));
        let err = outcome.verdict(10).unwrap_err();
        assert!(
            err.starts_with("cannot start it: cannot execute it: No such file"),
            "{err}"
        );
    }
}
