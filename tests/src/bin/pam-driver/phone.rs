//! The person with the phone: turns `@phone` answers into the code an authenticator app would
//! show after scanning the QR code the module drew in the conversation.

use ivmfa_core::enrollment::{Enrollment, Secret};

pub fn answer(answer: Vec<u8>, shown: &str) -> Vec<u8> {
    let wrong = match answer.as_slice() {
        b"@phone" => false,
        b"@phone-wrong" => true,
        _ => return answer,
    };
    let Some(uri) = scan(shown) else {
        return b"no QR code was readable".to_vec();
    };
    let Some(secret) = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .and_then(|s| Secret::from_base32(s).ok())
    else {
        return b"the QR code holds no secret".to_vec();
    };
    let e = Enrollment::standard(secret, 0);
    let code = if wrong {
        ivmfa_tests::wrong_code(&e)
    } else {
        ivmfa_tests::code(&e, 0)
    };
    eprintln!("phone: scanned {uri}");
    code.into_bytes()
}

/// Scans the last QR code shown, as drawn for a dark background, else for a light one.
fn scan(shown: &str) -> Option<String> {
    let last = last_picture(shown);
    ivmfa_tests::decode_half_blocks(last, false)
        .or_else(|| ivmfa_tests::decode_half_blocks(last, true))
}

/// The text from the start of the last run of block lines.
fn last_picture(shown: &str) -> &str {
    let mut start = None;
    let mut offset = 0;
    let mut previous_block = false;
    for line in shown.split_inclusive('\n') {
        let block = ivmfa_tests::qrscan::is_block_line(line.trim_end_matches('\n'));
        if block && !previous_block {
            start = Some(offset);
        }
        previous_block = block;
        offset += line.len();
    }
    &shown[start.unwrap_or(0)..]
}
