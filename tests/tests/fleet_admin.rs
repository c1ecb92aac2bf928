//! The administrators' side of the fleet, through `ivmfa-enroll` against a real PostgreSQL
//! the test starts itself (TLS on, a CA of the test's own): `db install` into an empty
//! server and `db upgrade`, `db add-host` and that host logging in through real libpam,
//! `enroll` with the key the database makes (confirmed by a code computed from the key
//! shown), `status`, the reset desk with requests filed by the module, `db migrate` of a
//! file store, `db fence` (and fleet.md's Patroni callback that runs it), `reset watch
//! --exec`, and `check` as the host.
//!
//! Roles: `postgres` (the superuser) by client certificate for what needs it, `alice` (a
//! member of ivmfa_admin) by a password from her PGPASSFILE, hosts by certificate (and one
//! by a password file made by `db add-host --password-file`).
//!
//! Error paths have golden files `tests/golden/cli/fleet_*.stderr` (IVMFA_BLESS=1 rewrites
//! them; review the diff).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::username::UserName;
use ivmfa_tests::fleet::Certs;
use ivmfa_tests::postgres::{require_postgres, Postgres, DATABASE, SUPERUSER};
use ivmfa_tests::*;

const USER: &str = "daemon";
const ALICE_PASSWORD: &str = "correct horse battery staple";

// Exit statuses of ivmfa-enroll (src/error.rs).
const FAILED: i32 = 1;
const USAGE: i32 = 2;
const REFUSED: i32 = 3;

/// Administrators by password, hosts and the superuser by certificate; host_b by password.
const HBA: &str = "hostssl ivmfa alice 127.0.0.1/32 scram-sha-256\n\
                   hostssl ivmfa host_b 127.0.0.1/32 scram-sha-256\n\
                   hostssl all postgres 127.0.0.1/32 cert\n\
                   hostssl ivmfa all 127.0.0.1/32 cert";

/// A server with TLS and nothing installed, its CA, and a host's fixture whose ivmfa.toml
/// connects as `host_a` by certificate; the CLI runs with that config.
struct Site {
    pg: Postgres,
    certs: Certs,
    host: Fixture,
    pgpass: PathBuf,
}

fn host_config(pg: &Postgres, certs: &Certs, role: &str) -> String {
    let (crt, key) = certs.client(role);
    format!(
        "backend = \"postgres\"\ndb_addresses = [\"127.0.0.1:{}\"]\ndb_user = \"{role}\"\n\
         db_ca = \"{}\"\ndb_cert = \"{}\"\ndb_key = \"{}\"\n",
        pg.port,
        certs.ca().display(),
        crt.display(),
        key.display()
    )
}

impl Site {
    fn new() -> Site {
        require_postgres("the fleet administration tier");
        let pg = Postgres::start();
        let certs = Certs::new("admin");
        let (crt, key) = certs.server("server", "IP:127.0.0.1");
        pg.enable_tls((&crt, &key), &certs.ca(), HBA);
        let host = Fixture::with_config("", &host_config(&pg, &certs, "host_a"));
        let pgpass = host.dir.join("pgpass");
        fs::write(
            &pgpass,
            format!("127.0.0.1:{}:{DATABASE}:alice:{ALICE_PASSWORD}\n", pg.port),
        )
        .unwrap();
        fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
        Site {
            pg,
            certs,
            host,
            pgpass,
        }
    }

    /// The schema installed by `db install`, alice an administrator, host_a added.
    fn installed() -> Site {
        let site = Site::new();
        site.superuser(&["db", "install"]).expect(0, "version 1");
        site.pg.sql(
            SUPERUSER,
            DATABASE,
            &format!("CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}' IN ROLE ivmfa_admin"),
        );
        site.superuser(&["db", "add-host", "host_a", "--address", "127.0.0.1"])
            .expect(0, "Created the role host_a");
        site
    }

    fn command(&self, as_role: &[String], args: &[&str]) -> Command {
        let mut c = Command::new(enroll_bin());
        c.arg("--config")
            .arg(&self.host.config)
            .args(as_role)
            .args(args)
            .env_remove("SUDO_USER")
            .env("PGPASSFILE", &self.pgpass)
            .env("LC_ALL", "C");
        c
    }

    fn superuser_role(&self) -> Vec<String> {
        let (crt, key) = self.certs.client(SUPERUSER);
        vec![
            "--db-user".into(),
            SUPERUSER.into(),
            "--db-cert".into(),
            crt.display().to_string(),
            "--db-key".into(),
            key.display().to_string(),
        ]
    }

    fn alice() -> Vec<String> {
        vec!["--db-user".into(), "alice".into()]
    }

    fn superuser(&self, args: &[&str]) -> CliOutput {
        run(&mut self.command(&self.superuser_role(), args), "")
    }

    fn admin(&self, args: &[&str]) -> CliOutput {
        run(&mut self.command(&Site::alice(), args), "")
    }

    fn admin_with_input(&self, args: &[&str], stdin: &str) -> CliOutput {
        run(&mut self.command(&Site::alice(), args), stdin)
    }

    /// `args` as alice, talking to it as a person at a terminal would.
    fn admin_talking(&self, args: &[&str]) -> Talk {
        Talk::start(self.command(&Site::alice(), args))
    }

    /// What differs between runs, replaced: the server's address, the test's directories.
    fn normalize(&self, text: &str) -> String {
        text.replace(&format!("127.0.0.1:{}", self.pg.port), "<server>")
            .replace(&self.certs.dir.display().to_string(), "<certs>")
            .replace(&self.host.dir.display().to_string(), "<dir>")
    }

    /// Checks one error path against its golden file.
    #[track_caller]
    fn golden(&self, name: &str, code: i32, out: &CliOutput) {
        assert!(name.starts_with("fleet_"), "{name}");
        if let Some(wrong) = golden::check(name, code, &self.normalize(&out.stderr), out) {
            panic!("{wrong}");
        }
    }

    fn superuser_sql(&self, sql: &str) -> String {
        self.pg.sql(SUPERUSER, DATABASE, sql)
    }
}

fn run(cmd: &mut Command, stdin: &str) -> CliOutput {
    CliOutput::of(cmd, stdin)
}

/// A CLI run answered as it goes: what it printed so far, and lines typed in.
struct Talk {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    seen: String,
}

impl Talk {
    fn start(mut cmd: Command) -> Talk {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Talk {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            child,
            seen: String::new(),
        }
    }

    /// Reads until `text` has been printed; everything printed so far.
    fn until(&mut self, text: &str) -> String {
        let mut byte = [0u8; 1];
        while !self.seen.contains(text) {
            let n = self.stdout.read(&mut byte).unwrap();
            if n == 0 {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("ended before {text:?}:\n{}\nstderr: {err}", self.seen);
            }
            self.seen.push(char::from(byte[0]));
        }
        self.seen.clone()
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) -> CliOutput {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let out = self.child.wait_with_output().unwrap();
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: format!("{}{rest}", self.seen),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The app's enrollment for the key an `enroll` printed (its `Key:` line).
fn key_printed(text: &str) -> Enrollment {
    let key: String = text
        .lines()
        .find_map(|l| l.strip_prefix("Key:"))
        .expect("a Key: line")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Enrollment::standard(Secret::from_base32(&key).unwrap(), 0)
}

#[track_caller]
fn says(out: &CliOutput, text: &str) {
    assert!(
        out.stdout.contains(text),
        "{text:?} not in stdout:\n{}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

/// The names of this tier's golden files, each checked by one of the tests below.
const GOLDENS: &[&str] = &[
    "fleet_install_twice",
    "fleet_upgrade_newer",
    "fleet_add_host_exists",
    "fleet_enroll_exists",
    "fleet_approve_no_request",
    "fleet_approve_not_a_host",
    "fleet_approve_host_on_files",
    "fleet_not_an_admin",
    "fleet_unreachable",
    "fleet_db_on_files",
    "fleet_add_host_bad_name",
    "fleet_watch_relative",
    "fleet_migrate_not_root",
];

#[test]
fn every_fleet_golden_file_has_a_case() {
    let names: BTreeSet<String> = GOLDENS.iter().map(|n| (*n).to_owned()).collect();
    golden::every_file_has_a_case(&names, |name| name.starts_with("fleet_"));
}

#[test]
#[ignore = "needs root"]
fn install_upgrade_add_hosts_and_check() {
    let site = Site::new();
    // A value of the server's own for one of the recommended settings stands.
    site.pg.sql(
        SUPERUSER,
        "postgres",
        "ALTER ROLE postgres SET idle_in_transaction_session_timeout = '5min'",
    );
    let out = site.superuser(&["db", "install"]);
    out.expect(0, "created the database ivmfa");
    says(&out, "installed the ivmfa schema, version 1");
    says(&out, "ivmfa_owner, ivmfa_host, ivmfa_admin created");
    assert_eq!(site.superuser_sql("SELECT ivmfa_api.schema_version()"), "1");
    // The recommended server settings, on the database it made.
    says(
        &out,
        "set client_connection_check_interval = '1s' on the database ivmfa",
    );
    says(
        &out,
        "left idle_in_transaction_session_timeout as the server has it (from: user;",
    );
    assert_eq!(
        site.superuser_sql(
            "SELECT array_to_string(setconfig, ' ') FROM pg_db_role_setting s \
             JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = 'ivmfa' AND s.setrole = 0"
        ),
        "client_connection_check_interval=1s"
    );
    site.golden(
        "fleet_install_twice",
        REFUSED,
        &site.superuser(&["db", "install"]),
    );

    site.superuser(&["db", "upgrade"])
        .expect(0, "is up to date: version 1");
    // A schema from a newer release is left alone.
    site.superuser_sql("UPDATE ivmfa.meta SET schema_version = 2");
    site.golden(
        "fleet_upgrade_newer",
        REFUSED,
        &site.superuser(&["db", "upgrade"]),
    );
    site.superuser_sql("UPDATE ivmfa.meta SET schema_version = 1");

    let out = site.superuser(&["db", "add-host", "host_a", "--address", "127.0.0.1"]);
    out.expect(0, "Created the role host_a");
    says(&out, "hostssl ivmfa host_a 127.0.0.1/32 cert");
    says(&out, "-subj /CN=host_a");
    says(&out, "db_user = \"host_a\"");
    says(
        &out,
        &format!("db_addresses = [\"127.0.0.1:{}\"]", site.pg.port),
    );
    assert_eq!(
        site.superuser_sql(
            "SELECT rolcanlogin AND pg_has_role(oid, 'ivmfa_host', 'MEMBER') \
             AND NOT pg_has_role(oid, 'ivmfa_admin', 'MEMBER') FROM pg_roles \
             WHERE rolname = 'host_a'"
        ),
        "t"
    );
    site.golden(
        "fleet_add_host_exists",
        REFUSED,
        &site.superuser(&["db", "add-host", "host_a"]),
    );

    // host_a logs in through the module: the database answers (not enrolled), it is no
    // "not available".
    site.host
        .login(USER, &["123456"])
        .assert("PAM_AUTH_ERR")
        .assert_said("has not been set up yet");

    // A host by password: the file is root's alone, and the module logs in with it.
    let password = site.host.dir.join("host_b.password");
    let out = site.superuser(&[
        "db",
        "add-host",
        "host_b",
        "--password-file",
        &password.display().to_string(),
    ]);
    out.expect(0, "Created the role host_b");
    says(&out, "hostssl ivmfa host_b ADDRESS/32 scram-sha-256");
    says(&out, "db_password_file = ");
    let meta = fs::metadata(&password).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(&password).unwrap();
    assert_eq!(text.trim().len(), 48, "{text:?}");
    // Only the verifier reached the server.
    assert!(site
        .superuser_sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'host_b'")
        .starts_with("SCRAM-SHA-256$4096:"));
    let b = Fixture::with_config(
        "",
        &format!(
            "backend = \"postgres\"\ndb_addresses = [\"127.0.0.1:{}\"]\ndb_user = \"host_b\"\n\
             db_ca = \"{}\"\ndb_password_file = \"{}\"\n",
            site.pg.port,
            site.certs.ca().display(),
            password.display()
        ),
    );
    b.login(USER, &["123456"])
        .assert("PAM_AUTH_ERR")
        .assert_said("has not been set up yet");

    // check, as host_a: connected, the schema known, every table refused.
    let pam = site.host.pam_dir(&[
        ("common-auth", COMMON_AUTH),
        ("sshd", "@include common-auth\nauth required pam_ivmfa.so\n"),
    ]);
    let sshd = site.host.sshd_printing(
        "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
         authenticationmethods publickey,keyboard-interactive keyboard-interactive",
    );
    let check = || {
        run(
            &mut site.command(&[], &["check", "--pam-dir", &pam, "--sshd", &sshd]),
            "",
        )
    };
    let out = check();
    out.expect(0, "No problems found");
    says(&out, "connected over TLS as the host role host_a");
    says(&out, "schema version 1");
    says(&out, "host_a is a plain member of ivmfa_host");
    says(&out, "is refused every table of the schema (16 tried)");

    // A host role that can read a table is found out.
    site.superuser_sql(
        "GRANT USAGE ON SCHEMA ivmfa TO host_a; GRANT SELECT ON ivmfa.settings TO host_a",
    );
    let out = check();
    assert_eq!(out.code, 1, "{out:#?}");
    says(&out, "the host role host_a can read ivmfa.settings");
    says(&out, "1 problem found");
    site.superuser_sql(
        "REVOKE ALL ON ivmfa.settings FROM host_a; REVOKE ALL ON SCHEMA ivmfa FROM host_a",
    );
    // So is one that is an administrator too.
    site.superuser_sql("GRANT ivmfa_admin TO host_a");
    let out = check();
    assert_eq!(out.code, 1, "{out:#?}");
    says(&out, "the host role host_a is a member of ivmfa_admin");
}

#[test]
#[ignore = "needs root"]
fn enroll_status_and_the_reset_desk() {
    let site = Site::installed();

    // The key is made in the database and shown once; a wrong code, then the right one.
    let mut talk = site.admin_talking(&["enroll", USER, "--qr", "none"]);
    let shown = talk.until("code the app shows now: ");
    assert!(shown.contains("URI:     otpauth://totp/"), "{shown}");
    let e = key_printed(&shown);
    talk.type_line(&never_right(&e, now()));
    talk.until("(2 left)");
    settle();
    talk.type_line(&code(&e, 0));
    let out = talk.finish();
    out.expect(0, "Code confirmed.");
    says(&out, "daemon is enrolled in the fleet database");
    assert_eq!(recovery_codes_in(&out.stdout).len(), 10, "{}", out.stdout);

    let out = site.admin(&["status", USER]);
    out.expect(0, "daemon: enrolled since");
    says(&out, "codes: time-based (an app)");
    // Without a name: every user the database has, a line each.
    site.admin(&["status"])
        .expect(0, "daemon: enrolled since")
        .expect(0, "; recovery codes left: 10");
    says(&out, "recovery codes left: 10");
    says(&out, "back-off: none");
    // The confirming code cannot log in as well; the next one can, through host_a.
    site.host
        .login(USER, &[&code(&e, 0)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    site.host.login(USER, &[&code(&e, 1)]).assert("PAM_SUCCESS");

    site.golden(
        "fleet_enroll_exists",
        REFUSED,
        &site.admin(&["enroll", USER, "--qr", "none"]),
    );
    let out = site.admin(&["recovery-codes", USER, "--count", "3"]);
    out.expect(0, "the previous ones no longer work");
    let recovery = recovery_codes_in(&out.stdout);
    assert_eq!(recovery.len(), 3, "{}", out.stdout);

    // The audit names alice.
    assert_eq!(
        site.superuser_sql(
            "SELECT count(*) FROM ivmfa.audit WHERE role = 'alice' \
             AND action = 'admin_enroll_confirm' AND outcome LIKE 'enrolled%'"
        ),
        "1"
    );

    // Root is not needed for the fleet: nobody, with a password file of their own, on a
    // machine that is no host: its config says only where the database is.
    let admin_config = site.host.dir.join("admin.toml");
    fs::write(
        &admin_config,
        format!(
            "backend = \"postgres\"\ndb_addresses = [\"127.0.0.1:{}\"]\ndb_ca = \"{}\"\n",
            site.pg.port,
            site.certs.ca().display()
        ),
    )
    .unwrap();
    let nobody_pgpass = site.host.dir.join("nobody.pgpass");
    fs::copy(&site.pgpass, &nobody_pgpass).unwrap();
    std::os::unix::fs::chown(&nobody_pgpass, Some(65534), Some(65534)).unwrap();
    let out = run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(enroll_bin())
            .arg("--config")
            .arg(&admin_config)
            .args(["--db-user", "alice", "status", USER])
            .env_remove("SUDO_USER")
            .env("PGPASSFILE", &nobody_pgpass),
        "",
    );
    out.expect(0, "recovery codes left: 3");
    // check acts as the host, so such a config is not enough for it.
    let out = run(
        Command::new(enroll_bin())
            .arg("--config")
            .arg(&admin_config)
            .arg("check")
            .env_remove("SUDO_USER")
            .env("LC_ALL", "C"),
        "",
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("db_user is not set"),
        "{out:?}"
    );

    // The reset desk: a request filed through the module.
    site.host
        .login(USER, &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    let out = site.admin(&["reset", "list"]);
    out.expect(0, "daemon");
    says(&out, "host_a");
    site.admin(&[
        "reset",
        "deny",
        USER,
        "--reason",
        "Call the service desk first",
    ])
    .expect(0, "Declined");
    // (The app's codes up to the next step are used: a recovery code logs in.)
    site.host
        .login(USER, &[&recovery[0]])
        .assert("PAM_SUCCESS")
        .assert_said("declined: Call the service desk first");
    site.admin(&["reset", "list"])
        .expect(0, "No reset requests are pending");
    site.golden(
        "fleet_approve_no_request",
        REFUSED,
        &site.admin(&["reset", "approve", USER]),
    );
    site.host.login(USER, &["reset"]).assert("PAM_AUTH_ERR");
    site.admin(&["reset", "approve", USER])
        .expect(0, "a new QR code is shown to set up");
    let out = site.admin(&["status", USER]);
    out.expect(0, "daemon: not enrolled");
    says(&out, "reset approved: sets up a new code at the next login");

    // A known key without a code, and removal.
    let out = site.admin_with_input(
        &["enroll", "bin", "--secret-file", "-", "--no-confirm"],
        &format!("{TEST_KEY}\n"),
    );
    out.expect(0, "bin is enrolled in the fleet database");
    assert!(!out.stdout.contains(TEST_KEY), "a key given is not echoed");
    let known = Enrollment::standard(Secret::from_bytes(TEST_KEY_BYTES).unwrap(), 0);
    settle();
    site.host
        .login("bin", &[&code(&known, 0)])
        .assert("PAM_SUCCESS");
    site.admin(&["remove", "bin"])
        .expect(0, "Removed bin's enrollment");
    site.host
        .login("bin", &[&code(&known, 1)])
        .assert("PAM_AUTH_ERR")
        .assert_said("has not been set up yet");

    // A hardware token, confirmed by its first code; its counter then stands past it.
    let token = Enrollment::hotp(Secret::from_bytes(TEST_KEY_BYTES).unwrap(), 0);
    let mut talk = site.admin_talking(&["enroll", "sys", "--hotp", "--secret-file", "-"]);
    talk.type_line(TEST_KEY);
    talk.until("code it shows: ");
    talk.type_line(ivmfa_core::hotp::code_at(&token, 0).unwrap().as_ref());
    talk.finish().expect(0, "enrolled with a hardware token");
    site.admin(&["status", "sys"])
        .expect(0, "hardware token (HOTP), next counter 1");
    let codes: Vec<String> = (5..7)
        .map(|c| ivmfa_core::hotp::code_at(&token, c).unwrap().to_string())
        .collect();
    site.admin(&["resync", "sys", &codes[0], &codes[1]])
        .expect(0, "now expects counter 7 (it expected 1)");

    // A role that is no administrator is told what it lacks.
    site.pg
        .sql(SUPERUSER, DATABASE, "CREATE ROLE mallory LOGIN");
    let (crt, key) = site.certs.client("mallory");
    let mallory = [
        "--db-user".to_owned(),
        "mallory".to_owned(),
        "--db-cert".to_owned(),
        crt.display().to_string(),
        "--db-key".to_owned(),
        key.display().to_string(),
    ];
    site.golden(
        "fleet_not_an_admin",
        FAILED,
        &run(&mut site.command(&mallory, &["status", USER]), ""),
    );
}

/// A reset approved through the desk is set up through one host: the one the request came
/// through, or the one `--host` names. Logins through any other host are told to log in
/// there, and shown no key; a declined reset's reason waits for the host the request came
/// through.
#[test]
#[ignore = "needs root"]
fn an_approved_reset_is_set_up_through_the_host_named() {
    let site = Site::installed();
    site.superuser(&["db", "add-host", "host_c", "--address", "127.0.0.1"])
        .expect(0, "Created the role host_c");
    let c = Fixture::with_config("", &host_config(&site.pg, &site.certs, "host_c"));
    site.admin_with_input(
        &["enroll", USER, "--secret-file", "-", "--no-confirm"],
        &format!("{TEST_KEY}\n"),
    )
    .expect(0, "is enrolled in the fleet database");

    // Filed through host_a and approved as it came: host_c may not set up the new code.
    site.host
        .login(USER, &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    site.admin(&["status", USER])
        .expect(0, "reset request: pending, through host_a");
    let out = site.admin(&["reset", "approve", USER]);
    out.expect(0, "a new QR code is shown to set up");
    says(&out, "next login through host_a");
    says(&out, "--host ROLE");
    site.admin(&["status", USER])
        .expect(0, "sets up a new code at the next login through host_a");
    let elsewhere = c.login(USER, &["@phone"]);
    elsewhere
        .assert("PAM_AUTH_ERR")
        .assert_said("approved for another machine");
    assert!(!elsewhere.said("scan this code"), "{elsewhere:?}");

    // Sent to host_c instead: now host_a is the other machine.
    let out = site.admin(&["reset", "approve", USER, "--host", "host_c"]);
    out.expect(0, "Issued again");
    says(&out, "next login through host_c");
    site.admin(&["status", USER])
        .expect(0, "sets up a new code at the next login through host_c");
    let refused = site.host.login(USER, &["@phone"]);
    refused
        .assert("PAM_AUTH_ERR")
        .assert_said("approved for another machine");
    assert!(!refused.said("scan this code"), "{refused:?}");
    settle();
    let setup = c.login(USER, &["@phone"]);
    setup
        .assert("PAM_SUCCESS")
        .assert_said("scan this code")
        .assert_said("Multi-factor authentication is set up");
    let new = ivmfa_tests::fleet::key_shown(&setup.transcript).expect("the key was shown");
    site.admin(&["status", USER]).expect(0, "enrolled since");
    assert_eq!(
        site.superuser_sql(
            "SELECT role || ' ' || outcome FROM ivmfa.audit \
             WHERE action = 'setup_finish' ORDER BY id"
        ),
        "host_c enrolled (ticket)"
    );

    // Only a host role that may log in can be named.
    c.login(USER, &["reset"]).assert("PAM_AUTH_ERR");
    site.admin(&["reset", "list"]).expect(0, "host_c");
    site.golden(
        "fleet_approve_not_a_host",
        REFUSED,
        &site.admin(&["reset", "approve", USER, "--host", "alice"]),
    );
    // Declined: the reason is for host_c, where the request came from.
    site.admin(&["reset", "deny", USER, "--reason", "Come to the desk"])
        .expect(0, "next login through host_c");
    // (The set-up's code and those before it are used: a recovery code logs in.)
    let recovery = recovery_codes_in(&setup.transcript.join("\n"));
    assert_eq!(recovery.len(), 10, "{setup:?}");
    let a = site.host.login(USER, &[&recovery[0]]);
    a.assert("PAM_SUCCESS");
    assert!(!a.said("declined"), "{a:?}");
    c.login(USER, &[&code(&new, 1)])
        .assert("PAM_SUCCESS")
        .assert_said("declined: Come to the desk");
}

/// The Patroni callback of docs/fleet.md, taken from the page as written, run as `postgres`
/// (the user Patroni runs as) with the arguments Patroni passes: a promotion fences, as the
/// fence role, and any other role change does nothing. (What the fence does to watermarks:
/// `migrate_keeps_used_codes_used_and_back_off_in_force` and fleet_db's
/// `fence_raises_every_watermark`.)
#[test]
#[ignore = "needs root"]
fn the_documented_fence_callback_fences_on_promotion_only() {
    let site = Site::installed();
    site.superuser_sql("CREATE ROLE ivmfa_fence LOGIN IN ROLE ivmfa_admin");
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fleet.md")).unwrap();
    let start = doc
        .find("  ```sh\n  #!/bin/sh\n  # /usr/local/sbin/ivmfa-fence")
        .expect("the callback script in docs/fleet.md");
    let block = &doc[start..];
    let end = block[6..].find("  ```").expect("its end") + 6;
    let mut script: String = block[..end]
        .lines()
        .skip(1)
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();

    let dir = site.host.dir.join("fence");
    fs::create_dir_all(&dir).unwrap();
    let pg_uid = ivmfa_tests::postgres::postgres_uid();
    let (crt, key) = site.certs.client("ivmfa_fence");
    for (from, to) in [(crt, "fence.crt"), (key, "fence.key")] {
        fs::copy(from, dir.join(to)).unwrap();
        std::os::unix::fs::chown(dir.join(to), Some(pg_uid), None).unwrap();
    }
    fs::set_permissions(dir.join("fence.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::copy(site.certs.ca(), dir.join("ca.crt")).unwrap();
    fs::write(
        dir.join("fence.toml"),
        format!(
            "backend = \"postgres\"\ndb_addresses = [\"127.0.0.1:{}\"]\ndb_ca = \"{}\"\n",
            site.pg.port,
            dir.join("ca.crt").display()
        ),
    )
    .unwrap();
    for (path, here) in [
        ("/usr/sbin/ivmfa-enroll", enroll_bin()),
        ("/etc/ivmfa/fence.toml", dir.join("fence.toml")),
        ("/etc/ivmfa/fence.crt", dir.join("fence.crt")),
        ("/etc/ivmfa/fence.key", dir.join("fence.key")),
    ] {
        assert!(script.contains(path), "{path} in {script}");
        script = script.replace(path, &here.display().to_string());
    }
    fs::write(dir.join("ivmfa-fence"), script).unwrap();

    let fences = || {
        site.superuser_sql(
            "SELECT count(*) FROM ivmfa.audit WHERE action = 'admin_fence' \
             AND role = 'ivmfa_fence' AND outcome LIKE 'raised%'",
        )
    };
    let callback = |role: &str| {
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--", "sh"])
                .arg(dir.join("ivmfa-fence"))
                .args(["on_role_change", role, "ivmfa-cluster"])
                .env_remove("SUDO_USER")
                .env("LC_ALL", "C"),
            "",
        )
    };
    for role in ["replica", "demoted", "uninitialized"] {
        callback(role).expect(0, "");
        assert_eq!(fences(), "0", "{role}");
    }
    callback("primary").expect(0, "Fenced: raised the watermark");
    assert_eq!(fences(), "1");
    callback("master").expect(0, "Fenced: raised the watermark");
    assert_eq!(fences(), "2");
}

/// A file store migrated, then the database's upkeep after it: `db fence` and
/// `db prune-audit`.
#[test]
#[ignore = "needs root"]
fn migrate_keeps_used_codes_used_and_back_off_in_force() {
    let site = Site::installed();
    // The file store of a host that ran alone until now.
    let files = Fixture::new("");
    let e = files.enroll(USER);
    let (recovery, set) = ivmfa_core::recovery::issue(4, now(), ivmfa_core::random::fill).unwrap();
    {
        let store = files.store();
        let name = UserName::parse(USER).unwrap();
        let lock = store.lock(&name).unwrap();
        let mut enrolled = store.reload_enrollment(&lock).unwrap().unwrap();
        enrolled.recovery = set;
        store.save_enrollment(&lock, &enrolled).unwrap();
    }
    settle();
    let used = code(&e, 0);
    files.login(USER, &[&used]).assert("PAM_SUCCESS");
    files
        .login(USER, &[recovery[0].as_str()])
        .assert("PAM_SUCCESS")
        .assert_said("3 recovery codes left");
    // bin backs off after three wrong codes.
    let b = files.enroll("bin");
    for _ in 0..3 {
        files
            .login("bin", &[&never_right(&b, now())])
            .assert("PAM_AUTH_ERR");
    }
    files
        .login("bin", &[&code(&b, 0)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Please wait");
    // Leftovers of a user without an enrollment are skipped.
    fs::create_dir_all(files.user_dir("sys")).unwrap();
    fs::set_permissions(files.user_dir("sys"), fs::Permissions::from_mode(0o700)).unwrap();

    let store = files.store.display().to_string();
    let migrate = || {
        let mut c = site.command(&Site::alice(), &["db", "migrate", "--from", &store]);
        run(&mut c, "")
    };
    let out = migrate();
    out.expect(0, "daemon: imported (an app, 3 recovery code(s) left)");
    says(&out, "bin: imported (an app, 0 recovery code(s) left)");
    says(&out, "sys: skipped: not enrolled in the store");
    says(&out, "2 imported, 0 merged, 1 skipped, 0 failed");

    // On the fleet: the code used on the old host stays used, and so does the recovery
    // code; bin still waits.
    site.host
        .login(USER, &[&used])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    site.host
        .login(USER, &[recovery[0].as_str()])
        .assert("PAM_AUTH_ERR");
    site.host
        .login(USER, &[recovery[1].as_str()])
        .assert("PAM_SUCCESS")
        .assert_said("recovery codes left");
    site.host
        .login("bin", &[&code(&b, 1)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Please wait");
    site.admin(&["status", "bin"]).expect(0, "back-off: ");

    // Again: merged, never doubled or lowered.
    let out = migrate();
    out.expect(0, "daemon: enrolled in the fleet database already");
    says(&out, "0 imported, 2 merged");

    // db fence: every watermark past now; a code of this step no longer logs in.
    // The next step's code would log in now (it is within the window); after the fence it
    // is used up.
    let next = code(&e, 1);
    let out = site.admin(&["db", "fence"]);
    out.expect(0, "Fenced: raised the watermark of");
    let step: u64 = site
        .admin(&["status", USER])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("watermark: step "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(step > now() / 30, "{step}");
    site.host
        .login(USER, &[&next])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");

    // db prune-audit: rows older than the days kept go, the newer stay, and the prune is a
    // row of its own, naming the administrator.
    let old_rows = "SELECT count(*) FROM ivmfa.audit WHERE at < now() - interval '365 days'";
    let total = "SELECT count(*) FROM ivmfa.audit";
    site.superuser_sql(
        "UPDATE ivmfa.audit SET at = at - interval '400 days' \
         WHERE id IN (SELECT id FROM ivmfa.audit ORDER BY id LIMIT 5)",
    );
    assert_eq!(site.superuser_sql(old_rows), "5");
    let before: u64 = site.superuser_sql(total).parse().unwrap();
    let out = site.admin(&["db", "prune-audit", "--keep-days", "365"]);
    out.expect(0, "Pruned: deleted 5 audit row(s) older than 365 day(s).");
    assert_eq!(site.superuser_sql(old_rows), "0");
    let after: u64 = site.superuser_sql(total).parse().unwrap();
    assert_eq!(after, before - 5 + 1);
    assert_eq!(
        site.superuser_sql(
            "SELECT role || ' ' || outcome FROM ivmfa.audit \
             WHERE action = 'admin_prune_audit'"
        ),
        "alice pruned 5 rows older than 365 days"
    );
    let zero = site.admin(&["db", "prune-audit", "--keep-days", "0"]);
    assert!(
        zero.code == 2 && zero.stderr.contains("0 is not in 1..=3650"),
        "{zero:#?}"
    );
    assert_eq!(site.superuser_sql(total), after.to_string());

    site.golden(
        "fleet_migrate_not_root",
        REFUSED,
        &run(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(enroll_bin())
                .arg("--config")
                .arg(&site.host.config)
                .args(["db", "migrate", "--from", &store])
                .env_remove("SUDO_USER"),
            "",
        ),
    );
}

#[test]
#[ignore = "needs root"]
fn reset_watch_runs_the_program_for_each_new_request_and_reconnects() {
    let site = Site::installed();
    let seen = site.host.dir.join("seen");
    let program = site.host.root_script(
        "on-request",
        &format!(
            "echo \"$IVMFA_USER $IVMFA_SERVICE $IVMFA_HOST $IVMFA_TIME\" >> {}",
            seen.display()
        ),
    );
    site.admin(&["enroll", USER, "--secret", TEST_KEY, "--no-confirm"])
        .expect(0, "enrolled");
    let mut watch = site
        .command(
            &Site::alice(),
            &[
                "reset",
                "watch",
                "--exec",
                &program.display().to_string(),
                "--poll",
                "3600",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = |lines: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(&seen).unwrap_or_default();
            if text.lines().count() >= lines {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the program ran for {text:?} only"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Give the watch its LISTEN before the request (a request missed would be found at the
    // next poll only).
    std::thread::sleep(Duration::from_secs(2));
    site.host.login(USER, &["reset"]).assert("PAM_AUTH_ERR");
    let text = wait_for(1);
    assert!(
        text.starts_with(&format!("{USER} {} host_a ", SERVICE)),
        "{text:?}"
    );

    // The server goes away and comes back: the watch connects again and goes on.
    site.admin(&["reset", "deny", USER, "--reason", "no"])
        .expect(0, "Declined");
    site.pg.stop();
    std::thread::sleep(Duration::from_secs(1));
    site.pg.restart();
    // Until the watch is back, a request is found when it reads the list on reconnecting.
    site.host.login(USER, &["reset"]).assert("PAM_AUTH_ERR");
    let text = wait_for(2);
    assert_eq!(text.lines().count(), 2, "{text:?}");

    // Once per request: nothing more without a new one.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(wait_for(2).lines().count(), 2);
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("ran "), "{stdout}");
    assert!(stderr.contains("connecting again in"), "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn fleet_error_paths_match_their_goldens() {
    require_root("ivmfa-enroll, root's files");
    // No server is needed for these: each is refused before connecting, or cannot connect.
    let certs = Certs::new("errors");
    let (crt, key) = certs.client("host_a");
    let config = format!(
        "backend = \"postgres\"\ndb_addresses = [\"127.0.0.1:1\"]\ndb_user = \"host_a\"\n\
         db_ca = \"{}\"\ndb_cert = \"{}\"\ndb_key = \"{}\"\n",
        certs.ca().display(),
        crt.display(),
        key.display()
    );
    let f = Fixture::with_config("", &config);
    let pgpass = f.dir.join("pgpass");
    fs::write(&pgpass, "*:*:*:alice:x\n").unwrap();
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
    let files = Fixture::new("");
    let cli = |config: &Path, args: &[&str]| {
        run(
            Command::new(enroll_bin())
                .arg("--config")
                .arg(config)
                .args(["--db-user", "alice"])
                .args(args)
                .env_remove("SUDO_USER")
                .env("PGPASSFILE", &pgpass),
            "",
        )
    };
    let normalize = |text: &str| {
        text.replace(&certs.dir.display().to_string(), "<certs>")
            .replace(&f.dir.display().to_string(), "<dir>")
            .replace(&files.dir.display().to_string(), "<dir>")
    };
    let mut wrong = Vec::new();
    for (name, code, config, args) in [
        (
            "fleet_unreachable",
            FAILED,
            &f.config,
            &["status", USER][..],
        ),
        (
            "fleet_db_on_files",
            USAGE,
            &files.config,
            &["db", "fence"][..],
        ),
        (
            "fleet_approve_host_on_files",
            USAGE,
            &files.config,
            &["reset", "approve", USER, "--host", "host_b"][..],
        ),
        (
            "fleet_add_host_bad_name",
            USAGE,
            &f.config,
            &["db", "add-host", "Host-1"][..],
        ),
        (
            "fleet_watch_relative",
            USAGE,
            &f.config,
            &["reset", "watch", "--exec", "notify.sh"][..],
        ),
    ] {
        let out = cli(config, args);
        wrong.extend(golden::check(name, code, &normalize(&out.stderr), &out));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
