//! Cairn's sync protocol: the pure core shared by the server and the client.
//!
//! A project version is a Merkle tree of three object kinds (chunk, file, dir), each named by the
//! BLAKE3 hash of its canonical encoding. This crate defines those objects and their one valid
//! byte encoding, the zstd framing used on disk and on the wire, the object-stream codec, tree
//! building, tree diff, push and pull planning, the resume negotiation and three-way merge.
//!
//! It does no I/O, reads no clock and knows no async runtime: inputs go in as values and
//! decisions come out as values. The drivers that talk to sockets, disks, S3 and databases live
//! in `sync-server` and `sync-client`. The wire format is specified in
//! `docs-src/content/docs/protocol/`, rendered on the site.

pub mod accept;
pub mod checks;
pub mod chunking;
pub mod compress;
pub mod content;
pub mod diff;
pub mod id;
pub mod limits;
pub mod merge;
pub mod name;
pub mod negotiate;
pub mod object;
pub mod patch;
pub mod plan;
pub mod rebase;
pub mod respond;
pub mod stream;
pub mod tree;
pub mod wire;

pub use chunking::{EncodedFile, EncodedObject, ObjectEncoder, encode_file};
pub use compress::{
    CompressError, compress_object, decompress_object, max_encoded_len, verify_frame,
    verify_frame_of_kind,
};
pub use id::{ObjectId, ParseIdError};
pub use name::{Name, NameError};
pub use object::{
    Dir, DirEntry, EntryKind, FileChunk, FileObject, Object, ObjectError, ObjectKind, chunk_id,
};
pub use stream::{Frame, StreamDecoder, StreamEncoder, StreamError};
pub use tree::{FileRef, Listing, Path};
