//! Every QR rendering decodes with a real decoder (zbarimg) to the URI it was made from.

use ivmfa_core::qr::{Blocks, Qr};
use ivmfa_tests::*;

const URIS: [&str; 2] = [
    "otpauth://totp/vm:daemon?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=vm&algorithm=SHA1&digits=6&period=30",
    "otpauth://totp/Example%20Corporation%20Ltd:a.rather.long.user-name%40ad.example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBV&issuer=Example%20Corporation%20Ltd&algorithm=SHA1&digits=6&period=30",
];

#[test]
fn terminal_renderings_decode_for_dark_and_light_backgrounds() {
    for uri in URIS {
        let qr = Qr::new(uri).unwrap();
        assert!(qr.columns() <= 80, "{} columns for {uri}", qr.columns());
        let light = qr.half_blocks(Blocks::ForLightBackground);
        let dark = qr.half_blocks(Blocks::ForDarkBackground);
        let forced = qr.half_blocks(Blocks::ForcedColours);
        assert_eq!(decode_half_blocks(&light, true).as_deref(), Some(uri));
        assert_eq!(decode_half_blocks(&forced, true).as_deref(), Some(uri));
        assert_eq!(decode_half_blocks(&dark, false).as_deref(), Some(uri));
        // Read with the wrong polarity, the inverted picture is not the URI.
        assert_ne!(decode_half_blocks(&dark, true).as_deref(), Some(uri));
    }
}

#[test]
fn the_matrix_decodes() {
    for uri in URIS {
        assert_eq!(decode_matrix(&Qr::new(uri).unwrap()).as_deref(), Some(uri));
    }
}
