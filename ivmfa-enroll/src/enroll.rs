//! `enroll`: flow 1 of the user guide at the terminal. A new secret, the QR code, one code
//! from the app to prove it was scanned, and only then the store is written.

use std::fs::OpenOptions;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ivmfa_core::enrollment::{Enrollment, Secret, DEFAULT_SECRET_BYTES};
use ivmfa_core::input::{self, Answer};
use ivmfa_core::qr::{Blocks, Qr};
use ivmfa_core::totp::{self, Check};
use ivmfa_core::username::UserName;
use ivmfa_core::{otpauth, random, recovery};
use ivmfa_sys::Level;
use zeroize::Zeroizing;

use crate::cli::{EnrollArgs, QrStyle};
use crate::context::{existing_user, format_time, Context};
use crate::error::{CliError, Kind, Result};
use crate::picture;

const TRIES: usize = 3;

pub fn run(ctx: &Context, args: &EnrollArgs) -> Result<()> {
    let name = match &args.user {
        Some(name) => name.clone(),
        None => invoking_user()?,
    };
    let (user, account) = existing_user(&name)?;
    refuse_if_enrolled(ctx, &user, args.force)?;

    let provided = args.secret.is_some() || args.secret_file.is_some();
    let secret = match (&args.secret, &args.secret_file) {
        (Some(text), _) => Secret::from_base32(text)?,
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
            })?
        }
        (None, None) => {
            let mut bytes = Zeroizing::new([0u8; DEFAULT_SECRET_BYTES]);
            random::fill(&mut *bytes)?;
            Secret::from_bytes(&*bytes)?
        }
    };
    let enrollment = Enrollment {
        uid: Some(account.uid),
        ..Enrollment::standard(secret, ctx.now)
    };
    let issuer = issuer(ctx, args.issuer.as_deref())?;
    let uri = otpauth::uri(&enrollment, &issuer, user.as_str())?;

    let qr = Qr::new(&uri)?;
    // Removed again unless the enrollment is saved: a picture of an unused secret is a leak.
    let mut images = Images(Vec::new());
    for (path, bytes) in [
        (
            &args.qr_png,
            args.qr_png.as_ref().map(|_| picture::png(&qr, 8)),
        ),
        (
            &args.qr_svg,
            args.qr_svg.as_ref().map(|_| picture::svg(&qr).into_bytes()),
        ),
    ] {
        if let (Some(path), Some(bytes)) = (path, bytes) {
            write_private_file(path, &bytes)?;
            images.0.push(path.clone());
            println!("QR code written to {}", path.display());
        }
    }
    // A key the caller supplied is theirs already; echoing it would only leak it into logs.
    if !provided {
        show(&qr, args.qr, &uri, &enrollment, &issuer, user.as_str());
    }

    let confirmed_step = if args.no_confirm {
        0
    } else {
        confirm(&enrollment, ctx.now, ctx.config.window)?
    };

    let (codes, set) = new_recovery_codes(ctx, args.recovery_codes)?;
    let enrollment = Enrollment {
        recovery: set,
        ..enrollment
    };
    let archived = save(ctx, &user, &enrollment, confirmed_step, args.force)?;
    images.0.clear();
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

/// Image files of the QR code, removed on drop unless emptied.
struct Images(Vec<std::path::PathBuf>);

impl Drop for Images {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The user who ran sudo, else the current user.
fn invoking_user() -> Result<String> {
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

pub fn refuse_if_enrolled(ctx: &Context, user: &UserName, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if let Some(e) = ctx.store.load_enrollment(user)? {
        return Err(CliError::new(
            Kind::Refused,
            format!(
                "{user} is already enrolled (since {})",
                format_time(e.created)
            ),
            "add --force to replace the enrollment; the old one is archived",
        ));
    }
    Ok(())
}

/// The key from standard input, or from a file that only root can have written: whoever
/// controls that file chooses the user's secret.
/// How a `--secret-file` argument is named in a message.
fn shown_source(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>> {
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

fn issuer(ctx: &Context, given: Option<&str>) -> Result<String> {
    let issuer = otpauth::issuer(given.or(ctx.config.issuer.as_deref()));
    otpauth::check_name("issuer", &issuer)
        .map_err(|e| CliError::new(Kind::Usage, e.to_string(), "give one with --issuer NAME"))?;
    Ok(issuer)
}

/// Writes a file that did not exist, readable by root only.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
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

/// Prints the QR code (if the terminal can show it), the URI and the key.
fn show(qr: &Qr, style: QrStyle, uri: &str, e: &Enrollment, issuer: &str, account: &str) {
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
    println!("URI:     {}", uri);
    println!("Key:     {}", otpauth::grouped_key(e).as_str());
    println!("Account: {issuer}:{account}");
    println!(
        "Type:    time-based, SHA1, {} digits, every {} seconds",
        e.digits, e.period
    );
    let _ = io::stdout().flush();
}

/// Asks for a code until one is right; returns its time step. Never says what the right code
/// was, and gives up after three tries, having written nothing. Codes are checked with the
/// configured `window`, as the login checks them.
fn confirm(e: &Enrollment, now: u64, window: u8) -> Result<u64> {
    let stdin = io::stdin();
    for attempt in 1..=TRIES {
        print!("\nEnter the {}-digit code the app shows now: ", e.digits);
        let _ = io::stdout().flush();
        let mut line = Zeroizing::new(String::new());
        let n = stdin.lock().read_line(&mut line).map_err(|err| {
            CliError::new(
                Kind::Failed,
                format!("cannot read the code: {err}"),
                "run enroll again",
            )
        })?;
        if n == 0 {
            let what = if attempt == 1 {
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
        let accepts = input::Accepts {
            digits: e.digits,
            reset: None,
            invert: false,
            recovery: false,
        };
        let check = match input::parse(line.trim_end_matches(['\n', '\r']), accepts) {
            Answer::Code(code) => totp::verify(e, &code, now_or(now), window, 0, &[])?,
            _ => Check::Wrong,
        };
        match check {
            Check::Accepted { step } => {
                println!("Code confirmed.");
                return Ok(step);
            }
            Check::Skewed { offset, .. } if attempt < TRIES => println!(
                "That code is not correct. {} Then try again ({} left).",
                ivmfa_core::messages::clock_hint(offset.unsigned_abs().saturating_mul(e.period)),
                TRIES - attempt
            ),
            _ if attempt < TRIES => println!(
                "That code is not correct. Check the app shows this account, then try again ({} left).",
                TRIES - attempt
            ),
            _ => {}
        }
    }
    Err(CliError::new(
        Kind::Refused,
        "the code was wrong three times; nothing was saved",
        "check that the phone sets its clock automatically, then run enroll again",
    ))
}

/// The clock moves on while the person reads the screen; check against the time of the answer.
fn now_or(fallback: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(fallback, |d| d.as_secs())
}

pub fn new_recovery_codes(
    ctx: &Context,
    count: usize,
) -> Result<(Vec<Zeroizing<String>>, recovery::RecoveryCodes)> {
    let mut bytes = Zeroizing::new(vec![
        0u8;
        recovery::random_bytes_needed(
            count.min(recovery::MAX_COUNT)
        )
    ]);
    random::fill(&mut bytes)?;
    Ok(recovery::generate(&bytes, count, ctx.now)?)
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

/// Writes the enrollment under the user's lock, archiving a previous one when replacing it.
/// The state starts at `step`, so the code used to confirm cannot also log in, or at the old
/// enrollment's watermark if that is further on: the same secret provisioned again must not
/// make a used code usable once more.
pub fn save(
    ctx: &Context,
    user: &UserName,
    e: &Enrollment,
    step: u64,
    force: bool,
) -> Result<bool> {
    let lock = ctx.store.lock(user)?;
    let archived = match ctx.store.reload_enrollment(&lock)? {
        Some(_) if !force => {
            return Err(CliError::new(
                Kind::Refused,
                format!("{user} was enrolled by someone else meanwhile; nothing was saved"),
                "check with ivmfa-enroll status, and add --force to replace it",
            ))
        }
        Some(_) => ctx
            .store
            .archive_enrollment(&lock, user, ctx.now)?
            .is_some(),
        None => false,
    };
    ctx.store.install_enrollment(&lock, e, step)?;
    Ok(archived)
}
