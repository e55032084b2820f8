//! Benchmarks live in src/bin; this library holds what they share: deterministic test data,
//! timing helpers, the processes a benchmark starts ([`processes`]), the services it runs on
//! ([`services`]) and a TCP relay that adds
//! network latency ([`latency_relay`]).

pub mod latency_relay;
pub mod processes;
pub mod services;

use std::path::Path;
use std::time::{Duration, Instant};

/// A small, fast, deterministic generator (xorshift64*), so every run measures the same bytes
/// without a rand dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for piece in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            piece.copy_from_slice(&bytes[..piece.len()]);
        }
    }
}

const KEYS: &[&str] = &[
    "id",
    "name",
    "method",
    "url",
    "headers",
    "body",
    "query",
    "environment",
    "description",
    "created_at",
    "updated_at",
    "status",
    "content-type",
    "authorization",
    "accept",
    "timeout",
    "variables",
    "items",
    "total",
    "next_page",
    "email",
    "user_id",
    "team",
    "enabled",
    "tags",
];
const WORDS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "application/json",
    "https://api.example.com/v2/users",
    "Bearer",
    "staging",
    "production",
    "alpha",
    "orders",
    "invoice",
    "pending",
    "shipped",
    "customer",
    "refund",
    "webhook",
    "retry",
    "ok",
    "not found",
    "Paris",
    "Zürich",
    "東京",
];

/// Appends one JSON-like document of about `len` bytes: nested objects of keys from an API
/// project's vocabulary with random words, numbers and hex ids, which zstd compresses about
/// as well as real exported requests and recorded responses.
pub fn json_like(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    let end = out.len() + len;
    out.extend_from_slice(b"{\n");
    let mut depth = 1usize;
    while out.len() < end {
        for _ in 0..depth {
            out.extend_from_slice(b"  ");
        }
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\": ");
        match rng.below(10) {
            0 if depth < 6 => {
                out.extend_from_slice(b"{\n");
                depth += 1;
                continue;
            }
            1 | 2 => out.extend_from_slice(rng.below(1_000_000_000).to_string().as_bytes()),
            3 => {
                out.push(b'"');
                out.extend_from_slice(
                    format!("{:016x}{:08x}", rng.next_u64(), rng.below(1 << 32)).as_bytes(),
                );
                out.push(b'"');
            }
            4 if depth > 1 => {
                out.extend_from_slice(b"true\n");
                depth -= 1;
                for _ in 0..depth {
                    out.extend_from_slice(b"  ");
                }
                out.extend_from_slice(b"},\n");
                continue;
            }
            _ => {
                out.push(b'"');
                for word in 0..1 + rng.below(4) {
                    if word > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                }
                out.push(b'"');
            }
        }
        out.extend_from_slice(b",\n");
    }
    out.extend_from_slice(b"\"end\": true\n}\n");
}

/// One generated file.
#[derive(Debug, Clone)]
pub struct ProjectFile {
    pub bytes: Vec<u8>,
    /// Random bytes (an already compressed attachment) rather than JSON-like text.
    pub random: bool,
}

/// A project's worth of files totalling at least `total` bytes: mostly JSON-like documents of
/// every size (many small, a few of several MiB) and about one file in eight of random bytes
/// (attachments that are already compressed). The same `seed` gives the same files.
pub fn mixed_project(total: usize, seed: u64) -> Vec<ProjectFile> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::new();
    let mut size = 0;
    while size < total {
        let len = match rng.below(10) {
            0..=5 => 512 + rng.below(32 << 10),
            6..=8 => (32 << 10) + rng.below(1 << 20),
            _ => (1 << 20) + rng.below(16 << 20),
        } as usize;
        let mut bytes = Vec::with_capacity(len + 4096);
        let random = rng.below(8) == 0;
        if random {
            bytes.resize(len, 0);
            rng.fill(&mut bytes);
        } else {
            json_like(&mut rng, len, &mut bytes);
        }
        size += bytes.len();
        files.push(ProjectFile { bytes, random });
    }
    files
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// How long a piece of work took: wall time, and the time this thread spent on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub wall: Duration,
    /// `None` where the platform does not report per-thread CPU time.
    pub cpu: Option<Duration>,
}

/// Runs `work` once and returns its timing and result. On a shared machine the CPU time is the
/// steadier figure: it leaves out the time the thread waited for a core.
pub fn timed<T>(work: impl FnOnce() -> T) -> (Timing, T) {
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let result = work();
    let wall = start.elapsed();
    let cpu = match (cpu_start, thread_cpu_time()) {
        (Some(start), Some(end)) => Some(end.saturating_sub(start)),
        _ => None,
    };
    (Timing { wall, cpu }, result)
}

/// This thread's time on a CPU so far, in nanoseconds, from Linux's `/proc/thread-self/schedstat`.
pub fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Megabytes (10^6 bytes) per second.
pub fn megabytes_per_second(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

/// One file of a generated project tree: its path relative to the project's root (with `/`).
#[derive(Debug, Clone)]
pub struct TreeFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// An API project as a folder tree: `small` JSON request, response and environment documents
/// (most of 0.5 to 8 KiB, one in seven of 8 to 24 KiB) in nested folders
/// (`collections/cNN/folderN/`, `environments/`), plus `large` files of `large_size` bytes in
/// `attachments/` (the first JSON-like, the others random bytes, as recorded payloads and
/// already-compressed attachments). The same `seed` gives the same tree.
pub fn project_tree(small: usize, large: usize, large_size: usize, seed: u64) -> Vec<TreeFile> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::with_capacity(small + large);
    for index in 0..small {
        let len = if rng.below(7) == 0 {
            (8 << 10) + rng.below(16 << 10)
        } else {
            512 + rng.below(7680)
        } as usize;
        let mut bytes = Vec::with_capacity(len + 256);
        json_like(&mut rng, len, &mut bytes);
        let path = if index % 50 == 49 {
            format!("environments/env-{index:05}.json")
        } else {
            let kind = ["request", "response", "example"][index % 3];
            format!(
                "collections/c{:02}/folder{}/{kind}-{index:05}.json",
                index % 40,
                (index / 40) % 8
            )
        };
        files.push(TreeFile { path, bytes });
    }
    for index in 0..large {
        let mut bytes = Vec::with_capacity(large_size + 256);
        if index == 0 {
            json_like(&mut rng, large_size, &mut bytes);
        } else {
            bytes.resize(large_size, 0);
            rng.fill(&mut bytes);
        }
        let extension = if index == 0 { "json" } else { "bin" };
        files.push(TreeFile {
            path: format!("attachments/large-{index}.{extension}"),
            bytes,
        });
    }
    files
}

/// The held-out team project of issue 15, as a folder tree: 8,000 files in 514 folders, every
/// file 2 to 4 folders deep: 7,957 pretty-printed JSON documents of 0.5 to 4 KiB, 40 JSON files
/// of 50 to 500 KiB (recorded responses) and 3 recordings of 17 to 19 MiB (random bytes, as
/// compressed media). The folders: 6 at the top, 9 in each (54), 4 in each of those (216), and
/// one in each of those, two in the first 22 (238). The same `seed` gives the same tree.
pub fn team_project_tree(seed: u64) -> Vec<TreeFile> {
    let mut rng = Rng::new(seed);
    // The folders that hold files: every one 2 to 4 deep (508 of the 514).
    let mut folders = Vec::new();
    let mut third_level = 0;
    for top in 0..6 {
        for middle in 0..9 {
            let second = format!("area-{top}/group-{middle}");
            folders.push(second.clone());
            for low in 0..4 {
                let third = format!("{second}/set-{low}");
                folders.push(third.clone());
                let leaves = if third_level < 22 { 2 } else { 1 };
                third_level += 1;
                for leaf in 0..leaves {
                    folders.push(format!("{third}/case-{leaf}"));
                }
            }
        }
    }
    let mut files = Vec::with_capacity(8_000);
    let mut json_file = |rng: &mut Rng, slot: usize, name: String, len: usize| {
        let mut bytes = Vec::with_capacity(len + 256);
        json_like(rng, len, &mut bytes);
        let folder = &folders[slot % folders.len()];
        files.push(TreeFile {
            path: format!("{folder}/{name}"),
            bytes,
        });
    };
    for index in 0..7_957 {
        let len = 512 + rng.below(3_584) as usize;
        let kind = ["request", "response", "example", "environment"][index % 4];
        json_file(&mut rng, index, format!("{kind}-{index:05}.json"), len);
    }
    for index in 0..40 {
        let len = (50 << 10) + rng.below(450 << 10) as usize;
        json_file(
            &mut rng,
            index * 13,
            format!("recorded-{index:02}.json"),
            len,
        );
    }
    for index in 0..3 {
        let mut bytes = vec![0; (17 << 20) + rng.below(2 << 20) as usize];
        rng.fill(&mut bytes);
        files.push(TreeFile {
            path: format!("{}/recording-{index}.bin", folders[index * 101]),
            bytes,
        });
    }
    files
}

/// Many small files, the shape that costs a clone the most file creations per byte: 30,000
/// pretty-printed JSON documents of 1 to 2 KiB, ten in each of 3,000 folders two levels down
/// (`s-NN/d-NNN/`, 30 at the top with 100 in each; 3,030 folders in all). The same `seed` gives
/// the same tree.
pub fn small_files_tree(seed: u64) -> Vec<TreeFile> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::with_capacity(30_000);
    for index in 0..30_000 {
        let folder = index / 10;
        let len = 1_024 + rng.below(1_024) as usize;
        let mut bytes = Vec::with_capacity(len + 256);
        json_like(&mut rng, len, &mut bytes);
        files.push(TreeFile {
            path: format!(
                "s-{:02}/d-{:03}/doc-{index:05}.json",
                folder / 100,
                folder % 100
            ),
            bytes,
        });
    }
    files
}

/// Writes `files` under `dir`, creating folders as needed.
pub fn write_tree(dir: &Path, files: &[TreeFile]) -> Result<(), String> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &file.bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The first of `files` whose copy under `dir` is missing or differs, if any.
pub fn first_difference<'a>(dir: &Path, files: &'a [TreeFile]) -> Option<&'a TreeFile> {
    files
        .iter()
        .find(|file| std::fs::read(dir.join(&file.path)).ok().as_deref() != Some(&file.bytes[..]))
}

/// `original` with one line inserted after its first: `"revision": run`. Successive runs change
/// exactly that one line.
pub fn edited(original: &[u8], run: usize) -> Vec<u8> {
    let split = original
        .iter()
        .position(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let mut out = original[..split].to_vec();
    out.extend_from_slice(format!("  \"revision\": {run},\n").as_bytes());
    out.extend_from_slice(&original[split..]);
    out
}

/// A second shape for the working-copy benchmark, against the team project's wide and shallow
/// one: a deep tree with many folders and few files in each, where walking the folders rather
/// than reading the files is most of a scan. 6,000 JSON documents of 0.2 to 6 KiB in 2,047
/// folders (a binary tree 11 levels deep from `tree/`: every folder holds two files, and each
/// of the 1,024 deepest about two more), plus 20 JSON files of 64 to 256 KiB in `fixtures/`. The same `seed`
/// gives the same tree.
pub fn deep_project_tree(seed: u64) -> Vec<TreeFile> {
    let mut rng = Rng::new(seed);
    // Folder `n` of a binary heap numbering: its children are `2n + 1` and `2n + 2`.
    const FOLDERS: usize = 2_047;
    let mut folders = Vec::with_capacity(FOLDERS);
    for index in 0..FOLDERS {
        let path = if index == 0 {
            "tree".to_owned()
        } else {
            let parent: &String = &folders[(index - 1) / 2];
            format!("{parent}/{}", if index % 2 == 1 { "l" } else { "r" })
        };
        folders.push(path);
    }
    let mut files = Vec::with_capacity(6_020);
    for index in 0..6_000 {
        let len = 200 + rng.below(6 << 10) as usize;
        let mut bytes = Vec::with_capacity(len + 256);
        json_like(&mut rng, len, &mut bytes);
        // Spread over every folder, then the rest over the leaves (the last 1,024).
        let folder = if index < FOLDERS * 2 {
            index % FOLDERS
        } else {
            FOLDERS - 1 - index % 1_024
        };
        files.push(TreeFile {
            path: format!("{}/doc-{index:05}.json", folders[folder]),
            bytes,
        });
    }
    for index in 0..20 {
        let len = (64 << 10) + rng.below(192 << 10) as usize;
        let mut bytes = Vec::with_capacity(len + 256);
        json_like(&mut rng, len, &mut bytes);
        files.push(TreeFile {
            path: format!("fixtures/fixture-{index:02}.json"),
            bytes,
        });
    }
    files
}
