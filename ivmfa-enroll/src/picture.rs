//! The enrollment QR code drawn for places other than a plain terminal: ANSI colour cells for
//! terminals without Unicode blocks, and SVG and PNG files (`--qr-svg`, `--qr-png`). The matrix
//! and the half-block rendering the module also needs live in `ivmfa_core::qr`.

use std::fmt::Write as _;

use ivmfa_core::qr::Qr;

/// ASCII-only rendering with ANSI background colours, two columns per module, for terminals
/// that cannot show Unicode blocks. Needs `2 * qr.size()` columns.
pub fn ansi_spaces(qr: &Qr) -> String {
    let n = qr.size();
    let mut out = String::new();
    for y in 0..n {
        for x in 0..n {
            out.push_str(if qr.is_dark(x, y) {
                "\x1b[40m  "
            } else {
                "\x1b[107m  "
            });
        }
        out.push_str("\x1b[0m\n");
    }
    out
}

pub fn svg(qr: &Qr) -> String {
    let n = qr.size();
    let mut path = String::new();
    for y in 0..n {
        for x in 0..n {
            if qr.is_dark(x, y) {
                let _ = write!(path, "M{x} {y}h1v1h-1z");
            }
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {n} {n}\" \
         width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\">\n\
         <rect width=\"{n}\" height=\"{n}\" fill=\"#fff\"/>\n\
         <path fill=\"#000\" d=\"{path}\"/>\n</svg>\n",
        px = n * 8
    )
}

/// An 8-bit greyscale PNG, `scale` pixels per module. Uncompressed (stored deflate blocks): a
/// QR code is a few hundred kilobytes at most, and this keeps the encoder small enough to read
/// in one sitting.
pub fn png(qr: &Qr, scale: usize) -> Vec<u8> {
    let px = qr.size() * scale;
    let mut raw = Vec::with_capacity((px + 1) * px);
    for y in 0..px {
        raw.push(0); // filter: none
        for x in 0..px {
            raw.push(if qr.is_dark(x / scale, y / scale) {
                0
            } else {
                255
            });
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65_535).peekable();
    while let Some(block) = chunks.next() {
        zlib.push(u8::from(chunks.peek().is_none()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(px as u32).to_be_bytes());
    header.extend_from_slice(&(px as u32).to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, no interlace

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &header), (b"IDAT", &zlib), (b"IEND", &Vec::new())] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_is_well_formed() {
        let png = png(&Qr::new("hello").unwrap(), 4);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // Known check values.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
