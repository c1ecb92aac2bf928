// libpam dlopen()s and dlclose()s the module on every transaction. Marking it NODELETE keeps
// one copy mapped, so the Rust runtime's thread-local keys are created once per process instead
// of once per login (a long-running PAM consumer would otherwise run out of TLS keys).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
