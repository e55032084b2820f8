//! `cairn clone` against `git clone` from `git daemon`, side by side in one run (issue 15), on
//! tmpfs and on the disk, for two shapes of project.
//!
//! ```text
//! cargo run --release -p cairn-bench --bin clone [-- --runs 7 --on tmpfs|disk|both
//!     --corpus team|small|both --keep --no-build]
//! ```
//!
//! It first runs `cargo build --release -p sync-server -p sync-client` (skip with `--no-build`),
//! then, for each corpus and place (`/dev/shm` for tmpfs, the temporary folder for the disk), in
//! a new folder there and only on 127.0.0.1:
//!
//! - writes the corpus twice, one source copy per tool: the team project of issue 15
//!   (`team_project_tree`: 8,000 files in 514 folders, about 88 MB), or many small files
//!   (`small_files_tree`: 30,000 JSON documents of 1–2 KiB in 3,000 folders, about 45 MB);
//! - starts `sync-server serve` (embedded mode, its data folder in the same place) and
//!   `git daemon`, pushes the corpus to a new project and a new bare repository;
//! - `--runs` times, each into a new folder: `cairn clone` and `git clone` (each a whole client
//!   process, as a user runs it; which goes first alternates by run), each clone checked
//!   against the corpus afterwards, untimed;
//! - prints the medians as a Markdown table, also written to `bench/out/clone-<date>.md`, with
//!   the load average (`/proc/loadavg`, 1 minute) before and after each row: the machine may be
//!   shared.
//!
//! Both clients talk to their daemons directly (no relay). Needs `git` on the PATH.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_bench::processes::{
    Daemons, binary_dir, build_binaries, free_port, remove, run_command, start_embedded_server,
    start_git_daemon, today, wait_for_port,
};
use cairn_bench::{
    TreeFile, first_difference, median, small_files_tree, team_project_tree, write_tree,
};

type Result<T> = std::result::Result<T, String>;

const SEED: u64 = 0x0015_c10e;
const PASSWORD: &str = "bench-password-1";

fn main() {
    if let Err(error) = run() {
        eprintln!("clone bench: error: {error}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Tmpfs,
    Disk,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Tmpfs => "tmpfs (/dev/shm)",
            Place::Disk => "disk (temporary folder)",
        }
    }

    fn folder(self) -> PathBuf {
        match self {
            Place::Tmpfs => PathBuf::from("/dev/shm"),
            Place::Disk => std::env::temp_dir(),
        }
    }
}

/// The shape of the project cloned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corpus {
    Team,
    Small,
}

impl Corpus {
    fn name(self) -> &'static str {
        match self {
            Corpus::Team => "team project",
            Corpus::Small => "small files",
        }
    }

    fn files(self) -> Vec<TreeFile> {
        match self {
            Corpus::Team => team_project_tree(SEED),
            Corpus::Small => small_files_tree(SEED),
        }
    }

    fn description(self) -> &'static str {
        match self {
            Corpus::Team => {
                "issue 15's held-out shape, 514 folders nested 2–4 deep, 7,957 JSON documents of \
                 0.5–4 KiB, 40 of 50–500 KiB, 3 recordings of 17–19 MiB"
            }
            Corpus::Small => {
                "JSON documents of 1–2 KiB, ten in each of 3,000 folders two levels down"
            }
        }
    }
}

#[derive(Debug)]
struct Options {
    runs: usize,
    places: Vec<Place>,
    corpora: Vec<Corpus>,
    keep: bool,
    build: bool,
}

fn options() -> Result<Options> {
    let mut options = Options {
        runs: 7,
        places: vec![Place::Tmpfs, Place::Disk],
        corpora: vec![Corpus::Team, Corpus::Small],
        keep: false,
        build: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                options.runs = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .filter(|&value| value > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--on" => {
                options.places = match args.next().as_deref() {
                    Some("tmpfs") => vec![Place::Tmpfs],
                    Some("disk") => vec![Place::Disk],
                    Some("both") => vec![Place::Tmpfs, Place::Disk],
                    _ => return Err("--on needs tmpfs, disk or both".into()),
                };
            }
            "--corpus" => {
                options.corpora = match args.next().as_deref() {
                    Some("team") => vec![Corpus::Team],
                    Some("small") => vec![Corpus::Small],
                    Some("both") => vec![Corpus::Team, Corpus::Small],
                    _ => return Err("--corpus needs team, small or both".into()),
                };
            }
            "--keep" => options.keep = true,
            "--no-build" => options.build = false,
            "-h" | "--help" => {
                println!(
                    "usage: clone [--runs N (default 7)] [--on tmpfs|disk|both (default both)] \
                     [--corpus team|small|both (default both)] [--keep] [--no-build]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

/// The clone times of both tools for one corpus in one place.
#[derive(Debug)]
struct Row {
    corpus: Corpus,
    files: usize,
    bytes: usize,
    place: Place,
    cairn: Vec<Duration>,
    git: Vec<Duration>,
    /// The 1-minute load average before the first clone and after the last.
    load: (String, String),
}

/// The 1-minute load average, as `/proc/loadavg` says ("?" where there is none).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn run() -> Result<()> {
    let options = options()?;
    let bin = binary_dir()?;
    build_binaries(&bin, options.build)?;
    Command::new("git")
        .arg("--version")
        .output()
        .map_err(|e| format!("git is needed on the PATH (apt-get install -y git): {e}"))?;
    let mut rows = Vec::new();
    for &corpus in &options.corpora {
        let files = corpus.files();
        for &place in &options.places {
            let root = place.folder().join(format!(
                "cairn-clone-bench-{corpus:?}-{}",
                std::process::id()
            ));
            remove(&root)?;
            let outcome = bench_place(&options, &bin, corpus, &files, place, &root);
            if options.keep {
                eprintln!("kept {}", root.display());
            } else {
                let _ = std::fs::remove_dir_all(&root);
            }
            rows.push(outcome?);
        }
    }
    let report = report(&options, &rows);
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let path = out.join(format!("clone-{}.md", today()));
    std::fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

fn git(root: &Path, dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", root.join("home"))
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    command
}

fn cairn(bin: &Path, root: &Path, dir: &Path) -> Command {
    let mut command = Command::new(bin.join("cairn"));
    command
        .current_dir(dir)
        .env("CAIRN_CONFIG", root.join("cairn-client.toml"))
        .env("CAIRN_PASSWORD", PASSWORD);
    command
}

fn timed(command: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    run_command(command)?;
    Ok(start.elapsed())
}

fn bench_place(
    options: &Options,
    bin: &Path,
    corpus: Corpus,
    files: &[TreeFile],
    place: Place,
    root: &Path,
) -> Result<Row> {
    eprintln!(
        "{}: writing the {} corpus into {}",
        place.name(),
        corpus.name(),
        root.display()
    );
    std::fs::create_dir_all(root.join("home")).map_err(|e| e.to_string())?;
    let cairn_source = root.join("source-cairn");
    let git_source = root.join("source-git");
    write_tree(&cairn_source, files)?;
    write_tree(&git_source, files)?;
    let mut daemons = Daemons::default();

    let (cairn_port, projects) = start_embedded_server(
        &mut daemons,
        bin,
        &root.join("cairn-data"),
        PASSWORD,
        &["team-project".to_owned()],
        &root.join("server.log"),
    )?;
    let project = &projects[0];
    let git_base = root.join("git-server");
    std::fs::create_dir_all(&git_base).map_err(|e| e.to_string())?;
    let git_port = free_port()?;
    start_git_daemon(
        &mut daemons,
        &git_base,
        git_port,
        &root.join("home"),
        &root.join("git-daemon.log"),
    )?;
    wait_for_port(cairn_port, "sync-server")?;
    wait_for_port(git_port, "git daemon")?;
    let cairn_url = format!("http://127.0.0.1:{cairn_port}");
    let git_url = format!("git://127.0.0.1:{git_port}/corpus.git");

    eprintln!("{}: first pushes", place.name());
    run_command(cairn(bin, root, root).args(["login", "--server", &cairn_url, "--user", "bench"]))?;
    run_command(cairn(bin, root, &cairn_source).args([
        "init",
        "--server",
        &cairn_url,
        "--project",
        project,
    ]))?;
    run_command(cairn(bin, root, &cairn_source).args(["push", "-m", "initial"]))?;
    run_command(git(root, &git_base).args(["init", "-q", "--bare", "-b", "main", "corpus.git"]))?;
    run_command(git(root, &git_source).args(["init", "-q", "-b", "main"]))?;
    run_command(git(root, &git_source).args(["add", "-A"]))?;
    run_command(git(root, &git_source).args(["commit", "-q", "-m", "initial"]))?;
    run_command(git(root, &git_source).args(["push", "-q", &git_url, "main"]))?;

    let mut row = Row {
        corpus,
        files: files.len(),
        bytes: files.iter().map(|file| file.bytes.len()).sum(),
        place,
        cairn: Vec::new(),
        git: Vec::new(),
        load: (load_average(), String::new()),
    };
    // Each run clones into folders that never existed, and every clone is removed only after
    // the last run: on ext4 without a journal (this machine's disk), creating files right
    // after removing thousands makes the allocator scan past every inode freed in the last
    // minute, and a run would measure the previous run's removal (see bench/sitegen).
    let mut clones = Vec::new();
    for run in 0..options.runs {
        eprintln!("{}: clone, run {}/{}", place.name(), run + 1, options.runs);
        let cairn_clone = root.join(format!("clone-cairn-{run}"));
        let git_clone = root.join(format!("clone-git-{run}"));
        remove(&cairn_clone)?;
        remove(&git_clone)?;
        let mut cairn_command = cairn(bin, root, root);
        cairn_command
            .args(["clone", "--server", &cairn_url, "--project", project])
            .arg(&cairn_clone);
        let mut git_command = git(root, root);
        git_command.args(["clone", "-q", &git_url]).arg(&git_clone);
        // Which goes first alternates, so neither always finds the caches the other warmed.
        if run % 2 == 0 {
            row.cairn.push(timed(&mut cairn_command)?);
            row.git.push(timed(&mut git_command)?);
        } else {
            row.git.push(timed(&mut git_command)?);
            row.cairn.push(timed(&mut cairn_command)?);
        }
        for (tool, dir) in [("cairn", &cairn_clone), ("git", &git_clone)] {
            if let Some(file) = first_difference(dir, files) {
                return Err(format!(
                    "the {tool} clone differs from the corpus at {}",
                    file.path
                ));
            }
        }
        clones.extend([cairn_clone, git_clone]);
    }
    row.load.1 = load_average();
    for clone in &clones {
        remove(clone)?;
    }
    drop(daemons);
    Ok(row)
}

fn ms(duration: Duration) -> String {
    format!("{:.0}", duration.as_secs_f64() * 1e3)
}

fn cell(samples: &[Duration]) -> (String, Duration) {
    let mut sorted = samples.to_vec();
    let middle = median(&mut sorted);
    let low = sorted.first().copied().unwrap_or_default();
    let high = sorted.last().copied().unwrap_or_default();
    (format!("{} ({}–{})", ms(middle), ms(low), ms(high)), middle)
}

fn report(options: &Options, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# cairn clone vs git clone ({})\n", today());
    let _ = writeln!(out, "Corpora:\n");
    for &corpus in &options.corpora {
        if let Some(row) = rows.iter().find(|row| row.corpus == corpus) {
            let _ = writeln!(
                out,
                "- {}: {}; {} files, {:.1} MB.",
                corpus.name(),
                corpus.description(),
                row.files,
                row.bytes as f64 / 1e6
            );
        }
    }
    let _ = writeln!(
        out,
        "\nServer, daemon and clones in the same place, on 127.0.0.1, no relay. Median of {} runs \
         (min–max), each a whole client process cloning into a folder that never existed (all \
         removed after the last run); which tool went first alternated. Load: the 1-minute \
         load average before the row's first clone and after its last ({} cores).\n",
        options.runs,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let _ = writeln!(
        out,
        "| corpus | where | cairn clone ms | git clone ms | cairn/git | load |\n\
         |---|---|---:|---:|---:|---|"
    );
    for row in rows {
        let (cairn_text, cairn) = cell(&row.cairn);
        let (git_text, git) = cell(&row.git);
        let _ = writeln!(
            out,
            "| {} | {} | {cairn_text} | {git_text} | {:.2} | {} → {} |",
            row.corpus.name(),
            row.place.name(),
            cairn.as_secs_f64() / git.as_secs_f64(),
            row.load.0,
            row.load.1
        );
    }
    out
}
