//! QR codes of the otpauth URI: half blocks for terminals and the PAM conversation, PNG and SVG
//! for files. One matrix, several renderers, so the CLI and the module draw the same code.
//!
//! In a terminal one character cell holds two modules stacked (`▀`, `▄`, `█`, space), so the
//! code keeps its square shape and a typical enrollment URI (version 5 to 7, 37 to 45 modules
//! plus the quiet zone) fits an 80-column terminal.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};

use crate::error::{Error, Result};

/// Light modules around the code; the QR specification asks for four.
const QUIET: usize = 4;

pub struct Qr {
    width: usize,
    dark: Vec<bool>,
}

/// How to draw half blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// Plain text for a dark background: the light modules are drawn.
    ForDarkBackground,
    /// Plain text for a light background: the dark modules are drawn.
    ForLightBackground,
    /// Forced black on bright white with ANSI colours; scans on any terminal theme.
    ForcedColours,
}

impl Qr {
    pub fn new(text: &str) -> Result<Qr> {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
            .map_err(|e| Error::Invalid(format!("cannot make a QR code: {e}")))?;
        Ok(Qr {
            width: code.width(),
            dark: code
                .to_colors()
                .into_iter()
                .map(|c| c == Color::Dark)
                .collect(),
        })
    }

    /// Width in modules including the quiet zone on both sides.
    pub fn size(&self) -> usize {
        self.width + 2 * QUIET
    }

    /// Whether the module at (x, y) of the padded square is dark.
    fn is_dark(&self, x: usize, y: usize) -> bool {
        let inside = |v: usize| (QUIET..QUIET + self.width).contains(&v);
        inside(x) && inside(y) && self.dark[(y - QUIET) * self.width + (x - QUIET)]
    }

    /// Columns a terminal needs for [`Qr::half_blocks`].
    pub fn columns(&self) -> usize {
        self.size()
    }

    pub fn half_blocks(&self, style: Blocks) -> String {
        let n = self.size();
        let ink = |x: usize, y: usize| {
            let dark = y < n && self.is_dark(x, y);
            match style {
                Blocks::ForDarkBackground => !dark,
                Blocks::ForLightBackground | Blocks::ForcedColours => dark,
            }
        };
        let mut out = String::new();
        for y in (0..n).step_by(2) {
            if style == Blocks::ForcedColours {
                out.push_str("\x1b[30;107m");
            }
            for x in 0..n {
                out.push(match (ink(x, y), ink(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            if style == Blocks::ForcedColours {
                out.push_str("\x1b[0m");
            }
            out.push('\n');
        }
        out
    }

    /// ASCII-only rendering with ANSI background colours, two columns per module, for
    /// terminals that cannot show Unicode blocks. Needs `2 * size()` columns.
    pub fn ansi_spaces(&self) -> String {
        let n = self.size();
        let mut out = String::new();
        for y in 0..n {
            for x in 0..n {
                out.push_str(if self.is_dark(x, y) {
                    "\x1b[40m  "
                } else {
                    "\x1b[107m  "
                });
            }
            out.push_str("\x1b[0m\n");
        }
        out
    }

    pub fn svg(&self) -> String {
        let n = self.size();
        let mut path = String::new();
        for y in 0..n {
            for x in 0..n {
                if self.is_dark(x, y) {
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

    /// An 8-bit greyscale PNG, `scale` pixels per module.
    pub fn png(&self, scale: usize) -> Vec<u8> {
        let n = self.size();
        let grid: Vec<bool> = (0..n * n).map(|i| self.is_dark(i % n, i / n)).collect();
        png_of_grid(&grid, n, scale)
    }
}

/// Encodes an n×n grid of dark (`true`) and light cells as a greyscale PNG. Uncompressed
/// (stored deflate blocks): a QR code is a few hundred kilobytes at most, and this keeps the
/// encoder small enough to read in one sitting.
pub fn png_of_grid(grid: &[bool], n: usize, scale: usize) -> Vec<u8> {
    let px = n * scale;
    let mut raw = Vec::with_capacity((px + 1) * px);
    for y in 0..px {
        raw.push(0); // filter: none
        for x in 0..px {
            raw.push(if grid[(y / scale) * n + x / scale] {
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

    const URI: &str = "otpauth://totp/Example%20Corp:a-rather-long-user.name%40host?\
        secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Corp&algorithm=SHA1\
        &digits=6&period=30";

    #[test]
    fn a_typical_uri_fits_80_columns() {
        let qr = Qr::new(URI).unwrap();
        assert!(qr.columns() <= 80, "{}", qr.columns());
        for style in [Blocks::ForDarkBackground, Blocks::ForLightBackground] {
            let text = qr.half_blocks(style);
            assert!(text.lines().all(|l| l.chars().count() == qr.columns()));
            assert!(!text.contains('\x1b'), "plain text must carry no escapes");
        }
    }

    #[test]
    fn dark_and_light_renderings_are_inverses() {
        let qr = Qr::new("hello").unwrap();
        let dark = qr.half_blocks(Blocks::ForDarkBackground);
        let light = qr.half_blocks(Blocks::ForLightBackground);
        let flip = |c| match c {
            '█' => ' ',
            ' ' => '█',
            '▀' => '▄',
            '▄' => '▀',
            c => c,
        };
        // The last row covers half a row of nothing; compare the full rows.
        let rows = qr.size() / 2;
        for (d, l) in dark.lines().zip(light.lines()).take(rows) {
            assert_eq!(d.chars().map(flip).collect::<String>(), l);
        }
    }

    #[test]
    fn png_is_well_formed() {
        let png = Qr::new("hello").unwrap().png(4);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // Known check values.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
