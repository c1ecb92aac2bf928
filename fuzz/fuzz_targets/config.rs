//! The config file and module arguments: any text must give a config or an error, never a
//! panic, and an error must not quote the input.
#![no_main]

use std::path::Path;

use ivmfa_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = Config::default();
    let _ = config.apply_file_text(text, Path::new("ivmfa.toml"));
    // The same bytes as module arguments.
    let args: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let mut from_args = Config::default();
    for arg in &args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg.as_str(), None),
        };
        let _ = from_args.set(key, value);
    }
});
