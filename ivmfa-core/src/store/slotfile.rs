//! A small file rewritten in place: how the state that changes at every login is kept.
//!
//! A login must have the step it accepted on disk before it says yes, and a crash at any
//! instant must leave a usable file behind. A new file renamed over the old one gives both but
//! costs, at every login, an inode allocated and freed, a rename and two flushes (the file and
//! its directory). This file gives the same two promises with one flush. It holds two slots,
//! each a header (sequence number, body length, SHA-256 of both) and a body. A write goes into
//! the slot that does not hold the newest state and is flushed with fdatasync(2); the file
//! keeps its size and its blocks, so no metadata has to reach the disk and there is nothing to
//! flush in the directory. If a crash tears the write, that slot's checksum fails and the other
//! slot, untouched, still holds the state from before it: the write never happened, just as
//! the login that made it was never told yes. Slots start on 4 KiB boundaries, so with 4 KiB
//! pages and blocks, writing one never rewrites the other's disk blocks (with larger ones the
//! other slot's bytes may be written again, unchanged).
//!
//! ```text
//! file  = slot 0, slot 1                  SLOT bytes each
//! slot  = "ivmfa-slot 1 <seq> <len> <sha256 hex>\n" <body: len bytes> <padding up to SLOT>
//! padding: zeros, or what an earlier, longer body left there; never read
//! sha256 over the sequence number (8 bytes, little-endian) followed by the body
//! ```
//!
//! The intact slot with the higher sequence number holds the state. The file is created by
//! `safefile::write_atomic` at its final size, room enough for the largest body it will
//! hold, so it never has to grow: once it exists, a full disk does not stop a write (on
//! file systems that overwrite in place; copy-on-write ones such as btrfs need free space for
//! every write, and then deny success and failure alike).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::safefile::{self, Policy};

const BLOCK: usize = 4096;
/// Size of one slot: three blocks, room for the largest state (see the state module's tests).
const SLOT: usize = 3 * BLOCK;
/// Size of the whole file.
pub const FILE_LEN: usize = 2 * SLOT;
const MAGIC: &str = "ivmfa-slot 1";
/// Longest possible header: magic, two u64 numbers, 64 hex digits, separators.
const MAX_HEADER: usize = MAGIC.len() + 2 * 21 + 1 + 64 + 1;
/// Largest body a slot is sure to hold.
#[cfg(test)]
pub(crate) const CAPACITY: usize = SLOT - MAX_HEADER;

/// What a slot holds.
enum Slot<'a> {
    Intact {
        seq: u64,
        body: &'a [u8],
    },
    /// All zeros: never written.
    Blank,
    /// Neither: a write torn by a crash, or damage.
    Damaged,
}

/// What the two slots of a file hold.
struct Slots<'a> {
    /// The newest intact slot: its index, sequence number and body.
    newest: Option<(usize, u64, &'a [u8])>,
    damaged: bool,
}

/// The text of a state file, and whether one slot was found damaged.
#[derive(Debug, PartialEq, Eq)]
pub struct Contents {
    pub text: String,
    /// The other slot is neither intact nor blank: the last write was torn by a crash (and
    /// this is the state from before it), or the disk or someone damaged the file.
    pub damaged: bool,
}

fn digest(seq: u64, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(body);
    crate::recovery::hex(&h.finalize())
}

fn parse_slot(slot: &[u8]) -> Slot<'_> {
    if slot.iter().all(|&b| b == 0) {
        return Slot::Blank;
    }
    parse_header(slot).map_or(Slot::Damaged, |(seq, body)| Slot::Intact { seq, body })
}

/// Sequence number and body of a slot whose header and checksum are right.
fn parse_header(slot: &[u8]) -> Option<(u64, &[u8])> {
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

/// The slots of a file, or why it is not a file of ours at all.
fn slots(file: &[u8]) -> std::result::Result<Slots<'_>, String> {
    if file.len() != FILE_LEN {
        return Err(format!(
            "it is {} bytes long, not the {FILE_LEN} of two slots",
            file.len()
        ));
    }
    let mut found = Slots {
        newest: None,
        damaged: false,
    };
    for (index, slot) in file.chunks(SLOT).enumerate() {
        match parse_slot(slot) {
            Slot::Intact { seq, body } => {
                if found.newest.is_none_or(|(_, newest, _)| seq > newest) {
                    found.newest = Some((index, seq, body));
                }
            }
            Slot::Blank => {}
            Slot::Damaged => found.damaged = true,
        }
    }
    Ok(found)
}

/// The start of a slot: header and body. `None` if they do not fit in a slot.
fn slot_image(seq: u64, body: &[u8]) -> Option<Vec<u8>> {
    let header = format!("{MAGIC} {seq} {} {}\n", body.len(), digest(seq, body));
    if header.len() + body.len() > SLOT {
        return None;
    }
    let mut image = Vec::with_capacity(SLOT);
    image.extend_from_slice(header.as_bytes());
    image.extend_from_slice(body);
    Some(image)
}

/// The newest intact slot of `path`. `Ok(None)` if there is no file. A file with no intact
/// slot is corrupt; `hint` says what to do about it.
pub fn read(policy: &Policy, path: &Path, hint: &'static str) -> Result<Option<Contents>> {
    let Some(bytes) = policy.read(path)? else {
        return Ok(None);
    };
    decode(&bytes)
        .map(Some)
        .map_err(|why| Error::corrupt(path, why, hint))
}

/// The newest intact slot of a file's bytes, or why there is none.
pub fn decode(file: &[u8]) -> std::result::Result<Contents, String> {
    let slots = slots(file)?;
    let (_, _, body) = slots.newest.ok_or("neither of its slots is intact")?;
    let text = std::str::from_utf8(body).map_err(|_| "its newest slot is not UTF-8 text")?;
    Ok(Contents {
        text: text.to_owned(),
        damaged: slots.damaged,
    })
}

/// Makes `body` the newest slot of `dir/name`, durably; `Ok(true)` if that created the file.
/// Call only while holding the lock that serialises the file's writers: two writers at once
/// could both pick the same slot.
pub fn write(policy: &Policy, dir: &Path, name: &str, body: &[u8]) -> Result<bool> {
    let pending = begin(policy, dir, name, body, false)?;
    let created = pending.created;
    pending.commit()?;
    Ok(created)
}

/// Makes `body` the newest slot of `dir/name` without flushing it yet: every process sees it
/// from now on, even if this one is killed, but only [`Pending::commit`] or
/// [`Pending::replace`] makes it durable. Same locking rule as [`write`].
///
/// `flush_first`: the newest slot may not have reached the disk (its writer died between
/// writing and flushing). It is flushed before the other slot is overwritten, so that a crash
/// never finds both slots half written.
pub(crate) fn begin<'a>(
    policy: &Policy,
    dir: &'a Path,
    name: &'a str,
    body: &[u8],
    flush_first: bool,
) -> Result<Pending<'a>> {
    let path = dir.join(name);
    if let Some((mut file, meta)) = policy.open_for_update(&path)? {
        if flush_first {
            file.sync_data().map_err(|e| Error::io(&path, "flush", e))?;
        }
        let bytes = policy.read_opened(&path, &mut file, &meta)?;
        // Written in place unless the file is not ours (wrong length), has run out of
        // sequence numbers (only a forged one can), has other names (a hard link made by a
        // backup tool must not follow our writes) or has holes (a sparse copy: writing into
        // a hole needs free space, and the promise is that a full disk stops no write); then
        // it is replaced whole below.
        let in_place = meta.nlink() == 1 && meta.blocks() * 512 >= FILE_LEN as u64;
        if let (Ok(slots), true) = (slots(&bytes), in_place) {
            let (index, seq) = slots.newest.map_or((1, 0), |(i, seq, _)| (i, seq));
            // Ending in u64::MAX - 1 leaves room for the replace that may follow.
            if seq < u64::MAX - 2 {
                let mut pending = Pending {
                    file,
                    dir,
                    name,
                    slot: 1 - index,
                    seq,
                    before: bytes,
                    created: false,
                };
                pending.put(body)?;
                return Ok(pending);
            }
        }
    }
    let mut contents = slot_image(1, body).ok_or_else(|| too_long(&path, body))?;
    contents.resize(FILE_LEN, 0);
    safefile::write_atomic(dir, name, &contents)?;
    let Some((file, _)) = policy.open_for_update(&path)? else {
        return Err(Error::io(
            &path,
            "open",
            std::io::ErrorKind::NotFound.into(),
        ));
    };
    // Slot 0 holds `body`, on disk; what replaces it goes into slot 1, so a crash during that
    // write still finds slot 0 whole.
    Ok(Pending {
        file,
        dir,
        name,
        slot: 1,
        seq: 1,
        before: Zeroizing::new(contents),
        created: true,
    })
}

fn too_long(path: &Path, body: &[u8]) -> Error {
    Error::Invalid(format!(
        "cannot write {}: {} bytes do not fit in a slot",
        path.display(),
        body.len()
    ))
}

/// A slot written by `begin` and not flushed yet.
pub struct Pending<'a> {
    file: File,
    dir: &'a Path,
    name: &'a str,
    /// The slot this write owns: the other one holds the state from before it, untouched.
    slot: usize,
    /// Sequence number of the body last put into `slot`.
    seq: u64,
    /// The file as it was when this slot last held a body that reached the disk, or was read.
    before: Zeroizing<Vec<u8>>,
    /// Whether `begin` created the file.
    pub created: bool,
}

impl Pending<'_> {
    /// Flushes what [`begin`] wrote.
    pub(crate) fn commit(self) -> Result<()> {
        let path = self.dir.join(self.name);
        let flushed = self
            .file
            .sync_data()
            .map_err(|e| Error::io(&path, "flush", e));
        if flushed.is_err() {
            self.restore();
        }
        flushed
    }

    /// Puts `body` into the same slot in place of what `begin` wrote, and flushes it. The
    /// other slot is never touched, so a crash leaves it, or this slot whole.
    pub fn replace(mut self, body: &[u8]) -> Result<()> {
        self.put(body)?;
        self.commit()
    }

    /// Writes `body` as the next sequence number into this write's slot, unflushed. On a
    /// failure the file is put back as [`Self::before`] records it.
    fn put(&mut self, body: &[u8]) -> Result<()> {
        let path = self.dir.join(self.name);
        let seq = self.seq + 1;
        // Header and body alone: what lies beyond them is never read, and a write cut short
        // anywhere (a file-size limit, a signal) leaves a slot that fails its checksum, never
        // one that is whole while the write reports failure.
        let image = slot_image(seq, body).ok_or_else(|| too_long(&path, body))?;
        let offset = self.slot * SLOT;
        if let Err(e) = self.file.write_all_at(&image, offset as u64) {
            self.restore();
            return Err(Error::io(&path, "write", e));
        }
        // From here on, a failure puts back this slot as it is now, not the file as read: the
        // write reached every reader, and whatever it recorded must stay recorded.
        self.seq = seq;
        let start = offset.min(self.before.len());
        let end = (offset + image.len()).min(self.before.len());
        self.before[start..end].copy_from_slice(&image[..end - start]);
        Ok(())
    }

    /// After a failed write or flush the page cache may hold bytes the disk refused, and the
    /// next writer would trust them and overwrite the only slot on disk. Best effort: put the
    /// last good contents in a new file, so nothing of the failed write stays visible.
    fn restore(&self) {
        let _ = safefile::write_atomic(self.dir, self.name, &self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    const HINT: &str = "test";

    fn scratch(name: &str) -> (PathBuf, Policy) {
        let dir =
            std::env::temp_dir().join(format!("ivmfa-slotfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let policy = Policy {
            owner: std::fs::metadata(&dir).unwrap().uid(),
            max_len: 64 * 1024,
            private: true,
            strict_owner: false,
        };
        (dir, policy)
    }

    fn put(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// What each slot of the file holds: `Some((seq, body))` if intact.
    fn on_disk(path: &Path) -> Vec<Option<(u64, Vec<u8>)>> {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len(), FILE_LEN);
        bytes
            .chunks(SLOT)
            .map(|s| match parse_slot(s) {
                Slot::Intact { seq, body } => Some((seq, body.to_vec())),
                _ => None,
            })
            .collect()
    }

    fn text(policy: &Policy, path: &Path) -> Option<String> {
        read(policy, path, HINT).unwrap().map(|c| c.text)
    }

    #[test]
    fn writes_alternate_between_the_slots_in_place() {
        let (dir, policy) = scratch("alternate");
        let path = dir.join("state");
        assert_eq!(text(&policy, &path), None);
        assert!(write(&policy, &dir, "state", b"one").unwrap(), "created");
        let inode = std::fs::metadata(&path).unwrap().ino();
        assert!(!write(&policy, &dir, "state", b"two").unwrap());
        assert!(!write(&policy, &dir, "state", b"three").unwrap());
        assert_eq!(text(&policy, &path).as_deref(), Some("three"));
        assert_eq!(
            on_disk(&path),
            [Some((3, b"three".to_vec())), Some((2, b"two".to_vec()))]
        );
        assert_eq!(inode, std::fs::metadata(&path).unwrap().ino(), "same file");
        // A short body over a long one: what the long one left behind is never read.
        let long = "l".repeat(9000);
        for body in [long.as_str(), "four", "five"] {
            write(&policy, &dir, "state", body.as_bytes()).unwrap();
        }
        assert_eq!(
            on_disk(&path),
            [Some((5, b"four".to_vec())), Some((6, b"five".to_vec()))],
            "five went over the long body"
        );
        assert_eq!(text(&policy, &path).as_deref(), Some("five"));
    }

    #[test]
    fn a_pending_write_is_seen_at_once_and_replaced_in_its_own_slot() {
        let (dir, policy) = scratch("pending");
        let path = dir.join("state");
        let first = begin(&policy, &dir, "state", b"counted", false).unwrap();
        assert!(first.created);
        assert_eq!(text(&policy, &path).as_deref(), Some("counted"));
        // A new file: the replace goes into the other slot, never over the only copy.
        first.replace(b"accepted").unwrap();
        assert_eq!(
            on_disk(&path),
            [
                Some((1, b"counted".to_vec())),
                Some((2, b"accepted".to_vec()))
            ]
        );
        // In place now: the failure goes into slot 0, readers see it before any flush, and
        // the success replaces it there, never touching slot 1.
        let second = begin(&policy, &dir, "state", b"counted again", true).unwrap();
        assert!(!second.created);
        assert_eq!(
            text(&policy, &path).as_deref(),
            Some("counted again"),
            "seen unflushed"
        );
        second.replace(b"accepted again").unwrap();
        assert_eq!(
            on_disk(&path),
            [
                Some((4, b"accepted again".to_vec())),
                Some((2, b"accepted".to_vec()))
            ]
        );
        let third = begin(&policy, &dir, "state", b"wrong", false).unwrap();
        third.commit().unwrap();
        assert_eq!(on_disk(&path)[1], Some((5, b"wrong".to_vec())));
        // A body too long for the replace leaves the counted one in place.
        let fourth = begin(&policy, &dir, "state", b"counted", false).unwrap();
        assert!(fourth.replace(&[b'x'; SLOT]).is_err());
        assert_eq!(text(&policy, &path).as_deref(), Some("counted"));
    }

    #[test]
    fn a_torn_write_leaves_the_state_before_it_and_is_reported() {
        let (dir, policy) = scratch("torn");
        let path = dir.join("state");
        for body in ["old", "new"] {
            write(&policy, &dir, "state", body.as_bytes()).unwrap();
        }
        let clean = read(&policy, &path, HINT).unwrap().unwrap();
        assert!(!clean.damaged, "a blank slot is not damage");
        // "old" (seq 1) is in slot 0; the next write goes there. Tear it as a crash would.
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = slot_image(3, &[b'n'; 1000]).unwrap();
        bytes[..500].copy_from_slice(&torn[..500]);
        put(&path, &bytes);
        let after = read(&policy, &path, HINT).unwrap().unwrap();
        assert_eq!((after.text.as_str(), after.damaged), ("new", true));
        // The next write goes into the torn slot, never over the intact one.
        write(&policy, &dir, "state", b"next").unwrap();
        assert_eq!(on_disk(&path)[1], Some((2, b"new".to_vec())));
        let mended = read(&policy, &path, HINT).unwrap().unwrap();
        assert_eq!((mended.text.as_str(), mended.damaged), ("next", false));
    }

    #[test]
    fn broken_files_are_corrupt_until_a_write_replaces_them() {
        let (dir, policy) = scratch("broken");
        let path = dir.join("state");
        let garbage: [&[u8]; 5] = [
            b"",
            b"version = 1\n",
            &[0u8; FILE_LEN],
            &[7u8; FILE_LEN],
            &[0u8; 2 * BLOCK],
        ];
        for bytes in garbage {
            put(&path, bytes);
            let err = read(&policy, &path, HINT).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            write(&policy, &dir, "state", b"fresh").unwrap();
            assert_eq!(text(&policy, &path).as_deref(), Some("fresh"));
        }
    }

    #[test]
    fn bodies_too_long_for_a_slot_are_refused_and_change_nothing() {
        let (dir, policy) = scratch("long");
        let path = dir.join("state");
        assert!(write(&policy, &dir, "state", &[b'x'; SLOT]).is_err());
        assert!(!path.exists());
        write(&policy, &dir, "state", &[b'x'; CAPACITY]).unwrap();
        assert!(write(&policy, &dir, "state", &[b'y'; SLOT]).is_err());
        assert_eq!(text(&policy, &path).unwrap().len(), CAPACITY);
    }

    #[test]
    fn the_last_sequence_number_a_hard_link_or_a_hole_starts_a_new_file() {
        let (dir, policy) = scratch("replace");
        let path = dir.join("state");
        let mut forged = slot_image(u64::MAX, b"forged").unwrap();
        forged.resize(FILE_LEN, 0);
        put(&path, &forged);
        assert!(write(&policy, &dir, "state", b"next").unwrap());
        assert_eq!(on_disk(&path), [Some((1, b"next".to_vec())), None]);
        // A backup tool's hard link keeps what it saw.
        let backup = dir.join("backup");
        std::fs::hard_link(&path, &backup).unwrap();
        assert!(write(&policy, &dir, "state", b"after").unwrap());
        assert_eq!(on_disk(&backup)[0], Some((1, b"next".to_vec())));
        assert_eq!(text(&policy, &path).as_deref(), Some("after"));
        // A sparse copy (holes where the zeros were) is filled in by replacing it.
        let mut start = slot_image(9, b"sparse").unwrap();
        start.resize(BLOCK, 0);
        put(&path, &start);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(FILE_LEN as u64)
            .unwrap();
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < FILE_LEN as u64);
        assert_eq!(text(&policy, &path).as_deref(), Some("sparse"));
        assert!(write(&policy, &dir, "state", b"dense").unwrap());
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 >= FILE_LEN as u64);
        assert!(!write(&policy, &dir, "state", b"in place").unwrap());
    }

    #[test]
    fn headers_that_lie_are_not_intact() {
        let good = slot_image(5, b"body").unwrap();
        assert!(matches!(
            parse_slot(&good),
            Slot::Intact {
                seq: 5,
                body: b"body"
            }
        ));
        let header_len = good.iter().position(|&b| b == b'\n').unwrap() + 1;
        let header = std::str::from_utf8(&good[..header_len]).unwrap();
        let lies = [
            (" 5 ", " 6 "),
            (" 4 ", " 3 "),
            (" 4 ", " 99999 "),
            ("slot 1", "slot 2"),
        ];
        for (from, to) in lies {
            let mut forged = header.replacen(from, to, 1).into_bytes();
            forged.extend_from_slice(b"body");
            forged.resize(SLOT, 0);
            assert!(
                matches!(parse_slot(&forged), Slot::Damaged),
                "{from} -> {to}"
            );
        }
        assert!(matches!(parse_slot(&[0u8; SLOT]), Slot::Blank));
    }
}
