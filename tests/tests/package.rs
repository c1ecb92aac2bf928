//! The .deb as a sysadmin uses it: install with dpkg, enable the pam-auth-update profile,
//! enroll with the installed ivmfa-enroll, log in through sshd with the installed module,
//! remove and purge, and nothing is left behind. Also lintian, the .rpm's file list, the
//! module's place in both packages, and packaging/install.sh installing and uninstalling.
//!
//! The packages are built by scripts/test.sh (packaging/build-packages.sh) before the tests
//! run. PAM changes happen only inside a private mount namespace over a copy of /etc/pam.d;
//! the package and install.sh's files are really installed and removed, so never run this
//! tier on a machine that uses ivmfa.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use ivmfa_tests::sshd::{Sshd, PASSWORD, USER};
use ivmfa_tests::*;

fn built(dir: &str, ext: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir);
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn available(what: &str, path: Option<&PathBuf>) {
    require_root("installing a package");
    was_built(what, path);
}

/// These tests are #[ignore]d unless asked for; asked for, a missing package is a failure.
fn was_built(what: &str, path: Option<&PathBuf>) {
    assert!(
        path.is_some() && Path::new("/usr/bin/dpkg").exists(),
        "{what} was not built: run packaging/build-packages.sh (scripts/test.sh does)"
    );
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh").args(["-ec", script]).output().unwrap()
}

#[track_caller]
fn run_ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .deb and install.sh write the same module file: one of them at a time.
fn machine() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::new(());
    MACHINE.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Debian's multiarch tuple of this machine, e.g. x86_64-linux-gnu.
fn multiarch() -> String {
    run_ok("dpkg-architecture -qDEB_HOST_MULTIARCH")
        .trim()
        .to_owned()
}

/// The directory libpam loads modules from, as the system's own libpam-modules shows it:
/// where its pam_unix.so is, symbolic links (/lib -> usr/lib) resolved.
fn pam_module_dir() -> PathBuf {
    let listed = run_ok("dpkg-query -L \"libpam-modules:$(dpkg --print-architecture)\"");
    let unix = listed
        .lines()
        .find(|l| l.ends_with("/security/pam_unix.so"))
        .unwrap_or_else(|| panic!("no pam_unix.so in libpam-modules:\n{listed}"));
    Path::new(unix).parent().unwrap().canonicalize().unwrap()
}

fn installed() -> [String; 6] {
    [
        format!("/lib/{}/security/pam_ivmfa.so", multiarch()),
        "/usr/sbin/ivmfa-enroll".into(),
        "/etc/ivmfa/ivmfa.toml".into(),
        "/usr/share/pam-configs/ivmfa".into(),
        "/usr/lib/tmpfiles.d/ivmfa.conf".into(),
        "/usr/share/man/man8/pam_ivmfa.8.gz".into(),
    ]
}

#[test]
#[ignore = "needs root"]
fn deb_installs_enables_logs_in_and_purges_clean() {
    let deb = built("debian", "deb");
    available("the .deb", deb.as_ref());
    let deb = deb.unwrap();
    let _machine = machine();
    // A leftover from an earlier, interrupted run.
    let _ = sh("dpkg --purge ivmfa >/dev/null 2>&1");
    run_ok(&format!("dpkg -i {}", deb.display()));
    for path in installed() {
        assert!(Path::new(&path).exists(), "{path} not installed");
    }
    // install.sh leaves the package's files alone.
    let uninstall = install_sh(&["--uninstall"], None);
    assert_eq!(uninstall.status.code(), Some(3), "{uninstall:?}");
    assert!(
        String::from_utf8_lossy(&uninstall.stderr).contains("the ivmfa package is installed"),
        "{uninstall:?}"
    );
    for path in installed() {
        assert!(Path::new(&path).exists(), "install.sh removed {path}");
    }
    let store = fs::metadata("/var/lib/ivmfa").expect("the store is created");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&store.permissions()) & 0o777,
        0o700
    );
    let profile = fs::read_to_string("/usr/share/pam-configs/ivmfa").unwrap();
    assert!(profile.contains("Default: no"), "{profile}");
    // Installing enabled nothing: the machine's PAM files do not mention the module.
    let common = fs::read_to_string("/etc/pam.d/common-auth").unwrap();
    assert!(!common.contains("pam_ivmfa"), "{common}");

    // In a private namespace: enable the profile, enroll a user with the installed tool,
    // and serve SSH with Debian's own sshd PAM file.
    let f = Fixture::new("");
    let t = f.dir.display().to_string();
    let system = ivmfa_tests::sshd::private_system(&f, "pkg", &[]);
    let setup = format!(
        "cp -a /etc/pam.d/. {t}/pkg/pam.d/\n\
         {system}\n\
         mkdir -p {t}/varlibpam && cp -a /var/lib/pam/. {t}/varlibpam/\n\
         mount --bind {t}/varlibpam /var/lib/pam\n\
         pam-auth-update --enable ivmfa\n\
         cp /etc/pam.d/common-auth {t}/common-auth.enabled\n\
         /usr/sbin/ivmfa-enroll enroll {USER} --secret {TEST_KEY} --no-confirm > {t}/enroll.out"
    );
    // The private /etc/pam.d starts as a copy of the machine's, so sshd runs Debian's own
    // sshd stack, with the profile that pam-auth-update enabled in the copy.
    let sshd = Sshd::spawn(
        &f,
        "pkg",
        &setup,
        "AuthenticationMethods keyboard-interactive",
    );
    let enabled = fs::read_to_string(f.dir.join("common-auth.enabled")).unwrap();
    let unix = enabled
        .find("pam_unix.so")
        .expect("pam_unix in common-auth");
    let ivmfa = enabled
        .find("pam_ivmfa.so")
        .expect("the profile is enabled");
    assert!(unix < ivmfa, "the password step comes first:\n{enabled}");
    // Services that can ask for no more than a password (IMAP, CUPS) step aside, as the
    // installed config file says; every other one, polkit included, is judged.
    let config = fs::read_to_string("/etc/ivmfa/ivmfa.toml").unwrap();
    assert!(
        config.contains("\nskip_services = [\"dovecot\""),
        "{config}"
    );
    assert!(fs::read_to_string(f.dir.join("enroll.out"))
        .unwrap()
        .contains("enrolled"));

    let e = ivmfa_core::enrollment::Enrollment::standard(
        ivmfa_core::enrollment::Secret::from_base32(TEST_KEY).unwrap(),
        0,
    );
    settle();
    let good = sshd.login(PASSWORD, &code(&e, 0), None);
    assert!(good.ok, "{good:#?}\n{}", sshd.log());
    assert!(good.prompts.contains("Verification code"), "{good:#?}");
    let wrong = sshd.login(PASSWORD, &wrong_code(&e), None);
    assert!(!wrong.ok);

    // Removing the package inside that namespace takes the module out of its PAM stack.
    let pid = sshd.pid();
    run_ok(&format!("nsenter -t {pid} -m dpkg -r ivmfa"));
    let after = run_ok(&format!("nsenter -t {pid} -m cat /etc/pam.d/common-auth"));
    assert!(
        !after.contains("pam_ivmfa"),
        "a PAM line points at the removed module:\n{after}"
    );
    drop(sshd);

    run_ok("dpkg --purge ivmfa");
    let leftovers = ["/var/lib/ivmfa".into(), "/etc/ivmfa".into()];
    for path in installed().iter().chain(&leftovers) {
        assert!(!Path::new(path).exists(), "{path} left behind after purge");
    }
    let status = sh("dpkg -s ivmfa");
    assert!(!status.status.success(), "still known to dpkg");
    let machine = fs::read_to_string("/etc/pam.d/common-auth").unwrap();
    assert!(!machine.contains("pam_ivmfa"));
}

#[test]
#[ignore = "needs root"]
fn lintian_finds_no_errors() {
    let deb = built("debian", "deb");
    available("the .deb", deb.as_ref());
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(deb.unwrap())
        .output()
        .expect("lintian is needed");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "lintian errors:\n{text}");
    assert!(!text.lines().any(|l| l.starts_with("E:")), "{text}");
}

#[test]
#[ignore = "needs root"]
fn rpm_holds_the_module_in_libdir_security() {
    let rpm = built("generate-rpm", "rpm");
    available("the .rpm", rpm.as_ref());
    let files = run_ok(&format!("rpm -qlp {}", rpm.unwrap().display()));
    // %{_libdir}: lib64 on every 64-bit architecture rpm-based systems ship.
    let libdir = if cfg!(target_pointer_width = "64") {
        "lib64"
    } else {
        "lib"
    };
    let module = format!("/usr/{libdir}/security/pam_ivmfa.so");
    for path in [
        &*module,
        "/usr/sbin/ivmfa-enroll",
        "/etc/ivmfa/ivmfa.toml",
        "/usr/share/man/man1/ivmfa-enroll.1.gz",
        "/usr/share/man/man5/ivmfa.toml.5.gz",
        "/usr/share/man/man8/pam_ivmfa.8.gz",
    ] {
        assert!(
            files.lines().any(|l| l == path),
            "{path} not in the rpm:\n{files}"
        );
    }
}

/// The .deb's module sits in the multiarch directory of the architecture the package is
/// for, and that is the directory libpam on this machine loads modules from.
#[test]
#[ignore = "needs the packages built (packaging/build-packages.sh)"]
fn deb_puts_the_module_where_libpam_looks() {
    let deb = built("debian", "deb");
    was_built("the .deb", deb.as_ref());
    let deb = deb.unwrap().display().to_string();
    let arch = run_ok(&format!("dpkg-deb -f {deb} Architecture"));
    let tuple = run_ok(&format!(
        "dpkg-architecture -a {} -qDEB_HOST_MULTIARCH 2>/dev/null",
        arch.trim()
    ));
    let tuple = tuple.trim();
    assert_eq!(
        tuple,
        multiarch(),
        "a .deb for {arch} built on this machine"
    );
    let listing = run_ok(&format!("dpkg-deb -c {deb}"));
    let modules: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|p| p.ends_with("/pam_ivmfa.so"))
        .collect();
    assert_eq!(
        modules,
        [format!("./lib/{tuple}/security/pam_ivmfa.so")],
        "{listing}"
    );
    let packaged = Path::new("/lib").join(tuple).join("security");
    assert_eq!(
        packaged.canonicalize().unwrap(),
        pam_module_dir(),
        "{} is not where libpam looks",
        packaged.display()
    );
}

/// The manifests write no architecture into a path: build-packages.sh names the module's
/// directory after the build, so a package built on arm64 is right for arm64.
#[test]
fn package_manifests_name_no_architecture() {
    let manifest = fs::read_to_string(repo().join("ivmfa-enroll/Cargo.toml")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        for arch in [
            "x86_64",
            "amd64",
            "aarch64",
            "arm64",
            "i386",
            "linux-gnu",
            "lib64",
        ] {
            assert!(
                !line.contains(arch),
                "{arch} written into the manifest: {line}"
            );
        }
    }
}

const TOOL: &str = "/usr/local/sbin/ivmfa-enroll";
/// (section, name) of the man pages install.sh installs.
const MAN_PAGES: [(&str, &str); 3] = [
    ("8", "pam_ivmfa"),
    ("1", "ivmfa-enroll"),
    ("5", "ivmfa.toml"),
];

fn man_page(section: &str, name: &str) -> PathBuf {
    PathBuf::from(format!(
        "/usr/local/share/man/man{section}/{name}.{section}"
    ))
}

/// Runs packaging/install.sh; `stand_ins` is put in front of PATH.
fn install_sh(args: &[&str], stand_ins: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(repo().join("packaging/install.sh"));
    // Built as root here; under sudo the script would build as the invoking user.
    cmd.args(args).env_remove("SUDO_USER").env_remove("MANPATH");
    if let Some(dir) = stand_ins {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    cmd.output().unwrap()
}

#[track_caller]
fn assert_status(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `man` is needed to ask where the pages went (scripts/test.sh installs man-db).
fn have_man() {
    assert!(
        Path::new("/usr/bin/man").exists(),
        "man (man-db) is needed to check the installed pages"
    );
}

/// `man -w SECTION NAME`: the file man would show, if any, symbolic links resolved
/// (Debian's man finds /usr/local/share/man through /usr/local/man).
fn man_w(section: &str, name: &str) -> Option<PathBuf> {
    let out = Command::new("man")
        .args(["-w", section, name])
        .env_remove("MANPATH")
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| Path::new(found.trim()).canonicalize().unwrap())
}

/// Every file under /etc/pam.d and /etc/ssh, with its contents.
fn pam_and_ssh_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::from("/etc/pam.d"), PathBuf::from("/etc/ssh")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push((path.clone(), fs::read(&path).unwrap_or_default()));
            }
        }
    }
    files.sort();
    files
}

/// Whatever install.sh put on the machine goes again when the test ends, however it ends;
/// directories go only if the test made them and they are empty.
struct Cleanup {
    files: Vec<PathBuf>,
    made_dirs: Vec<PathBuf>,
}

impl Cleanup {
    fn new(files: Vec<PathBuf>) -> Cleanup {
        let dirs = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .chain(["/var/lib/ivmfa".into(), "/etc/ivmfa".into()]);
        Cleanup {
            made_dirs: dirs.filter(|d| !d.exists()).collect(),
            files,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
        for dir in &self.made_dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[test]
fn install_sh_help_and_usage_errors() {
    let help = install_sh(&["--help"], None);
    assert_status(&help, 0);
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "--uninstall",
        "--force",
        "--dry-run",
        "pam_ivmfa(8)",
        "ivmfa-enroll(1)",
        "ivmfa.toml(5)",
        "/var/lib/ivmfa",
    ] {
        assert!(text.contains(word), "{word} not in --help:\n{text}");
    }
    for args in [&["--force"][..], &["--no-such-option"]] {
        let out = install_sh(args, None);
        assert_status(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:") && err.contains("hint:"), "{err}");
    }
}

/// install.sh on a machine whose package lists are empty (a cloud image, a container):
/// apt-get install fails there until apt-get update has run. Then the module is where
/// libpam loads it by its bare name, the tool runs, man finds the three pages; PAM and sshd
/// files are untouched. --uninstall refuses while a PAM file loads the module, then removes
/// exactly what the install put there and keeps the store.
#[test]
#[ignore = "needs root"]
fn install_sh_installs_where_libpam_looks_and_uninstalls() {
    require_root("running packaging/install.sh");
    let _machine = machine();
    let module = pam_module_dir().join("pam_ivmfa.so");
    let pages: Vec<PathBuf> = MAN_PAGES.iter().map(|(s, n)| man_page(s, n)).collect();
    let mut files = vec![module.clone(), TOOL.into()];
    files.extend(pages.iter().cloned());
    for file in &files {
        assert!(
            !file.exists(),
            "{} is already there: is ivmfa installed on this machine?",
            file.display()
        );
    }
    let _cleanup = Cleanup::new(files.clone());
    let pam_before = pam_and_ssh_files();

    // Stand-ins for a machine without libpam0g-dev and with empty package lists: apt-get
    // finds no candidate until it has been updated, as the real one does.
    let f = Fixture::new("");
    let bin = f.dir.join("bin");
    let apt_log = f.dir.join("apt.log");
    fs::create_dir(&bin).unwrap();
    let script = |name: &str, body: String| {
        let path = bin.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "dpkg-query",
        "[ \"$1\" = -W ] && [ \"$3\" = libpam0g-dev ] && exit 1\nexec /usr/bin/dpkg-query \"$@\""
            .into(),
    );
    script(
        "apt-get",
        format!(
            "echo \"$*\" >> {log}\n\
             case \" $* \" in\n\
             *' update '*) touch {lists} ;;\n\
             *' install '*) [ -e {lists} ] || {{ echo \"E: Package libpam0g-dev has no \
             installation candidate\" >&2; exit 100; }} ;;\n\
             esac",
            log = apt_log.display(),
            lists = f.dir.join("lists").display()
        ),
    );

    let install = install_sh(&[], Some(&bin));
    assert_status(&install, 0);
    let apt = fs::read_to_string(&apt_log).unwrap_or_default();
    let calls: Vec<&str> = apt.lines().collect();
    let update = calls.iter().position(|c| c.contains(" update"));
    let add = calls
        .iter()
        .position(|c| c.contains(" install ") && c.ends_with("libpam0g-dev"));
    assert!(
        update.is_some() && add.is_some() && update < add,
        "apt-get update must come before apt-get install libpam0g-dev: {calls:?}"
    );

    let meta = fs::metadata(&module).expect("the module is installed");
    assert!(meta.is_file());
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, 0));
    // libpam finds it by its bare name: it is in the directory libpam loads modules from.
    fs::write(
        f.dir.join("pam.d").join(SERVICE),
        format!(
            "auth required pam_ivmfa.so store={} config={}\n",
            f.store.display(),
            f.config.display()
        ),
    )
    .unwrap();
    let e = f.enroll("daemon");
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
    f.login("daemon", &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");

    let tool = fs::metadata(TOOL).expect("ivmfa-enroll is installed");
    assert_eq!((tool.mode() & 0o7777, tool.uid()), (0o755, 0));
    let help = Command::new(TOOL).arg("--help").output().unwrap();
    assert_status(&help, 0);
    have_man();
    for ((section, name), page) in MAN_PAGES.iter().zip(&pages) {
        let meta = fs::metadata(page).expect("the man page is installed");
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o644, 0));
        assert_eq!(
            man_w(section, name),
            Some(page.canonicalize().unwrap()),
            "man {section} {name}"
        );
    }
    let store = fs::metadata("/var/lib/ivmfa").expect("the store is made");
    assert_eq!(store.mode() & 0o7777, 0o700);
    assert!(
        pam_before == pam_and_ssh_files(),
        "install.sh changed a PAM or sshd file"
    );

    // A PAM file that loads the module: --uninstall refuses, and a commented line is no
    // reason to. Only in a private mount namespace, over a copy of /etc/pam.d.
    let copy = f.dir.join("pam.d-copy");
    run_ok(&format!(
        "cp -a /etc/pam.d {c}\n\
         printf 'auth required pam_ivmfa.so\\n' > {c}/ivmfa-uses\n\
         printf '# auth required pam_ivmfa.so\\n' > {c}/ivmfa-commented",
        c = copy.display()
    ));
    let refused = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount --bind {} /etc/pam.d\nexec \"$0\" --uninstall",
            copy.display()
        ))
        .arg(repo().join("packaging/install.sh"))
        .output()
        .unwrap();
    assert_status(&refused, 3);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("/etc/pam.d/ivmfa-uses:1:"), "{err}");
    assert!(!err.contains("ivmfa-commented"), "{err}");
    assert!(module.exists(), "removed although refused");

    let uninstall = install_sh(&["--uninstall"], None);
    assert_status(&uninstall, 0);
    assert!(String::from_utf8_lossy(&uninstall.stdout).contains("Kept: /var/lib/ivmfa"));
    for file in &files {
        assert!(!file.exists(), "{} left behind", file.display());
    }
    for (section, name) in MAN_PAGES {
        assert_eq!(man_w(section, name), None, "man {section} {name}");
    }
    assert!(Path::new("/var/lib/ivmfa").is_dir(), "the store must stay");
    assert!(Path::new("/etc/ivmfa").is_dir(), "/etc/ivmfa must stay");
    assert!(pam_before == pam_and_ssh_files());
    // Nothing left to remove is no failure.
    assert_status(&install_sh(&["--uninstall"], None), 0);
}

/// The module file has one mode, whichever package carries it (0644, as Debian and the
/// other PAM modules have it: libpam maps it, nothing executes it).
#[test]
#[ignore = "needs the packages built (packaging/build-packages.sh)"]
fn the_module_has_the_same_mode_in_the_deb_and_the_rpm() {
    let (deb, rpm) = (built("debian", "deb"), built("generate-rpm", "rpm"));
    was_built("the .deb", deb.as_ref());
    was_built("the .rpm", rpm.as_ref());
    let listing = run_ok(&format!("dpkg-deb -c {}", deb.unwrap().display()));
    let deb_mode = listing
        .lines()
        .find(|l| l.ends_with("/pam_ivmfa.so"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    // "--dump": path size mtime digest mode owner group ...; the mode is octal with its type.
    let dump = run_ok(&format!("rpm -qp --dump {}", rpm.unwrap().display()));
    let rpm_mode = dump
        .lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|p| p.ends_with("/pam_ivmfa.so"))
        })
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap_or_default()
        .to_owned();
    assert_eq!(deb_mode, "-rw-r--r--", "{listing}");
    assert_eq!(rpm_mode, "0100644", "{dump}");
}
