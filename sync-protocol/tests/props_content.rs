//! Content merges (`sync_protocol::content`): the laws the issue asks for, over generated text
//! and JSON, each against a simple reference.
//!
//! - Unrelated changes: both are in the merge (text: exact expected text; JSON: expected value).
//! - A change merged with itself is that change; a change merged with an unchanged side is that
//!   change, byte for byte.
//! - JSON and lines: for documents of one shape (the same keys and array lengths on every
//!   side, only scalar leaves changed), with every key and every scalar unique and all three
//!   printed in one pretty style (serde_json's), **if the line merge is clean then the JSON
//!   merge is clean and its text is the line merge's, byte for byte**, so it parses and equals
//!   the line merge. Why exactly this: then each leaf is one line found nowhere else, so both
//!   line diffs are exactly the changed leaves, and a clean line merge means no leaf changed on
//!   both sides. The converse does not hold (two leaves changed on adjacent lines are a line
//!   conflict and merge by key), and without the conditions neither direction does: an element
//!   inserted in front of an array merges by line but shifts every position, and two equal keys
//!   added in different places merge by line into a document with a repeated key.
//! - Any clean JSON merge of JSON documents parses (serde_json), whatever the edits and styles.
//! - No input panics (the fuzz target's checks, on arbitrary bytes).

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sync_protocol::checks::content::{content_invariants, content_merge};
use sync_protocol::content::json_parse;
use sync_protocol::content::{ContentMerge, merge_content, merge_lines};

fn clean(merged: Result<ContentMerge, impl std::fmt::Debug>) -> Vec<u8> {
    match merged {
        Ok(ContentMerge::Clean(bytes)) => bytes,
        other => panic!("not clean: {other:?}"),
    }
}

// Text.

/// `count` unique lines tagged `tag`.
fn unique_lines(tag: &str, count: usize) -> Vec<String> {
    (0..count).map(|index| format!("{tag} {index}\n")).collect()
}

/// Two edits of `base_len` unique lines that neither overlap nor touch: each `(start, end,
/// len)` replaces base lines `start..end` with `len` new lines, and at least one untouched line
/// lies between the first's end and the second's start.
type LineEdit = (usize, usize, usize);

fn separated_edits() -> impl Strategy<Value = (usize, LineEdit, LineEdit)> {
    (2usize..40)
        .prop_flat_map(|base_len| {
            (
                Just(base_len),
                prop::collection::vec(0..=base_len, 4),
                0usize..4,
                0usize..4,
            )
        })
        .prop_filter_map(
            "at least one line between the edits",
            |(base_len, mut bounds, first_len, second_len)| {
                bounds.sort_unstable();
                (bounds[1] < bounds[2]).then_some((
                    base_len,
                    (bounds[0], bounds[1], first_len),
                    (bounds[2], bounds[3], second_len),
                ))
            },
        )
}

fn with_edit(base: &[String], (start, end, len): (usize, usize, usize), tag: &str) -> Vec<String> {
    let mut lines = base[..start].to_vec();
    lines.extend(unique_lines(tag, len));
    lines.extend_from_slice(&base[end..]);
    lines
}

/// Texts over a small line alphabet, so diffs find many equal lines in many places.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a\n", "b\n", "c\n", "\n", "{\n", "}\n", "a", "x\r\n"]),
        0..12,
    )
    .prop_map(|lines| lines.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn unrelated_line_changes_are_both_in_the_merge(
        (base_len, first, second) in separated_edits(),
        swap in any::<bool>(),
    ) {
        let base = unique_lines("base", base_len);
        let (ours_edit, theirs_edit) = if swap { (second, first) } else { (first, second) };
        let ours = with_edit(&base, ours_edit, "ours");
        let theirs = with_edit(&base, theirs_edit, "theirs");
        let expected = with_edit(&with_edit(&base, second, if swap { "ours" } else { "theirs" }), first, if swap { "theirs" } else { "ours" });
        let merged = clean(merge_content("notes.txt", base.concat().as_bytes(), ours.concat().as_bytes(), theirs.concat().as_bytes()));
        prop_assert_eq!(String::from_utf8(merged).unwrap(), expected.concat());
    }

    #[test]
    fn a_change_merged_with_itself_or_an_unchanged_side_is_that_change(
        base in text(),
        changed in text(),
    ) {
        let (base, changed) = (base.as_bytes(), changed.as_bytes());
        for (ours, theirs) in [(changed, changed), (base, changed), (changed, base)] {
            let lines = merge_lines(base, ours, theirs);
            prop_assert!(lines.is_clean());
            prop_assert_eq!(&lines.text, changed);
            for name in ["notes.txt", "request.json"] {
                prop_assert_eq!(clean(merge_content(name, base, ours, theirs)), changed);
            }
        }
    }

    #[test]
    fn any_three_texts_keep_the_invariants(
        base in text(),
        ours in text(),
        theirs in text(),
    ) {
        content_invariants("notes.txt", base.as_bytes(), ours.as_bytes(), theirs.as_bytes());
    }

    #[test]
    fn no_input_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        content_merge(&data);
    }
}

// JSON.

/// A document of one shape: nested objects and arrays whose leaves are unique strings, keys
/// unique across the document. `leaves` counts them; a leaf's value is `"<tag><index>"`.
#[derive(Debug, Clone)]
enum Shape {
    Leaf,
    Object(Vec<Shape>),
    Array(Vec<Shape>),
}

fn shape() -> impl Strategy<Value = Shape> {
    Just(Shape::Leaf).prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..5).prop_map(Shape::Object),
            prop::collection::vec(inner, 1..5).prop_map(Shape::Array),
        ]
    })
}

/// `shape` as a value: leaf `n` is `base<n>`, or `<tag><n>` where `changed(n)` names a tag.
fn build(
    shape: &Shape,
    next_leaf: &mut usize,
    next_key: &mut usize,
    changed: &dyn Fn(usize) -> Option<&'static str>,
) -> Value {
    match shape {
        Shape::Leaf => {
            let index = *next_leaf;
            *next_leaf += 1;
            Value::String(format!("{}{index}", changed(index).unwrap_or("base")))
        }
        Shape::Object(members) => {
            let mut map = Map::new();
            for member in members {
                let key = format!("k{:03}", *next_key);
                *next_key += 1;
                map.insert(key, build(member, next_leaf, next_key, changed));
            }
            Value::Object(map)
        }
        Shape::Array(elements) => Value::Array(
            elements
                .iter()
                .map(|element| build(element, next_leaf, next_key, changed))
                .collect(),
        ),
    }
}

/// Random JSON values over a small alphabet of keys and scalars (and strings with escapes).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(|n| json!(n)),
        prop::sample::select(vec!["a", "b", "é", "line\nbreak", "q\"uote", ""])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        let key = prop::sample::select(vec!["a", "b", "c", "id", "name"]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..4).prop_map(|members| Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
            )),
        ]
    })
}

/// `value` changed by `choices`: each byte picks, for the next node in a walk, to keep it,
/// replace it with `replacement`, or (for a member or element) drop it.
fn mutate(value: &Value, choices: &mut std::slice::Iter<'_, u8>, replacement: &Value) -> Value {
    let choice = choices.next().copied().unwrap_or(0);
    if choice % 5 == 1 {
        return replacement.clone();
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                if choices.clone().next().is_some_and(|c| c % 7 == 3) {
                    choices.next();
                    continue;
                }
                out.insert(key.clone(), mutate(child, choices, replacement));
            }
            if choice % 5 == 2 {
                out.insert("added".to_owned(), replacement.clone());
            }
            Value::Object(out)
        }
        Value::Array(elements) => {
            let mut out: Vec<Value> = elements
                .iter()
                .map(|child| mutate(child, choices, replacement))
                .collect();
            if choice % 5 == 2 {
                out.push(replacement.clone());
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

/// The JSON-against-lines law (module docs) on one document shape; leaf `n` is unchanged
/// (`sides[n]` 0 or missing), changed by ours (1) or by theirs (2). Returns whether the line
/// merge was clean.
fn json_against_lines(shape: &Shape, sides: &[u8]) -> Result<bool, TestCaseError> {
    let side = |index: usize| sides.get(index).copied().unwrap_or(0);
    let document = |tag: Option<(&'static str, u8)>| {
        let changed = move |index: usize| {
            tag.filter(|(_, which)| side(index) == *which)
                .map(|(tag, _)| tag)
        };
        serde_json::to_string_pretty(&build(shape, &mut 0, &mut 0, &changed)).unwrap()
    };
    let base = document(None);
    let ours = document(Some(("ours", 1)));
    let theirs = document(Some(("theirs", 2)));
    let merged = merge_content(
        "request.json",
        base.as_bytes(),
        ours.as_bytes(),
        theirs.as_bytes(),
    );
    // Changes on different leaves never conflict by key, whatever the line merge says.
    let json = clean(merged);
    let expected = build(shape, &mut 0, &mut 0, &|index| match side(index) {
        1 => Some("ours"),
        2 => Some("theirs"),
        _ => None,
    });
    prop_assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), expected);
    let lines = merge_lines(base.as_bytes(), ours.as_bytes(), theirs.as_bytes());
    if lines.is_clean() {
        prop_assert_eq!(&json, &lines.text);
    }
    Ok(lines.is_clean())
}

#[test]
fn json_against_lines_meets_a_clean_line_merge() {
    // {"k000": leaf 0, "k001": [leaf 1, leaf 2], "k002": leaf 3}: ours changes leaf 0, theirs
    // leaf 3, lines apart; and the same with the changes on adjacent lines.
    let shape = Shape::Object(vec![
        Shape::Leaf,
        Shape::Array(vec![Shape::Leaf, Shape::Leaf]),
        Shape::Leaf,
    ]);
    assert!(json_against_lines(&shape, &[1, 0, 0, 2]).unwrap());
    assert!(!json_against_lines(&shape, &[0, 1, 2, 0]).unwrap());
}

fn print(value: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(value).unwrap()
    } else {
        serde_json::to_string(value).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_merge_equals_a_clean_line_merge_on_unique_one_shape_documents(
        shape in shape(),
        // Mostly unchanged leaves, so that clean line merges are common.
        sides in prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2]), 1..200),
    ) {
        json_against_lines(&shape, &sides)?;
    }

    #[test]
    fn a_clean_json_merge_always_parses(
        base in json_value(),
        ours_choices in prop::collection::vec(any::<u8>(), 0..40),
        theirs_choices in prop::collection::vec(any::<u8>(), 0..40),
        replacements in (json_value(), json_value()),
        styles in any::<(bool, bool, bool)>(),
    ) {
        let ours = mutate(&base, &mut ours_choices.iter(), &replacements.0);
        let theirs = mutate(&base, &mut theirs_choices.iter(), &replacements.1);
        let (base_text, ours_text, theirs_text) =
            (print(&base, styles.0), print(&ours, styles.1), print(&theirs, styles.2));
        let merged = merge_content("request.json", base_text.as_bytes(), ours_text.as_bytes(), theirs_text.as_bytes());
        if let Ok(ContentMerge::Clean(bytes)) = &merged {
            let value: Value = serde_json::from_slice(bytes).map_err(|error| {
                TestCaseError::fail(format!("{error}: {}", String::from_utf8_lossy(bytes)))
            })?;
            // One side unchanged: the other side's value exactly.
            if ours == base {
                prop_assert_eq!(&value, &theirs);
            }
            if theirs == base || theirs == ours {
                prop_assert_eq!(&value, &ours);
            }
        }
        content_invariants("request.json", base_text.as_bytes(), ours_text.as_bytes(), theirs_text.as_bytes());
    }

    #[test]
    fn unrelated_json_changes_are_both_in_the_merge(
        shape in shape(),
        sides in prop::collection::vec(0u8..3, 1..200),
        ours_pretty in any::<bool>(),
    ) {
        let side = |index: usize| sides.get(index).copied().unwrap_or(0);
        let value = |tag: Option<(&'static str, u8)>| {
            let changed = move |index: usize| tag.filter(|(_, which)| side(index) == *which).map(|(tag, _)| tag);
            build(&shape, &mut 0, &mut 0, &changed)
        };
        let (base, ours, theirs) = (value(None), value(Some(("ours", 1))), value(Some(("theirs", 2))));
        let merged = clean(merge_content(
            "request.json",
            print(&base, true).as_bytes(),
            print(&ours, ours_pretty).as_bytes(),
            print(&theirs, true).as_bytes(),
        ));
        let expected = build(&shape, &mut 0, &mut 0, &|index| match side(index) {
            1 => Some("ours"),
            2 => Some("theirs"),
            _ => None,
        });
        prop_assert_eq!(serde_json::from_slice::<Value>(&merged).unwrap(), expected);
        // Written in ours' style: across lines exactly when ours is.
        prop_assert_eq!(
            String::from_utf8(merged).unwrap().contains('\n'),
            print(&ours, ours_pretty).contains('\n')
        );
    }

    #[test]
    fn the_reader_accepts_only_json(text in "[\\[\\]{}\",:0-9.eE+\\- tnrufalsx\\\\]{0,24}") {
        if json_parse::parse(&text).is_ok() {
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{:?}", text);
        }
    }

    #[test]
    fn the_reader_accepts_what_serde_json_writes(value in json_value(), pretty in any::<bool>()) {
        let text = print(&value, pretty);
        prop_assert!(json_parse::parse(&text).is_ok(), "{}", text);
    }
}
