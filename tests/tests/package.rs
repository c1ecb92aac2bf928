//! The .deb as a sysadmin uses it: install with dpkg, enable the pam-auth-update profile,
//! enroll with the installed ivmfa-enroll, log in through sshd with the installed module,
//! remove and purge, and nothing is left behind. Also lintian, the .rpm's file list and
//! the module's place in both packages.
//!
//! The packages are built by scripts/test.sh (packaging/build-packages.sh) before the tests
//! run. PAM changes happen only inside a private mount namespace over a copy of /etc/pam.d;
//! the package itself is really installed and purged, so never run this tier on a machine
//! that uses ivmfa.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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

fn available(what: &str, path: Option<&PathBuf>) -> bool {
    require_root("installing a package") && was_built(what, path)
}

fn was_built(what: &str, path: Option<&PathBuf>) -> bool {
    let ok = path.is_some() && Path::new("/usr/bin/dpkg").exists();
    assert!(
        ok || !is_ci(),
        "{what} was not built: scripts/test.sh runs packaging/build-packages.sh"
    );
    if !ok {
        eprintln!("SKIPPED: {what} not built (packaging/build-packages.sh)");
    }
    ok
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
fn deb_installs_enables_logs_in_and_purges_clean() {
    let deb = built("debian", "deb");
    if !available("the .deb", deb.as_ref()) {
        return;
    }
    let deb = deb.unwrap();
    // A leftover from an earlier, interrupted run.
    let _ = sh("dpkg --purge ivmfa >/dev/null 2>&1");
    run_ok(&format!("dpkg -i {}", deb.display()));
    for path in installed() {
        assert!(Path::new(&path).exists(), "{path} not installed");
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
    // Only for services that can ask for a code: IMAP or CUPS through common-auth step aside.
    assert!(
        enabled.contains("pam_ivmfa.so services=sshd,login,su,"),
        "{enabled}"
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
fn lintian_finds_no_errors() {
    let deb = built("debian", "deb");
    if !available("the .deb", deb.as_ref()) {
        return;
    }
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
fn rpm_holds_the_module_in_libdir_security() {
    let rpm = built("generate-rpm", "rpm");
    if !available("the .rpm", rpm.as_ref()) {
        return;
    }
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
fn deb_puts_the_module_where_libpam_looks() {
    let deb = built("debian", "deb");
    if !was_built("the .deb", deb.as_ref()) {
        return;
    }
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
