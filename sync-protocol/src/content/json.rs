//! Structural three-way merge of JSON documents, by key path.
//!
//! A value both sides left alone, or changed the same way, is kept; a value one side changed is
//! that side's; a value both sides changed differently is merged further down when it is an
//! object or an array on every side that has it, and is a conflict otherwise. Objects are merged
//! by key. Arrays are merged by an identifying field when every element of the array, on every
//! side, is an object with a scalar `id` field unique in its array (else `name`), and by position
//! otherwise (a position both sides changed differently is a conflict, so an element inserted
//! at the front on one side conflicts with any change behind it on the other: safe, not clever).
//! A missing value counts as the empty object or array where both sides added one of that kind.
//!
//! # Order
//!
//! Members and identified elements follow ours' order, with what only theirs added placed after
//! the member that precedes it in theirs. When ours kept the base's order and theirs changed it,
//! theirs' order is used instead. Where both reordered an array's identified elements
//! differently, the array is a conflict (its order means something); an object's key order
//! means nothing, so there ours' order wins.
//!
//! # Style
//!
//! The result is written in ours' style, read from ours' text: on one line or across lines; the
//! indentation unit (the leading whitespace of the first indented line); the separator after a
//! key (`": "` or `":"`, as ours writes its first member); in a one-line document the separator
//! between items (`", "` or `","`); `\r\n` if ours' first line ends so; and the whitespace before
//! and after the root value. A value taken whole from ours is copied byte for byte; one taken
//! whole from theirs too, when theirs' style is ours'; everything else is printed in ours' style,
//! with scalars always as written. So a file whose sides share one pretty-printed style keeps
//! every unchanged byte.

use std::collections::HashMap;

use super::json_parse::{Document, Member, Node, Value};

/// Where a structural merge found both sides changing one value differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonConflict {
    /// The key path: object keys and array indexes (or identifying values), joined by `/`.
    pub path: String,
}

/// The merged value before printing.
enum Merged<'a> {
    /// A value taken whole from one side.
    Ours(&'a Node<'a>),
    Theirs(&'a Node<'a>),
    Object(Vec<(&'a str, Merged<'a>)>),
    Array(Vec<Merged<'a>>),
}

/// Merges three parsed documents. `Err` lists every conflicting key path.
pub fn merge_documents(
    base: &Document<'_>,
    ours: &Document<'_>,
    theirs: &Document<'_>,
) -> Result<String, Vec<JsonConflict>> {
    let mut merger = Merger {
        conflicts: Vec::new(),
    };
    let merged = merger.value(
        &mut String::new(),
        Some(&base.root),
        Some(&ours.root),
        Some(&theirs.root),
    );
    if !merger.conflicts.is_empty() {
        return Err(merger.conflicts);
    }
    let style = Style::of(ours);
    let theirs_raw = Style::of(theirs) == style;
    let mut out = String::with_capacity(ours.text.len().max(theirs.text.len()));
    out.push_str(&ours.text[..ours.root.span.start]);
    let printer = Printer {
        style: &style,
        ours: ours.text,
        theirs: theirs.text,
        theirs_raw,
    };
    match merged {
        // The root is present on ours and theirs, so the merge keeps some root.
        Some(merged) => printer.merged(&mut out, &merged, 0),
        None => {
            return Err(vec![JsonConflict {
                path: String::new(),
            }]);
        }
    }
    out.push_str(&ours.text[ours.root.span.end..]);
    Ok(out)
}

struct Merger {
    conflicts: Vec<JsonConflict>,
}

/// The three sides' nodes at one key path.
type Three<'n, 'a> = (
    Option<&'n Node<'a>>,
    Option<&'n Node<'a>>,
    Option<&'n Node<'a>>,
);

fn same(a: Option<&Node<'_>>, b: Option<&Node<'_>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same(b),
        _ => false,
    }
}

/// The key an element is identified by, in a keyed array.
fn identity<'a>(node: &Node<'a>, field: &str) -> Option<&'a str> {
    let Value::Object(members) = &node.value else {
        return None;
    };
    members
        .iter()
        .find(|member| member.key == field)
        .and_then(|member| match member.node.value {
            Value::Scalar(text) => Some(text),
            _ => None,
        })
}

/// Identifies every element of every array by `field`, if each has a unique one.
fn keyed<'n, 'a>(
    arrays: [&'n [Node<'a>]; 3],
    field: &str,
) -> Option<[Vec<(&'a str, &'n Node<'a>)>; 3]> {
    let mut out: [Vec<(&'a str, &'n Node<'a>)>; 3] = Default::default();
    for (array, keyed) in arrays.iter().zip(&mut out) {
        let mut seen = std::collections::HashSet::new();
        for node in array.iter() {
            let key = identity(node, field)?;
            if !seen.insert(key) {
                return None;
            }
            keyed.push((key, node));
        }
    }
    Some(out)
}

impl Merger {
    fn conflict(&mut self, path: &str) {
        self.conflicts.push(JsonConflict {
            path: path.to_owned(),
        });
    }

    fn value<'a>(
        &mut self,
        path: &mut String,
        base: Option<&'a Node<'a>>,
        ours: Option<&'a Node<'a>>,
        theirs: Option<&'a Node<'a>>,
    ) -> Option<Merged<'a>> {
        if same(ours, theirs) || same(base, theirs) {
            return ours.map(Merged::Ours);
        }
        if same(base, ours) {
            return theirs.map(Merged::Theirs);
        }
        let (Some(ours_node), Some(theirs_node)) = (ours, theirs) else {
            self.conflict(path);
            return None;
        };
        let base_value = base.map(|node| &node.value);
        match (base_value, &ours_node.value, &theirs_node.value) {
            (None | Some(Value::Object(_)), Value::Object(o), Value::Object(t)) => {
                let b = match base_value {
                    Some(Value::Object(b)) => b.as_slice(),
                    _ => &[],
                };
                let members = |members: &'a [Member<'a>]| -> Vec<(&'a str, &'a Node<'a>)> {
                    members
                        .iter()
                        .map(|member| (member.key.as_str(), &member.node))
                        .collect()
                };
                let raw_keys: HashMap<&str, &'a str> = o
                    .iter()
                    .chain(t)
                    .map(|member| (member.key.as_str(), member.raw_key))
                    .collect();
                let merged = self.sequence(path, [members(b), members(o), members(t)], false)?;
                Some(Merged::Object(
                    merged
                        .into_iter()
                        .map(|(key, value)| (raw_keys.get(key).copied().unwrap_or(key), value))
                        .collect(),
                ))
            }
            (None | Some(Value::Array(_)), Value::Array(o), Value::Array(t)) => {
                let b = match base_value {
                    Some(Value::Array(b)) => b.as_slice(),
                    _ => &[],
                };
                let arrays = [b, o.as_slice(), t.as_slice()];
                let identified = keyed(arrays, "id").or_else(|| keyed(arrays, "name"));
                match identified {
                    Some(sides) => {
                        let merged = self.sequence(path, sides, true)?;
                        Some(Merged::Array(merged.into_iter().map(|(_, v)| v).collect()))
                    }
                    None => self.positions(path, arrays).map(Merged::Array),
                }
            }
            _ => {
                self.conflict(path);
                None
            }
        }
    }

    fn child<'a>(
        &mut self,
        path: &mut String,
        segment: &str,
        (base, ours, theirs): Three<'a, 'a>,
    ) -> Option<Merged<'a>> {
        let length = path.len();
        path.push('/');
        path.push_str(segment);
        let merged = self.value(path, base, ours, theirs);
        path.truncate(length);
        merged
    }

    /// Arrays by position; what a merge removes closes up.
    fn positions<'a>(
        &mut self,
        path: &mut String,
        [base, ours, theirs]: [&'a [Node<'a>]; 3],
    ) -> Option<Vec<Merged<'a>>> {
        let length = base.len().max(ours.len()).max(theirs.len());
        let before = self.conflicts.len();
        let mut merged = Vec::with_capacity(length);
        for index in 0..length {
            let three = (base.get(index), ours.get(index), theirs.get(index));
            if let Some(value) = self.child(path, &index.to_string(), three) {
                merged.push(value);
            }
        }
        (self.conflicts.len() == before).then_some(merged)
    }

    /// Members (or identified elements) by key, in the order the module docs give.
    fn sequence<'a>(
        &mut self,
        path: &mut String,
        [base, ours, theirs]: [Vec<(&'a str, &'a Node<'a>)>; 3],
        order_matters: bool,
    ) -> Option<Vec<(&'a str, Merged<'a>)>> {
        let index = |side: &[(&'a str, &'a Node<'a>)]| -> HashMap<&'a str, &'a Node<'a>> {
            side.iter().copied().collect()
        };
        let (base_index, ours_index, theirs_index) = (index(&base), index(&ours), index(&theirs));
        // The order of the keys every side has, as each side has it.
        let common = |side: &[(&'a str, &'a Node<'a>)]| -> Vec<&'a str> {
            side.iter()
                .map(|(key, _)| *key)
                .filter(|key| {
                    base_index.contains_key(key)
                        && ours_index.contains_key(key)
                        && theirs_index.contains_key(key)
                })
                .collect()
        };
        let base_order = common(&base);
        let ours_moved = common(&ours) != base_order;
        let theirs_moved = common(&theirs) != base_order;
        if order_matters && ours_moved && theirs_moved && common(&ours) != common(&theirs) {
            self.conflict(path);
            return None;
        }
        let (lead, lead_index, follow) = if theirs_moved && !ours_moved {
            (&theirs, &theirs_index, &ours)
        } else {
            (&ours, &ours_index, &theirs)
        };
        // What the following side has and the leading side lacks (added by it, or deleted by
        // the leading side) goes after the nearest key before it that the leading side has.
        let mut after: HashMap<Option<&'a str>, Vec<&'a str>> = HashMap::new();
        let mut anchor = None;
        for (key, _) in follow {
            if lead_index.contains_key(key) {
                anchor = Some(*key);
            } else {
                after.entry(anchor).or_default().push(key);
            }
        }
        let before = self.conflicts.len();
        let mut merged: Vec<(&'a str, Merged<'a>)> = Vec::with_capacity(lead.len());
        let anchors = std::iter::once(None).chain(lead.iter().map(|(key, _)| Some(*key)));
        for anchor in anchors {
            let keys = anchor
                .into_iter()
                .chain(after.remove(&anchor).unwrap_or_default());
            for key in keys {
                let three = (
                    base_index.get(key).copied(),
                    ours_index.get(key).copied(),
                    theirs_index.get(key).copied(),
                );
                if let Some(value) = self.child(path, key, three) {
                    merged.push((key, value));
                }
            }
        }
        // Keys only the base had were deleted by both sides: nothing to do.
        (self.conflicts.len() == before).then_some(merged)
    }
}

/// How a document is written; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Style {
    /// `None`: on one line.
    indent: Option<String>,
    newline: &'static str,
    colon: String,
    comma: String,
}

impl Style {
    fn of(document: &Document<'_>) -> Self {
        let text = &document.text[document.root.span.clone()];
        let newline = match text.find('\n') {
            Some(at) if text[..at].ends_with('\r') => "\r\n",
            _ => "\n",
        };
        let indent = text.contains('\n').then(|| {
            text.split('\n')
                .skip(1)
                .map(|line| line.trim_end_matches('\r'))
                .find_map(|line| {
                    let content = line.trim_start_matches([' ', '\t']);
                    (!content.is_empty() && content.len() < line.len())
                        .then(|| line[..line.len() - content.len()].to_owned())
                })
                .unwrap_or_default()
        });
        let (mut colon, mut comma) = (None, None);
        find_separators(document.text, &document.root, &mut colon, &mut comma);
        let pretty = indent.is_some();
        // A separator across lines would need indenting of its own: use the usual one then.
        let colon = colon.filter(|colon| !colon.contains('\n'));
        Self {
            colon: colon.unwrap_or(if pretty { ": " } else { ":" }).to_owned(),
            comma: comma.unwrap_or(",").to_owned(),
            indent,
            newline,
        }
    }
}

/// The first key separator (`:` with its whitespace) and item separator in `node`.
fn find_separators<'a>(
    text: &'a str,
    node: &Node<'a>,
    colon: &mut Option<&'a str>,
    comma: &mut Option<&'a str>,
) {
    if colon.is_some() && comma.is_some() {
        return;
    }
    match &node.value {
        Value::Scalar(_) => {}
        Value::Array(elements) => {
            if comma.is_none()
                && let [first, second, ..] = elements.as_slice()
            {
                *comma = Some(&text[first.span.end..second.span.start]);
            }
            for element in elements {
                find_separators(text, element, colon, comma);
            }
        }
        Value::Object(members) => {
            if colon.is_none()
                && let Some(first) = members.first()
            {
                let key_end =
                    first.raw_key.as_ptr() as usize - text.as_ptr() as usize + first.raw_key.len();
                *colon = Some(&text[key_end..first.node.span.start]);
            }
            if comma.is_none()
                && let [first, second, ..] = members.as_slice()
            {
                let second_key = second.raw_key.as_ptr() as usize - text.as_ptr() as usize;
                *comma = Some(&text[first.node.span.end..second_key]);
            }
            for member in members {
                find_separators(text, &member.node, colon, comma);
            }
        }
    }
}

struct Printer<'s> {
    style: &'s Style,
    ours: &'s str,
    theirs: &'s str,
    /// Theirs is written in ours' style, so its values can be copied as they are.
    theirs_raw: bool,
}

impl Printer<'_> {
    fn merged(&self, out: &mut String, merged: &Merged<'_>, depth: usize) {
        match merged {
            Merged::Ours(node) => out.push_str(&self.ours[node.span.clone()]),
            Merged::Theirs(node) if self.theirs_raw => {
                out.push_str(&self.theirs[node.span.clone()])
            }
            Merged::Theirs(node) => self.node(out, node, depth),
            Merged::Object(members) => {
                self.container(out, '{', '}', members.len(), depth, |out, index| {
                    let (key, value) = &members[index];
                    out.push_str(key);
                    out.push_str(&self.style.colon);
                    self.merged(out, value, depth + 1);
                })
            }
            Merged::Array(elements) => {
                self.container(out, '[', ']', elements.len(), depth, |out, index| {
                    self.merged(out, &elements[index], depth + 1)
                })
            }
        }
    }

    /// Prints a parsed node in ours' style (scalars as written).
    fn node(&self, out: &mut String, node: &Node<'_>, depth: usize) {
        match &node.value {
            Value::Scalar(text) => out.push_str(text),
            Value::Object(members) => {
                self.container(out, '{', '}', members.len(), depth, |out, index| {
                    let member = &members[index];
                    out.push_str(member.raw_key);
                    out.push_str(&self.style.colon);
                    self.node(out, &member.node, depth + 1);
                })
            }
            Value::Array(elements) => {
                self.container(out, '[', ']', elements.len(), depth, |out, index| {
                    self.node(out, &elements[index], depth + 1)
                })
            }
        }
    }

    fn container(
        &self,
        out: &mut String,
        open: char,
        close: char,
        count: usize,
        depth: usize,
        mut item: impl FnMut(&mut String, usize),
    ) {
        out.push(open);
        if count > 0 {
            for index in 0..count {
                if index > 0 {
                    match self.style.indent {
                        Some(_) => out.push(','),
                        None => out.push_str(&self.style.comma),
                    }
                }
                self.line_break(out, depth + 1);
                item(out, index);
            }
            self.line_break(out, depth);
        }
        out.push(close);
    }

    fn line_break(&self, out: &mut String, depth: usize) {
        if let Some(indent) = &self.style.indent {
            out.push_str(self.style.newline);
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::json_parse::parse;
    use super::*;

    fn merge(base: &str, ours: &str, theirs: &str) -> Result<String, Vec<String>> {
        let (base, ours, theirs) = (
            parse(base).unwrap(),
            parse(ours).unwrap(),
            parse(theirs).unwrap(),
        );
        merge_documents(&base, &ours, &theirs)
            .map_err(|conflicts| conflicts.into_iter().map(|c| c.path).collect())
    }

    #[test]
    fn different_fields_merge_keeping_style_and_order() {
        let base = "{\n    \"method\": \"GET\",\n    \"url\": \"https://a\",\n    \"n\": 1.50\n}\n";
        let ours =
            "{\n    \"method\": \"POST\",\n    \"url\": \"https://a\",\n    \"n\": 1.50\n}\n";
        let theirs =
            "{\n    \"method\": \"GET\",\n    \"url\": \"https://b\",\n    \"n\": 1.50\n}\n";
        assert_eq!(
            merge(base, ours, theirs).unwrap(),
            "{\n    \"method\": \"POST\",\n    \"url\": \"https://b\",\n    \"n\": 1.50\n}\n"
        );
    }

    #[test]
    fn the_same_field_changed_differently_is_a_conflict_at_its_path() {
        let base = r#"{"a": {"b": [1, 2]}, "c": 0}"#;
        let ours = r#"{"a": {"b": [1, 3]}, "c": 1}"#;
        let theirs = r#"{"a": {"b": [1, 4]}, "c": 0}"#;
        assert_eq!(merge(base, ours, theirs), Err(vec!["/a/b/1".to_owned()]));
    }

    #[test]
    fn added_keys_go_after_their_predecessor_and_theirs_is_reprinted_in_ours_style() {
        let base = "{\n  \"a\": 1,\n  \"z\": 2\n}";
        let ours = "{\n  \"a\": 1,\n  \"o\": true,\n  \"z\": 2\n}";
        let theirs = "{\n    \"a\": 1,\n    \"z\": 2,\n    \"t\": {\"x\": [1, 2]}\n}";
        assert_eq!(
            merge(base, ours, theirs).unwrap(),
            "{\n  \"a\": 1,\n  \"o\": true,\n  \"z\": 2,\n  \"t\": {\n    \"x\": [\n      1,\n      2\n    ]\n  }\n}"
        );
    }

    #[test]
    fn arrays_with_ids_merge_by_id_and_others_by_position() {
        let base = r#"[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]"#;
        let ours = r#"[{"id": 0, "v": "new"}, {"id": 1, "v": "A"}, {"id": 2, "v": "b"}]"#;
        let theirs = r#"[{"id": 1, "v": "a"}, {"id": 2, "v": "B"}]"#;
        assert_eq!(
            merge(base, ours, theirs).unwrap(),
            r#"[{"id": 0, "v": "new"}, {"id": 1, "v": "A"}, {"id": 2, "v": "B"}]"#
        );
        // Without ids the inserted element shifts every position: a conflict, never a guess.
        assert!(merge("[1, 2]", "[0, 1, 2]", "[1, 3]").is_err());
        assert_eq!(merge("[1, 2, 3]", "[1, 2]", "[9, 2, 3]").unwrap(), "[9, 2]");
    }

    #[test]
    fn both_reordering_identified_elements_differently_conflicts() {
        let base = r#"[{"name": "a"}, {"name": "b"}, {"name": "c"}]"#;
        let ours = r#"[{"name": "b"}, {"name": "a"}, {"name": "c"}]"#;
        let theirs = r#"[{"name": "a"}, {"name": "c"}, {"name": "b"}]"#;
        assert_eq!(merge(base, ours, theirs), Err(vec![String::new()]));
        let theirs_edit = r#"[{"name": "a", "x": 1}, {"name": "b"}, {"name": "c"}]"#;
        assert_eq!(
            merge(base, ours, theirs_edit).unwrap(),
            r#"[{"name": "b"}, {"name": "a", "x": 1}, {"name": "c"}]"#
        );
    }

    #[test]
    fn tabs_crlf_and_compact_separators_are_kept() {
        let base = "{\r\n\t\"a\": 1,\r\n\t\"b\": 2\r\n}\r\n";
        let ours = "{\r\n\t\"a\": 10,\r\n\t\"b\": 2\r\n}\r\n";
        let theirs = "{\"a\":1,\"b\":2,\"c\":[true]}";
        assert_eq!(
            merge(base, ours, theirs).unwrap(),
            "{\r\n\t\"a\": 10,\r\n\t\"b\": 2,\r\n\t\"c\": [\r\n\t\ttrue\r\n\t]\r\n}\r\n"
        );
        assert_eq!(
            merge(
                r#"{"a":1,"b":2}"#,
                r#"{"a":1,"b":3}"#,
                "{\n  \"a\": 0,\n  \"b\": 2\n}"
            )
            .unwrap(),
            r#"{"a":0,"b":3}"#
        );
    }

    #[test]
    fn a_deletion_against_an_edit_conflicts() {
        assert_eq!(
            merge(r#"{"a": 1, "b": 2}"#, r#"{"b": 2}"#, r#"{"a": 3, "b": 2}"#),
            Err(vec!["/a".to_owned()])
        );
        assert_eq!(
            merge(r#"{"a": 1, "b": 2}"#, r#"{"b": 2}"#, r#"{"a": 1, "b": 3}"#).unwrap(),
            r#"{"b": 3}"#
        );
    }
}
