//! QR codes of the otpauth URI: the matrix, and half blocks for terminals and the PAM
//! conversation. The CLI draws the same matrix as ANSI colours, PNG and SVG (its `picture`
//! module), which the module has no use for.
//!
//! In a terminal one character cell holds two modules stacked (`▀`, `▄`, `█`, space), so the
//! code keeps its square shape and a typical enrollment URI (version 5 to 7, 37 to 45 modules
//! plus the quiet zone) fits an 80-column terminal.

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
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
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
}
