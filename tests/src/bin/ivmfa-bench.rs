//! ivmfa-bench: pam_ivmfa against google-authenticator-libpam, side by side, through real
//! libpam (pam_start_confdir) with identical stacks. Run it with scripts/bench.sh; it prints
//! one table (see docs/BENCHMARKS.md).
//!
//! The outer process prepares N users (passwd entries, homes, one secret each, both modules'
//! files holding the same secret) and re-executes itself in a private mount namespace where
//! /etc/passwd and /etc/group include them. Each measurement then runs in child processes of
//! its own, so each module's peak memory is its own.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::state::State;
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;
use ivmfa_tests::ffi::{Script, Transaction, PAM_USER};

const UID0: u32 = 30_000;
const GA_MODULE: &str = "pam_google_authenticator.so";
const MODULES: [&str; 2] = ["ivmfa", "ga"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--inner") => inner(&args[2..]),
        _ => outer(&args[1..]),
    };
    if let Err(e) = result {
        eprintln!("ivmfa-bench: {e}");
        std::process::exit(1);
    }
}

fn user(i: usize) -> String {
    format!("bench{i:04}")
}

struct Setup {
    dir: PathBuf,
    users: usize,
    secrets: Vec<Secret>,
}

impl Setup {
    fn load(dir: &Path) -> Result<Setup, String> {
        let text = fs::read_to_string(dir.join("secrets")).map_err(|e| e.to_string())?;
        let secrets: Vec<Secret> = text
            .lines()
            .map(|l| Secret::from_base32(l).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Setup {
            dir: dir.to_owned(),
            users: secrets.len(),
            secrets,
        })
    }

    fn code(&self, i: usize, wrong: bool) -> String {
        let e = Enrollment::standard(self.secrets[i].clone(), 0);
        if wrong {
            ivmfa_tests::wrong_code(&e)
        } else {
            ivmfa_tests::code(&e, 0)
        }
    }

    /// Forgets every used code, so each user can log in again in this time step.
    fn reset(&self) {
        let store = Store::new(self.dir.join("store"), 0);
        for i in 0..self.users {
            let name = UserName::parse(&user(i)).unwrap();
            let lock = store.lock(&name).unwrap();
            store.save_state(&lock, &State::default()).unwrap();
            write_ga_file(&self.dir, i, &self.secrets[i]);
        }
    }
}

fn write_ga_file(dir: &Path, i: usize, secret: &Secret) {
    let home = dir.join("home").join(user(i));
    let path = home.join(".google_authenticator");
    let _ = fs::remove_file(&path);
    fs::write(
        &path,
        format!(
            "{}\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n",
            secret.to_base32().as_str()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    let uid = UID0 + i as u32;
    chown(&path, Some(uid), Some(uid)).unwrap();
}

fn outer(args: &[String]) -> Result<(), String> {
    let mut users = 1000;
    let mut module = PathBuf::from("target/release/libpam_ivmfa.so");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--users" => users = it.next().and_then(|v| v.parse().ok()).ok_or("--users N")?,
            "--module" => module = it.next().map(PathBuf::from).ok_or("--module PATH")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let module = module
        .canonicalize()
        .map_err(|e| format!("{}: {e}", module.display()))?;
    let dir = PathBuf::from("/tmp/ivmfa-bench");
    let _ = fs::remove_dir_all(&dir);
    for d in ["home", "store", "pam.d"] {
        fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
    }
    fs::set_permissions(dir.join("store"), fs::Permissions::from_mode(0o700)).unwrap();

    let mut passwd = fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    let mut group = fs::read_to_string("/etc/group").map_err(|e| e.to_string())?;
    let mut secrets = String::new();
    let store = Store::new(dir.join("store"), 0);
    for i in 0..users {
        let (name, uid) = (user(i), UID0 + i as u32);
        let home = dir.join("home").join(&name);
        fs::create_dir_all(&home).unwrap();
        chown(&home, Some(uid), Some(uid)).unwrap();
        passwd.push_str(&format!(
            "{name}:x:{uid}:{uid}::{}:/bin/sh\n",
            home.display()
        ));
        group.push_str(&format!("{name}:x:{uid}:\n"));
        let mut bytes = [0u8; 20];
        ivmfa_core::random::fill(&mut bytes).map_err(|e| e.to_string())?;
        let secret = Secret::from_bytes(&bytes).unwrap();
        secrets.push_str(&format!("{}\n", secret.to_base32().as_str()));
        let uname = UserName::parse(&name).unwrap();
        let lock = store.lock(&uname).map_err(|e| e.to_string())?;
        store
            .save_enrollment(
                &lock,
                &Enrollment::standard(secret.clone(), ivmfa_tests::now()),
            )
            .map_err(|e| e.to_string())?;
        write_ga_file(&dir, i, &secret);
    }
    fs::write(dir.join("passwd"), passwd).unwrap();
    fs::write(dir.join("group"), group).unwrap();
    fs::write(dir.join("secrets"), secrets).unwrap();
    fs::write(dir.join("ivmfa.toml"), "").unwrap();
    // The same stack for both: the module alone, replay protection on, window ±1 step.
    fs::write(
        dir.join("pam.d/bench-ivmfa"),
        format!(
            "auth required {} store={} config={} window=1 max_failures=1000 \
             max_failures_per_user=10000 backoff_seconds=1 max_backoff_seconds=1\n",
            module.display(),
            dir.join("store").display(),
            dir.join("ivmfa.toml").display()
        ),
    )
    .unwrap();
    fs::write(
        dir.join("pam.d/bench-ga"),
        format!("auth required {GA_MODULE}\n"),
    )
    .unwrap();
    fs::write(dir.join("pam.d/other"), "auth required pam_deny.so\n").unwrap();

    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount --bind {d}/passwd /etc/passwd; mount --bind {d}/group /etc/group; \
             exec \"$0\" --inner {d} {module}",
            d = dir.display(),
            module = module.display()
        ))
        .arg(me)
        .status()
        .map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&dir);
    status
        .success()
        .then_some(())
        .ok_or_else(|| "the benchmark failed".into())
}

/// Median and 99th percentile of latencies in microseconds.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn child(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--inner")
        .arg(dir)
        .arg("-")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

fn inner(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(&args[0]);
    let setup = Setup::load(&dir)?;
    if args.len() > 2 && args[1] == "-" {
        return work(&setup, &args[2..]);
    }
    let module = PathBuf::from(&args[1]);
    let ga = [
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib64/security",
    ]
    .iter()
    .map(|d| Path::new(d).join(GA_MODULE))
    .find(|p| p.exists())
    .ok_or("libpam-google-authenticator is not installed")?;
    let n = setup.users;
    println!(
        "ivmfa-bench: {n} users, {} cores; latencies in microseconds\n",
        num_cpus()
    );
    println!("| measurement | ivmfa median | ivmfa p99 | google-auth median | google-auth p99 | ivmfa / google-auth |");
    println!("|---|---|---|---|---|---|");
    let mut rss = [0.0; 2];
    for (section, label) in [
        ("success-fresh", "success, fresh handle per login"),
        ("success-reused", "success, one handle reused"),
        ("failure", "wrong code (fail delay skipped)"),
    ] {
        let mut row = Vec::new();
        for (m, module_name) in MODULES.iter().enumerate() {
            setup.reset();
            let out = child(&dir, &[section, module_name, "0", &n.to_string()]);
            let lat: Vec<f64> = out
                .lines()
                .filter_map(|l| l.strip_prefix("lat ").and_then(|v| v.parse().ok()))
                .collect();
            let ok = field(&out, "ok ");
            let expected = if section == "failure" { 0.0 } else { n as f64 };
            if ok != expected {
                eprintln!("warning: {module_name} {section}: {ok} of {n} logins succeeded");
            }
            rss[m] = f64::max(rss[m], field(&out, "rss_kb "));
            row.push(stats(lat));
        }
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
            row[0].0,
            row[0].1,
            row[1].0,
            row[1].1,
            row[0].0 / row[1].0
        );
    }

    println!("\n| processes | ivmfa logins/s | google-auth logins/s | ivmfa / google-auth |");
    println!("|---|---|---|---|");
    for procs in [1usize, 2, 4, 8] {
        let mut rates = Vec::new();
        for module_name in MODULES {
            setup.reset();
            let started = Instant::now();
            let children: Vec<_> = (0..procs)
                .map(|p| {
                    let (from, to) = (p * n / procs, (p + 1) * n / procs);
                    Command::new(std::env::current_exe().unwrap())
                        .arg("--inner")
                        .arg(&dir)
                        .args([
                            "-",
                            "success-fresh",
                            module_name,
                            &from.to_string(),
                            &to.to_string(),
                        ])
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for mut c in children {
                c.wait().unwrap();
            }
            rates.push(n as f64 / started.elapsed().as_secs_f64());
        }
        println!(
            "| {procs} | {:.0} | {:.0} | {:.2} |",
            rates[0],
            rates[1],
            rates[0] / rates[1]
        );
    }

    let trials = 200.min(n);
    let mut both = [0usize; 2];
    for (m, module_name) in MODULES.iter().enumerate() {
        setup.reset();
        for i in 0..trials {
            let code = setup.code(i, false);
            let start = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 40;
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    Command::new(std::env::current_exe().unwrap())
                        .arg("--inner")
                        .arg(&dir)
                        .args([
                            "-",
                            "race",
                            module_name,
                            &i.to_string(),
                            &code,
                            &start.to_string(),
                        ])
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let wins = racers
                .into_iter()
                .map(|c| {
                    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).contains("ok 1")
                })
                .filter(|won| *won)
                .count();
            if wins == 2 {
                both[m] += 1;
            }
        }
    }
    println!("\n| replay race ({trials} trials, 2 processes, one code) | ivmfa | google-auth |");
    println!("|---|---|---|");
    println!(
        "| trials where both logins got in | {} | {} |",
        both[0], both[1]
    );

    let size = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.len() as f64 / 1024.0)
            .unwrap_or(f64::NAN)
    };
    println!("\n| footprint | ivmfa | google-auth | ivmfa / google-auth |");
    println!("|---|---|---|---|");
    println!(
        "| module size (KiB) | {:.0} | {:.0} | {:.2} |",
        size(&module),
        size(&ga),
        size(&module) / size(&ga)
    );
    println!(
        "| peak RSS of the benchmark process (KiB) | {:.0} | {:.0} | {:.2} |",
        rss[0],
        rss[1],
        rss[0] / rss[1]
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn confdir(setup: &Setup) -> String {
    setup.dir.join("pam.d").display().to_string()
}

/// One measurement in this process: prints `lat <µs>` per login, `ok <n>`, `rss_kb <n>`.
fn work(setup: &Setup, args: &[String]) -> Result<(), String> {
    let service = format!("bench-{}", args[1]);
    let confdir = confdir(setup);
    let mut ok = 0;
    match args[0].as_str() {
        "race" => {
            let i: usize = args[2].parse().map_err(|_| "user index")?;
            let start: u128 = args[4].parse().map_err(|_| "start")?;
            let mut t = Transaction::start(&confdir, &service, &user(i), Script::answering([]))
                .map_err(|rc| format!("pam_start: {rc}"))?;
            t.skip_fail_delay();
            t.queue_answer(args[3].as_bytes());
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis();
            if start > now {
                std::thread::sleep(Duration::from_millis((start - now) as u64));
            }
            if t.authenticate(0) == 0 {
                ok = 1;
            }
        }
        section => {
            let from: usize = args[2].parse().map_err(|_| "from")?;
            let to: usize = args[3].parse().map_err(|_| "to")?;
            let wrong = section == "failure";
            let mut reused = None;
            for i in from..to {
                let code = setup.code(i, wrong);
                let started = Instant::now();
                let rc = if section == "success-reused" {
                    let t = match reused.as_mut() {
                        Some(t) => t,
                        None => {
                            let mut t = Transaction::start(
                                &confdir,
                                &service,
                                &user(i),
                                Script::answering([]),
                            )
                            .map_err(|rc| format!("pam_start: {rc}"))?;
                            t.skip_fail_delay();
                            reused.insert(t)
                        }
                    };
                    t.set_item(PAM_USER, &user(i));
                    t.queue_answer(code.as_bytes());
                    t.authenticate(0)
                } else {
                    let mut t =
                        Transaction::start(&confdir, &service, &user(i), Script::answering([]))
                            .map_err(|rc| format!("pam_start: {rc}"))?;
                    t.skip_fail_delay();
                    t.queue_answer(code.as_bytes());
                    t.authenticate(0)
                };
                println!("lat {}", started.elapsed().as_secs_f64() * 1e6);
                if rc == 0 {
                    ok += 1;
                }
            }
        }
    }
    println!("ok {ok}");
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").to_owned())
        .unwrap_or_default();
    println!("rss_kb {hwm}");
    Ok(())
}
