//! A real sshd on 127.0.0.1 and the real OpenSSH client, for end-to-end logins.
//!
//! sshd runs in a private mount namespace where /etc/pam.d, /etc/passwd, /etc/shadow and
//! /etc/group are test copies (with a test user added) and /run is a fresh tmpfs, so nothing
//! of the machine's own configuration or users is touched. The client answers
//! keyboard-interactive prompts through SSH_ASKPASS, by prompt text: the password, the code
//! the test put in a file, or — for set-up — the code of the QR code ssh just printed.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{driver, module_path, Fixture};

/// The sshd tier's prerequisites: root (a private mount namespace) and openssh-server.
pub fn require_sshd() {
    crate::require_root("sshd in a private mount namespace");
    assert!(
        std::path::Path::new("/usr/sbin/sshd").exists(),
        "openssh-server is needed for the sshd tier (scripts/test.sh installs it)"
    );
}

pub const USER: &str = "ivmfa-e2e";
pub const PASSWORD: &str = "correct horse battery staple";
/// The test user's uid and gid, to run a program as that user inside the private system.
pub const UID: u32 = 4242;

pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

/// Writes `path` with `text` and mode `mode`.
fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The module line for this fixture's store and config, plus `args`.
pub fn module_line(f: &Fixture, args: &str) -> String {
    format!(
        "auth required {} store={} config={} {args}",
        module_path().display(),
        f.store.display(),
        f.config.display()
    )
}

/// Prepares a private system under `f.dir/name` and returns the shell commands that, run in
/// a private mount namespace, put it in place: copies of /etc/passwd, /etc/shadow and
/// /etc/group with the test user (password [`PASSWORD`], home `f.dir/home`) added, a PAM
/// directory holding `services` (each with `auth` lines as given and permissive account,
/// session and password lines), and a fresh tmpfs on /run.
pub fn private_system(f: &Fixture, name: &str, services: &[(&str, &str)]) -> String {
    let dir = f.dir.join(name);
    let etc = dir.join("etc");
    let pam = dir.join("pam.d");
    for d in [&etc, &pam] {
        fs::create_dir_all(d).unwrap();
    }
    let home = f.dir.join("home");
    fs::create_dir_all(home.join(".ssh")).unwrap();
    std::os::unix::fs::chown(&home, Some(UID), Some(UID)).unwrap();

    let hash = Command::new("openssl")
        .args(["passwd", "-6", PASSWORD])
        .output()
        .expect("openssl makes the password hash");
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_owned();
    let add = |file: &str, line: String, mode: u32| {
        let mut text = fs::read_to_string(Path::new("/etc").join(file)).unwrap();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        write(&etc.join(file), &text, mode);
    };
    add(
        "passwd",
        format!("{USER}:x:{UID}:{UID}::{}:/bin/sh\n", home.display()),
        0o644,
    );
    add(
        "shadow",
        format!("{USER}:{hash}:19000:0:99999:7:::\n"),
        0o640,
    );
    add("group", format!("{USER}:x:{UID}:\n"), 0o644);

    for (service, auth) in services {
        write(
            &pam.join(service),
            &format!(
                "{auth}\naccount required pam_unix.so\nsession required pam_permit.so\n\
                 password required pam_deny.so\n"
            ),
            0o644,
        );
    }
    write(
        &pam.join("other"),
        "auth required pam_deny.so\naccount required pam_deny.so\n",
        0o644,
    );
    format!(
        "mount -t tmpfs -o mode=755 ivmfa-run /run\n\
         for f in passwd shadow group; do mount --bind {etc}/$f /etc/$f; done\n\
         mount --bind {pam} /etc/pam.d",
        etc = etc.display(),
        pam = pam.display()
    )
}

/// Gives the test user of the private system `name` (made by [`private_system`]) `password`
/// instead of [`PASSWORD`].
pub fn set_password(f: &Fixture, name: &str, password: &str) {
    let shadow = f.dir.join(name).join("etc/shadow");
    let hash = Command::new("openssl")
        .args(["passwd", "-6", password])
        .output()
        .expect("openssl makes the password hash");
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_owned();
    let text: String = fs::read_to_string(&shadow)
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix(&format!("{USER}:")) {
            Some(rest) => format!("{USER}:{hash}:{}\n", rest.split_once(':').unwrap().1),
            None => format!("{l}\n"),
        })
        .collect();
    write(&shadow, &text, 0o640);
}

impl Sshd {
    /// Starts sshd with `auth` as its PAM auth stack and `extra` appended to sshd_config.
    pub fn start(f: &Fixture, name: &str, auth: &str, extra: &str) -> Sshd {
        let setup = private_system(f, name, &[("sshd", auth)]);
        Sshd::spawn(f, name, &setup, extra)
    }

    /// Starts sshd in a private mount namespace prepared by `setup` (a shell script; see
    /// [`private_system`]), its files in the fixture's directory `name`, `extra` appended to
    /// its sshd_config.
    pub fn spawn(f: &Fixture, name: &str, setup: &str, extra: &str) -> Sshd {
        let dir = f.dir.join(name);
        let home = f.dir.join("home");
        let key = dir.join("host_ed25519");
        if !key.exists() {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status()
                .expect("ssh-keygen (openssh-client)")
                .success();
            assert!(ok);
        }
        let port = free_port();
        write(
            &dir.join("sshd_config"),
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {pid}\n\
                 UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
                 PermitRootLogin no\nStrictModes no\nLogLevel VERBOSE\n\
                 AuthorizedKeysFile {home}/.ssh/authorized_keys\nMaxStartups 100\n{extra}\n",
                key = key.display(),
                pid = dir.join("sshd.pid").display(),
                home = home.display(),
            ),
            0o644,
        );
        let log = fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Fixture::in_namespace(
            &format!("{setup}\nmkdir -m 755 /run/sshd"),
            Path::new("/usr/sbin/sshd"),
            &[
                "-D".into(),
                "-e".into(),
                "-f".into(),
                dir.join("sshd_config").display().to_string(),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sshd (openssh-server)");
        let server = Sshd { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The process id of sshd, to enter its namespace.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn login(&self, password: &str, code: &str, key: Option<&Path>) -> SshLogin {
        Client {
            dir: self.dir.clone(),
            port: self.port,
        }
        .login(password, code, key)
    }

    /// A key pair for the test user; the public half goes into authorized_keys.
    pub fn user_key(&self, f: &Fixture) -> PathBuf {
        let key = self.dir.join("user_ed25519");
        if !key.exists() {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            let public = fs::read_to_string(key.with_extension("pub")).unwrap();
            let auth = f.dir.join("home/.ssh/authorized_keys");
            write(&auth, &public, 0o644);
        }
        key
    }
}

/// The OpenSSH client, logging in to sshd on 127.0.0.1 at `port`; its files go in `dir`.
pub struct Client {
    pub dir: PathBuf,
    pub port: u16,
}

impl Client {
    /// Logs in as the test user and runs `echo logged-in`, answering the prompts with
    /// `password` and `code` (`@phone` scans the QR code ssh printed). `key`: also offer this
    /// private key.
    pub fn login(&self, password: &str, code: &str, key: Option<&Path>) -> SshLogin {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run = self.dir.join(format!("login-{n}"));
        fs::create_dir_all(&run).unwrap();
        let stderr = run.join("stderr");
        write(&run.join("password"), &format!("{password}\n"), 0o600);
        write(&run.join("code"), &format!("{code}\n"), 0o600);
        let askpass = run.join("askpass");
        write(
            &askpass,
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {run}/prompts\n\
                 printf '%s\\n' \"$1\" > {run}/shown\ncase \"$1\" in\n\
                 *assword*) cat {run}/password ;;\n\
                 *) if [ \"$(cat {run}/code)\" = @phone ]; then exec {driver} phone {run}/shown; \
                 else cat {run}/code; fi ;;\nesac\n",
                run = run.display(),
                driver = driver().display(),
            ),
            0o755,
        );
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"])
            .args(["-o", "GSSAPIAuthentication=no"]);
        match key {
            Some(k) => {
                cmd.args(["-i"]).arg(k).args(["-o", "IdentitiesOnly=yes"]);
            }
            None => {
                cmd.args(["-o", "PubkeyAuthentication=no"]);
            }
        }
        let out = cmd
            .arg(format!("{USER}@127.0.0.1"))
            .arg("echo logged-in")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .output()
            .expect("ssh (openssh-client)");
        SshLogin {
            ok: out.status.success() && String::from_utf8_lossy(&out.stdout).contains("logged-in"),
            stderr: fs::read_to_string(&stderr).unwrap_or_default(),
            prompts: fs::read_to_string(run.join("prompts")).unwrap_or_default(),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct SshLogin {
    /// The command ran: authentication succeeded.
    pub ok: bool,
    /// What ssh printed itself: messages sent after the last prompt arrive here.
    pub stderr: String,
    /// What askpass was shown, in order: ssh puts the module's messages (the QR code among
    /// them) before each prompt, as a terminal user sees them above it.
    pub prompts: String,
}
