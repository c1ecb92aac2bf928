//! ivmfa-bench: pam_ivmfa against google-authenticator-libpam, side by side, through real
//! libpam (pam_start_confdir) with identical stacks, and pam_ivmfa as a fleet client
//! (`backend = "postgres"`): straight to PostgreSQL, a new TLS connection per database
//! round, and through PgBouncer in transaction pooling. Run it with scripts/bench.sh; it
//! prints the tables docs/BENCHMARKS.md records.
//!
//! The outer process prepares N users (passwd entries, homes, one secret each, both modules'
//! files holding the same secret) and re-executes itself in a private mount namespace where
//! /etc/passwd and /etc/group include them. There it starts PostgreSQL (fsync on) with the
//! fleet schema, TLS and client certificates, enrolls the same users with the same secrets,
//! and starts PgBouncer in front of it. Each measurement then runs in child processes of its
//! own, so each module's peak memory is its own.

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
use ivmfa_tests::fleet::{Bouncer, Fleet};
use ivmfa_tests::postgres::SUPERUSER;

const UID0: u32 = 30_000;
const GA_MODULE: &str = "pam_google_authenticator.so";
/// The services measured (`bench-<name>` in the private PAM directory): the file store,
/// google-authenticator, the fleet database straight, the fleet database through PgBouncer.
const MODULES: [&str; 2] = ["ivmfa", "ga"];
const FLEET: [&str; 2] = ["pg", "pgb"];
/// The database role every benchmark login connects as (one host, many processes).
const HOST_ROLE: &str = "bench_host";
/// Logins racing one code in each trial of the fleet's replay race.
const FLEET_RACERS: usize = 8;

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
    let mut only = "all";
    let mut pg_options = String::new();
    let mut compare = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--users" => users = it.next().and_then(|v| v.parse().ok()).ok_or("--users N")?,
            "--module" => module = it.next().map(PathBuf::from).ok_or("--module PATH")?,
            "--fleet-only" => only = "fleet",
            "--compare" => {
                let list = it.next().ok_or("--compare A.so,B.so")?;
                for m in list.split(',') {
                    let path = PathBuf::from(m)
                        .canonicalize()
                        .map_err(|e| format!("{m}: {e}"))?;
                    compare.push(path.display().to_string());
                }
                if compare.len() < 2 || compare.iter().any(|m| m.contains([',', ' ', '\''])) {
                    return Err(
                        "--compare takes two or more module paths, comma-separated, \
                                without spaces, commas or quotes in them"
                            .into(),
                    );
                }
                only = "compare";
            }
            "--no-fleet" => only = "files",
            "--pg-options" => {
                pg_options = it
                    .next()
                    .cloned()
                    .ok_or("--pg-options '-c NAME=VALUE ...'")?
            }
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
    fs::write(dir.join("pg-options"), pg_options).unwrap();
    fs::write(dir.join("compare"), compare.join(",")).unwrap();
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
    // The fleet's: its config (written once the database is up) says `backend = "postgres"`;
    // window and rate limits are the database's settings, the same for every host.
    for name in FLEET {
        fs::write(
            dir.join(format!("pam.d/bench-{name}")),
            format!(
                "auth required {} store={} config={}\n",
                module.display(),
                dir.join("store").display(),
                dir.join(format!("ivmfa-{name}.toml")).display()
            ),
        )
        .unwrap();
    }
    fs::write(dir.join("pam.d/other"), "auth required pam_deny.so\n").unwrap();

    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount --bind {d}/passwd /etc/passwd; mount --bind {d}/group /etc/group; \
             exec \"$0\" --inner {d} {module} {only}",
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
    let only = args.get(2).map_or("all", String::as_str);
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
    // Declared before the bouncer, so dropped after it.
    let fleet = (only != "files").then(|| start_fleet(&setup));
    let bouncer = fleet.as_ref().map(|f| start_bouncer(&setup, f));
    let mut bench = Bench {
        setup: &setup,
        fleet: fleet.as_ref(),
        bouncer_pid: bouncer.as_ref().map(Bouncer::pid),
        latencies: Vec::new(),
        rates: Vec::new(),
        loaded_cpu: Vec::new(),
        rss: [0.0; 2],
    };
    if only == "compare" {
        let modules = fs::read_to_string(dir.join("compare")).map_err(|e| e.to_string())?;
        let modules: Vec<&str> = modules.split(',').collect();
        compare_tables(&mut bench, &modules);
        return Ok(());
    }
    println!(
        "ivmfa-bench: {n} users, {} cores; latencies in microseconds\n",
        num_cpus()
    );
    if only != "fleet" {
        let stolen = Stolen::start();
        files_tables(&mut bench, &module, &ga);
        stolen.print("the tables above");
    }
    if let (Some(fleet), Some(bouncer)) = (&fleet, &bouncer) {
        let stolen = Stolen::start();
        fleet_tables(&mut bench, fleet, bouncer);
        stolen.print("the fleet's tables");
    }
    Ok(())
}

/// The share of the machine's CPU time the hypervisor gave to others while tables were
/// measured (`steal` in /proc/stat). A virtual machine whose neighbours are busy runs
/// everything slower, the processes of a fleet login most (each waits for the others in
/// turn): a table taken with much stolen is not comparable with one taken with little.
struct Stolen([u64; 2]);

impl Stolen {
    fn start() -> Stolen {
        Stolen(Stolen::now())
    }

    /// Steal and total jiffies of all CPUs so far.
    fn now() -> [u64; 2] {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal (guest times are within user).
        [
            ticks.get(7).copied().unwrap_or(0),
            ticks.iter().take(8).sum(),
        ]
    }

    /// The share of the machine's CPU time stolen since [`Stolen::start`].
    fn share(&self) -> f64 {
        let [steal, total] = Stolen::now();
        let total = total.saturating_sub(self.0[1]).max(1);
        steal.saturating_sub(self.0[0]) as f64 / total as f64
    }

    fn print(&self, what: &str) {
        println!(
            "\nCPU time stolen by the hypervisor during {what}: {:.0} % of the machine's",
            100.0 * self.share()
        );
    }
}

/// A phase of a login's database rounds: its name, median and p99 in µs.
type Phase = (String, (f64, f64));

/// What the measurements need, and what they found (a measurement is taken once and may be
/// printed in two tables).
struct Bench<'a> {
    setup: &'a Setup,
    fleet: Option<&'a Fleet>,
    bouncer_pid: Option<u32>,
    /// (section, service) → latencies in µs.
    latencies: Vec<((String, String), Vec<f64>)>,
    /// (processes, service) → logins per second.
    rates: Vec<((usize, String), f64)>,
    /// (processes, service) → CPU ms per login of the logins' processes, PgBouncer and
    /// PostgreSQL while [`Bench::rate`] measured.
    loaded_cpu: Vec<((usize, String), [f64; 3])>,
    /// Peak resident memory of a measuring process, file store and google-authenticator.
    rss: [f64; 2],
}

impl Bench<'_> {
    /// Every module's state as before any login: no code used, no failure counted; and the
    /// database's pages on disk, so that no row pays for the writes of the one before.
    fn reset(&self) {
        self.setup.reset();
        if let Some(fleet) = self.fleet {
            fleet.pg.sql(
                SUPERUSER,
                ivmfa_tests::postgres::DATABASE,
                "UPDATE ivmfa.account SET last_step = 0, total_count = 0, total_last = 0, \
                 refused = '{}'; DELETE FROM ivmfa.failure; DELETE FROM ivmfa.attempt; \
                 VACUUM ANALYZE ivmfa.account; VACUUM ANALYZE ivmfa.failure; \
                 VACUUM ANALYZE ivmfa.attempt; CHECKPOINT",
            );
        }
    }

    /// Latencies (µs) of every user's login in one process, `section` being
    /// `success-fresh`, `success-reused` or `failure`.
    fn latency(&mut self, section: &str, module_name: &str) -> (f64, f64) {
        let key = (section.to_owned(), module_name.to_owned());
        if let Some((_, lat)) = self.latencies.iter().find(|(k, _)| *k == key) {
            return stats(lat.clone());
        }
        let n = self.setup.users;
        self.reset();
        let out = child(
            &self.setup.dir,
            &[section, module_name, "0", &n.to_string()],
        );
        let lat: Vec<f64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("lat ").and_then(|v| v.parse().ok()))
            .collect();
        let ok = field(&out, "ok ");
        let expected = if section == "failure" { 0.0 } else { n as f64 };
        if ok != expected {
            eprintln!("warning: {module_name} {section}: {ok} of {n} logins succeeded");
        }
        if let Some(m) = MODULES.iter().position(|m| *m == module_name) {
            self.rss[m] = f64::max(self.rss[m], field(&out, "rss_kb "));
        }
        self.latencies.push((key, lat.clone()));
        stats(lat)
    }

    /// Logins per second of every user once, shared out among `procs` processes.
    fn rate(&mut self, procs: usize, module_name: &str) -> f64 {
        let key = (procs, module_name.to_owned());
        if let Some((_, rate)) = self.rates.iter().find(|(k, _)| *k == key) {
            return *rate;
        }
        let n = self.setup.users;
        self.reset();
        let servers = self.server_cpu();
        let clients = cpu_seconds(std::process::id()).1;
        let started = Instant::now();
        let children: Vec<_> = (0..procs)
            .map(|p| {
                let (from, to) = (p * n / procs, (p + 1) * n / procs);
                Command::new(std::env::current_exe().unwrap())
                    .arg("--inner")
                    .arg(&self.setup.dir)
                    .args([
                        "-",
                        "success-fresh",
                        module_name,
                        &from.to_string(),
                        &to.to_string(),
                    ])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ok = 0.0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            ok += field(&String::from_utf8_lossy(&out.stdout), "ok ");
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        let per_login = |before: f64, after: f64| (after - before) * 1000.0 / n as f64;
        let now = self.server_cpu();
        let cpu = [
            per_login(clients, cpu_seconds(std::process::id()).1),
            per_login(servers[0], now[0]),
            per_login(servers[1], now[1]),
        ];
        self.loaded_cpu.push(((procs, module_name.to_owned()), cpu));
        if ok != n as f64 {
            eprintln!("warning: {module_name}, {procs} processes: {ok} of {n} logins succeeded");
        }
        self.rates.push((key, rate));
        rate
    }

    /// Each phase of a login's database rounds for every user, timed in one process
    /// (`rounds`): the phase's name, with the median and p99 in µs, in the order run; and
    /// the CPU time per login (ms) of the client, PgBouncer and PostgreSQL.
    fn phases(&self, module_name: &str) -> (Vec<Phase>, [f64; 3]) {
        self.reset();
        let n = self.setup.users;
        let before = self.server_cpu();
        let out = child(
            &self.setup.dir,
            &["rounds", module_name, "0", &n.to_string()],
        );
        let after = self.server_cpu();
        let per_login = |i: usize| (after[i] - before[i]) * 1000.0 / n as f64;
        let cpu = [field(&out, "cpu_us ") / 1000.0, per_login(0), per_login(1)];
        let mut phases: Vec<(String, Vec<f64>)> = Vec::new();
        for line in out.lines() {
            let mut words = line.split(' ');
            let (Some("phase"), Some(name), Some(us)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Ok(us) = us.parse::<f64>() else { continue };
            match phases.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(us),
                None => phases.push((name.to_owned(), vec![us])),
            }
        }
        let phases = phases.into_iter().map(|(n, v)| (n, stats(v))).collect();
        (phases, cpu)
    }

    /// CPU seconds used so far by PgBouncer, and by PostgreSQL: the postmaster, the server
    /// processes alive, and those that ended (the postmaster's children's time).
    fn server_cpu(&self) -> [f64; 2] {
        let Some(fleet) = self.fleet else {
            return [f64::NAN; 2];
        };
        let bouncer = self.bouncer_pid.map_or(f64::NAN, |pid| cpu_seconds(pid).0);
        let postmaster: Option<u32> = fs::read_to_string(fleet.pg.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
        let Some(postmaster) = postmaster else {
            return [bouncer, f64::NAN];
        };
        let (own, ended) = cpu_seconds(postmaster);
        let alive: f64 = fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent(*pid) == Some(postmaster))
            .map(|pid| cpu_seconds(pid).0)
            .sum();
        [bouncer, own + ended + alive]
    }

    /// `trials` rounds of `racers` processes logging in as one user with one code at the
    /// same instant (a new user each round). Returns the rounds where more than one got in,
    /// and the rounds where none did.
    fn race(&self, module_name: &str, trials: usize, racers: usize) -> (usize, usize) {
        self.reset();
        let (mut more, mut none) = (0, 0);
        for i in 0..trials {
            let code = self.setup.code(i, false);
            // Time for every racer to start and load the module before the common instant.
            let lead = 40 + 20 * racers as u128;
            let start = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + lead;
            let children: Vec<_> = (0..racers)
                .map(|_| {
                    Command::new(std::env::current_exe().unwrap())
                        .arg("--inner")
                        .arg(&self.setup.dir)
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
            let wins = children
                .into_iter()
                .map(|c| {
                    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).contains("ok 1")
                })
                .filter(|won| *won)
                .count();
            if wins > 1 {
                more += 1;
            }
            if wins == 0 {
                none += 1;
            }
        }
        (more, none)
    }
}

/// pam_ivmfa's file store against google-authenticator: latency, throughput, the replay
/// race, the footprint (the tables of the first part of docs/BENCHMARKS.md).
fn files_tables(bench: &mut Bench, module: &Path, ga: &Path) {
    println!("| measurement | ivmfa median | ivmfa p99 | google-auth median | google-auth p99 | ivmfa / google-auth |");
    println!("|---|---|---|---|---|---|");
    for (section, label) in [
        ("success-fresh", "success, fresh handle per login"),
        ("success-reused", "success, one handle reused"),
        ("failure", "wrong code (fail delay skipped)"),
    ] {
        let row: Vec<(f64, f64)> = MODULES.iter().map(|m| bench.latency(section, m)).collect();
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
        let rates: Vec<f64> = MODULES.iter().map(|m| bench.rate(procs, m)).collect();
        println!(
            "| {procs} | {:.0} | {:.0} | {:.2} |",
            rates[0],
            rates[1],
            rates[0] / rates[1]
        );
    }

    let trials = 200.min(bench.setup.users);
    let both: Vec<usize> = MODULES.iter().map(|m| bench.race(m, trials, 2).0).collect();
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
        size(module),
        size(ga),
        size(module) / size(ga)
    );
    println!(
        "| peak RSS of the benchmark process (KiB) | {:.0} | {:.0} | {:.2} |",
        bench.rss[0],
        bench.rss[1],
        bench.rss[0] / bench.rss[1]
    );
}

/// The fleet database beside the file store and google-authenticator: per-login latency in
/// milliseconds, throughput, and a replay race of 8 processes per code, checked against the
/// database's audit as well as the PAM results.
fn fleet_tables(bench: &mut Bench, fleet: &Fleet, bouncer: &Bouncer) {
    let setting = |name: &str| fleet.superuser(&format!("SHOW {name}"));
    let preload = setting("shared_preload_libraries");
    println!(
        "\nfleet: PostgreSQL {} on 127.0.0.1 (fsync {}, synchronous_commit {}{}), TLS with \
         a client certificate, a new connection per database round; {} in transaction \
         pooling in front of it",
        setting("server_version"),
        setting("fsync"),
        setting("synchronous_commit"),
        if preload.is_empty() {
            String::new()
        } else {
            format!(", shared_preload_libraries {preload}")
        },
        pgbouncer_version()
    );
    let all = ["ivmfa", "ga", "pg", "pgb"];
    println!(
        "\n| per login (ms) | file store | google-auth | postgres, new TLS connection | \
         postgres through PgBouncer |"
    );
    println!("|---|---|---|---|---|");
    for (section, label) in [
        ("success-fresh", "success"),
        ("failure", "wrong code (fail delay skipped)"),
    ] {
        let row: Vec<(f64, f64)> = all.iter().map(|m| bench.latency(section, m)).collect();
        for (which, name) in [(0, "median"), (1, "p99")] {
            let ms: Vec<String> = row
                .iter()
                .map(|r| format!("{:.2}", if which == 0 { r.0 } else { r.1 } / 1000.0))
                .collect();
            println!("| {label}, {name} | {} |", ms.join(" | "));
        }
    }

    println!(
        "\n| processes | file store logins/s | google-auth logins/s | postgres logins/s | \
         through PgBouncer logins/s |"
    );
    println!("|---|---|---|---|---|");
    for procs in [1usize, 2, 4, 8] {
        let rates: Vec<String> = all
            .iter()
            .map(|m| format!("{:.0}", bench.rate(procs, m)))
            .collect();
        println!("| {procs} | {} |", rates.join(" | "));
    }

    // Where a login's time goes: its two rounds, timed inside the client, no libpam.
    let (phases, cpu): (Vec<_>, Vec<_>) = FLEET.iter().map(|m| bench.phases(m)).unzip();
    println!(
        "\n| one login's database rounds, in-process (ms, median / p99) | postgres | \
         through PgBouncer |"
    );
    println!("|---|---|---|");
    for (k, (name, (median, p99))) in phases[0].iter().enumerate() {
        let (median_b, p99_b) = phases[1].get(k).map_or((f64::NAN, f64::NAN), |p| p.1);
        println!(
            "| {name} | {:.2} / {:.2} | {:.2} / {:.2} |",
            median / 1000.0,
            p99 / 1000.0,
            median_b / 1000.0,
            p99_b / 1000.0
        );
    }
    for (i, who) in ["the client", "PgBouncer", "PostgreSQL"].iter().enumerate() {
        let show = |v: f64| {
            if v.is_nan() {
                "–".to_owned()
            } else {
                format!("{v:.2}")
            }
        };
        // Straight to PostgreSQL, PgBouncer has nothing to do with the login.
        let direct = if i == 1 { f64::NAN } else { cpu[0][i] };
        println!(
            "| CPU per login, {who} (ms) | {} | {} |",
            show(direct),
            show(cpu[1][i])
        );
    }
    // The same under load: per login while 8 processes logged in (contention and batching
    // change it), and the logins per second two cores could give at that cost.
    let loaded: Vec<[f64; 3]> = FLEET
        .iter()
        .map(|m| {
            bench
                .loaded_cpu
                .iter()
                .find(|(k, _)| *k == (8, (*m).to_owned()))
                .map_or([f64::NAN; 3], |(_, c)| *c)
        })
        .collect();
    println!(
        "\n| CPU per login at 8 processes (ms): logins, PgBouncer, PostgreSQL | postgres | \
         through PgBouncer |"
    );
    println!("|---|---|---|");
    let line = |c: &[f64; 3], bouncer: bool| {
        let total = c[0] + if bouncer { c[1] } else { 0.0 } + c[2];
        format!(
            "{:.2}, {}, {:.2}: {:.2} in all, {:.0}/s on {} cores",
            c[0],
            if bouncer {
                format!("{:.2}", c[1])
            } else {
                "–".into()
            },
            c[2],
            total,
            num_cpus() as f64 * 1000.0 / total,
            num_cpus()
        )
    };
    println!(
        "| while measured | {} | {} |",
        line(&loaded[0], false),
        line(&loaded[1], true)
    );

    let trials = 200.min(bench.setup.users);
    let mut rows = Vec::new();
    for m in FLEET {
        let before: i64 = audited_acceptances(fleet);
        let (more, none) = bench.race(m, trials, FLEET_RACERS);
        let accepted = audited_acceptances(fleet) - before;
        rows.push((more, none, accepted));
    }
    println!(
        "\n| replay race ({trials} trials, {FLEET_RACERS} processes, one code) | postgres | \
         through PgBouncer |"
    );
    println!("|---|---|---|");
    println!(
        "| trials where more than one login got in | {} | {} |",
        rows[0].0, rows[1].0
    );
    println!(
        "| trials where none got in | {} | {} |",
        rows[0].1, rows[1].1
    );
    println!(
        "| codes accepted, by the database's audit | {} | {} |",
        rows[0].2, rows[1].2
    );
    let log = bouncer.log();
    let errors = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARNING "))
        .count();
    if errors > 0 {
        eprintln!("warning: PgBouncer logged {errors} errors or warnings:\n{log}");
    }
}

/// `--compare`: modules swapped in one running benchmark (one PostgreSQL, one PgBouncer),
/// turn by turn, so that each is measured beside the others under the same machine and the
/// same tables: logins/s at 8 processes through PgBouncer, twice a turn, and the CPU per
/// login they cost. The side-by-side tables of docs/BENCHMARKS.md (run 6).
fn compare_tables(bench: &mut Bench, modules: &[&str]) {
    const TURNS: usize = 4;
    const PROCS: usize = 8;
    let pam = bench.setup.dir.join("pam.d/bench-pgb");
    let stack = fs::read_to_string(&pam).unwrap();
    let built = stack.split_whitespace().nth(2).unwrap().to_owned();
    println!(
        "\n| turn | module | logins/s at {PROCS} through PgBouncer, twice | CPU ms per login: \
         logins, PgBouncer, PostgreSQL | CPU stolen |"
    );
    println!("|---|---|---|---|---|");
    for turn in 1..=TURNS {
        for module in modules {
            fs::write(&pam, stack.replace(&built, module)).unwrap();
            let stolen = Stolen::start();
            let mut rates = Vec::new();
            let mut cpu = [0.0; 3];
            for _ in 0..2 {
                bench.rates.clear();
                bench.loaded_cpu.clear();
                rates.push(bench.rate(PROCS, "pgb"));
                for (sum, c) in cpu.iter_mut().zip(bench.loaded_cpu[0].1) {
                    *sum += c / 2.0;
                }
            }
            println!(
                "| {turn} | {module} | {:.0}, {:.0} | {:.2}, {:.2}, {:.2} | {:.0} % |",
                rates[0],
                rates[1],
                cpu[0],
                cpu[1],
                cpu[2],
                stolen.share() * 100.0
            );
        }
    }
    fs::write(&pam, stack).unwrap();
}

fn audited_acceptances(fleet: &Fleet) -> i64 {
    fleet
        .superuser(
            "SELECT count(*) FROM ivmfa.audit WHERE action = 'verify' AND outcome = 'accepted'",
        )
        .parse()
        .unwrap_or(-1)
}

fn pgbouncer_version() -> String {
    Command::new("pgbouncer")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "PgBouncer".into())
}

/// The fleet database for the benchmark: durable (fsync on, as a fleet runs it; the suite
/// turns it off for speed) with the settings of `--pg-options` after, TLS with client
/// certificates, every user enrolled with the
/// secret the file store holds, and the config of a host that connects straight to it.
fn start_fleet(setup: &Setup) -> Fleet {
    let options = fs::read_to_string(setup.dir.join("pg-options")).unwrap_or_default();
    let fleet = Fleet::start_with(&format!("-c fsync=on {options}"));
    let config = fleet.host_config(HOST_ROLE, "");
    fs::write(setup.dir.join("ivmfa-pg.toml"), config).unwrap();
    let mut script = String::from("\\set ON_ERROR_STOP 1\n");
    for (i, secret) in setup.secrets.iter().enumerate() {
        let hex: String = secret.expose().iter().map(|b| format!("{b:02x}")).collect();
        script.push_str(&format!(
            "SELECT verdict FROM ivmfa_api.admin_provision('{}', '\\x{hex}'::bytea, 6, \
             'SHA1', true);\n",
            user(i)
        ));
    }
    let run = fleet.pg.run("admin", &script);
    let enrolled = run.stdout.lines().filter(|l| *l == "enrolled").count();
    assert!(
        run.ok && enrolled == setup.users,
        "enrolled {enrolled} of {} users: {}",
        setup.users,
        run.stderr
    );
    fleet
}

/// PgBouncer in front of the fleet's server, and the config of a host that connects to it.
fn start_bouncer(setup: &Setup, fleet: &Fleet) -> Bouncer {
    let bouncer = Bouncer::deployed(fleet, &[HOST_ROLE]);
    let config = fleet
        .host_config(HOST_ROLE, "")
        .replace(&fleet.address(), &bouncer.address());
    fs::write(setup.dir.join("ivmfa-pgb.toml"), config).unwrap();
    bouncer
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
        "rounds" => return rounds(setup, &args[1..]),
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

/// The phases of a login's two database rounds, timed in this process through ivmfa-fleet
/// itself (no libpam, no module): prints `phase <name> <µs>` for each.
fn rounds(setup: &Setup, args: &[String]) -> Result<(), String> {
    let config = setup.dir.join(format!("ivmfa-{}.toml", args[0]));
    let config = ivmfa_core::config::Config::resolve(&[format!("config={}", config.display())], 0)
        .map_err(|e| e.to_string())?;
    let settings = ivmfa_fleet::Settings::for_host(&config.db, 0).map_err(|e| e.to_string())?;
    let from: usize = args[1].parse().map_err(|_| "from")?;
    let to: usize = args[2].parse().map_err(|_| "to")?;
    let phase = |name: &str, since: &mut Instant| {
        println!("phase {name} {}", since.elapsed().as_secs_f64() * 1e6);
        *since = Instant::now();
    };
    for i in from..to {
        let name = user(i);
        let code = setup.code(i, false);
        // One login's rounds share TLS sessions, as the module's do.
        let tls = ivmfa_fleet::TlsSessions::default();
        let mut t = Instant::now();
        let mut s = ivmfa_fleet::connect(&settings, &tls).map_err(|e| e.to_string())?;
        phase("connect-1", &mut t);
        s.before_prompt(&name, "", true)
            .map_err(|e| e.to_string())?;
        phase("before_prompt", &mut t);
        s.close();
        phase("close-1", &mut t);
        let mut s = ivmfa_fleet::connect(&settings, &tls).map_err(|e| e.to_string())?;
        phase("connect-2", &mut t);
        let attempt = match s.submit(&name, &code, "").map_err(|e| e.to_string())? {
            ivmfa_fleet::Submitted::Pending(attempt) => attempt,
            other => return Err(format!("submit: {other:?}")),
        };
        phase("submit", &mut t);
        s.verify(attempt).map_err(|e| e.to_string())?;
        phase("verify", &mut t);
        s.close();
        phase("close-2", &mut t);
    }
    // The client's own CPU time per login (this process: TLS, the runtime, the files).
    let on_cpu_ns: f64 = fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|t| t.split(' ').next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN);
    println!("cpu_us {}", on_cpu_ns / 1000.0 / (to - from).max(1) as f64);
    Ok(())
}

/// A process's CPU seconds (user and system), and those of its children it has waited for.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    // /proc counts in USER_HZ, 100 on Linux whatever the kernel's own tick.
    const TICKS: f64 = 100.0;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // After the command's closing parenthesis: state, ppid, ... utime is the 12th field.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return (0.0, 0.0);
    };
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 4 {
        return (0.0, 0.0);
    }
    ((f[0] + f[1]) / TICKS, (f[2] + f[3]) / TICKS)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
