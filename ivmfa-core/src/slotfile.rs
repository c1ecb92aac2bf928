//! A small file rewritten in place: how the state that changes at every login is kept.
//!
//! A login must have the step it accepted on disk before it says yes, and a crash at any
//! instant must leave a usable file behind. A new file renamed over the old one gives both but
//! costs, at every login, an inode allocated and freed, a rename and two flushes (the file and
//! its directory). This file gives the same two promises with one flush. It holds two slots of
//! equal size, each a header (sequence number, body length, SHA-256 of both) and a body. A
//! write goes into the slot that does not hold the newest state and is flushed with
//! fdatasync(2); the file keeps its size and its blocks, so no metadata has to reach the disk
//! and there is nothing to flush in the directory. If a crash tears the write, that slot's
//! checksum fails and the other slot, untouched, still holds the state from before it: the
//! write never happened, just as the login that made it never said yes. Each slot starts on a
//! 4 KiB boundary, so writing one never rewrites the other's disk block.
//!
//! ```text
//! file  = slot 0, slot 1                  each S bytes, S a multiple of 4096
//! slot  = "ivmfa-slot 1 <seq> <len> <sha256 hex>\n" <body: len bytes> <zero bytes up to S>
//! sha256 over the sequence number (8 bytes, little-endian) followed by the body
//! ```
//!
//! The intact slot with the higher sequence number holds the state. The file is created, and
//! replaced when a body outgrows its slots, by [`safefile::write_atomic`].

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::safefile::{self, Policy};

/// Slots are whole pages, so each has disk blocks of its own.
const BLOCK: usize = 4096;
const MAGIC: &str = "ivmfa-slot 1";
/// Longest possible header: magic, two u64 numbers, 64 hex digits, separators.
const MAX_HEADER: usize = MAGIC.len() + 2 * 21 + 1 + 64 + 1;

/// The newest intact slot of a file: which one it is, its sequence number and its body.
struct Newest<'a> {
    index: usize,
    seq: u64,
    body: &'a [u8],
}

fn digest(seq: u64, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The slot size of a file of `len` bytes, if that is a layout we write.
fn slot_size(len: usize) -> Option<usize> {
    (len > 0 && len.is_multiple_of(2 * BLOCK)).then_some(len / 2)
}

/// Sequence number and body of one slot, or `None` if it is empty, torn or not ours.
fn parse_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    let end = slot.iter().take(MAX_HEADER).position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&slot[..end]).ok()?;
    let fields = header.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let mut fields = fields.split(' ');
    let seq: u64 = fields.next()?.parse().ok()?;
    let len: usize = fields.next()?.parse().ok()?;
    let sum = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let body = slot.get(end + 1..)?.get(..len)?;
    (digest(seq, body) == sum).then_some((seq, body))
}

/// The newest intact slot. `Err` says why the file is not one of ours at all; `Ok(None)`
/// means it is, but neither slot is intact.
fn newest(file: &[u8]) -> std::result::Result<Option<Newest<'_>>, String> {
    let size = slot_size(file.len()).ok_or_else(|| {
        format!(
            "its length ({} bytes) is not two whole slots of a multiple of {BLOCK} bytes",
            file.len()
        )
    })?;
    Ok(file
        .chunks(size)
        .enumerate()
        .filter_map(|(index, slot)| parse_slot(slot).map(|(seq, body)| Newest { index, seq, body }))
        .max_by_key(|n| n.seq))
}

/// One slot's bytes: header, body, zeros up to `size`. `None` if the body does not fit.
fn slot_image(seq: u64, body: &[u8], size: usize) -> Option<Vec<u8>> {
    let header = format!("{MAGIC} {seq} {} {}\n", body.len(), digest(seq, body));
    if header.len() + body.len() > size {
        return None;
    }
    let mut image = Vec::with_capacity(size);
    image.extend_from_slice(header.as_bytes());
    image.extend_from_slice(body);
    image.resize(size, 0);
    Some(image)
}

/// The body of the newest intact slot of `path`, as text. `Ok(None)` if there is no file.
/// A file with no intact slot is corrupt; `hint` says what to do about it.
pub fn read(policy: &Policy, path: &Path, hint: &'static str) -> Result<Option<String>> {
    let Some(bytes) = policy.read(path)? else {
        return Ok(None);
    };
    let text = decode(&bytes).map_err(|why| Error::corrupt(path, why, hint))?;
    Ok(Some(text.to_owned()))
}

/// The text in the newest intact slot of a file's bytes, or why there is none.
pub fn decode(file: &[u8]) -> std::result::Result<&str, String> {
    let newest = newest(file)?.ok_or("neither of its slots is intact")?;
    std::str::from_utf8(newest.body).map_err(|_| "its newest slot is not UTF-8 text".to_owned())
}

/// Makes `body` the newest slot of `dir/name`, durably. Call only while holding the lock that
/// serialises the file's writers: two writers at once could both pick the same slot.
pub fn write(policy: &Policy, dir: &Path, name: &str, body: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let mut seq = 0;
    if let Some((mut file, len)) = policy.open_for_update(&path)? {
        let mut bytes = Vec::with_capacity(len as usize + 1);
        (&mut file)
            .take(policy.max_len + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, "read", e))?;
        // A file of the wrong length, or one that has run out of sequence numbers (only a
        // forged one can), is replaced whole below, counting from 1 again. With no intact
        // slot, any slot will do.
        if let Ok(current) = newest(&bytes) {
            let (index, current_seq) = current.map_or((1, 0), |n| (n.index, n.seq));
            if let Some(next) = current_seq.checked_add(1) {
                seq = current_seq;
                let size = slot_size(bytes.len()).unwrap_or(0);
                if let Some(image) = slot_image(next, body, size) {
                    return write_in_place(&file, &path, &image, (1 - index) * size);
                }
            }
        }
    }
    // No file yet, or the body outgrew its slots: a new file, slot 0 holding the body.
    let size = (MAX_HEADER + body.len()).div_ceil(BLOCK) * BLOCK;
    let mut contents = slot_image(seq + 1, body, size)
        .ok_or_else(|| Error::Invalid(format!("{name}: slot size miscalculated")))?;
    contents.resize(2 * size, 0);
    if contents.len() as u64 > policy.max_len {
        return Err(Error::Invalid(format!(
            "{name} would be {} bytes, more than the {} allowed",
            contents.len(),
            policy.max_len
        )));
    }
    safefile::write_atomic(dir, name, &contents)
}

fn write_in_place(file: &File, path: &Path, image: &[u8], offset: usize) -> Result<()> {
    file.write_all_at(image, offset as u64)
        .map_err(|e| Error::io(path, "write", e))?;
    // fdatasync: the file keeps its size and blocks, so this flushes the slot alone.
    file.sync_data().map_err(|e| Error::io(path, "flush", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const HINT: &str = "test";

    fn scratch(name: &str) -> (PathBuf, Policy) {
        let dir =
            std::env::temp_dir().join(format!("ivmfa-slotfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let policy = Policy {
            owner: std::fs::metadata(&dir)
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .unwrap(),
            max_len: 64 * 1024,
            private: true,
            strict_owner: false,
        };
        (dir, policy)
    }

    fn slots(path: &Path) -> Vec<Option<(u64, Vec<u8>)>> {
        let bytes = std::fs::read(path).unwrap();
        let size = slot_size(bytes.len()).unwrap();
        bytes
            .chunks(size)
            .map(|s| parse_slot(s).map(|(seq, b)| (seq, b.to_vec())))
            .collect()
    }

    #[test]
    fn writes_alternate_between_the_slots_in_place() {
        let (dir, policy) = scratch("alternate");
        let path = dir.join("state");
        assert_eq!(read(&policy, &path, HINT).unwrap(), None);
        write(&policy, &dir, "state", b"one").unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        write(&policy, &dir, "state", b"two").unwrap();
        write(&policy, &dir, "state", b"three").unwrap();
        assert_eq!(
            read(&policy, &path, HINT).unwrap().as_deref(),
            Some("three")
        );
        assert_eq!(
            slots(&path),
            [Some((3, b"three".to_vec())), Some((2, b"two".to_vec()))]
        );
        let same = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        assert_eq!(inode, same, "rewritten in place, not replaced");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * BLOCK as u64);
    }

    #[test]
    fn a_torn_newest_slot_leaves_the_one_before() {
        let (dir, policy) = scratch("torn");
        let path = dir.join("state");
        for body in ["old", "new"] {
            write(&policy, &dir, "state", body.as_bytes()).unwrap();
        }
        // "new" (seq 2) is in slot 1; tear it the way a crash mid-write would.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[BLOCK + 20..BLOCK + 200].fill(0xAA);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&policy, &path, HINT).unwrap().as_deref(), Some("old"));
        // The next write goes into the torn slot, never over the intact one.
        write(&policy, &dir, "state", b"next").unwrap();
        assert_eq!(slots(&path)[0], Some((1, b"old".to_vec())));
        assert_eq!(read(&policy, &path, HINT).unwrap().as_deref(), Some("next"));
    }

    #[test]
    fn a_body_that_outgrows_its_slots_gets_a_new_file() {
        let (dir, policy) = scratch("grow");
        let path = dir.join("state");
        write(&policy, &dir, "state", b"small").unwrap();
        let big = "x".repeat(10_000);
        write(&policy, &dir, "state", big.as_bytes()).unwrap();
        assert_eq!(
            read(&policy, &path, HINT).unwrap().as_deref(),
            Some(big.as_str())
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * 3 * BLOCK as u64
        );
        assert_eq!(
            slots(&path)[0].as_ref().unwrap().0,
            2,
            "the sequence goes on"
        );
        let huge = "x".repeat(40_000);
        assert!(write(&policy, &dir, "state", huge.as_bytes()).is_err());
        assert_eq!(
            read(&policy, &path, HINT).unwrap().as_deref(),
            Some(big.as_str())
        );
    }

    #[test]
    fn broken_files_are_corrupt_until_a_write_mends_them() {
        let (dir, policy) = scratch("broken");
        let path = dir.join("state");
        let garbage: [&[u8]; 4] = [b"", b"version = 1\n", &[0u8; 2 * BLOCK], &[7u8; 3 * BLOCK]];
        for bytes in garbage {
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            let err = read(&policy, &path, HINT).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            write(&policy, &dir, "state", b"fresh").unwrap();
            assert_eq!(
                read(&policy, &path, HINT).unwrap().as_deref(),
                Some("fresh")
            );
        }
    }

    #[test]
    fn the_last_sequence_number_starts_a_new_file() {
        let (dir, policy) = scratch("wrap");
        let path = dir.join("state");
        let mut contents = slot_image(u64::MAX, b"forged", BLOCK).unwrap();
        contents.resize(2 * BLOCK, 0);
        std::fs::write(&path, &contents).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        write(&policy, &dir, "state", b"next").unwrap();
        assert_eq!(slots(&path), [Some((1, b"next".to_vec())), None]);
    }

    #[test]
    fn headers_that_lie_are_not_intact() {
        let good = slot_image(5, b"body", BLOCK).unwrap();
        assert_eq!(parse_slot(&good), Some((5, &b"body"[..])));
        let text = String::from_utf8_lossy(&good[..MAX_HEADER]).into_owned();
        for (from, to) in [
            (" 5 ", " 6 "),
            (" 4 ", " 3 "),
            (" 4 ", " 99999 "),
            ("slot 1", "slot 2"),
        ] {
            let mut forged = good.clone();
            let header = text.replacen(from, to, 1);
            forged[..header.len().min(BLOCK)]
                .copy_from_slice(&header.as_bytes()[..header.len().min(BLOCK)]);
            assert_eq!(parse_slot(&forged), None, "{from} -> {to}");
        }
        assert_eq!(parse_slot(&[0u8; BLOCK]), None);
    }
}
