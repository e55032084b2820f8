//! A fast, non-cryptographic hasher for the build's in-memory maps (paths, URLs, indices).
//!
//! The keys come from the site's own files, so the hash-flooding resistance of the standard
//! `RandomState` buys nothing here, while its SipHash was a visible part of a one-page rebuild
//! of a 10,000-page site. This is the multiply-rotate hash of `rustc-hash` (FxHash). No code
//! depends on iteration order (it was random before).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FxHasher`]; create it with `default()`.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_and_lengths_tell_keys_apart() {
        let mut map: FastMap<&str, usize> = FastMap::default();
        for (index, key) in ["", "a", "a\0", "docs/a/", "docs/a/b/c/d/e/f/g/h/"]
            .iter()
            .enumerate()
        {
            map.insert(key, index);
        }
        assert_eq!(map.len(), 5);
        assert_eq!(map["a\0"], 2);
        assert_eq!(map["docs/a/b/c/d/e/f/g/h/"], 4);
        assert_eq!(map.get("docs/a"), None);
    }
}
