//! The protocol spec's worked examples, read from the pages themselves
//! (`docs-src/content/docs/protocol/encoding.md` and `object-stream.md`) and checked byte for
//! byte against what this crate encodes: the wire format is what the spec says, and a change
//! to either shows up here.
//!
//! A dump is the text block under an example's heading: lines of two-digit hex bytes, each
//! optionally after a decimal offset and before two or more spaces of commentary, and an
//! `id <hex>` line.

use std::collections::BTreeMap;

use sync_protocol::accept::{PushAcceptor, Step};
use sync_protocol::diff::diff_listings;
use sync_protocol::patch::{Record, apply_records, encode_content, records_of_changes};
use sync_protocol::stream::{Item, StreamDecoder, StreamEncoder};
use sync_protocol::tree::{FileRef, Listing, MemoryObjects, Path, build_dirs};
use sync_protocol::{
    Dir, DirEntry, EntryKind, FileChunk, FileObject, Name, Object, ObjectId, ObjectKind,
    compress_object, verify_frame,
};

fn page(name: &str) -> String {
    let path = format!(
        "{}/../docs-src/content/docs/protocol/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

/// A dump: its bytes (offsets and commentary dropped) and its `id` line, if any.
#[derive(Debug, Default)]
struct Dump {
    bytes: Vec<u8>,
    id: Option<ObjectId>,
}

/// The text blocks of the section under `heading` (a `## ` or `### ` line, matched exactly).
fn blocks(page: &str, heading: &str) -> Vec<Dump> {
    let mut lines = page.lines().skip_while(|line| {
        line.trim_start_matches('#').trim() != heading || !line.starts_with("##")
    });
    assert!(lines.next().is_some(), "no section {heading:?}");
    let mut dumps = Vec::new();
    let mut current: Option<Dump> = None;
    for line in lines {
        if line.starts_with("## ") || line.starts_with("### ") {
            break;
        }
        if line.starts_with("```") {
            match current.take() {
                Some(dump) => dumps.push(dump),
                None if line == "```text" => current = Some(Dump::default()),
                None => {}
            }
            continue;
        }
        if let Some(dump) = &mut current {
            parse_line(line, dump);
        }
    }
    dumps
}

fn parse_line(line: &str, dump: &mut Dump) {
    let text = line.trim_start();
    if let Some(hex) = text.strip_prefix("id ") {
        dump.id = Some(hex.trim().parse().expect("an id line"));
        return;
    }
    // An offset column: a number followed by two spaces.
    let text = match text.split_once("  ") {
        Some((offset, rest)) if offset.bytes().all(|b| b.is_ascii_digit()) => rest.trim_start(),
        _ => text,
    };
    // The bytes run until two spaces (the commentary) or the end of the line.
    let bytes = text.split("  ").next().unwrap_or_default();
    let tokens: Vec<&str> = bytes.split(' ').collect();
    if tokens
        .iter()
        .all(|token| token.len() == 2 && token.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        dump.bytes.extend(
            tokens
                .iter()
                .map(|token| u8::from_str_radix(token, 16).expect("hex")),
        );
    }
}

fn name(text: &str) -> Name {
    Name::new(text).unwrap()
}

fn chunk(text: &[u8]) -> Object {
    Object::Chunk(text.to_vec())
}

fn file_entry(file: &str, kind: EntryKind, body: &[u8]) -> DirEntry {
    DirEntry {
        name: name(file),
        kind,
        target: ObjectKind::Chunk,
        size: body.len() as u64,
        id: chunk(body).id(),
    }
}

/// `object` encodes to the dump's bytes (all of them, or the first `prefix` when the spec
/// abbreviates) and has its id.
fn holds(dump: &Dump, object: &Object, what: &str) {
    let encoded = object.encode();
    assert_eq!(
        encoded[..dump.bytes.len()],
        dump.bytes[..],
        "{what}: the spec's bytes"
    );
    if let Some(id) = dump.id {
        assert_eq!(object.id(), id, "{what}: the spec's id");
    }
}

#[test]
fn the_encoding_page_examples_hold() {
    let page = page("encoding.md");
    let dump = |heading: &str| blocks(&page, heading).remove(0);

    let empty = Object::Dir(Dir::empty());
    let example = dump("The empty dir");
    assert_eq!(example.bytes.len(), 6);
    holds(&example, &empty, "the empty dir");

    holds(
        &dump("The empty chunk (the empty file)"),
        &chunk(b""),
        "the empty chunk",
    );

    let hello = b"{\"hello\": \"world\"}\n";
    let example = dump("A small chunk");
    assert_eq!(example.bytes.len(), 21);
    holds(&example, &chunk(hello), "the small chunk");

    let one_file =
        Object::Dir(Dir::new(vec![file_entry("a.json", EntryKind::File, hello)]).unwrap());
    let example = dump("A dir with one file");
    assert_eq!(example.bytes.len(), 55);
    holds(&example, &one_file, "the dir with one file");

    let get = b"{\"method\": \"GET\"}\n";
    let run = b"#!/bin/sh\necho hi\n";
    let requests =
        Object::Dir(Dir::new(vec![file_entry("get.json", EntryKind::File, get)]).unwrap());
    let root = Object::Dir(
        Dir::new(vec![
            DirEntry::dir(name("env"), empty.id()),
            DirEntry::dir(name("requests"), requests.id()),
            file_entry("run.sh", EntryKind::Executable, run),
        ])
        .unwrap(),
    );
    let example = dump("A nested tree");
    assert_eq!(example.bytes.len(), 152);
    holds(&example, &root, "the nested tree's root");
    for (object, id) in [
        (
            chunk(get),
            "e82133b3d28a12ce5741cfc81b8e4e2bd9e9ba468d517b7122e82d05db32caff",
        ),
        (
            chunk(run),
            "94e51bf66a3aa25e93a6bb206805795db9223aff6c043e9a91f73628c45a60b8",
        ),
        (
            requests,
            "e12ee1ac4ab7a10789a5fea54cce27f37348e4e587570560faf91aad0b8fb5f4",
        ),
        (
            root,
            "ee77bb335dd9674a78975638a19deff6872118e148f2339684aac073d9f2f065",
        ),
    ] {
        assert_eq!(object.id().to_string(), id);
        assert!(page.contains(id), "the page names {id}");
    }

    let zeros = chunk(&vec![0; 262_144]);
    let file = Object::File(
        FileObject::new(vec![
            FileChunk {
                id: zeros.id(),
                len: 262_144,
            };
            4
        ])
        .unwrap(),
    );
    let example = dump("A file object");
    assert_eq!(file.encode().len(), 158);
    holds(&example, &file, "the file object");
    // The same content through the chunker: the format's cut points are the spec's too.
    let encoded = sync_protocol::encode_file(&vec![0; 1_048_576], false).unwrap();
    assert_eq!(encoded.id, file.id());

    // The compression section's frame of the empty dir.
    assert!(page.contains("`28 b5 2f fd 20 06 31 00 00 03 01 00 00 00 00`"));
    assert_eq!(
        compress_object(&empty.encode()),
        [
            0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x06, 0x31, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00,
            0x00
        ]
    );
}

#[test]
fn the_object_stream_examples_hold() {
    let page = page("object-stream.md");
    let dumps = blocks(&page, "Worked example");
    assert_eq!(dumps.len(), 2, "the one-object stream and the empty stream");

    let empty = Object::Dir(Dir::empty());
    let mut encoder = StreamEncoder::new();
    encoder
        .push(
            ObjectKind::Dir,
            &empty.id(),
            &compress_object(&empty.encode()),
        )
        .unwrap();
    let stream = encoder.finish();
    assert_eq!(stream.len(), 97);
    assert_eq!(stream, dumps[0].bytes, "the one-object stream");

    let stream = StreamEncoder::new().finish();
    assert_eq!(stream.len(), 45);
    assert_eq!(stream, dumps[1].bytes, "the empty stream");
}

#[test]
fn the_change_records_example_holds_on_both_sides() {
    let page = page("object-stream.md");
    let dump = blocks(
        &page,
        "Worked example with change records {#worked-example-with-change-records}",
    )
    .remove(0);
    assert_eq!(dump.bytes.len(), 139);

    let hello = b"{\"hello\": \"world\"}\n";
    let there = b"{\"hello\": \"there\"}\n";
    let path = |text: &str| Path::new(text).unwrap();
    let file = |body: &[u8]| FileRef {
        kind: EntryKind::File,
        target: ObjectKind::Chunk,
        size: body.len() as u64,
        id: chunk(body).id(),
    };
    let base: Listing = [
        (path("a.json"), file(hello)),
        (path("old.txt"), file(b"old\n")),
    ]
    .into_iter()
    .collect();
    let new: Listing = [
        (path("a.json"), file(there)),
        (path("b"), FileRef::empty_dir()),
    ]
    .into_iter()
    .collect();
    let base_tree = build_dirs(&base).unwrap();
    let new_tree = build_dirs(&new).unwrap();
    assert_eq!(
        base_tree.root.to_string(),
        "f76a7ae6304c197fd7c3a17310c701f6e4d386550aac5cb9a9ca249b48ffc720"
    );
    assert_eq!(
        new_tree.root.to_string(),
        "89b94c5f3f9e0ac615f46e07dc464cbc7a9cee19ea8153aeb2ddf8d0a1385c2d"
    );

    // The sending side: the records of the change, the content as a delta.
    let changes = diff_listings(&base, &new);
    let dictionary = chunk(hello).encode();
    let records = records_of_changes(&changes, |_, new, _| {
        let encoded = chunk(there).encode();
        assert_eq!(new.id, chunk(there).id());
        Some((true, encode_content(&encoded, Some(&dictionary))))
    });
    let mut encoder = StreamEncoder::new();
    for record in &records {
        encoder.push_record(record).unwrap();
    }
    let stream = encoder.finish();
    assert_eq!(stream, dump.bytes, "the records stream");

    // A receiving client: the records applied to its base give the new root.
    let mut objects = MemoryObjects::new();
    objects.extend(base_tree.dirs.clone());
    let mut decoder = StreamDecoder::new();
    decoder.feed(&stream);
    let mut received: Vec<Record> = Vec::new();
    while let Some(item) = decoder.next_item().unwrap() {
        let Item::Record(item) = item else {
            panic!("the example holds records only")
        };
        received.push(item.record);
    }
    decoder.finish().unwrap();
    let applied = apply_records(&objects, base_tree.root, &received, new_tree.root, |path| {
        (path.as_str() == "a.json").then(|| dictionary.clone())
    })
    .unwrap();
    assert_eq!(applied.patched.root, new_tree.root);

    // A receiving server: the push acceptor rebuilds the same root from its stored base.
    let mut stored: BTreeMap<ObjectId, Object> = base_tree.dirs.into_iter().collect();
    stored.insert(chunk(hello).id(), chunk(hello));
    stored.insert(chunk(b"old\n").id(), chunk(b"old\n"));
    let mut acceptor = PushAcceptor::version(base_tree.root, new_tree.root);
    let mut decoder = StreamDecoder::new();
    decoder.feed(&stream);
    while let Some(item) = decoder.next_item().unwrap() {
        acceptor.receive(item).unwrap();
    }
    let mut stored_now = Vec::new();
    loop {
        match acceptor.step().unwrap() {
            Step::Read(ids) => {
                for id in ids {
                    acceptor.provide(id, stored.get(&id).cloned()).unwrap();
                }
            }
            Step::Stat(ids) => {
                for id in ids {
                    let info = stored.get(&id).map(sync_protocol::accept::ObjectInfo::of);
                    acceptor.provide_info(id, info).unwrap();
                }
            }
            Step::Compute => acceptor.compute().unwrap(),
            Step::Store(layers) => stored_now.extend(
                layers
                    .into_iter()
                    .flatten()
                    .map(|stored| (stored.id, stored.frame)),
            ),
            Step::Done(_) => break,
        }
    }
    let ids: Vec<ObjectId> = stored_now.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.contains(&new_tree.root),
        "the server stores the new root"
    );
    assert!(ids.contains(&chunk(there).id()), "and the inline chunk");
    for (id, frame) in &stored_now {
        verify_frame(id, frame).unwrap();
    }
}
