//! Three-way merge of listings: how a client folds the server's head into its working copy.
//!
//! [`merge`] takes the last version both sides agreed on (`base`), the local working copy
//! (`ours`) and the server's head (`theirs`), and returns one valid tree plus the conflicts it
//! resolved. It never fails because of a conflict and never drops an edit: whatever either side
//! changed is in the result, at its path or in a conflict copy beside it. The rules:
//!
//! - A path changed on one side only takes that side's version (a deletion included); a path
//!   both sides changed the same way takes that version.
//! - Both sides changed a file differently (modify/modify, add/add; the executable bit counts as
//!   content): theirs stays at the path and ours becomes a conflict copy beside it
//!   ([`ConflictKind::BothModified`]).
//! - One side modified a file the other deleted: the modified file stays
//!   ([`ConflictKind::ModifiedDeleted`], [`ConflictKind::DeletedModified`]).
//! - One side has a file where the other has a dir (empty, or holding entries): the dir stays and
//!   the file becomes a conflict copy ([`ConflictKind::FileDir`]).
//! - Two names of one dir that differ only in case ([`ConflictKind::CaseClash`]): a dir beats a
//!   file, theirs beats ours, and the loser becomes a conflict copy. An empty dir whose name
//!   matches a dir up to case is the same folder on a case-insensitive disk, so it merges into
//!   that dir without a conflict (of two such empty dirs, the name that sorts first stays).
//! - An empty-dir entry vanishes when anything ends up inside it, and a dir deleted on one side
//!   while the other added a file in it keeps that file.
//!
//! # Conflict copies
//!
//! A conflict copy of `name` is called `name.conflict-<tag>`, where `<tag>` is the first 8 hex
//! digits of the copied file's object id (for a dir, of a digest of the entries it holds). It sorts
//! right after the original and keeps its whole name, extension included. If that name or one equal
//! to it up to case is already taken in the merged dir, or the base had an entry at that path or
//! under it, a counter follows: `name.conflict-<tag>-2`, `-3`, and so on. (A copy at a path of the
//! base would be paired with the base's entry when the merge is retried; if ours deleted that entry
//! and the copy holds the same content, the retry would read the copy as an untouched entry ours
//! deleted, and drop it.) Where the name would pass [`MAX_NAME_LEN`] bytes or the path
//! [`MAX_PATH_LEN`], the original part is cut at a character boundary; the suffix is never cut. The
//! name depends only on the inputs, and a taken name that already holds exactly the copy's content
//! is reused, so a merge retried against a head that already contains its own result converges
//! instead of piling up copies.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use crate::id::ObjectId;
use crate::limits::{MAX_DIR_ENTRIES, MAX_NAME_LEN, MAX_PATH_LEN};
use crate::name::{Name, fold_key};
use crate::object::ObjectKind;
use crate::tree::{FileRef, Listing, Path};

/// What separates a conflict copy's original name from its tag.
pub const CONFLICT_MARKER: &str = ".conflict-";

/// One of the three listings of a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Base,
    /// The local working copy.
    Ours,
    /// The server's head.
    Theirs,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Base => "base",
            Self::Ours => "ours",
            Self::Theirs => "theirs",
        })
    }
}

/// Why a path needed more than taking one side's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictKind {
    /// Both sides changed or added the file, differently. Theirs is at the path, ours in a
    /// conflict copy.
    BothModified,
    /// Ours modified the entry, theirs deleted it. Ours is kept.
    ModifiedDeleted,
    /// Ours deleted the entry, theirs modified it. Theirs is kept: the local deletion is undone.
    DeletedModified,
    /// One side has a file at the path, the other a dir. The dir stays, the file moved to a
    /// conflict copy.
    FileDir,
    /// The path's name equals the name of `with` (a sibling in the merged tree) up to case, so
    /// the entry at the path moved to a conflict copy.
    CaseClash { with: Path },
}

/// A path the merge had to resolve, and where each side's version of it ended up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conflict {
    /// The path as the sides named it.
    pub path: Path,
    pub kind: ConflictKind,
    /// Where ours' version of `path` is in the merged listing (for a dir, the dir holding its
    /// entries): `path` itself, a conflict copy, or `None` when ours had deleted it.
    pub ours_at: Option<Path>,
    /// Where theirs' version of `path` is, likewise.
    pub theirs_at: Option<Path>,
}

impl Conflict {
    /// Where `side`'s version of the path ended up. Always `None` for the base.
    pub fn at(&self, side: Side) -> Option<&Path> {
        match side {
            Side::Base => None,
            Side::Ours => self.ours_at.as_ref(),
            Side::Theirs => self.theirs_at.as_ref(),
        }
    }

    /// The local version's conflict copy, if it was moved away from `path`.
    pub fn local_copy(&self) -> Option<&Path> {
        self.ours_at.as_ref().filter(|at| **at != self.path)
    }

    fn set_at(&mut self, side: Side, path: Path) {
        match side {
            Side::Base => {}
            Side::Ours => self.ours_at = Some(path),
            Side::Theirs => self.theirs_at = Some(path),
        }
    }
}

/// The merged tree and the conflicts resolved on the way, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    pub merged: Listing,
    pub conflicts: Vec<Conflict>,
}

impl MergeOutcome {
    /// True when every path took one side's version and nothing was moved.
    pub fn is_clean(&self) -> bool {
        self.conflicts.is_empty()
    }
}

/// Why a listing is not a valid tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeProblem {
    #[error("{path} lies inside {ancestor:?}, which is a file or an empty-dir entry")]
    InsideEntry { path: Path, ancestor: String },
    #[error("{first:?} and {second:?} in dir {dir:?} differ only in case")]
    CaseClash {
        dir: String,
        first: String,
        second: String,
    },
    #[error("dir {dir:?} holds more than {MAX_DIR_ENTRIES} entries")]
    TooManyEntries { dir: String },
    #[error(
        "{path}: a dir entry of a listing must be the empty dir, and a file may not point at a dir"
    )]
    BadEntry { path: Path },
}

/// Why no valid merged tree exists. Conflicts are not errors; these are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    #[error("the {side} listing is not a valid tree: {problem}")]
    InvalidInput { side: Side, problem: TreeProblem },
    #[error("no conflict copy of {path:?} fits the name and path length limits")]
    PathTooLong { path: String },
    #[error("{} would hold {count} entries after the merge, more than the limit of {MAX_DIR_ENTRIES}", dir_label(.dir.as_ref()))]
    TooManyEntries { dir: Option<Path>, count: usize },
}

fn dir_label(dir: Option<&Path>) -> String {
    match dir {
        Some(dir) => format!("dir {dir:?}"),
        None => "the root dir".to_owned(),
    }
}

/// Merges `ours` and `theirs`, two descendants of `base`. See the module docs for the rules.
///
/// All three listings must be valid trees (no entry inside a file or an empty-dir entry, no
/// two names of a dir equal up to case, no dir over [`MAX_DIR_ENTRIES`]); the result is one too.
pub fn merge(base: &Listing, ours: &Listing, theirs: &Listing) -> Result<MergeOutcome, MergeError> {
    for (side, listing) in [
        (Side::Base, base),
        (Side::Ours, ours),
        (Side::Theirs, theirs),
    ] {
        validate(listing).map_err(|problem| MergeError::InvalidInput { side, problem })?;
    }
    let mut merger = Merger {
        conflicts: Vec::new(),
        base_paths: paths_and_dirs(base),
    };
    let mut root = Node::default();
    let paths: BTreeSet<&Path> = base
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    for path in paths {
        merger.merge_path(
            &mut root,
            path,
            base.get(path),
            ours.get(path),
            theirs.get(path),
        );
    }
    let mut merged = Listing::new();
    merger.settle(&mut root, None, false, &mut merged)?;
    let mut conflicts = merger.conflicts;
    conflicts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(MergeOutcome { merged, conflicts })
}

/// Checks what merge relies on, in one pass: entries only at leaves, case-distinct siblings,
/// bounded dirs, and dir entries that really are the empty dir.
fn validate(listing: &Listing) -> Result<(), TreeProblem> {
    let empty_dir = FileRef::empty_dir();
    let paths: HashSet<&str> = listing.keys().map(Path::as_str).collect();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut folded: HashMap<(&str, String), &str> = HashMap::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (path, file) in listing {
        let bad_dir = file.is_dir() && *file != empty_dir;
        let file_at_dir = !file.is_dir() && file.target == ObjectKind::Dir;
        if bad_dir || file_at_dir {
            return Err(TreeProblem::BadEntry { path: path.clone() });
        }
        let text = path.as_str();
        let mut start = 0;
        loop {
            let end = text[start..].find('/').map(|offset| start + offset);
            let parent = if start == 0 { "" } else { &text[..start - 1] };
            let name = &text[start..end.unwrap_or(text.len())];
            if let Some(end) = end
                && paths.contains(&text[..end])
            {
                return Err(TreeProblem::InsideEntry {
                    path: path.clone(),
                    ancestor: text[..end].to_owned(),
                });
            }
            if seen.insert((parent, name)) {
                let count = counts.entry(parent).or_default();
                *count += 1;
                if *count > MAX_DIR_ENTRIES as usize {
                    return Err(TreeProblem::TooManyEntries {
                        dir: parent.to_owned(),
                    });
                }
                if let Some(first) = folded.insert((parent, fold(name)), name) {
                    return Err(TreeProblem::CaseClash {
                        dir: parent.to_owned(),
                        first: first.to_owned(),
                        second: name.to_owned(),
                    });
                }
            }
            match end {
                Some(end) => start = end + 1,
                None => break,
            }
        }
    }
    Ok(())
}

/// Which inputs an entry of the merged tree came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Ours,
    Theirs,
    Both,
}

impl Origin {
    fn sides(self) -> &'static [Side] {
        match self {
            Self::Ours => &[Side::Ours],
            Self::Theirs => &[Side::Theirs],
            Self::Both => &[Side::Ours, Side::Theirs],
        }
    }

    /// The sides that did not put this entry here.
    fn other_sides(self) -> &'static [Side] {
        match self {
            Self::Ours => &[Side::Theirs],
            Self::Theirs => &[Side::Ours],
            Self::Both => &[],
        }
    }

    fn union(self, other: Self) -> Self {
        if self == other { self } else { Self::Both }
    }

    /// Which of two clashing names stays: the one theirs also has.
    fn rank(self) -> u8 {
        match self {
            Self::Both => 0,
            Self::Theirs => 1,
            Self::Ours => 2,
        }
    }
}

/// "Wherever this ends up is where `side`'s version of conflict number `conflict` went."
#[derive(Debug, Clone, Copy)]
struct Role {
    conflict: usize,
    side: Side,
}

/// An entry of the merged tree on its way to the result.
#[derive(Debug)]
struct Placed {
    /// Where the inputs had it; the output path while nothing above it was renamed.
    path: Path,
    file: FileRef,
    origin: Origin,
    roles: Vec<Role>,
}

/// The merged tree, nested, while conflicts are resolved. A name may briefly hold both an entry
/// and children (a file/dir clash); settling leaves each name with one or the other.
#[derive(Debug, Default)]
struct Node {
    entry: Option<Placed>,
    children: BTreeMap<String, Node>,
    /// Roles that end up wherever this dir ends up.
    dir_roles: Vec<Role>,
    /// Entries that must move to a conflict copy in this dir.
    movers: Vec<Mover>,
    /// The node is a conflict copy: its paths no longer match the inputs'.
    renamed: bool,
}

impl Node {
    fn dir_mut(&mut self, dir: Option<&Path>) -> &mut Node {
        let mut node = self;
        if let Some(dir) = dir {
            for component in dir.components() {
                node = node.children.entry(component.to_owned()).or_default();
            }
        }
        node
    }

    fn place(&mut self, placed: Placed) {
        let node = self.dir_mut(Some(&placed.path));
        node.entry = Some(placed);
    }

    fn add_mover(&mut self, placed: Placed) {
        let name = placed.path.file_name().to_owned();
        self.dir_mut(placed.path.parent().as_ref())
            .movers
            .push(Mover {
                name,
                content: MoverContent::File(placed),
            });
    }

    fn origin(&self) -> Option<Origin> {
        let own = self.entry.as_ref().map(|entry| entry.origin);
        self.children
            .values()
            .filter_map(Node::origin)
            .chain(own)
            .reduce(Origin::union)
    }

    /// The longest `/rest` a descendant adds to this node's path.
    fn inner_len(&self) -> usize {
        self.children
            .iter()
            .map(|(name, child)| 1 + name.len() + child.inner_len())
            .max()
            .unwrap_or(0)
    }

    /// A tag for a dir that moves as a whole: a hash of every entry it holds.
    fn digest(&self) -> ObjectId {
        fn walk(node: &Node, prefix: &str, out: &mut Vec<u8>) {
            if let Some(entry) = &node.entry {
                out.extend_from_slice(prefix.as_bytes());
                out.push(0);
                out.push(entry.file.kind as u8);
                out.push(entry.file.target.tag());
                out.extend_from_slice(&entry.file.size.to_le_bytes());
                out.extend_from_slice(entry.file.id.as_bytes());
            }
            for (name, child) in &node.children {
                walk(child, &format!("{prefix}/{name}"), out);
            }
        }
        let mut bytes = b"cairn merge dir tag\0".to_vec();
        walk(self, "", &mut bytes);
        ObjectId::of_encoded(&bytes)
    }

    fn same_tree(&self, other: &Node) -> bool {
        self.entry.as_ref().map(|entry| entry.file) == other.entry.as_ref().map(|entry| entry.file)
            && self.movers.is_empty()
            && other.movers.is_empty()
            && self.children.len() == other.children.len()
            && self.children.iter().zip(&other.children).all(
                |((name, child), (other_name, other_child))| {
                    name == other_name && child.same_tree(other_child)
                },
            )
    }

    /// Hands every role of `from` to the matching part of `self`, which holds the same content.
    fn absorb(&mut self, from: Node) {
        self.dir_roles.extend(from.dir_roles);
        if let (Some(entry), Some(from_entry)) = (self.entry.as_mut(), from.entry) {
            entry.roles.extend(from_entry.roles);
        }
        for (name, child) in from.children {
            if let Some(target) = self.children.get_mut(&name) {
                target.absorb(child);
            }
        }
    }
}

/// Something that moves to a conflict copy in its dir.
#[derive(Debug)]
struct Mover {
    name: String,
    content: MoverContent,
}

#[derive(Debug)]
enum MoverContent {
    File(Placed),
    Dir(Node),
}

impl Mover {
    fn tag(&self) -> ObjectId {
        match &self.content {
            MoverContent::File(placed) => placed.file.id,
            MoverContent::Dir(node) => node.digest(),
        }
    }

    fn inner_len(&self) -> usize {
        match &self.content {
            MoverContent::File(_) => 0,
            MoverContent::Dir(node) => node.inner_len(),
        }
    }

    fn same_content(&self, existing: &Node) -> bool {
        match &self.content {
            MoverContent::File(placed) => {
                existing.children.is_empty()
                    && existing.movers.is_empty()
                    && existing
                        .entry
                        .as_ref()
                        .is_some_and(|entry| entry.file == placed.file)
            }
            MoverContent::Dir(node) => node.same_tree(existing),
        }
    }

    fn into_node(self) -> Node {
        match self.content {
            MoverContent::File(placed) => Node {
                entry: Some(placed),
                renamed: true,
                ..Node::default()
            },
            MoverContent::Dir(mut node) => {
                node.renamed = true;
                node
            }
        }
    }
}

struct Merger<'a> {
    conflicts: Vec<Conflict>,
    /// Every path of the base and every dir above one: the names a conflict copy may not take.
    base_paths: HashSet<&'a str>,
}

/// The paths of `listing` and the dirs that hold them.
fn paths_and_dirs(listing: &Listing) -> HashSet<&str> {
    let mut paths = HashSet::new();
    for path in listing.keys() {
        let text = path.as_str();
        paths.extend(text.match_indices('/').map(|(end, _)| &text[..end]));
        paths.insert(text);
    }
    paths
}

impl Merger<'_> {
    fn open(&mut self, path: &Path, kind: ConflictKind) -> usize {
        self.conflicts.push(Conflict {
            path: path.clone(),
            kind,
            ours_at: None,
            theirs_at: None,
        });
        self.conflicts.len() - 1
    }

    fn role(&mut self, path: &Path, kind: ConflictKind, side: Side) -> (usize, Vec<Role>) {
        let conflict = self.open(path, kind);
        (conflict, vec![Role { conflict, side }])
    }

    /// The per-path rules: decides each path from its three versions alone.
    fn merge_path(
        &mut self,
        root: &mut Node,
        path: &Path,
        base: Option<&FileRef>,
        ours: Option<&FileRef>,
        theirs: Option<&FileRef>,
    ) {
        let placed = |file: &FileRef, origin, roles| Placed {
            path: path.clone(),
            file: *file,
            origin,
            roles,
        };
        if ours == theirs {
            if let Some(file) = ours {
                root.place(placed(file, Origin::Both, Vec::new()));
            }
            return;
        }
        if ours == base {
            if let Some(file) = theirs {
                root.place(placed(file, Origin::Theirs, Vec::new()));
            }
            return;
        }
        if theirs == base {
            if let Some(file) = ours {
                root.place(placed(file, Origin::Ours, Vec::new()));
            }
            return;
        }
        match (ours, theirs) {
            (Some(ours), Some(theirs)) if ours.is_dir() == theirs.is_dir() => {
                // Two different files: every empty-dir entry is the same value.
                let (conflict, theirs_roles) =
                    self.role(path, ConflictKind::BothModified, Side::Theirs);
                let ours_roles = vec![Role {
                    conflict,
                    side: Side::Ours,
                }];
                root.place(placed(theirs, Origin::Theirs, theirs_roles));
                root.add_mover(placed(ours, Origin::Ours, ours_roles));
            }
            (Some(ours), Some(theirs)) => {
                let ((dir, dir_origin), (file, file_origin)) = if ours.is_dir() {
                    ((ours, Origin::Ours), (theirs, Origin::Theirs))
                } else {
                    ((theirs, Origin::Theirs), (ours, Origin::Ours))
                };
                let (conflict, dir_roles) =
                    self.role(path, ConflictKind::FileDir, dir_origin.sides()[0]);
                let file_roles = vec![Role {
                    conflict,
                    side: file_origin.sides()[0],
                }];
                root.place(placed(dir, dir_origin, dir_roles));
                root.add_mover(placed(file, file_origin, file_roles));
            }
            (Some(ours), None) => {
                let (_, roles) = self.role(path, ConflictKind::ModifiedDeleted, Side::Ours);
                root.place(placed(ours, Origin::Ours, roles));
            }
            (None, Some(theirs)) => {
                let (_, roles) = self.role(path, ConflictKind::DeletedModified, Side::Theirs);
                root.place(placed(theirs, Origin::Theirs, roles));
            }
            // Equal, handled above.
            (None, None) => {}
        }
    }

    /// Records why an entry moves: the conflicts it already belongs to take the new kind, or a
    /// new conflict about `path` opens. Returns the conflicts concerned.
    fn conflict_for_move(
        &mut self,
        roles: &mut Vec<Role>,
        origin: Origin,
        path: &Path,
        kind: ConflictKind,
    ) -> Vec<usize> {
        if roles.is_empty() {
            let conflict = self.open(path, kind);
            roles.extend(origin.sides().iter().map(|&side| Role { conflict, side }));
            return vec![conflict];
        }
        let mut concerned: Vec<usize> = roles.iter().map(|role| role.conflict).collect();
        concerned.dedup();
        for &conflict in &concerned {
            self.conflicts[conflict].kind = kind.clone();
        }
        concerned
    }

    /// Resolves the clashes among one dir's names, names the conflict copies, writes the dir's
    /// entries to `out` and recurses. Parents settle before children, so `path` is final.
    fn settle(
        &mut self,
        node: &mut Node,
        path: Option<&Path>,
        renamed: bool,
        out: &mut Listing,
    ) -> Result<(), MergeError> {
        if let Some(path) = path {
            self.fill(std::mem::take(&mut node.dir_roles), path);
        }
        let mut movers = std::mem::take(&mut node.movers);
        self.split_files_from_dirs(node, path, &mut movers)?;
        self.resolve_case_clashes(node, path, &mut movers)?;
        self.place_movers(node, path, movers)?;
        if node.children.len() > MAX_DIR_ENTRIES as usize {
            return Err(MergeError::TooManyEntries {
                dir: path.cloned(),
                count: node.children.len(),
            });
        }
        for (name, child) in &mut node.children {
            let child_renamed = renamed || child.renamed;
            if !child.children.is_empty() {
                let child_path = join(path, name)?;
                self.settle(child, Some(&child_path), child_renamed, out)?;
            } else if let Some(placed) = child.entry.take() {
                let entry_path = if child_renamed {
                    join(path, name)?
                } else {
                    placed.path
                };
                self.fill(placed.roles, &entry_path);
                self.fill(std::mem::take(&mut child.dir_roles), &entry_path);
                out.insert(entry_path, placed.file);
            }
        }
        Ok(())
    }

    /// The base had an entry at `dir/name` or under it. `dir` is a path of the merged tree,
    /// which is what a retried merge compares with the base.
    fn base_had(&self, dir: Option<&Path>, name: &str) -> bool {
        match dir {
            Some(dir) => self.base_paths.contains(format!("{dir}/{name}").as_str()),
            None => self.base_paths.contains(name),
        }
    }

    fn fill(&mut self, roles: Vec<Role>, path: &Path) {
        for role in roles {
            self.conflicts[role.conflict].set_at(role.side, path.clone());
        }
    }

    /// A name that is both an entry and a dir: an empty-dir entry just vanishes into the dir;
    /// a file moves to a conflict copy.
    fn split_files_from_dirs(
        &mut self,
        node: &mut Node,
        path: Option<&Path>,
        movers: &mut Vec<Mover>,
    ) -> Result<(), MergeError> {
        let clashing: Vec<String> = node
            .children
            .iter()
            .filter(|(_, child)| child.entry.is_some() && !child.children.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in clashing {
            let Some(child) = node.children.get_mut(&name) else {
                continue;
            };
            let Some(mut placed) = child.entry.take() else {
                continue;
            };
            if placed.file.is_dir() {
                child.dir_roles.append(&mut placed.roles);
                continue;
            }
            let child_path = join(path, &name)?;
            let origin = placed.origin;
            let concerned = self.conflict_for_move(
                &mut placed.roles,
                origin,
                &child_path,
                ConflictKind::FileDir,
            );
            for conflict in concerned {
                for &side in origin.other_sides() {
                    child.dir_roles.push(Role { conflict, side });
                }
            }
            movers.push(Mover {
                name,
                content: MoverContent::File(placed),
            });
        }
        Ok(())
    }

    /// Names of one dir equal up to case: one stays, empty dirs merge into a dir that stays,
    /// everything else moves to a conflict copy.
    fn resolve_case_clashes(
        &mut self,
        node: &mut Node,
        path: Option<&Path>,
        movers: &mut Vec<Mover>,
    ) -> Result<(), MergeError> {
        let mut classes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in node.children.keys() {
            classes.entry(fold(name)).or_default().push(name.clone());
        }
        for names in classes.into_values().filter(|names| names.len() > 1) {
            let is_dir = |name: &String| {
                node.children.get(name).is_some_and(|child| {
                    !child.children.is_empty()
                        || child
                            .entry
                            .as_ref()
                            .is_some_and(|entry| entry.file.is_dir())
                })
            };
            let rank = |name: &String| {
                let origin = node.children.get(name).and_then(Node::origin);
                (origin.map_or(u8::MAX, Origin::rank), name.clone())
            };
            let full_dirs: Vec<&String> = names
                .iter()
                .filter(|name| {
                    node.children
                        .get(*name)
                        .is_some_and(|c| !c.children.is_empty())
                })
                .collect();
            let empty_dirs: Vec<&String> = names
                .iter()
                .filter(|name| is_dir(name) && !full_dirs.contains(name))
                .collect();
            let stayer = if let Some(dir) = full_dirs.iter().min_by_key(|name| rank(name)) {
                (*dir).clone()
            } else if let Some(dir) = empty_dirs.iter().min() {
                (*dir).clone()
            } else {
                names
                    .iter()
                    .min_by_key(|name| rank(name))
                    .cloned()
                    .unwrap_or_default()
            };
            let stayer_is_dir = is_dir(&stayer);
            let stayer_path = join(path, &stayer)?;
            for name in names.into_iter().filter(|name| *name != stayer) {
                let Some(mut child) = node.children.remove(&name) else {
                    continue;
                };
                let child_is_empty_dir = child.children.is_empty()
                    && child
                        .entry
                        .as_ref()
                        .is_some_and(|entry| entry.file.is_dir());
                if child_is_empty_dir && stayer_is_dir {
                    // The same folder on a case-insensitive disk: nothing to copy.
                    let mut roles = std::mem::take(&mut child.dir_roles);
                    if let Some(entry) = child.entry {
                        roles.extend(entry.roles);
                    }
                    if let Some(target) = node.children.get_mut(&stayer) {
                        target.dir_roles.extend(roles);
                    }
                    continue;
                }
                let child_path = join(path, &name)?;
                let kind = ConflictKind::CaseClash {
                    with: stayer_path.clone(),
                };
                if child.children.is_empty()
                    && let Some(mut placed) = child.entry.take()
                {
                    let origin = placed.origin;
                    self.conflict_for_move(&mut placed.roles, origin, &child_path, kind);
                    movers.push(Mover {
                        name,
                        content: MoverContent::File(placed),
                    });
                } else {
                    let origin = child.origin().unwrap_or(Origin::Ours);
                    let conflict = self.open(&child_path, kind);
                    for &side in origin.sides() {
                        child.dir_roles.push(Role { conflict, side });
                    }
                    movers.push(Mover {
                        name,
                        content: MoverContent::Dir(child),
                    });
                }
            }
        }
        Ok(())
    }

    /// Gives every mover its conflict-copy name (see the module docs) and puts it in the dir.
    fn place_movers(
        &mut self,
        node: &mut Node,
        path: Option<&Path>,
        movers: Vec<Mover>,
    ) -> Result<(), MergeError> {
        if movers.is_empty() {
            return Ok(());
        }
        let mut movers: Vec<(ObjectId, Mover)> = movers
            .into_iter()
            .map(|mover| (mover.tag(), mover))
            .collect();
        movers.sort_by(|(a_tag, a), (b_tag, b)| (&a.name, a_tag).cmp(&(&b.name, b_tag)));
        let mut taken: HashMap<String, String> = node
            .children
            .keys()
            .map(|name| (fold(name), name.clone()))
            .collect();
        let parent_len = path.map_or(0, |path| path.as_str().len() + 1);
        for (tag, mover) in movers {
            let hex = tag.short();
            let reserved = parent_len + mover.inner_len();
            let original = match path {
                Some(path) => format!("{path}/{}", mover.name),
                None => mover.name.clone(),
            };
            let mut counter = 1u64;
            loop {
                let suffix = if counter == 1 {
                    format!("{CONFLICT_MARKER}{hex}")
                } else {
                    format!("{CONFLICT_MARKER}{hex}-{counter}")
                };
                let room = MAX_NAME_LEN
                    .checked_sub(suffix.len())
                    .zip(MAX_PATH_LEN.checked_sub(reserved + suffix.len()))
                    .map(|(by_name, by_path)| by_name.min(by_path));
                let Some(candidate) = room.and_then(|room| copy_name(&mover.name, &suffix, room))
                else {
                    return Err(MergeError::PathTooLong { path: original });
                };
                let key = fold(&candidate);
                match taken.get(&key) {
                    None if self.base_had(path, &candidate) => counter += 1,
                    None => {
                        taken.insert(key, candidate.clone());
                        node.children.insert(candidate, mover.into_node());
                        break;
                    }
                    Some(existing) if *existing == candidate => {
                        if let Some(existing) = node.children.get_mut(&candidate)
                            && mover.same_content(existing)
                        {
                            // A previous merge already made this copy: reuse it.
                            match mover.content {
                                MoverContent::File(placed) => {
                                    if let Some(entry) = existing.entry.as_mut() {
                                        entry.roles.extend(placed.roles);
                                    }
                                }
                                MoverContent::Dir(moved) => existing.absorb(moved),
                            }
                            break;
                        }
                        counter += 1;
                    }
                    Some(_) => counter += 1,
                }
            }
        }
        Ok(())
    }
}

/// `name` cut to at most `room` bytes, then `suffix`: the longest such valid name.
fn copy_name(name: &str, suffix: &str, room: usize) -> Option<String> {
    let mut end = name.len().min(room);
    loop {
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let candidate = format!("{}{suffix}", &name[..end]);
        if Name::new(&candidate).is_ok() {
            return Some(candidate);
        }
        if end == 0 {
            return None;
        }
        end -= 1;
    }
}

fn join(parent: Option<&Path>, name: &str) -> Result<Path, MergeError> {
    let too_long = || MergeError::PathTooLong {
        path: match parent {
            Some(parent) => format!("{parent}/{name}"),
            None => name.to_owned(),
        },
    };
    let name = Name::new(name).map_err(|_| too_long())?;
    Path::join(parent, &name).map_err(|_| too_long())
}

/// [`fold_key`], with a shortcut for ASCII names, which fold to their lowercase: most names
/// are ASCII, and merge folds every name of every listing.
fn fold(name: &str) -> String {
    if name.is_ascii() {
        name.to_ascii_lowercase()
    } else {
        fold_key(name)
    }
}
