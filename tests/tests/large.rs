//! Large files, read through the server's Prometheus counters: a one-byte edit of a 50 MB file
//! uploads only the chunks around it, and a push killed half way is resumed without sending
//! again what the server already stored.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use cairn_test_support::files::{assert_same_tree, read, write};
use cairn_test_support::noise;
use sync_protocol::limits::{CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, FILE_CHUNK_LEN, OBJECT_HEADER_LEN};
use sync_protocol::{ObjectId, ObjectKind, encode_file};

use crate::support::Setup;
use crate::support::server::{Metrics, Server};

const MIB: usize = 1024 * 1024;

/// Request bytes beyond the objects themselves that a small push may cost: the object
/// stream's framing, the changed dirs, the JSON of the requests around the upload.
const OVERHEAD: u64 = 16 * 1024;

/// The largest a file object of a `size`-byte file can be: one entry per chunk, and no chunk
/// but the last is shorter than the minimum. Chunk ids are incompressible.
fn file_object_bound(size: usize) -> u64 {
    let chunks = size.div_ceil(CHUNK_MIN_SIZE as usize);
    (OBJECT_HEADER_LEN + chunks * FILE_CHUNK_LEN) as u64
}

#[test]
fn a_one_byte_edit_in_a_50_mb_file_uploads_only_the_chunks_around_it() {
    const SIZE: usize = 50 * MIB;
    let Some(setup) = Setup::start() else { return };
    let original = noise(SIZE, 0xC0FF_EE00_D15C_0001);
    setup.first_version(&[("data/big.bin", &original)]);
    let Setup { cairn, a, b, .. } = &setup;
    let server = &setup.server;

    // One byte in the middle, changed in place.
    let middle = SIZE / 2;
    let mut edited = original.clone();
    edited[middle] ^= 0xff;
    let mut file = OpenOptions::new()
        .write(true)
        .open(a.join("data/big.bin"))
        .expect("opening the big file");
    file.seek(SeekFrom::Start(middle as u64)).expect("seek");
    file.write_all(&edited[middle..=middle]).expect("write");
    drop(file);
    assert_eq!(read(a, "data/big.bin"), edited);

    // What the format says must travel: the chunks of the edit that the old version lacks, the
    // new file object, and the two dirs above it.
    let old = encode_file(&original, false).expect("encoding the original");
    let new = encode_file(&edited, false).expect("encoding the edit");
    let old_ids: HashSet<ObjectId> = old.objects.iter().map(|object| object.id).collect();
    let fresh: Vec<_> = new
        .objects
        .iter()
        .filter(|object| !old_ids.contains(&object.id))
        .collect();
    let fresh_chunks = fresh
        .iter()
        .filter(|object| object.kind == ObjectKind::Chunk)
        .count();
    assert!(
        (1..=3).contains(&fresh_chunks),
        "a one-byte edit changed {fresh_chunks} chunks of {}",
        new.objects.len() - 1
    );
    let fresh_bytes: u64 = fresh.iter().map(|object| object.frame.len() as u64).sum();

    let before = server.metrics();
    let pushed = cairn.json(a, &["push", "-m", "one byte"]);
    let uploaded = server.metrics().since(&before);
    assert_eq!(pushed["push"]["version"], 2, "{pushed}");
    let bound = 3 * u64::from(CHUNK_MAX_SIZE) + file_object_bound(SIZE) + OVERHEAD;
    eprintln!(
        "one-byte edit of a {SIZE}-byte file: {} request bytes in, {} objects ({} bytes) \
         stored, {fresh_chunks} new chunks; bound {bound} bytes",
        uploaded.bytes_in, uploaded.objects_stored, uploaded.object_bytes_stored
    );
    assert_eq!(
        uploaded.objects_stored,
        fresh.len() as u64 + 2,
        "objects stored: the new chunks, the file object and two dirs"
    );
    // The client counts what it sent; with change records the server builds the dirs itself,
    // so only the bytes compare: what the client says it sent, the server received.
    let reported = pushed["push"]["bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(reported <= uploaded.bytes_in, "{pushed} but {uploaded:?}");
    assert!(
        uploaded.object_bytes_stored >= fresh_bytes,
        "{uploaded:?}: less than the new chunks and file object ({fresh_bytes} bytes)"
    );
    assert!(
        uploaded.bytes_in <= bound,
        "the push sent {} bytes for a one-byte edit, more than {bound}",
        uploaded.bytes_in
    );

    let before = server.metrics();
    cairn.pull(b, 1, 2);
    let downloaded = server.metrics().since(&before);
    assert!(
        downloaded.bytes_out <= bound,
        "the pull of a one-byte edit received {} bytes, more than {bound}",
        downloaded.bytes_out
    );
    assert!(
        read(b, "data/big.bin") == edited,
        "B's copy of the edited file differs"
    );
    assert_same_tree(a, b);
}

/// Waits until the server's stored-object counter has not moved for a second: a batch whose
/// body the server had whole when the client died is still stored and counted.
fn settled(server: &Server) -> Metrics {
    let mut last = server.metrics();
    let mut still_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while still_since.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = server.metrics();
        if now.objects_stored != last.objects_stored {
            still_since = Instant::now();
        }
        last = now;
    }
    last
}

#[test]
fn a_push_killed_half_way_is_resumed_without_sending_stored_objects_again() {
    const FILES: usize = 8;
    const FILE_SIZE: usize = 8 * MIB;
    let Some(setup) = Setup::start() else { return };
    let Setup { cairn, a, b, .. } = &setup;
    let server = &setup.server;
    let mut files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|file| {
            let bytes = noise(FILE_SIZE, 0x5EED_0000 + file as u64);
            (format!("data/part-{file}.bin"), bytes)
        })
        .collect();
    files.push(("index.json".to_owned(), br#"{"parts":8}"#.to_vec()));
    let mut distinct: HashSet<ObjectId> = HashSet::new();
    let mut frame_bytes = 0u64;
    for (path, bytes) in &files {
        write(a, path, bytes);
        for object in encode_file(bytes, false).expect("encoding").objects {
            if distinct.insert(object.id) {
                frame_bytes += object.frame.len() as u64;
            }
        }
    }
    drop(files);
    // The root and `data/`.
    let distinct = distinct.len() as u64 + 2;

    let before = server.metrics();
    let mut push = cairn.spawn(a, &["--json", "push", "-m", "large"]);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if server.metrics().objects_stored > before.objects_stored {
            break;
        }
        if let Ok(Some(status)) = push.child.try_wait() {
            panic!(
                "cairn push ended ({status}) before the server had stored any object, so there \
                 was nothing to interrupt:\n{}",
                push.output().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "the push stored nothing in 300 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    push.kill();
    let run_one = settled(server).since(&before);
    let head = cairn.head_version(b);
    assert_eq!(
        head,
        0,
        "the push had already committed version {head} when it was killed ({} of {distinct} \
         objects stored): it did not upload in several batches before its commit, so there was \
         no half-way point to interrupt. Output before the kill:\n{}",
        run_one.objects_stored,
        push.output().join("\n")
    );
    assert!(
        run_one.objects_stored < distinct,
        "all {distinct} objects were stored before the kill: nothing was left to resume"
    );
    // The client's record of the unfinished push (sync-client's `upload` module).
    let journal = a.join(".cairn/push-journal");
    assert!(journal.is_file(), "no push journal after the kill");

    let before_resume = server.metrics();
    let resumed = cairn.json(a, &["push", "-m", "large"]);
    let run_two = server.metrics().since(&before_resume);
    eprintln!(
        "resume: {distinct} distinct objects ({frame_bytes} bytes of frames besides the dirs); \
         run 1 stored {} objects ({} bytes) before SIGKILL, run 2 stored {} objects ({} bytes) \
         from {} request bytes",
        run_one.objects_stored,
        run_one.object_bytes_stored,
        run_two.objects_stored,
        run_two.object_bytes_stored,
        run_two.bytes_in
    );
    assert_eq!(resumed["push"]["pushed"], true, "{resumed}");
    assert_eq!(resumed["push"]["version"], 1, "{resumed}");
    assert_eq!(
        run_one.objects_stored + run_two.objects_stored,
        distinct,
        "objects stored by the killed push and by the resumed one must add up to the tree's \
         distinct objects; more means objects already stored were uploaded again"
    );
    // In bytes: the resumed push sends what was left, plus its questions and framing (the
    // missing-objects queries carry about 70 bytes per id asked about; each frame sent has a
    // stream header of its own).
    let left = (frame_bytes + OVERHEAD).saturating_sub(run_one.object_bytes_stored);
    let questions = distinct * 70;
    let framing = run_two.objects_stored * sync_protocol::stream::FRAME_HEADER_LEN as u64;
    assert!(
        run_two.bytes_in <= left + questions + framing + OVERHEAD,
        "the resumed push sent {} bytes, more than the {left} left plus {questions} of queries \
         and {framing} of frame headers",
        run_two.bytes_in
    );

    assert!(!journal.exists(), "the push journal outlived the commit");

    let pulled = cairn.pull(b, 0, 1);
    assert_eq!(pulled["objects"], distinct, "{pulled}");
    assert_same_tree(a, b);
    cairn.assert_clean_at(a, 1);
}
