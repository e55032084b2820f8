//! Invariants of the content merges ([`crate::content`]) for the `content_merge` fuzz target.
//!
//! [`content_merge`] cuts arbitrary bytes into a file name and three versions and checks what
//! must hold for any input, valid or not:
//!
//! - nothing panics, and a side that is not text or too large is refused, never merged;
//! - a side merged with itself is that side; a side merged with an unchanged side is that side
//!   (byte for byte, for the line merge itself as well as for [`merge_content`]);
//! - the line merge is symmetric: swapping ours and theirs gives the same clean text, or the same
//!   number of conflict blocks;
//! - a conflict's marked text has exactly as many `<<<<<<< ours` lines as blocks, when no side
//!   already held one;
//! - a clean merge of three JSON documents is JSON again, and the structural merge is clean for
//!   ours and theirs swapped exactly when it is clean for them in order.

use crate::content::json_parse::parse;
use crate::content::lines::OURS_MARKER;
use crate::content::{
    ContentMerge, MAX_CONTENT_MERGE_SIZE, NotMergeable, json, merge_content, merge_lines,
};

/// Separates the versions in a fuzz input (never part of UTF-8 text).
const SEPARATOR: u8 = 0xFF;

/// The fuzz target: `[name selector] base 0xFF ours 0xFF theirs`. An even selector names the
/// file `request.json`, an odd one `notes.txt`.
pub fn content_merge(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&byte| byte == SEPARATOR);
    let base = parts.next().unwrap_or_default();
    let ours = parts.next().unwrap_or_default();
    let theirs = parts.next().unwrap_or_default();
    let name = if selector % 2 == 0 {
        "request.json"
    } else {
        "notes.txt"
    };
    content_invariants(name, base, ours, theirs);
}

/// Checks every invariant of the module docs on one input.
pub fn content_invariants(name: &str, base: &[u8], ours: &[u8], theirs: &[u8]) {
    let text = |bytes: &[u8]| {
        bytes.len() <= MAX_CONTENT_MERGE_SIZE
            && std::str::from_utf8(bytes).is_ok_and(|text| !text.contains('\0'))
    };
    let outcome = merge_content(name, base, ours, theirs);
    if ![base, ours, theirs].into_iter().all(text) {
        assert!(
            matches!(
                outcome,
                Err(NotMergeable::Binary { .. } | NotMergeable::TooLarge { .. })
            ),
            "a side that is not text was merged"
        );
        return;
    }
    let Ok(outcome) = outcome else {
        panic!("text was refused: {outcome:?}");
    };

    // Identity laws, through merge_content and through the line merge alone.
    for (b, x) in [(base, ours), (base, theirs), (ours, theirs)] {
        for (left, right) in [(x, x), (b, x), (x, b)] {
            let expected = if left == b { right } else { left };
            assert_eq!(
                merge_content(name, b, left, right),
                Ok(ContentMerge::Clean(expected.to_vec())),
                "identity law of merge_content"
            );
            let lines = merge_lines(b, left, right);
            assert!(
                lines.is_clean() && lines.text == expected,
                "identity law of the line merge"
            );
        }
    }

    // The line merge is symmetric.
    let forward = merge_lines(base, ours, theirs);
    let backward = merge_lines(base, theirs, ours);
    assert_eq!(forward.conflicts, backward.conflicts, "line merge symmetry");
    if forward.is_clean() {
        assert_eq!(forward.text, backward.text, "line merge symmetry");
    }
    // A side's last line may lack its newline and get one in a conflict block.
    let marker = OURS_MARKER.strip_suffix(b"\n").unwrap_or(OURS_MARKER);
    let held_marker = [base, ours, theirs]
        .iter()
        .any(|side| side.windows(marker.len()).any(|window| window == marker));
    if !held_marker {
        let markers = forward
            .text
            .split_inclusive(|&byte| byte == b'\n')
            .filter(|line| *line == OURS_MARKER)
            .count();
        assert_eq!(markers, forward.conflicts, "one ours marker per block");
    }

    // A clean JSON merge is JSON; structural conflicts are symmetric.
    let texts = [base, ours, theirs].map(|side| std::str::from_utf8(side).unwrap_or_default());
    if let [Ok(b), Ok(o), Ok(t)] = texts.map(parse)
        && crate::content::is_json_name(name)
    {
        let forward = json::merge_documents(&b, &o, &t);
        let backward = json::merge_documents(&b, &t, &o);
        assert_eq!(forward.is_ok(), backward.is_ok(), "JSON merge symmetry");
        if let Ok(merged) = &forward {
            assert!(parse(merged).is_ok(), "a clean JSON merge is not JSON");
        }
        if let ContentMerge::Clean(bytes) = &outcome {
            let merged = std::str::from_utf8(bytes).expect("merged text is UTF-8");
            assert!(parse(merged).is_ok(), "a clean JSON merge is not JSON");
        }
    }
}

/// Hand-made inputs for the fuzz corpus: JSON edits of different fields and of one field, arrays
/// with ids, text that merges and text that conflicts, invalid JSON, and bytes that are not text.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let input = |selector: u8, sides: [&[u8]; 3]| {
        let mut bytes = vec![selector];
        bytes.extend_from_slice(sides[0]);
        bytes.push(SEPARATOR);
        bytes.extend_from_slice(sides[1]);
        bytes.push(SEPARATOR);
        bytes.extend_from_slice(sides[2]);
        bytes
    };
    let base = b"{\n  \"method\": \"GET\",\n  \"url\": \"https://a\",\n  \"headers\": [\n    {\"name\": \"A\", \"value\": \"1\"}\n  ]\n}\n";
    let method = b"{\n  \"method\": \"POST\",\n  \"url\": \"https://a\",\n  \"headers\": [\n    {\"name\": \"A\", \"value\": \"1\"}\n  ]\n}\n";
    let url = b"{\n  \"method\": \"GET\",\n  \"url\": \"https://b\",\n  \"headers\": [\n    {\"name\": \"A\", \"value\": \"1\"},\n    {\"name\": \"B\", \"value\": \"2\"}\n  ]\n}\n";
    let put = b"{\n  \"method\": \"PUT\",\n  \"url\": \"https://a\",\n  \"headers\": []\n}\n";
    vec![
        ("json-different-fields", input(0, [base, method, url])),
        ("json-same-field", input(0, [base, method, put])),
        ("json-invalid-side", input(0, [base, b"{\"method\": ", url])),
        ("json-compact", input(0, [b"[1,2,3]", b"[1,2]", b"[0,2,3]"])),
        (
            "text-clean",
            input(1, [b"a\nb\nc\nd\n", b"A\nb\nc\nd\n", b"a\nb\nc\nD\n"]),
        ),
        (
            "text-conflict",
            input(1, [b"a\nb\nc", b"a\nB\nc", b"a\nX\nc"]),
        ),
        ("not-text", input(1, [b"a\0b", b"a\0c", b"\xc3\x28"])),
    ]
}
