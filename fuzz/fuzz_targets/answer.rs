//! What a remote client types at the code prompt: codes, recovery codes, keywords, garbage.
#![no_main]

use ivmfa_core::input::{parse, Accepts, Answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for digits in [6, 8] {
        let accepts = Accepts {
            digits,
            reset: Some("reset"),
            invert: true,
            recovery: true,
        };
        match parse(text, accepts) {
            Answer::Code(code) => {
                assert_eq!(code.as_str().len(), usize::from(digits));
                assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
            Answer::Recovery(r) => assert!(r.len() == 12 || r.len() == 8),
            _ => {}
        }
    }
});
