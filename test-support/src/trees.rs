//! Trees built in memory from `(path, bytes)` pairs: the listing, the root id and every object,
//! ready to store or send. Files are encoded as the client encodes them
//! ([`sync_protocol::encode_file`]): a file of at most `CHUNK_MIN_SIZE` bytes is one chunk, a
//! larger one a file object over content-defined chunks. [`noise`] makes content that is cut
//! into several chunks.

use std::collections::HashSet;

pub use sync_protocol::checks::noise;
use sync_protocol::stream::StreamEncoder;
use sync_protocol::tree::build_dirs;
use sync_protocol::{
    FileRef, Listing, Object, ObjectId, ObjectKind, Path, compress_object, encode_file,
};

/// One object ready to store or send: its kind, id and zstd frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedObject {
    pub kind: ObjectKind,
    pub id: ObjectId,
    pub frame: Vec<u8>,
}

impl FramedObject {
    pub fn of(object: &Object) -> FramedObject {
        FramedObject {
            kind: object.kind(),
            id: object.id(),
            frame: compress_object(&object.encode()),
        }
    }
}

/// A tree and every distinct object of it, children first and the root last: a valid upload
/// order. File objects come first, in the order their files were given; then the dirs.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: ObjectId,
    pub listing: Listing,
    pub objects: Vec<FramedObject>,
}

impl Tree {
    /// Builds the tree of `files`, given as `(path, contents, executable)`; `/` in a path makes
    /// folders. Panics on an invalid path or a tree the format does not allow.
    pub fn build<P: AsRef<str>, C: AsRef<[u8]>>(files: &[(P, C, bool)]) -> Tree {
        let mut listing = Listing::new();
        let mut objects = Vec::new();
        let mut seen = HashSet::new();
        for (path, contents, executable) in files {
            let path = path.as_ref();
            let encoded = encode_file(contents.as_ref(), *executable)
                .unwrap_or_else(|error| panic!("encoding {path}: {error}"));
            for object in encoded.objects {
                if seen.insert(object.id) {
                    objects.push(FramedObject {
                        kind: object.kind,
                        id: object.id,
                        frame: object.frame,
                    });
                }
            }
            let path = Path::new(path).unwrap_or_else(|error| panic!("path {path:?}: {error}"));
            listing.insert(
                path,
                FileRef {
                    kind: encoded.kind,
                    target: encoded.target,
                    size: encoded.size,
                    id: encoded.id,
                },
            );
        }
        let built = build_dirs(&listing).unwrap_or_else(|error| panic!("building dirs: {error}"));
        for (id, dir) in &built.dirs {
            if seen.insert(*id) {
                objects.push(FramedObject::of(dir));
            }
        }
        Tree {
            root: built.root,
            listing,
            objects,
        }
    }

    /// The whole tree as one object stream.
    pub fn stream(&self) -> Vec<u8> {
        stream_of(&self.objects)
    }

    /// The ids of its objects, in order.
    pub fn ids(&self) -> Vec<ObjectId> {
        self.objects.iter().map(|object| object.id).collect()
    }
}

/// The tree of `(path, text)` pairs, every file a regular one.
pub fn tree(files: &[(&str, &str)]) -> Tree {
    let files: Vec<(&str, &str, bool)> = files
        .iter()
        .map(|(path, text)| (*path, *text, false))
        .collect();
    Tree::build(&files)
}

/// An object stream of `objects`, in order.
pub fn stream_of(objects: &[FramedObject]) -> Vec<u8> {
    let mut encoder = StreamEncoder::new();
    for object in objects {
        encoder
            .push(object.kind, &object.id, &object.frame)
            .expect("a stream frame");
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use sync_protocol::{Dir, DirEntry, EntryKind, Name};

    use super::*;

    /// Small files are one chunk each, and the dirs are those the entries make by hand.
    #[test]
    fn small_files_are_chunks_under_their_dirs() {
        let built = tree(&[("a.json", "1"), ("d/b.json", "22")]);
        let chunk = |text: &str| Object::Chunk(text.as_bytes().to_vec());
        let entry = |name: &str, text: &str| DirEntry {
            name: Name::new(name).unwrap(),
            kind: EntryKind::File,
            target: ObjectKind::Chunk,
            size: text.len() as u64,
            id: chunk(text).id(),
        };
        let d = Object::Dir(Dir::new(vec![entry("b.json", "22")]).unwrap());
        let root = Object::Dir(
            Dir::new(vec![
                entry("a.json", "1"),
                DirEntry::dir(Name::new("d").unwrap(), d.id()),
            ])
            .unwrap(),
        );
        assert_eq!(built.root, root.id());
        assert_eq!(
            built.ids(),
            [chunk("1").id(), chunk("22").id(), d.id(), root.id()]
        );
        assert_eq!(built.listing.len(), 2);
    }

    #[test]
    fn large_files_are_file_objects_and_repeats_are_stored_once() {
        let big = noise(200_000, 3);
        let built = Tree::build(&[("x.bin", &big[..], true), ("y.bin", &big[..], false)]);
        let x = &built.listing[&Path::new("x.bin").unwrap()];
        assert_eq!(
            (x.kind, x.target),
            (EntryKind::Executable, ObjectKind::File)
        );
        let ids = built.ids();
        let distinct: HashSet<&ObjectId> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert_eq!(
            built.objects.last().map(|object| object.id),
            Some(built.root)
        );
    }
}
