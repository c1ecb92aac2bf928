//! Scanning QR codes with a real decoder (zbarimg), as a phone would.

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ivmfa_core::qr::Qr;

use crate::terminal;

/// Decodes a QR code drawn with half blocks (`▀ ▄ █` and spaces) with a real decoder
/// (zbarimg). `ink_is_dark`: the drawn cells are the dark modules (forced colours, light
/// backgrounds); false for the rendering meant for dark backgrounds.
pub fn decode_half_blocks(text: &str, ink_is_dark: bool) -> Option<String> {
    let plain = terminal::plain(text);
    let lines: Vec<&str> = plain
        .lines()
        .skip_while(|l| !is_block_line(l))
        .take_while(|l| is_block_line(l))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap();
    let n = width.max(lines.len() * 2) + 8;
    // Padding is light: for the dark-background rendering that means "not ink".
    let mut grid = vec![false; n * n];
    for (row, line) in lines.iter().enumerate() {
        for (col, c) in line.chars().enumerate() {
            let (upper, lower) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            for (dy, ink) in [(0, upper), (1, lower)] {
                grid[(4 + row * 2 + dy) * n + 4 + col] = ink == ink_is_dark;
            }
        }
    }
    // Outside the drawn area is light either way.
    if !ink_is_dark {
        for y in 0..n {
            for x in 0..n {
                let inside = (4..4 + width).contains(&x) && (4..4 + lines.len() * 2).contains(&y);
                if !inside {
                    grid[y * n + x] = false;
                }
            }
        }
    }
    decode_grid(&grid, n)
}

/// Whether a line is a row of a QR code drawn in half blocks (at least 21 cells wide).
pub fn is_block_line(line: &str) -> bool {
    line.chars().count() >= 21 && line.chars().all(|c| matches!(c, ' ' | '▀' | '▄' | '█'))
}

/// Decodes the matrix of a [`Qr`] (the quiet zone included) as a phone would see it.
pub fn decode_matrix(qr: &Qr) -> Option<String> {
    let n = qr.size();
    let grid: Vec<bool> = (0..n * n).map(|i| qr.is_dark(i % n, i / n)).collect();
    decode_grid(&grid, n)
}

/// Decodes an n×n grid of dark (`true`) and light cells, drawn 4 pixels a cell as a
/// greyscale netpbm picture (the simplest format zbarimg reads).
fn decode_grid(grid: &[bool], n: usize) -> Option<String> {
    const SCALE: usize = 4;
    let px = n * SCALE;
    let mut pgm = format!("P5\n{px} {px}\n255\n").into_bytes();
    for y in 0..px {
        for x in 0..px {
            pgm.push(if grid[(y / SCALE) * n + x / SCALE] {
                0
            } else {
                255
            });
        }
    }
    decode_image(&pgm, "pgm")
}

/// Decodes a PNG with zbarimg; `None` if it finds no code.
pub fn decode_png(png: &[u8]) -> Option<String> {
    decode_image(png, "png")
}

fn decode_image(bytes: &[u8], extension: &str) -> Option<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "ivmfa-qr-{}-{}.{extension}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, bytes).unwrap();
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&path)
        .output()
        .expect("zbarimg (zbar-tools) is needed to decode QR codes");
    let _ = fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}
