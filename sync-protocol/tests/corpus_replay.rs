//! Replays the committed fuzz corpora and every crash file through the same invariant checks
//! the fuzz targets run, so a fixed crash stays fixed in the normal test run, without
//! cargo-fuzz or a nightly compiler.
//!
//! Inputs live in `fuzz/corpus/<target>/` (seeds and minimized corpus) and
//! `fuzz/regressions/<target>/` (inputs that once crashed, kept forever).

use std::path::{Path, PathBuf};

use sync_protocol::checks::codec;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `check` on every file of the target's corpus and regression dirs; returns how many
/// corpus files there were. A missing dir counts as empty.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut corpus_files = 0;
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|entry| entry.expect("readable corpus dir").path())
            .filter(|path| path.is_file())
            .collect();
        // A stable order makes a failure easy to reproduce.
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(
                outcome.is_ok(),
                "{target}: invariant broken by {}",
                path.display()
            );
            if kind == "corpus" {
                corpus_files += 1;
            }
        }
    }
    corpus_files
}

/// `replay`, for a target whose committed corpus must not be empty.
fn replay_corpus(target: &str, check: fn(&[u8])) {
    assert!(replay(target, check) > 0, "{target}: empty corpus");
}

#[test]
fn object_decode_corpus() {
    replay_corpus("object_decode", codec::object_decode);
}

#[test]
fn stream_decode_corpus() {
    replay_corpus("stream_decode", codec::stream_decode);
}

#[test]
fn zstd_decode_corpus() {
    replay_corpus("zstd_decode", codec::zstd_decode);
}

#[test]
fn push_accept_corpus() {
    replay_corpus("push_accept", sync_protocol::checks::accept::push_accept);
}

#[test]
fn tree_merge_corpus() {
    // The merge corpus is another engineer's and may still be empty: no count assertion.
    replay("tree_merge", sync_protocol::checks::merge::tree_merge);
}

#[test]
fn content_merge_corpus() {
    replay_corpus(
        "content_merge",
        sync_protocol::checks::content::content_merge,
    );
}

/// Writes the hand-made seed inputs into the corpus dirs. Run after a format change with
/// `cargo test -p sync-protocol --test tests -- --ignored write_seed_corpora`, then let the
/// fuzzers grow and `cargo fuzz cmin` the corpora.
#[test]
#[ignore = "writes into fuzz/corpus; run on purpose"]
fn write_seed_corpora() {
    use sync_protocol::chunking::ObjectEncoder;
    use sync_protocol::stream::StreamEncoder;
    use sync_protocol::{
        Dir, DirEntry, EntryKind, FileChunk, FileObject, Name, Object, ObjectKind,
    };

    let chunk = |body: &[u8]| Object::Chunk(body.to_vec());
    let small_file = |name: &str, body: &[u8], kind| DirEntry {
        name: Name::new(name).unwrap(),
        kind,
        target: ObjectKind::Chunk,
        size: body.len() as u64,
        id: sync_protocol::chunk_id(body),
    };
    let file_object = FileObject::new(vec![
        FileChunk {
            id: sync_protocol::chunk_id(b"first"),
            len: 16 * 1024,
        },
        FileChunk {
            id: sync_protocol::chunk_id(b"second"),
            len: 100_000,
        },
        FileChunk {
            id: sync_protocol::chunk_id(b"third"),
            len: 7,
        },
    ])
    .unwrap();
    let dir = Dir::new(vec![
        small_file("request.json", b"{\"method\": \"GET\"}", EntryKind::File),
        small_file("run.sh", b"#!/bin/sh\n", EntryKind::Executable),
        small_file("Ünïcödé 漢字.json", b"{}", EntryKind::File),
        DirEntry {
            name: Name::new("big.bin").unwrap(),
            kind: EntryKind::File,
            target: ObjectKind::File,
            size: file_object.size(),
            id: Object::File(file_object.clone()).id(),
        },
        DirEntry::dir(
            Name::new("environments").unwrap(),
            Object::Dir(Dir::empty()).id(),
        ),
    ])
    .unwrap();
    let objects = [
        ("empty-chunk", chunk(b"")),
        (
            "text-chunk",
            chunk(b"{\"url\": \"https://example.com/api\", \"headers\": {}}\n"),
        ),
        ("empty-dir", Object::Dir(Dir::empty())),
        ("dir", Object::Dir(dir)),
        ("file", Object::File(file_object)),
    ];

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let mut encoder = ObjectEncoder::new();
    let mut all = StreamEncoder::new();
    for (name, object) in &objects {
        let encoded = encoder.encode_object(object);
        write("object_decode", name, &object.encode());
        write("zstd_decode", name, &encoded.frame);
        let mut one = StreamEncoder::new();
        one.push_object(&encoded).unwrap();
        write("stream_decode", name, &one.finish());
        all.push_object(&encoded).unwrap();
    }
    write("stream_decode", "all", &all.finish());
    write("stream_decode", "empty", &StreamEncoder::new().finish());

    // Frames without a declared content size and with a checksum, and one just past the
    // check's output limit.
    let streamed = |data: &[u8], checksum: bool| {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(checksum).unwrap();
        std::io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    };
    write(
        "zstd_decode",
        "streamed",
        &streamed(&objects[1].1.encode(), false),
    );
    write(
        "zstd_decode",
        "checksum",
        &streamed(&objects[3].1.encode(), true),
    );
    write(
        "zstd_decode",
        "past-limit",
        &streamed(&vec![0u8; codec::ZSTD_CHECK_LIMIT + 1], false),
    );

    // A store state and a push each: genuine pushes of objects and of change records, the
    // same streams as raw bytes, and mutated ones (see `checks::accept::seeds`).
    for (name, bytes) in sync_protocol::checks::accept::seeds() {
        write("push_accept", name, &bytes);
    }
    for (name, bytes) in sync_protocol::checks::content::seeds() {
        write("content_merge", name, &bytes);
    }
}
