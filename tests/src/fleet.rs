//! A fleet for the module to log in against: a PostgreSQL server of the test's own
//! ([`Postgres`]) with the schema installed and TLS on, a CA made with openssl that signed
//! the server's certificate (IP SAN 127.0.0.1) and one client certificate per host role, and
//! fixtures whose ivmfa.toml points the module at it. Administration goes through the
//! admin API as the role `admin`, as the CLI will.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ivmfa_core::enrollment::Enrollment;

use crate::postgres::{require_postgres, Postgres, SUPERUSER};
use crate::{now, random_secret, Fixture};

/// The pg_hba line of the fleet: every role over TLS on loopback, by client certificate.
pub const HBA_CERT: &str = "hostssl ivmfa all 127.0.0.1/32 cert";

/// A CA of the test's own, and the certificates it signs (ECDSA P-256), in one directory
/// owned by root: the module checks its files as it would /etc/ivmfa's.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Certs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ivmfa-certs-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let certs = Certs { dir };
        certs.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            &format!("/CN=ivmfa test {name}"),
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        certs.private("ca.key");
        certs
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A server certificate with `san` (`IP:127.0.0.1`); returns (certificate, key).
    pub fn server(&self, name: &str, san: &str) -> (PathBuf, PathBuf) {
        self.sign(
            name,
            &format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\n"),
        )
    }

    /// A client certificate for the role `role` (its common name), made once; returns
    /// (cert, key).
    pub fn client(&self, role: &str) -> (PathBuf, PathBuf) {
        let made = (
            self.dir.join(format!("{role}.crt")),
            self.dir.join(format!("{role}.key")),
        );
        if made.0.exists() && made.1.exists() {
            return made;
        }
        self.sign(role, "extendedKeyUsage=clientAuth\n")
    }

    fn sign(&self, name: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let ext = format!("{name}.ext");
        fs::write(
            self.dir.join(&ext),
            format!("basicConstraints=CA:false\n{extensions}"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        self.private(&key);
        (self.dir.join(crt), self.dir.join(key))
    }

    fn private(&self, name: &str) {
        fs::set_permissions(self.dir.join(name), fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The server, its CA, and the admin role `admin`.
pub struct Fleet {
    pub pg: Postgres,
    pub certs: Certs,
}

impl Fleet {
    /// A fresh server with the schema, TLS and certificate authentication.
    pub fn start() -> Fleet {
        Fleet::start_with("")
    }

    /// As [`Fleet::start`], with server settings `extra` ([`Postgres::start_with`]).
    pub fn start_with(extra: &str) -> Fleet {
        require_postgres("the fleet tier");
        let pg = Postgres::start_with(extra);
        pg.install();
        pg.login_role("admin", &["ivmfa_admin"]);
        let certs = Certs::new("fleet");
        let (crt, key) = certs.server("server", "IP:127.0.0.1");
        pg.enable_tls((&crt, &key), &certs.ca(), HBA_CERT);
        Fleet { pg, certs }
    }

    /// The server's address as `db_addresses` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.pg.port)
    }

    /// Makes the host role `role` (if new) and its client certificate; returns the
    /// ivmfa.toml lines that connect as it, then `extra`.
    pub fn host_config(&self, role: &str, extra: &str) -> String {
        let exists = self.pg.value(
            SUPERUSER,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
        );
        if exists == "0" {
            self.pg.login_role(role, &["ivmfa_host"]);
        }
        let (crt, key) = self.certs.client(role);
        format!(
            "backend = \"postgres\"\ndb_addresses = [\"{}\"]\ndb_user = \"{role}\"\n\
             db_ca = \"{}\"\ndb_cert = \"{}\"\ndb_key = \"{}\"\n{extra}",
            self.address(),
            self.certs.ca().display(),
            crt.display(),
            key.display()
        )
    }

    /// A fixture whose module logs in as the host role `role`.
    pub fn fixture(&self, role: &str, args: &str, extra_config: &str) -> Fixture {
        Fixture::with_config(args, &self.host_config(role, extra_config))
    }

    /// Runs `sql` as the administrator; its one value.
    pub fn admin(&self, sql: &str) -> String {
        self.pg.value("admin", sql)
    }

    /// Enrolls `user` with a fresh random key, as `ivmfa-enroll` will through the admin API.
    pub fn enroll(&self, user: &str) -> Enrollment {
        let secret = random_secret();
        let hex: String = secret.expose().iter().map(|b| format!("{b:02x}")).collect();
        let verdict = self.admin(&format!(
            "SELECT verdict FROM ivmfa_api.admin_provision('{user}', '\\x{hex}'::bytea, 6, \
             'SHA1', true)"
        ));
        assert_eq!(verdict, "enrolled");
        Enrollment::standard(secret, now())
    }

    /// A new set of `count` recovery codes for `user`, shown once.
    pub fn recovery_codes(&self, user: &str, count: usize) -> Vec<String> {
        let out = self.pg.sql(
            "admin",
            crate::postgres::DATABASE,
            &format!("SELECT code FROM ivmfa_api.admin_recovery_codes('{user}', {count})"),
        );
        out.lines().map(str::to_owned).collect()
    }

    pub fn approve(&self, user: &str) -> String {
        self.admin(&format!(
            "SELECT verdict FROM ivmfa_api.admin_reset_approve('{user}')"
        ))
    }

    pub fn deny(&self, user: &str, reason: &str) -> String {
        self.admin(&format!(
            "SELECT verdict FROM ivmfa_api.admin_reset_deny('{user}', '{}')",
            reason.replace('\'', "''")
        ))
    }

    pub fn configure(&self, setting: &str, value: &str) {
        let verdict = self.admin(&format!(
            "SELECT verdict FROM ivmfa_api.admin_configure('{setting}', '{value}')"
        ));
        assert_eq!(verdict, "set", "{setting} = {value}");
    }

    pub fn reset_pending(&self, user: &str) -> bool {
        self.admin(&format!(
            "SELECT count(*) FROM ivmfa_api.admin_reset_list() WHERE user_name = '{user}'"
        )) == "1"
    }

    /// Runs `sql` as the superuser (what no host or admin can do: the faults).
    pub fn superuser(&self, sql: &str) -> String {
        self.pg.value(SUPERUSER, sql)
    }
}

/// The key shown for typing in during a set-up in the login ("... instead: ABCD EFGH ..."),
/// as an enrollment: what a phone that scanned the QR code holds.
pub fn key_shown(transcript: &[String]) -> Option<Enrollment> {
    const SAID: &str = "Enter this key in the app instead: ";
    let text = transcript.join("\n");
    let after = &text[text.rfind(SAID)? + SAID.len()..];
    let key: String = after
        .lines()
        .next()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let secret = ivmfa_core::enrollment::Secret::from_base32(&key).ok()?;
    Some(Enrollment::standard(secret, 0))
}

/// A listening socket that never accepts: the kernel completes the TCP handshake, and then
/// nothing ever answers. Returns it (keep it alive) and its address.
pub fn black_hole() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// PgBouncer in front of the fleet's server, with transaction pooling and TLS to its clients
/// (a certificate of the fleet's CA for 127.0.0.1). It runs as `postgres` (it refuses root);
/// stopped when dropped. [`Bouncer::start`] is a misconfigured one, [`Bouncer::deployed`] the
/// one docs/fleet.md sets up.
pub struct Bouncer {
    pub port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

impl Bouncer {
    /// Logging in to the server as `role` whoever its client says it is (`user=` on its
    /// database line), over TLS with `role`'s certificate.
    pub fn start(fleet: &Fleet, role: &str) -> Bouncer {
        let (dir, port) = Bouncer::prepare(fleet);
        let (role_crt, role_key) = fleet.certs.client(role);
        fs::copy(role_crt, dir.join("role.crt")).unwrap();
        fs::copy(role_key, dir.join("role.key")).unwrap();
        let d = dir.display();
        fs::write(dir.join("users.txt"), "").unwrap();
        fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\nivmfa = host=127.0.0.1 port={pg} dbname=ivmfa user={role}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = any\nauth_file = {d}/users.txt\n\
                 pool_mode = transaction\n\
                 client_tls_sslmode = require\nclient_tls_ca_file = {d}/ca.crt\n\
                 client_tls_cert_file = {d}/server.crt\nclient_tls_key_file = {d}/server.key\n\
                 server_tls_sslmode = verify-ca\nserver_tls_ca_file = {d}/ca.crt\n\
                 server_tls_cert_file = {d}/role.crt\nserver_tls_key_file = {d}/role.key\n\
                 logfile = {d}/pgbouncer.log\n",
                pg = fleet.pg.port
            ),
        )
        .unwrap();
        Bouncer::launch(fleet, dir, port)
    }

    /// As docs/fleet.md deploys it: each host's client certificate checked against the
    /// fleet's CA, its common name the role PgBouncer logs in to the server as (`auth_type =
    /// cert`; PgBouncer 1.18 lets in only the roles of its auth_file, here `roles`), and on
    /// to the server over its Unix socket, which the suite's pg_hba.conf trusts.
    pub fn deployed(fleet: &Fleet, roles: &[&str]) -> Bouncer {
        let (dir, port) = Bouncer::prepare(fleet);
        let d = dir.display();
        let users: String = roles.iter().map(|r| format!("\"{r}\" \"\"\n")).collect();
        fs::write(dir.join("users.txt"), users).unwrap();
        fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\nivmfa = host={sock} port={pg} dbname=ivmfa\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\npool_mode = transaction\n\
                 max_client_conn = 200\ndefault_pool_size = 20\n\
                 auth_type = cert\nauth_file = {d}/users.txt\n\
                 client_tls_sslmode = verify-full\nclient_tls_ca_file = {d}/ca.crt\n\
                 client_tls_cert_file = {d}/server.crt\nclient_tls_key_file = {d}/server.key\n\
                 client_tls_protocols = secure\nserver_tls_sslmode = disable\n\
                 logfile = {d}/pgbouncer.log\n",
                sock = fleet.pg.dir.join("sock").display(),
                pg = fleet.pg.port
            ),
        )
        .unwrap();
        Bouncer::launch(fleet, dir, port)
    }

    /// A directory of its own with the CA and a server certificate (IP SAN 127.0.0.1), and
    /// a port.
    fn prepare(fleet: &Fleet) -> (PathBuf, u16) {
        crate::require_root("PgBouncer");
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ivmfa-bouncer-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (server_crt, server_key) = fleet.certs.server("bouncer", "IP:127.0.0.1");
        for (from, name) in [
            (fleet.certs.ca(), "ca.crt"),
            (server_crt, "server.crt"),
            (server_key, "server.key"),
        ] {
            fs::copy(from, dir.join(name)).unwrap();
        }
        (dir, crate::sshd::free_port())
    }

    /// Starts PgBouncer on the `pgbouncer.ini` in `dir`, as `postgres`; returns once it
    /// listens.
    fn launch(fleet: &Fleet, dir: PathBuf, port: u16) -> Bouncer {
        let program = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("needs PgBouncer: apt-get install pgbouncer (scripts/test.sh installs it)")
            });
        let uid = crate::postgres::postgres_uid();
        for entry in fs::read_dir(&dir).unwrap() {
            std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), None).unwrap();
        }
        std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
        use std::os::unix::process::CommandExt;
        let gid = std::fs::metadata(fleet.pg.dir.join("data")).unwrap();
        let child = Command::new(program)
            .arg(dir.join("pgbouncer.ini"))
            .uid(uid)
            .gid(std::os::unix::fs::MetadataExt::gid(&gid))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut bouncer = Bouncer { port, dir, child };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("PgBouncer ended ({status}): {}", bouncer.log());
            }
            assert!(
                std::time::Instant::now() < until,
                "PgBouncer did not start: {}",
                bouncer.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bouncer
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its process, for the benchmark's CPU count.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
