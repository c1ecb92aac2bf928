//! The module as a client of the fleet database, beyond what the file store can do: several
//! hosts (each its own role and certificate) sharing one enrollment, and the basic faults,
//! each denied within the deadline with "not available" to the user and the reason in
//! syslog; break-glass at the console; the credentials a host and an administrator use; no
//! thread and no descriptor left behind.

use std::time::{Duration, Instant};

use ivmfa_tests::fleet::{black_hole, Bouncer, Certs, Fleet, HBA_CERT};
use ivmfa_tests::postgres::{Postgres, DATABASE, SUPERUSER};
use ivmfa_tests::*;

const USER: &str = "daemon";
const UNAVAILABLE: &str = "Multi-factor authentication is not available right now";

fn login_from(f: &Fixture, rhost: &str, answers: &[&str]) -> Outcome {
    let mut args = f.auth_args(USER, answers);
    args.extend(["--rhost".into(), rhost.into()]);
    f.run(args)
}

/// A login of `user` with no remote host and PAM_TTY `tty`, as `login` on a terminal makes
/// one; with syslog captured.
fn on_tty(f: &Fixture, user: &str, tty: &str, answers: &[&str]) -> (Outcome, Vec<String>) {
    let mut args = f.auth_args(user, answers);
    args.extend(["--tty".into(), tty.into()]);
    let (output, lines) = f.logged(&driver(), &args);
    (Outcome::parse(&output), lines)
}

#[test]
#[ignore = "needs root"]
fn hosts_share_the_watermark_and_the_failures() {
    let fleet = Fleet::start();
    let a = fleet.fixture("host_a", "", "");
    let b = fleet.fixture("host_b", "", "");
    let e = fleet.enroll(USER);
    settle();
    a.login(USER, &[&code(&e, 0)]).assert("PAM_SUCCESS");
    // The code used through A is spent for B too.
    b.login(USER, &[&code(&e, 0)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    b.login(USER, &[&code(&e, 1)]).assert("PAM_SUCCESS");
    // Failures from one source add up whichever host they came through: the third starts
    // the back-off, on B, after two on A.
    a.login(USER, &["000001"]).assert("PAM_AUTH_ERR");
    a.login(USER, &["000002"]).assert("PAM_AUTH_ERR");
    b.login(USER, &["000003"])
        .assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes. Please wait 30 seconds");
    a.login(USER, &[&code(&e, 2)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
    // Another source is not held back by them (a recovery code: the window's codes are
    // spent).
    let recovery = fleet.recovery_codes(USER, 1);
    login_from(&a, "192.0.2.44", &[&recovery[0]])
        .assert("PAM_SUCCESS")
        .assert_said("Recovery code accepted");
    // Each verdict is audited with the role of the host that asked.
    let roles = fleet.superuser(
        "SELECT string_agg(DISTINCT role, ',' ORDER BY role) FROM ivmfa.audit \
         WHERE action = 'verify'",
    );
    assert_eq!(roles, "host_a,host_b");
}

/// Logs in with syslog captured, timing it.
fn timed(f: &Fixture, answers: &[&str]) -> (Outcome, Vec<String>, Duration) {
    let start = Instant::now();
    let (out, lines) = f.login_logged(USER, answers);
    (out, lines, start.elapsed())
}

#[test]
#[ignore = "needs root"]
fn a_stopped_database_is_not_available_and_the_reason_is_logged() {
    let fleet = Fleet::start();
    let f = fleet.fixture("host_a", "", "");
    let e = fleet.enroll(USER);
    fleet.pg.stop();
    let (out, lines, took) = timed(&f, &["000000"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    assert!(
        !out.said("prompt"),
        "no prompt without the database: {out:?}"
    );
    logged_line(&lines, &["denied: fleet database", "Connection refused"]);
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Back up, the same host logs in again.
    fleet.pg.restart();
    settle();
    f.login(USER, &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn an_address_that_never_answers_is_given_up_at_the_deadline() {
    let fleet = Fleet::start();
    let (_hole, hole) = black_hole();
    let config = fleet
        .host_config("host_a", "db_timeout_ms = 700\n")
        .replace(&fleet.address(), &hole);
    let f = Fixture::with_config("", &config);
    let (out, lines, took) = timed(&f, &["000000"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    logged_line(
        &lines,
        &[
            "no usable server within 700 ms",
            "no answer in time while in the TLS",
        ],
    );
    // 700 ms, and the process around it (start, libpam, the module, syslog in a namespace).
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_millis(700 + 1500), "{took:?}");
}

#[test]
#[ignore = "needs root"]
fn addresses_are_tried_in_order_and_a_read_only_server_is_passed_over() {
    let fleet = Fleet::start();
    let e = fleet.enroll(USER);
    // A second server with the same CA, read-only for everyone: a standby as the module
    // sees one.
    let standby = Postgres::start();
    standby.install();
    standby.login_role("host_a", &["ivmfa_host"]);
    let (crt, key) = fleet.certs.server("standby", "IP:127.0.0.1");
    standby.enable_tls((&crt, &key), &fleet.certs.ca(), HBA_CERT);
    standby.sql(
        SUPERUSER,
        DATABASE,
        "ALTER DATABASE ivmfa SET default_transaction_read_only = on",
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let standby_addr = format!("127.0.0.1:{}", standby.port);
    let config = fleet.host_config("host_a", "").replace(
        &format!("[\"{}\"]", fleet.address()),
        &format!(
            "[\"{closed}\", \"{standby_addr}\", \"{}\"]",
            fleet.address()
        ),
    );
    let f = Fixture::with_config("", &config);
    settle();
    let (out, lines) = f.login_logged(USER, &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert!(!lines.iter().any(|l| l.contains("denied")), "{lines:#?}");
    // Only the standby and the refused port: nothing to use.
    let config = config.replace(&format!(", \"{}\"]", fleet.address()), "]");
    let g = Fixture::with_config("", &config);
    let (out, lines) = g.login_logged(USER, &[&code(&e, 1)]);
    out.assert("PAM_SERVICE_ERR");
    let line = logged_line(&lines, &["read-only", "Connection refused"]);
    assert!(line.contains(&standby_addr), "{line}");
}

#[test]
#[ignore = "needs root"]
fn a_server_certificate_not_from_the_pinned_ca_or_not_for_the_address_is_refused() {
    let fleet = Fleet::start();
    fleet.enroll(USER);
    // The pinned CA is another one.
    let other = Certs::new("other");
    let config = fleet.host_config("host_a", "").replace(
        &fleet.certs.ca().display().to_string(),
        &other.ca().display().to_string(),
    );
    let f = Fixture::with_config("", &config);
    let (out, lines, _) = timed(&f, &["000000"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    logged_line(&lines, &["invalid peer certificate", "UnknownIssuer"]);
    // The right CA, but a certificate for another address.
    let (crt, key) = fleet
        .certs
        .server("elsewhere", "IP:192.0.2.80,DNS:localhost");
    fleet
        .pg
        .enable_tls((&crt, &key), &fleet.certs.ca(), HBA_CERT);
    let g = fleet.fixture("host_a", "", "");
    let (out, lines, _) = timed(&g, &["000000"]);
    out.assert("PAM_SERVICE_ERR");
    logged_line(
        &lines,
        &[
            "invalid peer certificate",
            "not valid for name \"127.0.0.1\"",
        ],
    );
}

#[test]
#[ignore = "needs root"]
fn an_unknown_schema_version_is_refused_with_a_clear_line() {
    let fleet = Fleet::start();
    let f = fleet.fixture("host_a", "", "");
    fleet.enroll(USER);
    fleet.superuser("UPDATE ivmfa.meta SET schema_version = 99 RETURNING schema_version");
    let (out, lines, _) = timed(&f, &["000000"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    logged_line(
        &lines,
        &["ivmfa schema version 99", "does not know (it knows 1)"],
    );
}

#[test]
#[ignore = "needs root"]
fn break_glass_passes_at_the_console_only() {
    let fleet = Fleet::start();
    // daemon's primary group is daemon; bin is not in it.
    let f = fleet.fixture("host_a", "", "break_glass_group = \"daemon\"\n");
    fleet.enroll(USER);
    // While the database answers, nobody is waved through.
    on_tty(&f, USER, "tty1", &["000000"])
        .0
        .assert("PAM_AUTH_ERR");
    fleet.pg.stop();
    let (out, lines) = on_tty(&f, USER, "tty1", &[]);
    out.assert("PAM_SUCCESS");
    let line = logged_line(&lines, &["break-glass", "break_glass_group daemon"]);
    assert!(
        line.starts_with("<83>"),
        "logged at err (authpriv.err): {line}"
    );
    // Every spelling of a local terminal: a virtual console, a serial line, the system
    // console, a local X display.
    for tty in [
        "/dev/tty2",
        "ttyS0",
        "/dev/ttyS1",
        "console",
        "/dev/console",
        ":0",
    ] {
        on_tty(&f, USER, tty, &[]).0.assert("PAM_SUCCESS");
    }
    // Root with no remote host is not enough: a network service running as root that sets
    // no PAM_RHOST (OpenVPN's PAM plugin, FreeRADIUS) sets no terminal either, and a
    // pseudo-terminal may be anyone's.
    f.login(USER, &[])
        .assert("PAM_SERVICE_ERR")
        .assert_said(UNAVAILABLE);
    for tty in [
        "pts/3",
        "/dev/pts/3",
        "tty",
        "ttyX1",
        "tty1 ",
        "host:0",
        "openvpn",
    ] {
        let (out, lines) = on_tty(&f, USER, tty, &[]);
        out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
        assert!(
            !lines.iter().any(|l| l.contains("break-glass")),
            "{tty}: {lines:#?}"
        );
    }
    let mut args = f.auth_args(USER, &[]);
    args.extend(["--rhost", "192.0.2.5", "--tty", "tty1"].map(String::from));
    f.run(args)
        .assert("PAM_SERVICE_ERR")
        .assert_said(UNAVAILABLE);
    on_tty(&f, "bin", "tty1", &[])
        .0
        .assert("PAM_SERVICE_ERR")
        .assert_said(UNAVAILABLE);
}

/// Break-glass is for a database no one can reach, not for one that answers badly: a
/// database that is up but slow, or that gives an answer the module cannot use, denies
/// even a member at the console. Otherwise root on any host could open every console: by
/// holding a user's row (leaving a `submit` of its own open) it makes this host's
/// statement miss the deadline.
#[test]
#[ignore = "needs root"]
fn break_glass_does_not_open_while_the_database_answers() {
    let fleet = Fleet::start();
    let f = fleet.fixture(
        "host_a",
        "",
        "break_glass_group = \"daemon\"\ndb_timeout_ms = 1000\n",
    );
    fleet.enroll(USER);
    let mut holder = fleet.pg.session(SUPERUSER);
    holder.query("BEGIN");
    holder.query("SELECT name FROM ivmfa.account WHERE name = 'daemon' FOR UPDATE");
    let (out, lines) = on_tty(&f, USER, "tty1", &["000000"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    logged_line(
        &lines,
        &["denied: fleet database", "no answer within the deadline"],
    );
    assert!(
        !lines.iter().any(|l| l.contains("break-glass")),
        "{lines:#?}"
    );
    holder.query("ROLLBACK");
    drop(holder);

    // A hardware token whose counter the database does not keep: its codes are refused
    // until an administrator resyncs it, and that is no way in without one.
    let g = fleet.fixture("host_a", "", "break_glass_group = \"bin\"\n");
    let hex: String = random_secret()
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        fleet.admin(&format!(
            "SELECT verdict FROM ivmfa_api.admin_enroll_key('bin', '\\x{hex}'::bytea, 'hotp', \
             6, 'SHA1', true)"
        )),
        "ok"
    );
    assert_eq!(
        fleet.admin("SELECT verdict FROM ivmfa_api.admin_enroll_unconfirmed('bin', 1)"),
        "enrolled"
    );
    fleet.superuser("DELETE FROM ivmfa.token_counter WHERE name = 'bin' RETURNING 1");
    let (out, lines) = on_tty(&g, "bin", "tty1", &["123456"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    logged_line(&lines, &["denied: fleet database", "no counter"]);
    assert!(
        !lines.iter().any(|l| l.contains("break-glass")),
        "{lines:#?}"
    );

    // A schema version the module does not know: the database answered.
    fleet.superuser("UPDATE ivmfa.meta SET schema_version = 99 RETURNING schema_version");
    let (out, lines) = on_tty(&f, USER, "tty1", &[]);
    out.assert("PAM_SERVICE_ERR");
    logged_line(&lines, &["denied: fleet database", "schema version 99"]);
}

/// An address that never answers gets its share of the deadline, not all of it: the next
/// address is still tried.
#[test]
#[ignore = "needs root"]
fn an_address_that_never_answers_does_not_stop_failover() {
    let fleet = Fleet::start();
    let e = fleet.enroll(USER);
    let (_hole, hole) = black_hole();
    let config = fleet
        .host_config("host_a", "db_timeout_ms = 2000\n")
        .replace(
            &format!("[\"{}\"]", fleet.address()),
            &format!("[\"{hole}\", \"{}\"]", fleet.address()),
        );
    let f = Fixture::with_config("", &config);
    settle();
    let (out, lines, took) = timed(&f, &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert!(!lines.iter().any(|l| l.contains("denied")), "{lines:#?}");
    // Two rounds, each giving the silent address half of its 2 s, then the next at once.
    assert!(took >= Duration::from_millis(2 * 1000), "{took:?}");
    assert!(took < Duration::from_millis(2 * 2000 + 1500), "{took:?}");
}

/// A host's failures, grace periods and audit rows are its role's: a pooler that logs every
/// host in as one role of its own (PgBouncer's `user=` on the database line) is refused,
/// while PgBouncer with transaction pooling that keeps the host's role works.
#[test]
#[ignore = "needs root"]
fn a_pooler_that_runs_the_session_as_another_role_is_refused() {
    let fleet = Fleet::start();
    let e = fleet.enroll(USER);
    fleet.pg.login_role("host_pool", &["ivmfa_host"]);
    let bouncer = Bouncer::start(&fleet, "host_pool");
    let through = |role: &str| {
        Fixture::with_config(
            "",
            &fleet
                .host_config(role, "")
                .replace(&fleet.address(), &bouncer.address()),
        )
    };
    let (out, lines) = through("host_a").login_logged(USER, &["000000"]);
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    logged_line(
        &lines,
        &[
            "connected as the role host_a, but the server runs the session as host_pool",
            "PgBouncer",
        ],
    );
    // The role it logs in as is the one asked for: PgBouncer is fine.
    settle();
    let (out, lines) = through("host_pool").login_logged(USER, &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert!(
        !lines.iter().any(|l| l.contains("denied")),
        "{lines:#?}\n{}",
        bouncer.log()
    );
}

/// A login's second round resumes the TLS session of its first where the server offers one
/// (PgBouncer does, PostgreSQL does not), as the same role (`connect` checks the role the
/// server runs the session as).
#[test]
#[ignore = "needs root"]
fn a_second_round_through_pgbouncer_resumes_tls_as_the_same_host() {
    use ivmfa_fleet::{connect, Credentials, Owner, Settings, TlsSessions};
    let fleet = Fleet::start();
    let e = fleet.enroll(USER);
    let config = fleet.host_config("host_a", "");
    fleet.host_config("host_b", "");
    let bouncer = Bouncer::deployed(&fleet, &["host_a", "host_b"]);
    let settings = |role: &str, address: &str| {
        let (cert, key) = fleet.certs.client(role);
        Settings {
            addresses: vec![address.parse().unwrap()],
            database: "ivmfa".into(),
            user: role.into(),
            ca: fleet.certs.ca(),
            credentials: Credentials::Certificate { cert, key },
            owner: Owner::System,
            euid: 0,
            timeout: Duration::from_secs(5),
            application_name: "pam_ivmfa".into(),
        }
    };
    let resumed = |s: &Settings, tls: &TlsSessions| {
        let session = connect(s, tls).unwrap();
        let resumed = session.tls_resumed();
        session.close();
        resumed
    };

    let a = settings("host_a", &bouncer.address());
    let tls = TlsSessions::default();
    assert!(
        !resumed(&a, &tls),
        "the first connection is a full handshake"
    );
    assert!(resumed(&a, &tls), "PgBouncer resumes the second");
    assert!(resumed(&a, &tls));
    // Sessions are kept per address: another server starts afresh.
    let direct = settings("host_a", &fleet.address());
    assert!(!resumed(&direct, &tls));
    assert!(
        !resumed(&direct, &tls),
        "PostgreSQL offers no session to resume"
    );

    // Another role gets a handshake of its own, with its own certificate.
    let b = settings("host_b", &bouncer.address());
    assert!(!resumed(&b, &tls));
    assert!(resumed(&b, &tls));
    assert!(resumed(&a, &tls));

    // Through the module: the login's two rounds, the second resumed, accept a code.
    let f = Fixture::with_config("", &config.replace(&fleet.address(), &bouncer.address()));
    settle();
    let (out, lines) = f.login_logged(USER, &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert!(
        !lines.iter().any(|l| l.contains("denied")),
        "{lines:#?}\n{}",
        bouncer.log()
    );
}

/// Text the database sends for the user to read (a declined reset's reason) reaches the
/// terminal without control characters and no longer than an administrator may write it.
#[test]
#[ignore = "needs root"]
fn text_from_the_database_reaches_the_terminal_escaped_and_bounded() {
    let fleet = Fleet::start();
    let f = fleet.fixture("host_a", "", "");
    let e = fleet.enroll(USER);
    fleet.superuser(
        "INSERT INTO ivmfa.notice (name, time, host, reason) VALUES ('daemon', 0, 'host_a', \
         'Call the desk' || chr(27) || ']0;owned' || chr(7) || ' now' || repeat('x', 5000)) \
         RETURNING 1",
    );
    settle();
    let out = f.login(USER, &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    let shown = out
        .transcript
        .iter()
        .find(|l| l.contains("was declined: Call the desk"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        !shown.contains(['\x1b', '\x07']),
        "control characters reached the terminal: {shown:?}"
    );
    assert!(shown.contains("\\u{1b}]0;owned\\u{7} now"), "{shown:?}");
    assert!(shown.chars().count() < 700, "{}", shown.chars().count());
}

#[test]
#[ignore = "needs root"]
fn a_key_others_can_read_is_refused() {
    let fleet = Fleet::start();
    let f = fleet.fixture("host_a", "", "");
    fleet.enroll(USER);
    let (_, key) = fleet.certs.client("host_a");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (out, lines, _) = timed(&f, &["000000"]);
    out.assert("PAM_SERVICE_ERR");
    logged_line(&lines, &["host_a.key", "chmod go-rwx"]);
}

#[test]
#[ignore = "needs root"]
fn a_password_file_instead_of_a_certificate() {
    let fleet = Fleet::start();
    fleet.pg.login_role("host_pw", &["ivmfa_host"]);
    fleet.pg.sql(
        SUPERUSER,
        DATABASE,
        "ALTER ROLE host_pw PASSWORD 'a long host secret'",
    );
    fleet.pg.set_hba(&format!(
        "hostssl ivmfa host_pw 127.0.0.1/32 scram-sha-256\n{HBA_CERT}"
    ));
    let e = fleet.enroll(USER);
    let password = std::env::temp_dir().join(format!("ivmfa-pw-{}", std::process::id()));
    std::fs::write(&password, "a long host secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        "backend = \"postgres\"\ndb_addresses = [\"{}\"]\ndb_user = \"host_pw\"\n\
         db_ca = \"{}\"\ndb_password_file = \"{}\"\n",
        fleet.address(),
        fleet.certs.ca().display(),
        password.display()
    );
    let f = Fixture::with_config("", &config);
    settle();
    f.login(USER, &[&code(&e, 0)]).assert("PAM_SUCCESS");
    std::fs::write(&password, "not the password\n").unwrap();
    let (out, lines, _) = timed(&f, &[&code(&e, 1)]);
    out.assert("PAM_SERVICE_ERR");
    logged_line(&lines, &["password authentication failed"]);
    let _ = std::fs::remove_file(&password);
}

/// What the admin CLI builds on: `connect` as an administrator, with the password from a
/// libpq password file, or a client certificate.
#[test]
#[ignore = "needs root"]
fn an_administrator_connects_with_pgpass_or_a_certificate() {
    use ivmfa_fleet::{connect, Credentials, Owner, Settings, Type};
    let fleet = Fleet::start();
    fleet.pg.sql(
        SUPERUSER,
        DATABASE,
        "ALTER ROLE admin PASSWORD 'admin secret'",
    );
    fleet.pg.set_hba(&format!(
        "hostssl ivmfa admin 127.0.0.1/32 scram-sha-256\n{HBA_CERT}"
    ));
    let dir = std::env::temp_dir().join(format!("ivmfa-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pgpass = dir.join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "# mine\n127.0.0.1:{}:ivmfa:admin:admin secret\n",
            fleet.pg.port
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let settings = Settings {
        addresses: vec![fleet.address().parse().unwrap()],
        database: "ivmfa".into(),
        user: "admin".into(),
        ca: fleet.certs.ca(),
        credentials: Credentials::PgPass(pgpass.clone()),
        // Files in the administrator's home are theirs alone (here root is the administrator).
        owner: Owner::User(0),
        euid: 0,
        timeout: Duration::from_secs(5),
        application_name: "ivmfa-enroll".into(),
    };
    let mut s = connect(&settings, &Default::default()).unwrap();
    assert_eq!(s.schema_version(), 1);
    let rows = s
        .query(
            "SELECT verdict FROM ivmfa_api.admin_configure($1, $2)",
            &[(&"max_failures", Type::TEXT), (&"5", Type::TEXT)],
        )
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "set");
    s.close();
    // Group-readable: refused, as libpq ignores such a file.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = connect(&settings, &Default::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("chmod go-rwx"), "{err}");
    // A client certificate for the admin role works as well.
    fleet.pg.set_hba(HBA_CERT);
    let (cert, key) = fleet.certs.client("admin");
    let s = connect(
        &Settings {
            credentials: Credentials::Certificate { cert, key },
            owner: Owner::System,
            ..settings
        },
        &Default::default(),
    )
    .unwrap();
    s.close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The module's tokio runtime lives on the login's thread: many fleet logins in one
/// threaded process leave no thread and no descriptor behind.
#[test]
#[ignore = "needs root"]
fn fleet_logins_start_no_thread_and_leak_no_descriptor() {
    let fleet = Fleet::start();
    let f = fleet.fixture("host_a", "", "");
    fleet.enroll(USER);
    fleet.configure("max_failures", "1000");
    fleet.configure("max_failures_per_user", "10000");
    let mut args = f.auth_args(USER, &["000000"]);
    args.extend(["--repeat".to_string(), "30".to_string()]);
    let out = std::process::Command::new(driver())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("result: PAM_AUTH_ERR x30"), "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .to_owned()
    };
    let (threads, fds) = (line("threads:"), line("fds:"));
    let same = |l: &str| {
        let (a, b) = l.split_once(':').unwrap().1.split_once("->").unwrap();
        a.trim() == b.trim()
    };
    assert!(same(&threads), "{threads}");
    assert!(same(&fds), "{fds}");
}

/// A hardware token enrolled in the database: its counter is the database's, shared by the
/// hosts; a code for a counter passed is told as the file store tells it.
#[test]
#[ignore = "needs root"]
fn a_hardware_token_is_judged_by_its_counter_in_the_database() {
    let fleet = Fleet::start();
    let a = fleet.fixture("host_a", "", "");
    let b = fleet.fixture("host_b", "", "");
    let key = random_secret();
    let token = ivmfa_core::enrollment::Enrollment::hotp(key.clone(), 0);
    let hex: String = key.expose().iter().map(|b| format!("{b:02x}")).collect();
    for (sql, verdict) in [
        (
            format!(
                "SELECT verdict FROM ivmfa_api.admin_enroll_key('{USER}', '\\x{hex}'::bytea, \
                 'hotp', 6, 'SHA1', true)"
            ),
            "ok",
        ),
        (
            format!("SELECT verdict FROM ivmfa_api.admin_enroll_unconfirmed('{USER}', 1)"),
            "enrolled",
        ),
    ] {
        assert_eq!(fleet.admin(&sql), verdict, "{sql}");
    }
    let press = |n: u64| ivmfa_core::hotp::code_at(&token, n).unwrap().to_string();
    a.login(USER, &[&press(0)]).assert("PAM_SUCCESS");
    b.login(USER, &[&press(0)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Press the button on your token for a new code");
    // Presses that never reached a login: within the window, accepted, and the ones before
    // are used with it.
    b.login(USER, &[&press(4)]).assert("PAM_SUCCESS");
    a.login(USER, &[&press(3)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Press the button");
    a.login(USER, &[&press(5)]).assert("PAM_SUCCESS");
}

/// Grace periods are kept per user, address and host role: a code through one host earns
/// nothing on another (a compromised host could otherwise mint grace for every host), and
/// the fleet's `grace_period_max` caps what a host asks for.
#[test]
#[ignore = "needs root"]
fn a_grace_period_earned_through_one_host_role_applies_only_there() {
    require_root("a grace period, given only to an application running as root");
    const HERE: &str = "192.0.2.1";
    const ASKED: &str = "prompt-hidden: Verification code";
    let fleet = Fleet::start();
    let a = fleet.fixture("host_a", "", "grace_period = 600\n");
    let b = fleet.fixture("host_b", "", "grace_period = 600\n");
    let e = fleet.enroll(USER);
    let skipped = |f: &Fixture| {
        let out = login_from(f, HERE, &[]);
        out.assert("PAM_SUCCESS");
        assert!(out.transcript.is_empty(), "{out:?}");
    };
    let asked = |f: &Fixture| {
        login_from(f, HERE, &[])
            .assert("PAM_CONV_ERR")
            .assert_said(ASKED);
    };
    settle();
    login_from(&a, HERE, &[&code(&e, 0)]).assert("PAM_SUCCESS");
    skipped(&a);
    // The same user from the same address through B: asked for a code.
    asked(&b);
    // B's own right code begins B's own period; A's stands.
    login_from(&b, HERE, &[&code(&e, 1)]).assert("PAM_SUCCESS");
    skipped(&b);
    skipped(&a);
    assert_eq!(
        fleet.superuser(
            "SELECT string_agg(host || ' ' || address, ',' ORDER BY host) FROM ivmfa.grace"
        ),
        "host_a 192.0.2.1,host_b 192.0.2.1"
    );
    // A wrong code through either host ends both: failures are the user's, fleet-wide.
    login_from(&b, "198.51.100.3", &["000000"]).assert("PAM_AUTH_ERR");
    asked(&a);
    asked(&b);

    // The fleet's grace_period_max caps the period a host asks for, and 0 turns it off: a
    // right code through A two minutes ago (the window's codes are spent).
    fleet.superuser(
        "INSERT INTO ivmfa.grace (name, host, address, at) VALUES ('daemon', 'host_a', \
         '192.0.2.1', extract(epoch FROM statement_timestamp())::bigint - 120) RETURNING 1",
    );
    skipped(&a);
    fleet.configure("grace_period_max", "60");
    asked(&a);
    fleet.configure("grace_period_max", "0");
    asked(&a);
    fleet.configure("grace_period_max", "86400");
    skipped(&a);
}
