//! The store's file parsers: secret.toml, and the state file (its slots and the TOML in
//! them). Whatever is on disk, parsing ends in a value or an error, and an error never
//! carries the secret.
#![no_main]

use std::path::Path;

use ivmfa_core::enrollment::Enrollment;
use ivmfa_core::slotfile;
use ivmfa_core::state::State;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The bytes as the first slot of a state file whose second slot is empty.
    let mut file = data.to_vec();
    file.resize(slotfile::FILE_LEN, 0);
    if let Ok(contents) = slotfile::decode(&file) {
        let _ = State::from_toml(&contents.text, Path::new("state"));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = Enrollment::from_toml(text, Path::new("secret.toml")) {
        // What parses writes back and parses again to the same thing.
        let again = Enrollment::from_toml(&e.to_toml().unwrap(), Path::new("secret.toml")).unwrap();
        assert_eq!(again, e);
    }
    if let Ok(s) = State::from_toml(text, Path::new("state")) {
        let again = State::from_toml(&s.to_toml().unwrap(), Path::new("state")).unwrap();
        assert_eq!(again, s);
    }
});
