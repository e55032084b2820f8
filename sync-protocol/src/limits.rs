//! The format's limits. They are part of the format, not server policy: the decoder checks them,
//! so a client and a server agree on what a valid project is.

/// Content-defined chunking: no chunk is cut shorter than this (except a file's last chunk).
pub const CHUNK_MIN_SIZE: u32 = 16 * 1024;
/// Content-defined chunking: the average chunk size the cut points aim for.
pub const CHUNK_AVG_SIZE: u32 = 64 * 1024;
/// Content-defined chunking: no chunk is longer than this. Also the largest valid chunk object.
pub const CHUNK_MAX_SIZE: u32 = 256 * 1024;

/// The largest file a project may hold.
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
/// The most chunks a file object may list: a largest file cut entirely at the minimum size.
pub const MAX_FILE_CHUNKS: u32 = (MAX_FILE_SIZE / CHUNK_MIN_SIZE as u64) as u32;
/// The most entries one directory may hold.
pub const MAX_DIR_ENTRIES: u32 = 65_536;

/// Bytes a name may take (UTF-8, after NFC normalization).
pub const MAX_NAME_LEN: usize = 255;
/// The deepest a path may be, in components: `a/b/c` has depth 3.
pub const MAX_PATH_DEPTH: usize = 64;
/// The longest a path may be, in bytes, with `/` separators.
pub const MAX_PATH_LEN: usize = 4096;

/// Bytes in the object header: kind tag and format version.
pub const OBJECT_HEADER_LEN: usize = 2;
/// Bytes of one encoded dir entry besides its name: name length, kind, target, size, id.
pub const DIR_ENTRY_FIXED_LEN: usize = 1 + 1 + 1 + 8 + 32;
/// Bytes of one encoded file-object chunk reference: id and length.
pub const FILE_CHUNK_LEN: usize = 32 + 4;

/// The largest valid encoded object (header included), uncompressed. Derived from the largest
/// dir, which is the largest kind; every decoder caps decompression at this size.
pub const MAX_OBJECT_SIZE: usize =
    OBJECT_HEADER_LEN + 4 + MAX_DIR_ENTRIES as usize * (DIR_ENTRY_FIXED_LEN + MAX_NAME_LEN);

const _: () = assert!(MAX_OBJECT_SIZE >= OBJECT_HEADER_LEN + CHUNK_MAX_SIZE as usize);
const _: () =
    assert!(MAX_OBJECT_SIZE >= OBJECT_HEADER_LEN + 12 + MAX_FILE_CHUNKS as usize * FILE_CHUNK_LEN);
