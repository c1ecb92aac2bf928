//! A ~/.google_authenticator file, which its owner (not root) controls.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ivmfa_core::google::parse(text, "google_authenticator");
    }
});
