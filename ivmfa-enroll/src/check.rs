//! `check`: the doctor. Reads what decides whether logins ask for a code — the config, the
//! store, the PAM stacks that load the module, sshd's effective settings — and says plainly
//! what is wrong and how to fix it. It errs on the side of reporting: a false "all is well"
//! here means logins without MFA.

use std::path::{Path, PathBuf};
use std::process::Command;

use ivmfa_core::config::{Config, Unenrolled};
use ivmfa_core::store::Store;

#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("ok:      {what}");
    }
    fn note(&self, what: &str) {
        println!("note:    {what}");
    }
    fn problem(&mut self, what: &str, fix: &str) {
        self.problems += 1;
        println!("problem: {what}\n  fix:   {fix}");
    }
}

/// Reports what it finds; returns whether all is well. Every fault is a finding, not an error.
pub fn run(config: Option<&Path>, store: Option<&Path>, pam_dir: &Path, sshd: &Path) -> bool {
    let mut r = Report::default();
    let euid = ivmfa_sys::euid();
    let config_args: Vec<String> = config
        .map(|p| vec![format!("config={}", p.display())])
        .unwrap_or_default();
    let mut resolved = match Config::resolve(&config_args, euid) {
        Ok(c) => {
            r.ok(&format!(
                "config {}",
                config.map_or(ivmfa_core::config::DEFAULT_CONFIG.into(), |p| p
                    .display()
                    .to_string())
            ));
            c
        }
        Err(e) => {
            r.problem(
                &e.to_string(),
                "fix the file; until then every login through pam_ivmfa is denied",
            );
            Config::default()
        }
    };
    if let Some(s) = store {
        // Through the same check as the config key, as every other command does.
        if let Err(e) = resolved.set("store", Some(&s.display().to_string())) {
            r.problem(&e.to_string(), "give --store as an absolute path");
        }
    }
    let store = Store::new(&resolved.store, euid);
    check_store(&mut r, &store);
    let sshd_uses_module = check_pam(&mut r, pam_dir, &config_args, euid);
    check_sshd(&mut r, sshd, sshd_uses_module);

    match r.problems {
        0 => println!("\nNo problems found."),
        1 => println!("\n1 problem found."),
        n => println!("\n{n} problems found."),
    }
    r.problems == 0
}

fn check_store(r: &mut Report, store: &Store) {
    let users = match store.users() {
        Ok(users) => users,
        Err(e) => {
            return r.problem(
                &e.to_string(),
                "fix the store directory: root-owned, mode 0700",
            );
        }
    };
    let mut enrolled = 0;
    for user in &users {
        // Read without the lock, which would create lock files: the doctor changes nothing.
        let checked = store
            .load_enrollment(user)
            .and_then(|e| store.peek_state(user).map(|_| e));
        match checked {
            Ok(Some(_)) => enrolled += 1,
            Ok(None) => {}
            Err(e) => r.problem(
                &format!("{user}: {e}"),
                "until this is fixed every login of this user is denied",
            ),
        }
    }
    match store.reset_requests() {
        Ok(requests) if !requests.is_empty() => r.note(&format!(
            "{} reset request(s) pending: ivmfa-enroll reset list",
            requests.len()
        )),
        Ok(_) => {}
        Err(e) => r.problem(&e.to_string(), "fix or remove the request file"),
    }
    if enrolled == 0 {
        r.note(&format!(
            "nobody is enrolled in {}; enroll users with ivmfa-enroll enroll USER",
            store.root().display()
        ));
    } else {
        r.ok(&format!(
            "store {}: {enrolled} user(s) enrolled",
            store.root().display()
        ));
    }
}

/// One `auth` entry of a PAM stack, after includes are expanded.
#[derive(Clone, Debug)]
struct Entry {
    /// `file line N`, for messages.
    at: String,
    control: String,
    module: String,
    args: Vec<String>,
    /// `-auth`: libpam skips the line silently when the module cannot be loaded.
    dash: bool,
    /// Inside a substack: its `done` and `sufficient` end only the substack.
    in_substack: bool,
}

impl Entry {
    fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    fn is_ivmfa(&self) -> bool {
        self.module_name() == "pam_ivmfa.so"
    }

    /// A success here can end the stack before later modules run.
    fn success_ends_stack(&self) -> bool {
        let c = self.control.to_ascii_lowercase();
        c == "sufficient" || c == "binding" || c.contains("success=done")
    }

    /// The number of modules a success jumps over, for `[success=N ...]`.
    fn success_jump(&self) -> Option<usize> {
        let c = self.control.to_ascii_lowercase();
        c.trim_matches(['[', ']'])
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("success="))
            .and_then(|n| n.parse().ok())
    }

    /// A failure here ends the stack at once.
    fn failure_stops(&self) -> bool {
        let c = self.control.to_ascii_lowercase();
        c == "requisite" || c.contains("default=die")
    }
}

/// The auth entries of `file`, with `@include`, `include` and `substack` expanded.
fn expand(pam_dir: &Path, file: &str, depth: usize, in_substack: bool, out: &mut Vec<Entry>) {
    // libpam itself gives up on deeper nesting; so do we (and on include loops).
    if depth > 10 {
        return;
    }
    let path = pam_dir.join(file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = format!("{} line {}", path.display(), i + 1);
        match words.as_slice() {
            [include, name] if include.eq_ignore_ascii_case("@include") => {
                expand(pam_dir, name, depth + 1, in_substack, out)
            }
            [kind, rest @ ..]
                if kind.trim_start_matches('-').eq_ignore_ascii_case("auth")
                    && !rest.is_empty() =>
            {
                // A bracketed control may contain spaces: [success=ok default=die].
                let joined = rest.join(" ");
                let (control, after) = if joined.starts_with('[') {
                    match joined.split_once(']') {
                        Some((c, a)) => (format!("{c}]"), a.trim().to_owned()),
                        None => (joined.clone(), String::new()),
                    }
                } else {
                    let (c, a) = joined.split_once(' ').unwrap_or((&joined, ""));
                    (c.to_owned(), a.to_owned())
                };
                let mut words = after.split_whitespace().map(str::to_owned);
                let module = words.next().unwrap_or_default();
                match control.to_ascii_lowercase().as_str() {
                    "include" => expand(pam_dir, &module, depth + 1, in_substack, out),
                    "substack" => expand(pam_dir, &module, depth + 1, true, out),
                    _ => out.push(Entry {
                        at,
                        control,
                        module,
                        args: words.collect(),
                        dash: kind.starts_with('-'),
                        in_substack,
                    }),
                }
            }
            _ => {}
        }
    }
}

/// Where libpam finds modules named without a path.
const MODULE_DIRS: [&str; 6] = [
    "/usr/lib/x86_64-linux-gnu/security",
    "/lib/x86_64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/usr/lib64/security",
    "/lib/security",
    "/usr/lib/security",
];

fn module_exists(module: &str) -> bool {
    if module.starts_with('/') {
        return Path::new(module).exists();
    }
    MODULE_DIRS
        .iter()
        .any(|d| Path::new(d).join(module).exists())
}

/// Checks every PAM service whose stack loads the module; returns whether sshd's does.
fn check_pam(r: &mut Report, pam_dir: &Path, config_args: &[String], euid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(pam_dir) else {
        r.problem(
            &format!("cannot read {}", pam_dir.display()),
            "give the PAM directory with --pam-dir",
        );
        return false;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut sshd = false;
    let mut any = false;
    for file in files {
        let Some(service) = file.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let mut stack = Vec::new();
        expand(pam_dir, &service, 0, false, &mut stack);
        for (i, entry) in stack.iter().enumerate().filter(|(_, e)| e.is_ivmfa()) {
            any = true;
            sshd |= service == "sshd";
            check_entry(r, &service, &stack, i, entry, config_args, euid);
        }
    }
    if !any {
        r.note(&format!(
            "no PAM stack in {} loads pam_ivmfa.so yet; see the README",
            pam_dir.display()
        ));
    }
    sshd
}

fn check_entry(
    r: &mut Report,
    service: &str,
    stack: &[Entry],
    i: usize,
    entry: &Entry,
    config_args: &[String],
    euid: u32,
) {
    let at = format!("service {service}, {}", entry.at);
    match entry.control.to_ascii_lowercase().as_str() {
        "required" | "requisite" => {}
        "optional" => r.problem(
            &format!("{at}: pam_ivmfa.so is optional, so a wrong code does not stop the login"),
            "make it: auth required pam_ivmfa.so",
        ),
        "sufficient" => r.problem(
            &format!(
                "{at}: pam_ivmfa.so is sufficient, so a code alone can end the stack with success"
            ),
            "make it: auth required pam_ivmfa.so, after the password step",
        ),
        other => r.note(&format!(
            "{at}: control {other}; make sure a failure of pam_ivmfa.so denies the login"
        )),
    }
    if entry.dash {
        r.problem(
            &format!(
                "{at}: -auth makes libpam skip pam_ivmfa.so silently when it cannot be loaded"
            ),
            "remove the leading '-'",
        );
    }
    if !module_exists(&entry.module) {
        r.problem(
            &format!("{at}: {} is not installed where libpam looks", entry.module),
            "install it (packaging/install.sh) or give its absolute path",
        );
    }
    let mut args = entry.args.clone();
    if !args.iter().any(|a| a.starts_with("config=")) {
        args.extend(config_args.iter().cloned());
    }
    let config = match Config::resolve(&args, euid) {
        Ok(c) => c,
        Err(e) => {
            return r.problem(
                &format!("{at}: {e}"),
                "fix the options; until then every login is denied",
            );
        }
    };
    if config.unenrolled == Unenrolled::Allow {
        r.note(&format!(
            "{at}: unenrolled=allow: users who have not enrolled log in with the password alone"
        ));
    }
    if let Some(group) = &config.exempt_group {
        r.note(&format!(
            "{at}: members of group {group} log in without a code (exempt_group)"
        ));
    }

    let before = &stack[..i];
    let mut fine = true;
    for (j, e) in before.iter().enumerate().filter(|(_, e)| !e.in_substack) {
        if e.success_ends_stack() {
            fine = false;
            r.problem(
                &format!(
                    "{at}: a success of {} ({}, {}) ends the stack before pam_ivmfa.so runs",
                    e.module_name(),
                    e.control,
                    e.at
                ),
                "make that module required or requisite, or put pam_ivmfa.so before it",
            );
        } else if e.success_jump().is_some_and(|n| j + n + 1 > i) {
            fine = false;
            r.problem(
                &format!(
                    "{at}: {} ({}, {}) jumps past pam_ivmfa.so on success",
                    e.module_name(),
                    e.control,
                    e.at
                ),
                "change the jump so it lands on or before pam_ivmfa.so",
            );
        }
    }
    let password_step = before.iter().any(|e| {
        !matches!(
            e.module_name(),
            "pam_permit.so" | "pam_deny.so" | "pam_env.so" | "pam_faildelay.so" | "pam_nologin.so"
        )
    });
    if !password_step {
        r.note(&format!(
            "{at}: no password step before pam_ivmfa.so; right only for key + code logins \
             (sshd AuthenticationMethods publickey,keyboard-interactive)"
        ));
    } else if config.unenrolled == Unenrolled::Enroll && !before.iter().any(Entry::failure_stops) {
        fine = false;
        r.problem(
            &format!("{at}: unenrolled=enroll, but a wrong password does not stop the stack before pam_ivmfa.so"),
            "make the password module requisite (or [success=ok default=die]) so only someone \
             who knows the password can enroll",
        );
    }
    if fine && password_step {
        r.ok(&format!("{at}: pam_ivmfa.so after the password step"));
    }
}

fn check_sshd(r: &mut Report, sshd: &Path, uses_module: bool) {
    let out = match Command::new(sshd).arg("-T").output() {
        Ok(out) => out,
        Err(_) => {
            r.note(&format!(
                "{} not found; sshd settings not checked",
                sshd.display()
            ));
            return;
        }
    };
    if !uses_module {
        r.note("the sshd PAM stack does not load pam_ivmfa.so; SSH logins ask for no code");
        return;
    }
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        r.problem(
            &format!("cannot read sshd's effective settings (sshd -T: {why}); a login may skip the code unnoticed"),
            "fix what sshd -T reports, then run check again",
        );
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let setting = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let mut fine = true;
    if setting("usepam") != "yes" {
        fine = false;
        r.problem(
            "sshd has UsePAM no, so it never asks for the code",
            "set UsePAM yes in sshd_config",
        );
    }
    if setting("kbdinteractiveauthentication") != "yes" {
        fine = false;
        r.problem(
            "sshd has KbdInteractiveAuthentication no, so it cannot show the code prompt",
            "set KbdInteractiveAuthentication yes in sshd_config",
        );
    }
    // Every way in must include keyboard-interactive, where the code is asked.
    let methods = setting("authenticationmethods");
    let bypass: Vec<&str> = if methods.is_empty() || methods == "any" {
        [
            ("publickey", setting("pubkeyauthentication") != "no"),
            ("gssapi-with-mic", setting("gssapiauthentication") == "yes"),
            ("hostbased", setting("hostbasedauthentication") == "yes"),
        ]
        .into_iter()
        .filter_map(|(m, on)| on.then_some(m))
        .collect()
    } else {
        methods
            .split(' ')
            .filter(|list| {
                !list
                    .split(',')
                    .any(|m| m.starts_with("keyboard-interactive"))
            })
            .collect()
    };
    if !bypass.is_empty() {
        fine = false;
        r.problem(
            &format!(
                "sshd lets users in without a code through: {}",
                bypass.join(", ")
            ),
            "set AuthenticationMethods publickey,keyboard-interactive keyboard-interactive \
             (every list must contain keyboard-interactive)",
        );
    }
    let config = std::fs::read_to_string("/etc/ssh/sshd_config").unwrap_or_default();
    if config
        .lines()
        .any(|l| l.trim_start().to_ascii_lowercase().starts_with("match "))
    {
        r.note("sshd_config has Match blocks, which sshd -T does not apply; check them with sshd -T -C user=NAME,host=HOST,addr=ADDR");
    }
    if fine {
        r.ok(&format!(
            "sshd: UsePAM and keyboard-interactive on; AuthenticationMethods {methods}"
        ));
    }
}
