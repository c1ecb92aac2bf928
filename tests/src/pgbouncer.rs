//! PgBouncer in front of a test's [`Postgres`], as docs/fleet.md sets it up: transaction
//! pooling, TLS to the clients with a certificate of the test's CA (IP SAN 127.0.0.1) and
//! their client certificates checked against it (`auth_type = cert`: the common name is the
//! role), and on to the server over its Unix socket, which the suite's pg_hba.conf trusts.
//! Debian's `pgbouncer` package (1.18 in Debian 12); it runs as `postgres` (it refuses root)
//! and is stopped on drop.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::Certs;
use crate::postgres::{Postgres, DATABASE};
use crate::sshd::free_port;

pub const PROGRAM: &str = "/usr/sbin/pgbouncer";

pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer for `pg`'s fleet database, its TLS certificate signed by `certs`,
    /// letting in the roles `roles`. Returns when it accepts connections.
    pub fn start(pg: &Postgres, certs: &Certs, roles: &[&str]) -> PgBouncer {
        crate::require_root("PgBouncer");
        assert!(
            Path::new(PROGRAM).exists(),
            "no {PROGRAM}: apt-get install pgbouncer"
        );
        let dir = pg.dir.join("pgbouncer");
        fs::create_dir_all(&dir).unwrap();
        let (crt, key) = certs.server("pgbouncer", "IP:127.0.0.1");
        let uid = postgres_uid(pg);
        for (from, name, mode) in [
            (crt.as_path(), "server.crt", 0o644),
            (key.as_path(), "server.key", 0o600),
            (certs.ca().as_path(), "ca.crt", 0o644),
        ] {
            let to = dir.join(name);
            fs::copy(from, &to).unwrap();
            std::os::unix::fs::chown(&to, Some(uid), None).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        }
        // auth_type = cert takes the role from the certificate, but PgBouncer 1.18 lets in
        // only the roles its auth_file names ("no such user" otherwise); no password, as
        // the server trusts its socket.
        let users: String = roles.iter().map(|r| format!("\"{r}\" \"\"\n")).collect();
        fs::write(dir.join("userlist.txt"), users).unwrap();
        let port = free_port();
        let d = dir.display();
        let config = format!(
            "[databases]\n\
             {DATABASE} = host={sock} port={pgport} dbname={DATABASE}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             pool_mode = transaction\n\
             max_client_conn = 200\n\
             default_pool_size = 20\n\
             auth_type = cert\n\
             auth_file = {d}/userlist.txt\n\
             client_tls_sslmode = verify-full\n\
             client_tls_cert_file = {d}/server.crt\n\
             client_tls_key_file = {d}/server.key\n\
             client_tls_ca_file = {d}/ca.crt\n\
             client_tls_protocols = secure\n\
             server_tls_sslmode = disable\n\
             logfile = {d}/pgbouncer.log\n\
             pidfile = {d}/pgbouncer.pid\n",
            sock = pg.dir.join("sock").display(),
            pgport = pg.port,
        );
        fs::write(dir.join("pgbouncer.ini"), config).unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
        for f in ["pgbouncer.ini", "userlist.txt"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), None).unwrap();
        }
        // `-u`: PgBouncer drops to `postgres` itself, so the child is PgBouncer and can be
        // stopped by its own pid.
        let child = Command::new(PROGRAM)
            .args(["-q", "-u", "postgres"])
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pgbouncer");
        let mut bouncer = PgBouncer { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer ended ({status}): {}", bouncer.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bouncer
    }

    /// Its address as `db_addresses` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postgres_uid(pg: &Postgres) -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The server's directory belongs to the user it runs as.
    fs::metadata(&pg.dir).unwrap().uid()
}
