//! pam-driver: drives a PAM stack the way a login program does, for the integration tests.
//!
//! ```text
//! pam-driver auth --confdir DIR --service NAME --user USER [--rhost HOST] [--tty TTY]
//!                 [--answer TEXT]... [--answer-file FILE]... [--start-at UNIX_MS]
//!                 [--repeat N] [--silent] [--hold-answer-until PATH] [--refuse-info]
//!                 [--report-limits] [--block-signals] [--sigchld ignore|reap]
//! ```
//!
//! An answer `@phone` is what a person with an authenticator app types: the driver scans the
//! last QR code the module showed (with zbarimg) and answers that account's current code;
//! `@phone-wrong` answers a wrong one. See phone.rs.
//!
//! ```text
//! pam-driver dlopen MODULE.so
//! pam-driver phone FILE          (prints the code for the last QR code drawn in FILE)
//! ```
//!
//! `auth` prints every message the stack sent (`info: ...`, `prompt-hidden: ...`), then
//! `result: PAM_NAME`. With `--repeat N` it runs N transactions in one threaded process and
//! prints thread and descriptor counts before and after, to show the module leaks neither.
//! `--block-signals` (SIGUSR1, SIGUSR2 and SIGALRM blocked) and `--sigchld` (SIGCHLD ignored,
//! or a handler that reaps every child) play a host whose state the module's children must
//! not inherit or be confused by.

mod phone;

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ivmfa_tests::ffi::{self, Script, Transaction};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("auth") => auth(&args[1..]),
        // For an SSH_ASKPASS script: the code for the last QR code in a file (ssh's stderr).
        Some("phone") if args.len() == 2 => match std::fs::read_to_string(&args[1]) {
            Ok(text) => {
                let code = phone::answer(b"@phone".to_vec(), &text);
                println!("{}", String::from_utf8_lossy(&code));
                ExitCode::SUCCESS
            }
            Err(e) => usage(&format!("{}: {e}", args[1])),
        },
        Some("dlopen") if args.len() == 2 => match ffi::dlopen_now(&args[1]) {
            Ok((authenticate, setcred)) => {
                println!("loaded: pam_sm_authenticate={authenticate} pam_sm_setcred={setcred}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("dlopen failed: {e}");
                ExitCode::from(1)
            }
        },
        _ => usage("expected auth or dlopen"),
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("pam-driver: {why}; see the comment at the top of main.rs");
    ExitCode::from(2)
}

#[derive(Default)]
struct Options {
    confdir: String,
    service: String,
    user: String,
    rhost: Option<String>,
    tty: Option<String>,
    answers: Vec<Vec<u8>>,
    start_at: Option<u64>,
    repeat: Option<usize>,
    flags: i32,
    hold_until: Option<std::path::PathBuf>,
    refuse_info: bool,
    report_limits: bool,
    block_signals: bool,
    sigchld: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--confdir" => o.confdir = value()?,
            "--service" => o.service = value()?,
            "--user" => o.user = value()?,
            "--rhost" => o.rhost = Some(value()?),
            "--tty" => o.tty = Some(value()?),
            "--answer" => o.answers.push(value()?.into_bytes()),
            "--answer-file" => {
                let path = value()?;
                o.answers
                    .push(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?);
            }
            "--start-at" => o.start_at = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--repeat" => o.repeat = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--silent" => o.flags |= ffi::PAM_SILENT,
            "--refuse-info" => o.refuse_info = true,
            "--report-limits" => o.report_limits = true,
            "--hold-answer-until" => o.hold_until = Some(value()?.into()),
            "--block-signals" => o.block_signals = true,
            "--sigchld" => o.sigchld = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.confdir.is_empty() || o.service.is_empty() {
        return Err("--confdir and --service are required".into());
    }
    Ok(o)
}

fn auth(args: &[String]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => return usage(&e),
    };
    if let Err(e) = play_host(&o) {
        return usage(&e);
    }
    if let Some(n) = o.repeat {
        return repeat(&o, n);
    }
    let mut t = match start(&o) {
        Ok(t) => t,
        Err(rc) => {
            println!("result: pam_start failed ({rc})");
            return ExitCode::from(1);
        }
    };
    if let Some(at) = o.start_at {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let at = Duration::from_millis(at);
        if at > now {
            std::thread::sleep(at - now);
        }
    }
    let rc = t.authenticate(o.flags);
    for line in &t.script.transcript {
        println!("{line}");
    }
    if o.report_limits {
        let (soft, hard, ignored) = ffi::file_size_limit();
        let xfsz = if ignored { "ignored" } else { "default" };
        println!(
            "after: fsize {soft} {hard}, sigxfsz {xfsz}, ruid {}",
            ffi::real_uid()
        );
    }
    println!("result: {}", name(rc));
    ExitCode::SUCCESS
}

fn play_host(o: &Options) -> Result<(), String> {
    if o.block_signals {
        ffi::host::block(&[libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM])
            .map_err(|e| format!("cannot block signals: {e}"))?;
    }
    match o.sigchld.as_deref() {
        None => Ok(()),
        Some("ignore") => ffi::host::ignore_sigchld(),
        Some("reap") => ffi::host::reap_on_sigchld(),
        Some(other) => return Err(format!("--sigchld {other}: expected ignore or reap")),
    }
    .map_err(|e| format!("cannot set SIGCHLD: {e}"))
}

fn start(o: &Options) -> Result<Transaction, i32> {
    let script = Script {
        hold_until: o.hold_until.clone(),
        refuse_info: o.refuse_info,
        answer_with: Some(phone::answer),
        ..Script::answering(o.answers.iter().cloned())
    };
    let mut t = Transaction::start(&o.confdir, &o.service, &o.user, script)?;
    for (item, value) in [(ffi::PAM_RHOST, &o.rhost), (ffi::PAM_TTY, &o.tty)] {
        if let Some(v) = value {
            let rc = t.set_item(item, v);
            if rc != 0 {
                return Err(rc);
            }
        }
    }
    Ok(t)
}

/// Runs `n` whole transactions while another thread is alive, the way a threaded PAM consumer
/// (a display manager, a web login) does.
fn repeat(o: &Options, n: usize) -> ExitCode {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let _ = stop_rx.recv();
    });
    let before = (count("Threads:"), fds());
    let mut results = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..n {
        let rc = match start(o) {
            Ok(mut t) => t.authenticate(o.flags),
            Err(rc) => rc,
        };
        *results.entry(name(rc)).or_default() += 1;
    }
    let after = (count("Threads:"), fds());
    let _ = stop_tx.send(());
    let _ = worker.join();
    for (k, v) in results {
        println!("result: {k} x{v}");
    }
    println!("threads: {} -> {}", before.0, after.0);
    println!("fds: {} -> {}", before.1, after.1);
    ExitCode::SUCCESS
}

fn count(field: &str) -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn name(rc: i32) -> String {
    let known = [
        (0, "PAM_SUCCESS"),
        (3, "PAM_SERVICE_ERR"),
        (4, "PAM_SYSTEM_ERR"),
        (5, "PAM_BUF_ERR"),
        (6, "PAM_PERM_DENIED"),
        (7, "PAM_AUTH_ERR"),
        (9, "PAM_AUTHINFO_UNAVAIL"),
        (10, "PAM_USER_UNKNOWN"),
        (11, "PAM_MAXTRIES"),
        (19, "PAM_CONV_ERR"),
        (25, "PAM_IGNORE"),
        (26, "PAM_ABORT"),
    ];
    known
        .iter()
        .find(|(c, _)| *c == rc)
        .map_or_else(|| format!("PAM_{rc}"), |(_, n)| (*n).to_owned())
}
