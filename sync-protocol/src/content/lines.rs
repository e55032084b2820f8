//! Line-based three-way merge (the diff3 algorithm, as `git merge-file` does it).
//!
//! Each side is diffed against the base line by line (Myers with git's heuristics, so a
//! pathological input costs bounded time, from `imara-diff`). The hunks of both diffs are laid
//! on the base and grouped: hunks of the two sides whose base ranges overlap *or touch* (adjacent
//! lines, or insertions at one place) fall in one group, because the order of two edits that
//! meet cannot be known. A group changed by one side only takes that side's lines; a group
//! both sides changed identically takes those lines; any other group is a conflict, written
//! with markers and the base between them:
//!
//! ```text
//! <<<<<<< ours
//! (ours' lines)
//! ||||||| base
//! (the base's lines)
//! =======
//! (theirs' lines)
//! >>>>>>> theirs
//! ```
//!
//! Lines keep their terminators (`\n` or `\r\n`), so a clean merge is byte-exact: the text
//! outside every hunk is the base's, and each hunk is one side's bytes. A section of a conflict
//! whose last line has no terminator (the end of the file) gets a `\n` so the marker after it
//! starts a line.

use std::ops::Range;

use imara_diff::{Algorithm, Diff, InternedInput};

/// The marker lines of a conflict block.
pub const OURS_MARKER: &[u8] = b"<<<<<<< ours\n";
pub const BASE_MARKER: &[u8] = b"||||||| base\n";
pub const SEPARATOR_MARKER: &[u8] = b"=======\n";
pub const THEIRS_MARKER: &[u8] = b">>>>>>> theirs\n";

/// The result of a line merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMerge {
    /// The merged text; with conflict blocks when `conflicts` is not zero.
    pub text: Vec<u8>,
    /// How many conflict blocks `text` holds.
    pub conflicts: usize,
}

impl LineMerge {
    pub fn is_clean(&self) -> bool {
        self.conflicts == 0
    }
}

/// One side's change: base lines `base` became the side's lines `side`.
#[derive(Debug, Clone)]
struct Hunk {
    base: Range<usize>,
    side: Range<usize>,
}

/// Splits `text` into lines, each with its terminator; the last may have none.
pub fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|&byte| byte == b'\n').collect()
}

fn hunks(base: &[&[u8]], side: &[&[u8]]) -> Vec<Hunk> {
    let mut input = InternedInput::default();
    input.update_before(base.iter().copied());
    input.update_after(side.iter().copied());
    Diff::compute(Algorithm::Myers, &input)
        .hunks()
        .map(|hunk| Hunk {
            base: hunk.before.start as usize..hunk.before.end as usize,
            side: hunk.after.start as usize..hunk.after.end as usize,
        })
        .collect()
}

/// Merges `ours` and `theirs`, two edits of `base`. See the module docs.
pub fn merge_lines(base: &[u8], ours: &[u8], theirs: &[u8]) -> LineMerge {
    let base_lines = split_lines(base);
    let ours_lines = split_lines(ours);
    let theirs_lines = split_lines(theirs);
    let ours_hunks = hunks(&base_lines, &ours_lines);
    let theirs_hunks = hunks(&base_lines, &theirs_lines);

    let mut text = Vec::with_capacity(ours.len().max(theirs.len()));
    let mut conflicts = 0;
    // The base lines up to here are written (or replaced).
    let mut base_done = 0;
    // Per side: the next hunk, and how far the side's line numbers are ahead of the base's.
    let (mut next_ours, mut next_theirs) = (0, 0);
    let (mut ours_shift, mut theirs_shift) = (0isize, 0isize);
    loop {
        let ours_hunk = ours_hunks.get(next_ours);
        let theirs_hunk = theirs_hunks.get(next_theirs);
        let start = match (ours_hunk, theirs_hunk) {
            (None, None) => break,
            (Some(hunk), None) | (None, Some(hunk)) => hunk.base.start,
            (Some(ours), Some(theirs)) => ours.base.start.min(theirs.base.start),
        };
        // The group: starting from the first hunk, take every hunk of either side that overlaps
        // or touches the group's base range, until none does.
        let (first_ours, first_theirs) = (next_ours, next_theirs);
        let mut end = start;
        loop {
            if let Some(hunk) = ours_hunks.get(next_ours)
                && hunk.base.start <= end
            {
                end = end.max(hunk.base.end);
                next_ours += 1;
                continue;
            }
            if let Some(hunk) = theirs_hunks.get(next_theirs)
                && hunk.base.start <= end
            {
                end = end.max(hunk.base.end);
                next_theirs += 1;
                continue;
            }
            break;
        }
        text.extend(base_lines[base_done..start].concat());
        base_done = end;
        let ours_group = &ours_hunks[first_ours..next_ours];
        let theirs_group = &theirs_hunks[first_theirs..next_theirs];
        let ours_range = side_range(start..end, ours_group, &mut ours_shift);
        let theirs_range = side_range(start..end, theirs_group, &mut theirs_shift);
        let ours_part = &ours_lines[ours_range];
        let theirs_part = &theirs_lines[theirs_range];
        if theirs_group.is_empty() || ours_part == theirs_part {
            text.extend(ours_part.concat());
        } else if ours_group.is_empty() {
            text.extend(theirs_part.concat());
        } else {
            conflicts += 1;
            write_conflict(&mut text, ours_part, &base_lines[start..end], theirs_part);
        }
    }
    text.extend(base_lines[base_done..].concat());
    LineMerge { text, conflicts }
}

/// The side's lines that stand for base lines `group`, given the side's hunks inside the group
/// (`shift`: the side's offset before the group, moved past it).
fn side_range(group: Range<usize>, hunks: &[Hunk], shift: &mut isize) -> Range<usize> {
    let start = group.start.saturating_add_signed(*shift);
    for hunk in hunks {
        *shift += hunk.side.len() as isize - hunk.base.len() as isize;
    }
    let end = group.end.saturating_add_signed(*shift);
    start..end
}

fn write_conflict(text: &mut Vec<u8>, ours: &[&[u8]], base: &[&[u8]], theirs: &[&[u8]]) {
    let section = |text: &mut Vec<u8>, lines: &[&[u8]]| {
        for line in lines {
            text.extend_from_slice(line);
        }
        if lines.last().is_some_and(|line| !line.ends_with(b"\n")) {
            text.push(b'\n');
        }
    };
    text.extend_from_slice(OURS_MARKER);
    section(text, ours);
    text.extend_from_slice(BASE_MARKER);
    section(text, base);
    text.extend_from_slice(SEPARATOR_MARKER);
    section(text, theirs);
    text.extend_from_slice(THEIRS_MARKER);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(base: &str, ours: &str, theirs: &str) -> (String, usize) {
        let merged = merge_lines(base.as_bytes(), ours.as_bytes(), theirs.as_bytes());
        (String::from_utf8(merged.text).unwrap(), merged.conflicts)
    }

    #[test]
    fn edits_far_apart_merge_cleanly() {
        let base = "a\nb\nc\nd\ne\n";
        let merged = merge(base, "A\nb\nc\nd\ne\n", "a\nb\nc\nd\nE\n");
        assert_eq!(merged, ("A\nb\nc\nd\nE\n".to_owned(), 0));
    }

    #[test]
    fn adjacent_edits_conflict_with_markers_and_base() {
        let merged = merge("a\nb\nc\n", "a\nB\nc\n", "a\nb\nC\n");
        assert_eq!(
            merged,
            (
                "a\n<<<<<<< ours\nB\nc\n||||||| base\nb\nc\n=======\nb\nC\n>>>>>>> theirs\n"
                    .to_owned(),
                1
            )
        );
    }

    #[test]
    fn the_same_edit_on_both_sides_is_taken_once() {
        assert_eq!(
            merge("a\nb\n", "a\nx\n", "a\nx\n"),
            ("a\nx\n".to_owned(), 0)
        );
    }

    #[test]
    fn a_last_line_without_newline_gets_one_before_a_marker() {
        let (text, conflicts) = merge("a", "b", "c");
        assert_eq!(conflicts, 1);
        assert_eq!(
            text,
            "<<<<<<< ours\nb\n||||||| base\na\n=======\nc\n>>>>>>> theirs\n"
        );
    }

    #[test]
    fn insertions_and_deletions_shift_the_other_sides_hunks() {
        let base = "1\n2\n3\n4\n5\n6\n7\n";
        let ours = "0\n0\n1\n2\n3\n4\n5\n6\n7\n";
        let theirs = "1\n2\n3\n4\n5\n7\n";
        assert_eq!(
            merge(base, ours, theirs),
            ("0\n0\n1\n2\n3\n4\n5\n7\n".to_owned(), 0)
        );
    }
}
