//! `check`: the doctor. Reads what decides whether logins ask for a code — the config, the
//! store, the PAM stacks that load the module, sshd's effective settings — and says plainly
//! what is wrong and how to fix it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ivmfa_core::config::{Config, Unenrolled};
use ivmfa_core::store::Store;

use crate::error::Result;

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

/// Returns whether anything is wrong.
pub fn run(
    config: Option<&Path>,
    store: Option<&Path>,
    pam_dir: &Path,
    sshd: &Path,
) -> Result<bool> {
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
        resolved.store = s.to_path_buf();
    }
    check_store(&mut r, &Store::new(&resolved.store, euid));
    let sshd_uses_module = check_pam(&mut r, pam_dir, &config_args, euid);
    check_sshd(&mut r, sshd, sshd_uses_module);

    match r.problems {
        0 => println!("\nNo problems found."),
        1 => println!("\n1 problem found."),
        n => println!("\n{n} problems found."),
    }
    Ok(r.problems > 0)
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
    if users.is_empty() {
        r.note(&format!(
            "nobody is enrolled in {}; enroll users with ivmfa-enroll enroll USER",
            store.root().display()
        ));
        return;
    }
    let mut enrolled = 0;
    for user in &users {
        let state = store.load_enrollment(user).and_then(|e| {
            store
                .lock(user)
                .and_then(|lock| store.load_state(&lock))
                .map(|_| e)
        });
        match state {
            Ok(Some(_)) => enrolled += 1,
            Ok(None) => {}
            Err(e) => r.problem(
                &format!("{user}: {e}"),
                "until this is fixed every login of this user is denied",
            ),
        }
    }
    r.ok(&format!(
        "store {}: {enrolled} user(s) enrolled",
        store.root().display()
    ));
}

/// One `auth` line of a PAM file.
struct Line {
    number: usize,
    control: String,
    module: String,
    args: Vec<String>,
}

fn auth_lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["@include", file] => out.push(Line {
                number: i + 1,
                control: "@include".into(),
                module: (*file).into(),
                args: vec![],
            }),
            [kind, rest @ ..] if kind.trim_start_matches('-') == "auth" && !rest.is_empty() => {
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
                out.push(Line {
                    number: i + 1,
                    control,
                    module,
                    args: words.collect(),
                });
            }
            _ => {}
        }
    }
    out
}

/// Whether a failing line stops the stack: requisite, `[... default=die ...]`, or an included
/// file that has such a line (Debian's common-auth ends in `requisite pam_deny.so`).
fn stops_on_failure(line: &Line, pam_dir: &Path) -> bool {
    match line.control.as_str() {
        "requisite" => true,
        "@include" | "include" | "substack" => std::fs::read_to_string(pam_dir.join(&line.module))
            .map(|t| {
                auth_lines(&t)
                    .iter()
                    .any(|l| l.control == "requisite" || l.control.contains("default=die"))
            })
            .unwrap_or(false),
        c => c.contains("default=die"),
    }
}

/// Checks every PAM file that loads the module; returns whether sshd's does.
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
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let lines = auth_lines(&text);
        for (i, line) in lines.iter().enumerate() {
            if !line.module.ends_with("pam_ivmfa.so") {
                continue;
            }
            any = true;
            sshd |= file.file_name().is_some_and(|n| n == "sshd");
            let at = format!("{} line {}", file.display(), line.number);
            match line.control.as_str() {
                "required" | "requisite" => {}
                "optional" => r.problem(
                    &format!("{at}: pam_ivmfa.so is optional, so a wrong code does not stop the login"),
                    "make it: auth required pam_ivmfa.so",
                ),
                "sufficient" => r.problem(
                    &format!("{at}: pam_ivmfa.so is sufficient, so a code alone can end the stack with success"),
                    "make it: auth required pam_ivmfa.so, after the password step",
                ),
                other => r.note(&format!("{at}: control {other}; make sure a failure denies the login")),
            }
            let mut args = line.args.clone();
            if !args.iter().any(|a| a.starts_with("config=")) {
                args.extend(config_args.iter().cloned());
            }
            let config = match Config::resolve(&args, euid) {
                Ok(c) => c,
                Err(e) => {
                    r.problem(
                        &format!("{at}: {e}"),
                        "fix the options; until then every login is denied",
                    );
                    continue;
                }
            };
            let before = &lines[..i];
            if before.is_empty() {
                r.note(&format!(
                    "{at}: no password step before pam_ivmfa.so; right only for key + code logins \
                     (sshd AuthenticationMethods publickey,keyboard-interactive)"
                ));
            } else if config.unenrolled == Unenrolled::Enroll
                && !before.iter().any(|l| stops_on_failure(l, pam_dir))
            {
                r.problem(
                    &format!("{at}: unenrolled=enroll, but a wrong password does not stop the stack before pam_ivmfa.so"),
                    "make the password module requisite (or [success=ok default=die]) so only someone \
                     who knows the password can enroll",
                );
            } else {
                r.ok(&format!("{at}: pam_ivmfa.so after the password step"));
            }
        }
    }
    if !any {
        r.note(&format!(
            "no PAM file in {} loads pam_ivmfa.so yet; see the README",
            pam_dir.display()
        ));
    }
    sshd
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
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        r.note(&format!(
            "sshd -T failed ({why}); sshd settings not checked"
        ));
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let setting = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or("")
            .to_owned()
    };
    if !uses_module {
        r.note("the sshd PAM service does not load pam_ivmfa.so; sshd logins ask for no code");
        return;
    }
    if setting("usepam") != "yes" {
        r.problem(
            "sshd has UsePAM no, so it never asks for the code",
            "set UsePAM yes in sshd_config",
        );
    }
    if setting("kbdinteractiveauthentication") != "yes" {
        r.problem(
            "sshd has KbdInteractiveAuthentication no, so it cannot show the code prompt",
            "set KbdInteractiveAuthentication yes in sshd_config",
        );
    }
    let methods = setting("authenticationmethods");
    if setting("pubkeyauthentication") == "yes"
        && (methods.is_empty() || methods == "any" || methods.split(' ').any(|m| m == "publickey"))
    {
        r.problem(
            "sshd accepts a public key alone, so users with a key log in without a code",
            "set AuthenticationMethods publickey,keyboard-interactive keyboard-interactive \
             (or PubkeyAuthentication no)",
        );
    } else {
        r.ok(&format!(
            "sshd: UsePAM and keyboard-interactive on; AuthenticationMethods {methods}"
        ));
    }
}
