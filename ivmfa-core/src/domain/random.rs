//! The OS random source. Core APIs take random bytes as arguments (so tests can inject them);
//! the programs get them from here.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;

use crate::error::{Error, Result};

const SOURCE: &str = "/dev/urandom";

/// Fills `buf` from the kernel's CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<()> {
    let mut file = File::open(SOURCE).map_err(|e| Error::io(SOURCE, "open", e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(SOURCE, "inspect", e))?;
    if !meta.file_type().is_char_device() {
        return Err(Error::unsafe_file(SOURCE, "it is not a character device"));
    }
    file.read_exact(buf)
        .map_err(|e| Error::io(SOURCE, "read", e))
}
