//! `ivmfa-enroll check` and sshd's Match blocks: `sshd -T -C` per user and address, with a
//! stand-in sshd that answers by connection spec, and once with the real sshd.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ivmfa_tests::*;

fn root() {
    require_root("ivmfa-enroll runs as root only");
}

const COMMON_AUTH: &str = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                           auth requisite pam_deny.so\nauth required pam_permit.so\n";

/// Global settings that ask every login for the code.
const GOOD: &str = "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
                    authenticationmethods publickey,keyboard-interactive keyboard-interactive";

/// A PAM directory whose sshd stack loads the module after the password.
fn pam_dir(f: &Fixture, sshd_stack: &str) -> String {
    let dir = f.dir.join("pam-check");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let installed = f.dir.join("pam_ivmfa.so");
    if !installed.exists() {
        std::os::unix::fs::symlink(module_path(), &installed).unwrap();
    }
    fs::write(dir.join("common-auth"), COMMON_AUTH).unwrap();
    let module = format!(" {}", installed.display());
    fs::write(
        dir.join("sshd"),
        sshd_stack.replace(" pam_ivmfa.so", &module),
    )
    .unwrap();
    dir.display().to_string()
}

fn executable(path: &Path, text: &str) -> String {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Stands in for sshd: `-T` prints `global`; `-T -C SPEC` prints the settings of the first
/// `(pattern, overrides)` whose shell pattern fits SPEC, before `global` (check reads the
/// first line of each key), and appends SPEC to `specs` in the fixture's directory.
fn sshd_matching(f: &Fixture, global: &str, blocks: &[(&str, &str)]) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let specs = f.dir.join("specs");
    let _ = fs::remove_file(&specs);
    let mut cases = String::new();
    for (pattern, overrides) in blocks {
        cases.push_str(&format!(
            "{pattern}) cat <<'END'\n{overrides}\n{global}\nEND\n;;\n"
        ));
    }
    executable(
        &f.dir.join(format!("sshd-C-{n}")),
        &format!(
            "#!/bin/sh\nspec=\nwhile [ $# -gt 0 ]; do [ \"$1\" = -C ] && spec=$2; shift; done\n\
             [ -n \"$spec\" ] && printf '%s\\n' \"$spec\" >> {specs}\n\
             case \"$spec\" in\n{cases}*) cat <<'END'\n{global}\nEND\n;;\nesac\n",
            specs = specs.display()
        ),
    )
}

/// The connection specs the stand-in sshd was asked about since the last call.
fn specs(f: &Fixture) -> Vec<String> {
    let path = f.dir.join("specs");
    let text = fs::read_to_string(&path).unwrap_or_default();
    let _ = fs::remove_file(&path);
    text.lines().map(str::to_owned).collect()
}

fn problems(out: &CliOutput) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("problem:"))
        .collect()
}

fn two_users() -> Fixture {
    let f = Fixture::new("");
    f.enroll_by_cli("bin");
    f.enroll_by_cli("daemon");
    f
}

const PASSWORD_THEN_CODE: &str = "@include common-auth\nauth required pam_ivmfa.so\n";

#[test]
#[ignore = "needs root"]
fn a_match_block_that_skips_the_code_is_reported_for_its_user_only() {
    root();
    let f = two_users();
    let pam = pam_dir(&f, PASSWORD_THEN_CODE);
    for (block, problem) in [
        (
            "authenticationmethods publickey",
            "a Match block lets the user in without a code through: publickey",
        ),
        (
            "authenticationmethods any",
            "a Match block lets the user in without a code through: publickey",
        ),
        (
            "kbdinteractiveauthentication no",
            "a Match block sets KbdInteractiveAuthentication no",
        ),
    ] {
        let sshd = sshd_matching(&f, GOOD, &[("user=bin,*", block)]);
        let out = f.cli(&["check", "--pam-dir", &pam, "--sshd", &sshd], "");
        assert_eq!(out.code, 1, "{block}:\n{}", out.stdout);
        let found = problems(&out);
        assert_eq!(found.len(), 2, "{block}:\n{}", out.stdout);
        for addr in ["192.0.2.1", "127.0.0.1"] {
            let line = format!("problem: bin from {addr}: {problem}");
            assert!(
                found.iter().any(|l| l.starts_with(&line)),
                "{line:?}:\n{}",
                out.stdout
            );
        }
        assert!(
            out.stdout.contains(
                "ok:      daemon from 192.0.2.1 and 127.0.0.1: keyboard-interactive required"
            ),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout
                .contains("; sshd -T -C user=bin,host=192.0.2.1,addr=192.0.2.1 shows the result"),
            "{}",
            out.stdout
        );
        assert_eq!(
            specs(&f),
            [
                "user=bin,host=192.0.2.1,addr=192.0.2.1",
                "user=bin,host=127.0.0.1,addr=127.0.0.1",
                "user=daemon,host=192.0.2.1,addr=192.0.2.1",
                "user=daemon,host=127.0.0.1,addr=127.0.0.1",
            ]
        );
    }

    // A key + code stack: a block that lets bin start at the code prompt is reported, as
    // the global setting would be.
    let pam = pam_dir(&f, "auth required pam_ivmfa.so\n");
    let sshd = sshd_matching(
        &f,
        "usepam yes\nkbdinteractiveauthentication yes\nauthenticationmethods publickey,keyboard-interactive",
        &[("user=bin,*", "authenticationmethods keyboard-interactive")],
    );
    let out = f.cli(&["check", "--pam-dir", &pam, "--sshd", &sshd], "");
    assert_eq!(out.code, 1, "{}", out.stdout);
    let found = problems(&out);
    assert_eq!(found.len(), 2, "{}", out.stdout);
    assert!(
        found.iter().all(|l| l.starts_with("problem: bin from ")
            && l.contains("a Match block lets a login start with keyboard-interactive")),
        "{}",
        out.stdout
    );
}

#[test]
#[ignore = "needs root"]
fn a_gap_in_the_global_settings_is_not_repeated_per_user() {
    root();
    let f = two_users();
    let pam = pam_dir(&f, PASSWORD_THEN_CODE);
    let key_alone =
        "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\nauthenticationmethods any";
    let sshd = sshd_matching(
        &f,
        key_alone,
        &[("user=bin,*", "kbdinteractiveauthentication no")],
    );
    let out = f.cli(&["check", "--pam-dir", &pam, "--sshd", &sshd], "");
    assert_eq!(out.code, 1, "{}", out.stdout);
    let found = problems(&out);
    // The global bypass once, and what bin's block adds, from each address.
    assert_eq!(found.len(), 3, "{}", out.stdout);
    assert!(found[0].contains("sshd lets users in without a code through: publickey"));
    assert!(found[1..]
        .iter()
        .all(|l| l.starts_with("problem: bin from ")
            && l.contains("KbdInteractiveAuthentication no")));
}

#[test]
#[ignore = "needs root"]
fn user_limits_and_from_moves_the_login() {
    root();
    let f = two_users();
    let pam = pam_dir(&f, PASSWORD_THEN_CODE);
    // Match Address 10.0.0.0/8 with password logins.
    let sshd = sshd_matching(
        &f,
        GOOD,
        &[("*,addr=10.*", "authenticationmethods password")],
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["check", "--pam-dir", &pam, "--sshd", &sshd];
        args.extend(extra);
        f.cli(&args, "")
    };
    // The default addresses miss the block...
    run(&[]).expect(0, "No problems found");

    // ...--from finds it, for every user, and only from that address.
    let out = run(&["--from", "10.1.2.3", "--from", "2001:db8::7"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        problems(&out),
        [
            "problem: bin from 10.1.2.3: a Match block lets the user in without a code through: password; the code is never asked",
            "problem: daemon from 10.1.2.3: a Match block lets the user in without a code through: password; the code is never asked",
        ],
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("ok:      bin from 2001:db8::7: keyboard-interactive required"));
    assert!(specs(&f).contains(&"user=daemon,host=2001:db8::7,addr=2001:db8::7".to_owned()));

    specs(&f);
    // --user limits the evaluation to that user, enrolled or not.
    let out = run(&["--user", "daemon", "--user", "sys", "--from", "10.1.2.3"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let found = problems(&out);
    assert_eq!(found.len(), 2, "{}", out.stdout);
    assert!(found[0].starts_with("problem: daemon from 10.1.2.3"));
    assert!(found[1].starts_with("problem: sys from 10.1.2.3"));
    assert_eq!(
        specs(&f),
        [
            "user=daemon,host=10.1.2.3,addr=10.1.2.3",
            "user=sys,host=10.1.2.3,addr=10.1.2.3"
        ]
    );

    // Nothing that could add a key to sshd's spec gets in.
    for bad in [
        ["--from", "10.0.0.0/8"],
        ["--from", "10.1.2.3,user=root"],
        ["--from", "gateway.example"],
    ] {
        run(&bad).expect(2, "is not an IP address");
    }
    for bad in ["bin,addr=10.1.2.3", "bin=x", "a b", ""] {
        run(&["--user", bad]).expect(2, "is not a valid user name");
    }
}

#[test]
#[ignore = "needs root"]
fn an_empty_store_says_whose_match_blocks_were_not_evaluated() {
    root();
    let f = Fixture::new("");
    let pam = pam_dir(&f, PASSWORD_THEN_CODE);
    let sshd = sshd_matching(&f, GOOD, &[("user=*", "authenticationmethods publickey")]);
    let out = f.cli(&["check", "--pam-dir", &pam, "--sshd", &sshd], "");
    out.expect(
        0,
        "nobody is in the store, so sshd's Match blocks were evaluated for no one; \
         name a user with check --user NAME",
    );
    assert!(specs(&f).is_empty());
    // Named, a user is evaluated even so.
    let out = f.cli(
        &["check", "--pam-dir", &pam, "--sshd", &sshd, "--user", "bin"],
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(problems(&out).len(), 2, "{}", out.stdout);
}

#[test]
#[ignore = "needs root"]
fn sshd_refusing_the_connection_spec_is_one_clear_problem() {
    root();
    let f = two_users();
    let pam = pam_dir(&f, PASSWORD_THEN_CODE);
    // What OpenSSH 9.2 says for a Match LocalPort block when -C has no lport.
    let sshd = executable(
        &f.dir.join("sshd-refusing"),
        &format!(
            "#!/bin/sh\nfor a; do if [ \"$a\" = -C ]; then\n\
             echo \"'Match LocalPort' in configuration but 'lport' not in connection test specification.\" >&2\n\
             exit 255; fi; done\ncat <<'END'\n{GOOD}\nEND\n"
        ),
    );
    let out = f.cli(&["check", "--pam-dir", &pam, "--sshd", &sshd], "");
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        problems(&out),
        ["problem: cannot evaluate sshd's Match blocks (sshd -T -C \
          user=bin,host=192.0.2.1,addr=192.0.2.1: 'Match LocalPort' in configuration but \
          'lport' not in connection test specification.); one may let a login skip the code \
          unnoticed"],
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("run sshd -T -C with them added"));
}

#[test]
#[ignore = "needs root"]
fn the_real_sshd_applies_match_blocks_for_check() {
    root();
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "openssh-server is needed for this test (scripts/test.sh installs it)"
    );
    let f = two_users();
    let key = f.dir.join("host_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    let config = f.dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "HostKey {}\nUsePAM yes\nKbdInteractiveAuthentication yes\n\
             AuthenticationMethods publickey,keyboard-interactive\n\
             Match User bin\n  AuthenticationMethods publickey\n\
             Match Address 10.0.0.0/8\n  PasswordAuthentication yes\n  AuthenticationMethods password\n",
            key.display()
        ),
    )
    .unwrap();
    // sshd -T wants its privilege separation directory: a private /run supplies it
    // without touching the machine's.
    let wrapper = executable(
        &f.dir.join("sshd-real"),
        &format!(
            "#!/bin/sh\nexec unshare -m --propagation private sh -ec \
             'mount -t tmpfs -o mode=755 ivmfa-run /run; mkdir -m 755 /run/sshd; \
             exec /usr/sbin/sshd -f {} \"$@\"' sh \"$@\"\n",
            config.display()
        ),
    );
    let pam = pam_dir(&f, PASSWORD_THEN_CODE);
    let out = f.cli(&["check", "--pam-dir", &pam, "--sshd", &wrapper], "");
    assert_eq!(out.code, 1, "{out:#?}");
    let found = problems(&out);
    assert_eq!(found.len(), 2, "{}", out.stdout);
    assert!(
        found
            .iter()
            .all(|l| l.starts_with("problem: bin from ") && l.contains("through: publickey;")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "ok:      daemon from 192.0.2.1 and 127.0.0.1: keyboard-interactive required"
        ),
        "{}",
        out.stdout
    );

    let out = f.cli(
        &[
            "check",
            "--pam-dir",
            &pam,
            "--sshd",
            &wrapper,
            "--user",
            "daemon",
            "--from",
            "10.20.30.40",
        ],
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        problems(&out),
        [
            "problem: daemon from 10.20.30.40: a Match block lets the user in without a code \
          through: password; the code is never asked"
        ],
        "{}",
        out.stdout
    );
}
