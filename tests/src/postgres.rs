//! A real PostgreSQL server for the fleet tests, started by the test itself: Debian's
//! `postgresql` package, `initdb` and `pg_ctl` run as the `postgres` user (the server refuses
//! root), listening on 127.0.0.1 at a free port and on a socket in its own temporary
//! directory. Stopped and removed on drop. Tests talk to it with `psql`, one process per
//! script or a long-lived [`Session`].

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sshd::free_port;

/// The database the schema is installed in.
pub const DATABASE: &str = "ivmfa";
/// The superuser `initdb` makes.
pub const SUPERUSER: &str = "postgres";

/// The fleet schema, as `ivmfa-enroll` will install it.
pub fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ivmfa-enroll/sql/v1.sql")
}

/// The test-only additions: the role `ivmfa_clock` and the API at a chosen time.
pub fn test_clock_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ivmfa-enroll/sql/test-clock.sql")
}

/// The server's programs: `pg_config --bindir`, else the newest under /usr/lib/postgresql.
pub fn bindir() -> Option<PathBuf> {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let newest = || {
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, p)| p)
    };
    from_config
        .filter(|d| d.join("initdb").exists())
        .or_else(newest)
        .filter(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

/// For the fleet tests: root (the server runs as `postgres`, started through `runuser`) and
/// Debian's PostgreSQL. Asked for without them, the test fails here and says what is missing.
#[track_caller]
pub fn require_postgres(what: &str) {
    crate::require_root(what);
    assert!(
        bindir().is_some(),
        "{what} needs PostgreSQL's server programs (initdb, pg_ctl): apt-get install \
         postgresql (scripts/test.sh installs it)"
    );
    assert!(
        Command::new("psql").arg("--version").output().is_ok(),
        "{what} needs psql: apt-get install postgresql-client"
    );
    assert!(
        Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists(),
        "{what} needs runuser (util-linux)"
    );
}

/// What one psql run printed.
#[derive(Debug)]
pub struct Psql {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Psql {
    /// Everything the client was told, results and messages alike.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// A standby's replication slot on its primary.
    slot: Option<String>,
    /// Server settings after the suite's own (`-c name=value ...`): a later one wins.
    extra: String,
}

impl Postgres {
    /// initdb and start a fresh server; about half a second.
    pub fn start() -> Postgres {
        Postgres::start_with("")
    }

    /// As [`Postgres::start`], with server settings `extra` (`-c name=value ...`) after the
    /// suite's: the benchmark turns `fsync` back on, as a fleet runs.
    pub fn start_with(extra: &str) -> Postgres {
        require_postgres("the fleet tests");
        let mut server = Postgres::unstarted();
        server.extra = extra.to_owned();
        let init = server.as_postgres(
            "initdb",
            &[
                "--auth=trust",
                "--username",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
                &server.dir.join("data").display().to_string(),
            ],
        );
        assert!(init.status.success(), "initdb failed: {}", text(&init));
        server.start_on_a_free_port();
        server
    }

    /// A streaming standby of this server: `pg_basebackup` as `postgres` over the socket,
    /// with a replication slot (so the WAL it has not received yet is kept while it is
    /// down), started on a port of its own. Returns once this server sees it streaming.
    /// Stopped and removed on drop like any server; drop it before its primary.
    pub fn standby(&self) -> Postgres {
        static SLOTS: AtomicUsize = AtomicUsize::new(0);
        let slot = format!("ivmfa_standby_{}", SLOTS.fetch_add(1, Ordering::Relaxed));
        let mut standby = Postgres::unstarted();
        let backup = standby.as_postgres(
            "pg_basebackup",
            &[
                "-h",
                &self.dir.join("sock").display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-D",
                &standby.dir.join("data").display().to_string(),
                "--write-recovery-conf",
                "--create-slot",
                "--slot",
                &slot,
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        assert!(
            backup.status.success(),
            "pg_basebackup failed: {}",
            text(&backup)
        );
        standby.start_on_a_free_port();
        self.wait_streaming(&slot);
        standby.slot = Some(slot);
        standby
    }

    /// A standby's replication slot on its primary (for [`Postgres::wait_streaming`]).
    pub fn slot(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// Waits until the standby on replication slot `slot` streams from this server.
    pub fn wait_streaming(&self, slot: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let asked = format!(
            "SELECT count(*) FROM pg_catalog.pg_stat_replication AS r \
             JOIN pg_catalog.pg_replication_slots AS s ON s.active_pid = r.pid \
             WHERE s.slot_name = '{slot}' AND r.state = 'streaming'"
        );
        while self.sql(SUPERUSER, "postgres", &asked) != "1" {
            assert!(
                std::time::Instant::now() < deadline,
                "the standby on slot {slot} never streamed: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// A server directory (its socket directory inside), owned by `postgres`, nothing in it.
    fn unstarted() -> Postgres {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bindir().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "ivmfa-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sock")).unwrap();
        let uid = postgres_uid();
        for d in [dir.as_path(), &dir.join("sock")] {
            std::os::unix::fs::chown(d, Some(uid), None).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        Postgres {
            port: 0,
            dir,
            bin,
            slot: None,
            extra: String::new(),
        }
    }

    /// Starts the server in `data` on a port picked free.
    fn start_on_a_free_port(&mut self) {
        // A port picked free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            if self.pg_ctl_start(port).status.success() {
                self.port = port;
                return;
            }
        }
        panic!("PostgreSQL did not start: {}", self.log());
    }

    /// The server's command-line settings (`pg_ctl -o`).
    fn options(&self, port: u16) -> String {
        format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
             -c max_connections=60 -c fsync=off {}",
            self.dir.join("sock").display(),
            self.extra
        )
    }

    /// Creates the database and installs the fleet schema and the test clock.
    pub fn install(&self) {
        self.sql(
            SUPERUSER,
            "postgres",
            &format!(
                "CREATE DATABASE {DATABASE} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' \
                 TEMPLATE template0"
            ),
        );
        for script in [schema_path(), test_clock_path()] {
            let run = self.psql_file(SUPERUSER, &script);
            assert!(run.ok, "{} did not install: {run:#?}", script.display());
        }
    }

    /// Creates a login role that is a member of `groups`.
    pub fn login_role(&self, name: &str, groups: &[&str]) {
        let member = if groups.is_empty() {
            String::new()
        } else {
            format!(" IN ROLE {}", groups.join(", "))
        };
        self.sql(
            SUPERUSER,
            DATABASE,
            &format!("CREATE ROLE {name} LOGIN{member}"),
        );
    }

    /// Turns TLS on with `server` (a certificate and key the test made, see
    /// [`crate::fleet::Certs`]) and `ca` for client certificates, and replaces pg_hba.conf
    /// with `hba` after a line that keeps the test's own psql on the socket trusted. Takes
    /// effect at once (a reload); returns when new connections see it.
    pub fn enable_tls(&self, server: (&Path, &Path), ca: &Path, hba: &str) {
        let uid = postgres_uid();
        for (from, name, mode) in [
            (server.0, "server.crt", 0o644),
            (server.1, "server.key", 0o600),
            (ca, "client-ca.crt", 0o644),
        ] {
            let to = self.dir.join(name);
            fs::copy(from, &to).unwrap();
            std::os::unix::fs::chown(&to, Some(uid), None).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        }
        let data = self.dir.join("data");
        let mut conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display(),
            self.dir.join("client-ca.crt").display()
        ));
        fs::write(data.join("postgresql.conf"), conf).unwrap();
        self.set_hba(hba);
    }

    /// Replaces pg_hba.conf (after the lines trusting the socket, for the test's own psql and
    /// for a standby's replication) and reloads.
    pub fn set_hba(&self, hba: &str) {
        let path = self.dir.join("data/pg_hba.conf");
        fs::write(
            &path,
            format!("local all all trust\nlocal replication all trust\n{hba}\n"),
        )
        .unwrap();
        std::os::unix::fs::chown(&path, Some(postgres_uid()), None).unwrap();
        self.reload();
    }

    /// Reloads the configuration and waits until a new connection sees TLS on.
    pub fn reload(&self) {
        self.sql(SUPERUSER, "postgres", "SELECT pg_catalog.pg_reload_conf()");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.sql(SUPERUSER, "postgres", "SHOW ssl") != "on" {
            assert!(
                std::time::Instant::now() < deadline,
                "TLS did not come on: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // pg_hba.conf is read by the postmaster at the same reload; give it its moment.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    /// Stops the server (fast shutdown); it stays stopped until [`Postgres::restart`].
    pub fn stop(&self) {
        let out = self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.dir.join("data").display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) {
        let out = self.pg_ctl_start(self.port);
        assert!(out.status.success(), "pg_ctl start: {}", text(&out));
    }

    /// `pg_ctl start` of `data` on `port`, waiting until it takes connections.
    fn pg_ctl_start(&self, port: u16) -> Output {
        let options = self.options(port);
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.dir.join("data").display().to_string(),
                "-l",
                &self.dir.join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    fn as_postgres(&self, program: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn psql_command(&self, role: &str, database: &str) -> Command {
        let mut c = Command::new("psql");
        c.args(["-X", "-q", "-A", "-t", "-h"])
            .arg(self.dir.join("sock"))
            .args(["-p", &self.port.to_string(), "-U", role, "-d", database])
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .env("PGCONNECT_TIMEOUT", "10");
        c
    }

    /// Runs `script` as `role`, going on after errors; unaligned, tuples only.
    pub fn run(&self, role: &str, script: &str) -> Psql {
        self.run_in(role, DATABASE, script)
    }

    pub fn run_in(&self, role: &str, database: &str, script: &str) -> Psql {
        let mut child = self
            .psql_command(role, database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql");
        let mut stdin = child.stdin.take().unwrap();
        let script = script.to_owned();
        // Written from a thread: a long script and a long answer must not block each other.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(script.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Psql {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn psql_file(&self, role: &str, path: &Path) -> Psql {
        let out = self
            .psql_command(role, DATABASE)
            .args(["-v", "ON_ERROR_STOP=1", "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Psql {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `sql` as `role` and returns its output; any error fails the test.
    #[track_caller]
    pub fn sql(&self, role: &str, database: &str, sql: &str) -> String {
        let run = self.run_in(role, database, &format!("\\set ON_ERROR_STOP 1\n{sql};\n"));
        assert!(run.ok && run.stderr.is_empty(), "{sql}\n{run:#?}");
        run.stdout.trim_end().to_owned()
    }

    /// One value (first column of the first row) of `sql` run as `role` in the fleet database.
    #[track_caller]
    pub fn value(&self, role: &str, sql: &str) -> String {
        let out = self.sql(role, DATABASE, sql);
        out.lines().next().unwrap_or("").to_owned()
    }

    /// A psql process kept open, as `role`, for statements sent one after another.
    pub fn session(&self, role: &str) -> Session {
        static N: AtomicUsize = AtomicUsize::new(0);
        let errors = self.dir.join(format!(
            "session-{role}-{}.err",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = self
            .psql_command(role, DATABASE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&errors).unwrap())
            .spawn()
            .expect("psql");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
            errors,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.dir.join("data").display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A long-lived psql: [`Session::send`] a statement now, [`Session::receive`] its rows later,
/// so several sessions can be made to run statements at the same time.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    errors: PathBuf,
}

const END: &str = "@@ivmfa-end@@";

impl Session {
    pub fn send(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql};\n\\echo {END}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The rows the statement sent last printed (unaligned, `|` between columns).
    pub fn receive(&mut self) -> Vec<String> {
        let mut rows = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "psql ended: {}",
                fs::read_to_string(&self.errors).unwrap_or_default()
            );
            let line = line.trim_end_matches('\n');
            if line == END {
                return rows;
            }
            rows.push(line.to_owned());
        }
    }

    pub fn query(&mut self, sql: &str) -> Vec<String> {
        self.send(sql);
        self.receive()
    }

    /// What the server said on this session's standard error so far.
    pub fn errors(&self) -> String {
        fs::read_to_string(&self.errors).unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "\\q");
        let _ = self.child.wait();
    }
}

pub fn postgres_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no user postgres: apt-get install postgresql"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
