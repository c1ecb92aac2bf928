//! The built `.so` itself: what it exports, how it is linked, and that a long-running,
//! threaded PAM consumer can load and unload it thousands of times.

use std::process::Command;

use ivmfa_tests::*;

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} (binutils) is needed: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn loads_with_rtld_now_and_has_both_entry_points() {
    let module = module_path().display().to_string();
    let out = Command::new(driver())
        .args(["dlopen", &module])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("pam_sm_authenticate=true pam_sm_setcred=true"),
        "{text}"
    );
}

#[test]
fn exports_only_what_pam_needs() {
    let module = module_path().display().to_string();
    let symbols = tool("nm", &["-D", "--defined-only", &module]);
    let exported: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        exported,
        ["pam_sm_authenticate", "pam_sm_setcred"],
        "{symbols}"
    );
}

#[test]
fn linked_nodelete() {
    let module = module_path().display().to_string();
    let dynamic = tool("readelf", &["-d", &module]);
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("FLAGS_1") && l.contains("NODELETE")),
        "{dynamic}"
    );
}

#[test]
fn thousands_of_transactions_in_one_threaded_process() {
    let f = Fixture::new("max_failures=1000 backoff_seconds=1 max_backoff_seconds=1");
    let e = f.enroll("daemon");
    let mut args = f.auth_args("daemon", &[&wrong_code(&e)]);
    args.extend(["--repeat".to_string(), "3000".to_string()]);
    let out = Command::new(driver()).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Each transaction went through the module and was denied.
    assert!(text.contains("result: PAM_AUTH_ERR x3000"), "{text}");
    // No thread and no descriptor left behind by 3000 loads of the module.
    let pair = |field: &str| -> (usize, usize) {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("{field} missing: {text}"));
        let (a, b) = line.trim().split_once(" -> ").unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let (t0, t1) = pair("threads:");
    let (f0, f1) = pair("fds:");
    assert_eq!(t0, t1, "{text}");
    assert_eq!(f0, f1, "{text}");
}
