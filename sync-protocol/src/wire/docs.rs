//! The tables of `docs-src/content/docs/protocol/http-api.md` held to the code: the problem
//! codes (section "Errors") to [`ProblemCode::ALL`], and the decoder errors (section "Decoder
//! errors") to the `From` impls of [`Problem`], by building one error of each variant.

use std::collections::{BTreeMap, BTreeSet};

use super::problem::{Problem, ProblemCode};
use crate::compress::CompressError;
use crate::object::ObjectError;
use crate::patch::PatchError;
use crate::stream::{Section, StreamError};
use crate::{EntryKind, Name, ObjectKind, chunk_id};

const PAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs-src/content/docs/protocol/http-api.md"
);

/// The rows of the table whose header row starts with `header`: each row's cells, trimmed.
fn table(page: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = page.lines().skip_while(|line| !line.starts_with(header));
    assert!(
        lines.next().is_some(),
        "http-api.md has no table {header:?}"
    );
    lines
        .skip(1) // The |---| row.
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The `code` spans of a cell, in order.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn page() -> String {
    std::fs::read_to_string(PAGE).unwrap_or_else(|error| panic!("{PAGE}: {error}"))
}

#[test]
fn the_problem_code_table_is_problem_code_all() {
    let rows = table(&page(), "| code | status |");
    let mut listed = Vec::new();
    for row in &rows {
        let spans = code_spans(&row[0]);
        let [text] = spans.as_slice() else {
            panic!(
                "a row of the code table names {} codes: {row:?}",
                spans.len()
            );
        };
        let code = ProblemCode::parse(text)
            .unwrap_or_else(|| panic!("the code table lists {text}, which is no ProblemCode"));
        assert!(!listed.contains(&code), "the code table lists {code} twice");
        assert_eq!(
            row[1],
            code.status().to_string(),
            "the code table gives {code} another status"
        );
        listed.push(code);
    }
    for code in ProblemCode::ALL {
        assert!(listed.contains(code), "the code table lacks {code}");
    }
    assert_eq!(listed, ProblemCode::ALL, "the code table is in ALL's order");
}

/// One decoder error, by the name the table gives it.
struct Case {
    name: String,
    problem: Problem,
    /// For an error that wraps another: the wrapped error's problem.
    inner: Option<Problem>,
}

fn case(name: &str, problem: Problem, inner: Option<Problem>) -> Case {
    Case {
        name: name.to_owned(),
        problem,
        inner,
    }
}

fn stream_name(error: &StreamError) -> &'static str {
    // Exhaustive on purpose: a new variant stops this test compiling until it has a case
    // below and a row in the table.
    match error {
        StreamError::BadMagic => "BadMagic",
        StreamError::UnsupportedVersion(_) => "UnsupportedVersion",
        StreamError::Truncated { .. } => "Truncated",
        StreamError::UnknownTag { .. } => "UnknownTag",
        StreamError::FrameTooLarge { .. } => "FrameTooLarge",
        StreamError::TooManyFrames { .. } => "TooManyFrames",
        StreamError::BadFrame { .. } => "BadFrame",
        StreamError::CountMismatch { .. } => "CountMismatch",
        StreamError::DigestMismatch { .. } => "DigestMismatch",
        StreamError::TrailingBytes { .. } => "TrailingBytes",
        StreamError::UnreadFrame { .. } => "UnreadFrame",
        StreamError::BadRecord { .. } => "BadRecord",
        StreamError::UnexpectedRecord { .. } => "UnexpectedRecord",
    }
}

fn compress_name(error: &CompressError) -> &'static str {
    match error {
        CompressError::NotAFrame => "NotAFrame",
        CompressError::TooLarge { .. } => "TooLarge",
        CompressError::Corrupt(_) => "Corrupt",
        CompressError::IdMismatch { .. } => "IdMismatch",
        CompressError::KindMismatch { .. } => "KindMismatch",
        CompressError::Invalid { .. } => "Invalid",
    }
}

fn object_name(error: &ObjectError) -> &'static str {
    match error {
        ObjectError::TooLarge(_) => "TooLarge",
        ObjectError::Truncated { .. } => "Truncated",
        ObjectError::UnknownKind(_) => "UnknownKind",
        ObjectError::UnsupportedVersion(_) => "UnsupportedVersion",
        ObjectError::TrailingBytes { .. } => "TrailingBytes",
        ObjectError::ChunkTooLarge(_) => "ChunkTooLarge",
        ObjectError::TooFewChunks(_) => "TooFewChunks",
        ObjectError::TooManyChunks(_) => "TooManyChunks",
        ObjectError::ChunkLength { .. } => "ChunkLength",
        ObjectError::FileTooLarge(_) => "FileTooLarge",
        ObjectError::FileSizeMismatch { .. } => "FileSizeMismatch",
        ObjectError::TooManyEntries(_) => "TooManyEntries",
        ObjectError::BadName { .. } => "BadName",
        ObjectError::UnknownEntryKind { .. } => "UnknownEntryKind",
        ObjectError::BadEntry { .. } => "BadEntry",
        ObjectError::Unsorted { .. } => "Unsorted",
        ObjectError::DuplicateName { .. } => "DuplicateName",
        ObjectError::CaseCollision { .. } => "CaseCollision",
    }
}

fn object_errors() -> Vec<ObjectError> {
    let name = || "a".to_owned();
    vec![
        ObjectError::TooLarge(1),
        ObjectError::Truncated {
            what: "header",
            offset: 1,
        },
        ObjectError::UnknownKind(9),
        ObjectError::UnsupportedVersion(9),
        ObjectError::TrailingBytes { offset: 1 },
        ObjectError::ChunkTooLarge(1),
        ObjectError::TooFewChunks(1),
        ObjectError::TooManyChunks(1),
        ObjectError::ChunkLength { index: 0, len: 1 },
        ObjectError::FileTooLarge(1),
        ObjectError::FileSizeMismatch {
            declared: 1,
            actual: 2,
        },
        ObjectError::TooManyEntries(1),
        ObjectError::BadName {
            index: 0,
            error: Name::new("").unwrap_err(),
        },
        ObjectError::UnknownEntryKind { index: 0, tag: 9 },
        ObjectError::BadEntry {
            index: 0,
            name: name(),
            kind: EntryKind::Dir,
            target: ObjectKind::Chunk,
            size: 1,
        },
        ObjectError::Unsorted {
            index: 1,
            name: name(),
        },
        ObjectError::DuplicateName {
            index: 1,
            name: name(),
        },
        ObjectError::CaseCollision {
            index: 1,
            name: name(),
        },
    ]
}

fn cases() -> Vec<Case> {
    let id = chunk_id(b"x");
    let mut cases = Vec::new();
    for error in object_errors() {
        let name = format!("ObjectError::{}", object_name(&error));
        cases.push(case(&name, Problem::from(&error), None));
    }
    let wrapped = ObjectError::TrailingBytes { offset: 3 };
    let compress_errors = [
        CompressError::NotAFrame,
        CompressError::TooLarge { limit: 1 },
        CompressError::Corrupt("x".into()),
        CompressError::IdMismatch {
            expected: id,
            actual: chunk_id(b"y"),
        },
        CompressError::KindMismatch {
            id,
            expected: "chunk",
            actual: "dir",
        },
        CompressError::Invalid {
            id,
            error: wrapped.clone(),
        },
    ];
    for error in &compress_errors {
        let name = format!("CompressError::{}", compress_name(error));
        let inner = matches!(error, CompressError::Invalid { .. }).then(|| Problem::from(&wrapped));
        cases.push(case(&name, Problem::from(error), inner));
    }
    let framed = CompressError::IdMismatch {
        expected: id,
        actual: chunk_id(b"y"),
    };
    let (index, offset) = (2, 40);
    let stream_errors = [
        StreamError::BadMagic,
        StreamError::UnsupportedVersion(9),
        StreamError::Truncated {
            section: Section::Trailer,
            index,
            offset,
        },
        StreamError::UnknownTag {
            index,
            offset,
            tag: 9,
        },
        StreamError::FrameTooLarge {
            index,
            offset,
            len: 2,
            limit: 1,
        },
        StreamError::TooManyFrames {
            index,
            offset,
            limit: 1,
        },
        StreamError::BadFrame {
            index,
            offset,
            kind: ObjectKind::Chunk,
            id,
            error: framed.clone(),
        },
        StreamError::CountMismatch {
            offset,
            declared: 1,
            actual: 2,
        },
        StreamError::DigestMismatch { offset },
        StreamError::TrailingBytes { offset },
        StreamError::UnreadFrame { index },
        StreamError::BadRecord {
            index,
            offset,
            detail: "x".into(),
        },
        StreamError::UnexpectedRecord { index, offset },
    ];
    for error in &stream_errors {
        let name = format!("StreamError::{}", stream_name(error));
        let inner = matches!(error, StreamError::BadFrame { .. }).then(|| Problem::from(&framed));
        cases.push(case(&name, Problem::from(error), inner));
    }
    cases
}

/// The extension members a problem carries (beyond RFC 9457's and `code`).
fn members(problem: &Problem) -> BTreeSet<String> {
    let value = serde_json::to_value(problem).unwrap();
    value
        .as_object()
        .unwrap()
        .keys()
        .filter(|key| !["type", "title", "status", "detail", "code"].contains(&key.as_str()))
        .cloned()
        .collect()
}

#[test]
fn the_decoder_error_table_is_the_mapping() {
    // Row by error name: (code cell, members cell).
    let mut rows: BTreeMap<String, (String, String)> = BTreeMap::new();
    for row in table(&page(), "| decoder error | code | members |") {
        let mut kind = "";
        for span in code_spans(&row[0]) {
            let name = match span.split_once("::") {
                Some((prefix, _)) => {
                    kind = prefix;
                    span.to_owned()
                }
                None => format!("{kind}::{span}"),
            };
            let cells = (row[1].clone(), row[2].clone());
            assert!(
                rows.insert(name.clone(), cells).is_none(),
                "the decoder table lists {name} twice"
            );
        }
    }
    let cases = cases();
    let names: BTreeSet<&String> = cases.iter().map(|case| &case.name).collect();
    assert_eq!(names.len(), cases.len());
    assert_eq!(
        rows.keys().collect::<BTreeSet<_>>(),
        names,
        "the decoder table and the error variants differ"
    );
    for case in &cases {
        let (code_cell, members_cell) = &rows[&case.name];
        let listed: BTreeSet<String> = code_spans(members_cell)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let expected_code = match &case.inner {
            Some(inner) => {
                assert!(code_cell.starts_with("the code of its"), "{}", case.name);
                assert!(members_cell.starts_with("its members"), "{}", case.name);
                let expected: BTreeSet<String> = members(inner).union(&listed).cloned().collect();
                assert_eq!(members(&case.problem), expected, "{}: members", case.name);
                inner.code.clone()
            }
            None => {
                assert_eq!(members(&case.problem), listed, "{}: members", case.name);
                let spans = code_spans(code_cell);
                let [code] = spans.as_slice() else {
                    panic!("{}: the code cell names no code", case.name);
                };
                (*code).to_owned()
            }
        };
        assert_eq!(case.problem.code, expected_code, "{}", case.name);
        assert!(ProblemCode::parse(&expected_code).is_some());
    }
}

#[test]
fn change_records_that_do_not_fit_are_bad_records() {
    let error = PatchError::NotDone;
    assert_eq!(Problem::from(&error).code(), Some(ProblemCode::BadRecords));
    assert!(page().contains("(`PatchError`) answer `bad-records`"));
}
