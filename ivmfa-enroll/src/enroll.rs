//! `enroll`: flow 1 of the user guide at the terminal. A new secret, the QR code, one code
//! from the app to prove it was scanned, and only then the store is written.

use std::fs::OpenOptions;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ivmfa_core::ceremony::{self, Ceremony, Installed, Outcome, Rules};
use ivmfa_core::config::Config;
use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::input;
use ivmfa_core::qr::Blocks;
use ivmfa_core::username::UserName;
use ivmfa_core::{otpauth, random, recovery};
use ivmfa_sys::Level;
use zeroize::Zeroizing;

use crate::cli::{EnrollArgs, QrStyle};
use crate::context::{existing_user, format_time, Context};
use crate::error::{CliError, Kind, Result};
use crate::picture;

pub fn run(ctx: &Context, args: &EnrollArgs) -> Result<()> {
    let name = match &args.user {
        Some(name) => name.clone(),
        None => invoking_user()?,
    };
    let (user, account) = existing_user(&name)?;
    refuse_if_enrolled(ctx, &user, account.uid, args.force)?;
    if args.hotp {
        return crate::token::enroll(ctx, args, &user, account.uid);
    }

    let provided = args.secret.is_some() || args.secret_file.is_some();
    let secret = if provided {
        provided_secret(args)?
    } else {
        ceremony::new_secret(random::fill)?
    };
    let enrollment = ceremony::new_enrollment(secret, account.uid, ctx.now);
    let issuer = issuer(&ctx.config, args.issuer.as_deref())?;
    let mut ceremony = Ceremony::new(enrollment, issuer, &user, &ctx.config)?;
    // A key the caller supplied is theirs already; echoing it would only leak it into logs.
    let mut images = present(&ceremony, args, !provided)?;

    if args.no_confirm {
        ceremony.skip_confirmation();
    } else {
        let accepts = ceremony.accepts(false);
        let digits = ceremony.enrollment().digits;
        confirm(Device::App, digits, |typed| {
            Ok(ceremony.judge(&input::parse(typed, accepts), now_or(ctx.now))?)
        })?;
    }

    let (codes, set) = recovery::issue(args.recovery_codes, ctx.now, random::fill)?;
    let installed = ceremony.install(&ctx.store, &user, set, &rules(ctx, args.force))?;
    let archived = saved(&user, installed)?;
    images.keep();
    ctx.audit(
        Level::Notice,
        &format!(
            "enrolled user={user}{}",
            if archived {
                ", replacing the previous enrollment"
            } else {
                ""
            }
        ),
    );
    println!("\n{user} is enrolled. From now on, logins ask for the code from the app.");
    print_recovery_codes(&codes);
    Ok(())
}

/// The key given with `--secret` or `--secret-file` (base32).
pub fn provided_secret(args: &EnrollArgs) -> Result<Secret> {
    match (&args.secret, &args.secret_file) {
        (Some(text), _) => Ok(Secret::from_base32(text)?),
        (None, Some(path)) => {
            let key = read_secret_file(path)?;
            if key.is_empty() {
                return Err(CliError::new(
                    Kind::Usage,
                    format!("no key in {}", shown_source(path)),
                    "give the key as its first line, in base32",
                ));
            }
            Secret::from_base32(&key).map_err(|e| {
                CliError::new(
                    Kind::Usage,
                    format!("the key in {} is not usable: {e}", shown_source(path)),
                    "give the key as its first line, in base32 (at least 128 bits)",
                )
            })
        }
        (None, None) => Err(CliError::new(
            Kind::Usage,
            "no key given",
            "give it with --secret-file FILE (- for standard input)",
        )),
    }
}

/// Image files of the QR code, removed on drop unless kept: a picture of a key that was
/// never enrolled is a leak.
pub struct Images(Vec<std::path::PathBuf>);

impl Images {
    /// The enrollment is saved: the pictures stay.
    pub fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The user who ran sudo, else the current user.
pub fn invoking_user() -> Result<String> {
    if let Ok(name) = std::env::var("SUDO_USER") {
        if !name.is_empty() && name != "root" {
            return Ok(name);
        }
    }
    Err(CliError::new(
        Kind::Usage,
        "no user given",
        "name the user to enroll: ivmfa-enroll enroll USER",
    ))
}

/// Refuses before anything is shown if `user` (account `uid`) is enrolled and `force` was not
/// given. An enrollment made for an earlier owner of the name is no one's: the login already
/// treats the user as not enrolled, so it is replaced (and archived) without `--force`.
pub fn refuse_if_enrolled(ctx: &Context, user: &UserName, uid: u32, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match ctx.store.load_enrollment(user)? {
        Some(e) if !e.belongs_to(uid) => {
            eprintln!(
                "note: the enrollment in the store was made for uid {}, not {user}'s uid {uid}; \
                 it will be archived and replaced",
                e.uid.unwrap_or_default()
            );
            Ok(())
        }
        Some(e) => Err(CliError::new(
            Kind::Refused,
            format!(
                "{user} is already enrolled (since {})",
                format_time(e.created)
            ),
            "add --force to replace the enrollment; the old one is archived",
        )),
        None => Ok(()),
    }
}

/// The key from standard input, or from a file that only root can have written: whoever
/// controls that file chooses the user's secret.
/// How a `--secret-file` argument is named in a message.
pub fn shown_source(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>> {
    if path == Path::new("-") {
        let mut line = Zeroizing::new(String::new());
        io::stdin().lock().read_line(&mut line).map_err(|e| {
            CliError::new(
                Kind::Failed,
                format!("cannot read the key from standard input: {e}"),
                "pipe the key in",
            )
        })?;
        return Ok(Zeroizing::new(line.trim().to_owned()));
    }
    let policy = ivmfa_core::safefile::Policy {
        owner: 0,
        max_len: 4096,
        private: true,
        strict_owner: false,
    };
    let text = policy.read_text(path)?.ok_or_else(|| {
        CliError::new(
            Kind::Usage,
            format!("{} does not exist", path.display()),
            "give the file holding the key, or - for standard input",
        )
    })?;
    Ok(Zeroizing::new(
        text.lines().next().unwrap_or("").trim().to_owned(),
    ))
}

pub fn issuer(config: &Config, given: Option<&str>) -> Result<String> {
    let issuer = ceremony::issuer(config, given);
    otpauth::check_name("issuer", &issuer)
        .map_err(|e| CliError::new(Kind::Usage, e.to_string(), "give one with --issuer NAME"))?;
    Ok(issuer)
}

/// Writes a file that did not exist, readable by root only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::AlreadyExists {
                "choose a new file name; an existing file is never overwritten"
            } else {
                "choose a writable location"
            };
            CliError::new(
                Kind::Failed,
                format!("cannot write {}: {e}", path.display()),
                hint,
            )
        })
}

/// Writes the QR code files `args` asks for, then (`show`) draws the QR code and prints the
/// URI and the key. The files are removed again unless [`Images::keep`] is called.
pub fn present(c: &Ceremony, args: &EnrollArgs, show_key: bool) -> Result<Images> {
    let qr = c.qr();
    let mut images = Images(Vec::new());
    for (path, bytes) in [
        (
            &args.qr_png,
            args.qr_png.as_ref().map(|_| picture::png(qr, 8)),
        ),
        (
            &args.qr_svg,
            args.qr_svg.as_ref().map(|_| picture::svg(qr).into_bytes()),
        ),
    ] {
        if let (Some(path), Some(bytes)) = (path, bytes) {
            write_private_file(path, &bytes)?;
            images.0.push(path.clone());
            println!("QR code written to {}", path.display());
        }
    }
    if show_key {
        show(c, args.qr);
    }
    Ok(images)
}

/// Prints the QR code (if the terminal can show it), the URI and the key.
fn show(c: &Ceremony, style: QrStyle) {
    let qr = c.qr();
    let e = c.enrollment();
    let stdout = io::stdout();
    let needed = match style {
        QrStyle::Utf8 => qr.columns(),
        QrStyle::Ansi => 2 * qr.columns(),
        QrStyle::None => 0,
    };
    println!("Scan this QR code with your authenticator app (for example Microsoft Authenticator:");
    println!("\"Add account\", \"Other account\", then scan), or type the key in by hand.\n");
    if style != QrStyle::None {
        if !stdout.is_terminal() {
            eprintln!("note: standard output is not a terminal, so no QR code is drawn; use the URI or key below");
        } else {
            let columns = ivmfa_sys::terminal_columns(&stdout).map_or(80, usize::from);
            if columns < needed {
                eprintln!(
                    "note: the terminal is {columns} columns wide and the QR code needs {needed}; \
                     widen it, use --qr-png FILE, or type the key below"
                );
            } else {
                print!(
                    "{}",
                    match style {
                        QrStyle::Ansi => picture::ansi_spaces(qr),
                        _ => qr.half_blocks(Blocks::ForcedColours),
                    }
                );
            }
        }
    }
    println!();
    println!("URI:     {}", c.uri());
    println!("Key:     {}", c.key().as_str());
    println!("Account: {}:{}", c.issuer(), c.account());
    println!(
        "Type:    time-based, SHA1, {} digits, every {} seconds",
        e.digits, e.period
    );
    let _ = io::stdout().flush();
}

/// What a confirming code comes from: the wording of the prompt and of a wrong answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// An authenticator app (time-based codes).
    App,
    /// A hardware token (one code per press of its button).
    Token,
}

/// Asks for a code until `judge` (given the line typed, without its line end) is satisfied
/// or gives up. Never says what the right code was; after three wrong ones, nothing has
/// been saved (it is for `judge` to save nothing before [`Outcome::Confirmed`]).
pub fn confirm(
    device: Device,
    digits: u8,
    mut judge: impl FnMut(&str) -> Result<Outcome>,
) -> Result<()> {
    let mut first = true;
    loop {
        match device {
            Device::App => print!("\nEnter the {digits}-digit code the app shows now: "),
            Device::Token => {
                print!("\nPress the token's button and enter the {digits}-digit code it shows: ")
            }
        }
        let _ = io::stdout().flush();
        let line = read_code_line(first)?;
        first = false;
        match judge(line.trim_end_matches(['\n', '\r']))? {
            Outcome::Confirmed => {
                println!("Code confirmed.");
                return Ok(());
            }
            Outcome::Wrong { left, clock_off } => match (device, clock_off) {
                (Device::App, Some(seconds)) => println!(
                    "That code is not correct. {} Then try again ({left} left).",
                    ivmfa_core::messages::clock_hint(seconds),
                ),
                (Device::App, None) => println!(
                    "That code is not correct. Check the app shows this account, then try again ({left} left)."
                ),
                (Device::Token, _) => println!(
                    "That code is not correct. Check the key is this token's, then press the button \
                     again ({left} left)."
                ),
            },
            Outcome::Failed => {
                return Err(match device {
                    Device::App => CliError::new(
                        Kind::Refused,
                        "the code was wrong three times; nothing was saved",
                        "check that the phone sets its clock automatically, then run enroll again",
                    ),
                    Device::Token => CliError::new(
                        Kind::Refused,
                        "the code was wrong three times; nothing was saved",
                        "check the key (--hex for a hex key); a token used before is further on: \
                         enroll it with --no-confirm, then ivmfa-enroll resync USER CODE1 CODE2",
                    ),
                })
            }
        }
    }
}

/// One line typed at a confirming prompt (the app's code, or a token's). The end of input
/// saves nothing: `first` says whether any code was typed before it.
pub fn read_code_line(first: bool) -> Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    let n = io::stdin().lock().read_line(&mut line).map_err(|err| {
        CliError::new(
            Kind::Failed,
            format!("cannot read the code: {err}"),
            "run enroll again",
        )
    })?;
    if n == 0 {
        let what = if first {
            "no code was entered; nothing was saved"
        } else {
            "the input ended before a correct code; nothing was saved"
        };
        return Err(CliError::new(
            Kind::Refused,
            what,
            "run enroll again in a terminal, or use --no-confirm when provisioning a known key",
        ));
    }
    Ok(line)
}

/// The clock moves on while the person reads the screen; check against the time of the answer.
fn now_or(fallback: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(fallback, |d| d.as_secs())
}

pub fn print_recovery_codes(codes: &[Zeroizing<String>]) {
    if codes.is_empty() {
        return;
    }
    println!("\nRecovery codes: each one logs in once in place of a code from the app, if the");
    println!("phone is lost. Keep them somewhere safe; they are not shown again.\n");
    for pair in codes.chunks(2) {
        let line: Vec<&str> = pair.iter().map(|c| c.as_str()).collect();
        println!("    {}", line.join("    "));
    }
}

/// How the CLI installs: root may replace a current enrollment with `--force`, and needs no
/// approved reset.
fn rules(ctx: &Context, force: bool) -> Rules {
    Rules {
        replace: force,
        needs_ticket: false,
        now: ctx.now,
    }
}

/// Whether an earlier enrollment was archived, or why nothing was saved.
fn saved(user: &UserName, installed: Installed) -> Result<bool> {
    match installed {
        Installed::Done { archived } => Ok(archived),
        Installed::EnrolledMeanwhile => Err(CliError::new(
            Kind::Refused,
            format!("{user} was enrolled by someone else meanwhile; nothing was saved"),
            "check with ivmfa-enroll status, and add --force to replace it",
        )),
        // The CLI asks for no ticket; should that ever change, nothing was saved either.
        Installed::TicketGone => Err(CliError::new(
            Kind::Refused,
            format!("{user}'s approved reset expired meanwhile; nothing was saved"),
            format!("approve the reset again: ivmfa-enroll reset approve {user}"),
        )),
    }
}

/// Installs an enrollment the CLI made without a ceremony (an import), with the watermark at
/// `step`: see [`ceremony::install`]. Returns whether an earlier enrollment was archived.
pub fn save(
    ctx: &Context,
    user: &UserName,
    e: &Enrollment,
    step: u64,
    force: bool,
) -> Result<bool> {
    saved(
        user,
        ceremony::install(&ctx.store, user, e, step, &rules(ctx, force))?,
    )
}
