//! The compact binary format of the `.cairn/` state files (base listing, stat cache).
//!
//! A file is a magic string naming its kind and version, a body, and a BLAKE3 hash of everything
//! before it, so a torn or damaged file is detected instead of half-read. Paths are stored sorted
//! and prefix-compressed against the previous path (shared byte count, then the rest), which
//! keeps a stat cache of 100,000 deep paths a few megabytes.

use sync_protocol::tree::{FileRef, Path};
use sync_protocol::{EntryKind, ObjectId, ObjectKind};

const CHECKSUM_LEN: usize = 32;

/// Writes a state file body. Fixed-width little-endian integers throughout.
#[derive(Debug)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
    previous_path: String,
}

impl Writer {
    pub fn new(magic: &[u8]) -> Self {
        Self {
            bytes: magic.to_vec(),
            previous_path: String::new(),
        }
    }

    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Starts a new run of prefix-compressed paths (the first path shares nothing).
    pub fn restart_paths(&mut self) {
        self.previous_path.clear();
    }

    pub fn id(&mut self, id: &ObjectId) {
        self.bytes.extend_from_slice(id.as_bytes());
    }

    /// Paths must be written in increasing order for the prefix compression to pay off; any
    /// order decodes correctly.
    /// A synced version, or none (never synced): a flag byte, then the number.
    pub fn version(&mut self, version: Option<u64>) {
        match version {
            None => self.u8(0),
            Some(version) => {
                self.u8(1);
                self.u64(version);
            }
        }
    }

    /// A tree entry: kind, target, size, id.
    pub fn file_ref(&mut self, file_ref: &FileRef) {
        self.u8(file_ref.kind as u8);
        self.u8(file_ref.target.tag());
        self.u64(file_ref.size);
        self.id(&file_ref.id);
    }

    pub fn path(&mut self, path: &Path) {
        let text = path.as_str();
        let shared = common_prefix(&self.previous_path, text);
        let rest = &text.as_bytes()[shared..];
        // A path is at most MAX_PATH_LEN (4096) bytes, so both lengths fit in a u16.
        self.bytes.extend_from_slice(&(shared as u16).to_le_bytes());
        self.bytes
            .extend_from_slice(&(rest.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(rest);
        self.previous_path = text.to_owned();
    }

    pub fn finish(mut self) -> Vec<u8> {
        let checksum = blake3::hash(&self.bytes);
        self.bytes.extend_from_slice(checksum.as_bytes());
        self.bytes
    }
}

/// The longest common prefix of `a` and `b` in bytes, ending on a char boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut shared = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(shared) {
        shared -= 1;
    }
    shared
}

/// Reads a state file written by [`Writer`]; every error is a description for
/// `ClientError::CorruptState`.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    previous_path: String,
}

impl<'a> Reader<'a> {
    /// Checks the magic and the checksum.
    pub fn new(bytes: &'a [u8], magic: &[u8]) -> Result<Self, String> {
        if bytes.len() < magic.len() + CHECKSUM_LEN || !bytes.starts_with(magic) {
            return Err("unknown format or version".to_owned());
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes() != checksum {
            return Err("checksum mismatch (torn or damaged file)".to_owned());
        }
        Ok(Self {
            bytes: body,
            offset: magic.len(),
            previous_path: String::new(),
        })
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("truncated {what} at byte {}", self.offset))?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, String> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut buffer = [0u8; 4];
        buffer.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(buffer))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(buffer))
    }

    pub fn i64(&mut self, what: &str) -> Result<i64, String> {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(self.take(8, what)?);
        Ok(i64::from_le_bytes(buffer))
    }

    pub fn id(&mut self, what: &str) -> Result<ObjectId, String> {
        let mut buffer = [0u8; 32];
        buffer.copy_from_slice(self.take(32, what)?);
        Ok(ObjectId::from_bytes(buffer))
    }

    /// What [`Writer::version`] wrote.
    pub fn version(&mut self) -> Result<Option<u64>, String> {
        match self.u8("version flag")? {
            0 => Ok(None),
            1 => Ok(Some(self.u64("version")?)),
            other => Err(format!("bad version flag {other}")),
        }
    }

    /// What [`Writer::file_ref`] wrote, the entry at `path` (named in errors).
    pub fn file_ref(&mut self, path: &Path) -> Result<FileRef, String> {
        let kind = EntryKind::from_tag(self.u8("entry kind")?)
            .ok_or_else(|| format!("bad entry kind at {path}"))?;
        let target = ObjectKind::from_tag(self.u8("entry target")?)
            .ok_or_else(|| format!("bad entry target at {path}"))?;
        Ok(FileRef {
            kind,
            target,
            size: self.u64("size")?,
            id: self.id("id")?,
        })
    }

    /// Starts a new run of prefix-compressed paths (the first path shares nothing).
    pub fn restart_paths(&mut self) {
        self.previous_path.clear();
    }

    pub fn path(&mut self) -> Result<Path, String> {
        let shared = usize::from(self.u16("path prefix length")?);
        let rest_len = usize::from(self.u16("path length")?);
        let rest = self.take(rest_len, "path")?;
        if shared > self.previous_path.len() || !self.previous_path.is_char_boundary(shared) {
            return Err(format!("bad path prefix length {shared}"));
        }
        let rest = std::str::from_utf8(rest).map_err(|_| "path is not UTF-8".to_owned())?;
        self.previous_path.truncate(shared);
        self.previous_path.push_str(rest);
        Path::new(&self.previous_path).map_err(|error| error.to_string())
    }

    /// Checks nothing is left over.
    pub fn finish(self) -> Result<(), String> {
        if self.offset == self.bytes.len() {
            Ok(())
        } else {
            Err(format!("trailing bytes after byte {}", self.offset))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_with_prefix_compression() {
        let paths = ["a/b/c", "a/b/d", "a/é/x", "a/é/y", "b"];
        let mut writer = Writer::new(b"TEST1");
        for text in paths {
            writer.path(&Path::new(text).unwrap());
        }
        let bytes = writer.finish();
        let mut reader = Reader::new(&bytes, b"TEST1").unwrap();
        for text in paths {
            assert_eq!(reader.path().unwrap().as_str(), text);
        }
        reader.finish().unwrap();
    }

    #[test]
    fn damage_is_detected() {
        let mut writer = Writer::new(b"TEST1");
        writer.u64(7);
        let mut bytes = writer.finish();
        assert!(Reader::new(&bytes, b"TEST2").is_err());
        bytes[6] ^= 1;
        assert!(
            Reader::new(&bytes, b"TEST1")
                .unwrap_err()
                .contains("checksum")
        );
        assert!(Reader::new(&bytes[..10], b"TEST1").is_err());
    }

    #[test]
    fn prefix_never_splits_a_character() {
        // "é" is two bytes; "\u{e8}" shares its first byte.
        assert_eq!(common_prefix("a/é", "a/\u{e8}"), 2);
    }
}
