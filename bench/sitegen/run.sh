#!/usr/bin/env bash
# sitegen vs Hugo on a generated corpus (gen_corpus.py: PAGES pages in SECTIONS sections,
# PARTS headed parts a page), cold
# builds into an empty folder, alternating, side by side in one run (compare.py: medians of
# RUNS runs of wall time, user and system CPU, peak memory, and the paired ratios); then
# sitegen's one-page rebuild (incremental.py) and a check that its output equals a clean build.
#   bench/sitegen/run.sh                      # 10,000 pages, 5 runs
#   PAGES=2000 RUNS=7 bench/sitegen/run.sh
#   PAGES=3000 PARTS=20 bench/sitegen/run.sh  # the second shape: fewer, four times larger pages
#   PLACE=tmpfs bench/sitegen/run.sh          # everything in /dev/shm instead of the disk
#   FRESH=0 bench/sitegen/run.sh              # each run's output folder removed just before it
#                                             # (see compare.py: costly on ext4 without a journal)
#   INCREMENTAL_ONLY=1 bench/sitegen/run.sh   # no Hugo: one cold sitegen build, then the
#                                             # one-page rebuild timing and the clean-build diff
set -euo pipefail
cd "$(dirname "$0")/../.."
PAGES="${PAGES:-10000}"
RUNS="${RUNS:-5}"
SECTIONS="${SECTIONS:-20}"
PARTS="${PARTS:-5}"
INCREMENTAL_ONLY="${INCREMENTAL_ONLY:-}"
if [ -z "$INCREMENTAL_ONLY" ] && ! command -v hugo >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hugo >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p sitegen
SITEGEN="$CARGO_TARGET_DIR/release/sitegen"
case "${PLACE:-disk}" in
    disk) WORK="$(mktemp -d "${TMPDIR:-/tmp}/sitegen-bench.XXXXXX")" ;;
    tmpfs) WORK="$(mktemp -d /dev/shm/sitegen-bench.XXXXXX)" ;;
    *) echo "PLACE must be disk or tmpfs" >&2; exit 2 ;;
esac
trap 'rm -rf "$WORK"' EXIT

python3 bench/sitegen/gen_corpus.py "$WORK/src/content" "$PAGES" "$SECTIONS" "$PARTS"
cp bench/sitegen/sitegen-site/site.toml "$WORK/src/"
cp -r bench/sitegen/sitegen-site/templates "$WORK/src/"
EDIT="$WORK/src/content/docs/s005/p0050.md"
echo "place: ${PLACE:-disk} ($WORK), fresh output folders: ${FRESH:-1}"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $("$SITEGEN" --version)"
if [ -z "$INCREMENTAL_ONLY" ]; then
    cp -r bench/sitegen/hugo-site "$WORK/hugo"
    echo "$(hugo version | cut -d' ' -f1-2)"
    # Hugo cold too: each run gets a new $WORK/hugo-run.N (compare.py), which holds both its
    # output and its cache folder (--cacheDir; without it Hugo would use /tmp/hugo_cache).
    # The floor: create_files.c makes the folders and files of a sitegen build, same sizes,
    # and nothing else; timed in the same alternation as the two generators.
    "$SITEGEN" build --source "$WORK/src" --out "$WORK/out-list" 2>/dev/null
    (cd "$WORK/out-list" && { find . -mindepth 1 -type d -printf '%P -1\n'; \
        find . -type f -printf '%P %s\n'; } | LC_ALL=C sort > "$WORK/files.txt")
    rm -rf "$WORK/out-list"
    cc -O2 -pthread -o "$WORK/create_files" bench/sitegen/create_files.c
    echo "files-only: $(grep -c -- ' -1$' "$WORK/files.txt") folders, $(grep -vc -- ' -1$' "$WORK/files.txt") files, 2 threads"
    python3 bench/sitegen/compare.py "$RUNS" \
        sitegen "$WORK/out-sitegen" "$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen" \
        -- files-only "$WORK/out-files" "$WORK/create_files" "$WORK/files.txt" "$WORK/out-files" 2 \
        -- hugo "$WORK/hugo-run" hugo --quiet -s "$WORK/hugo" --contentDir "$WORK/src/content" \
        -d "$WORK/hugo-run/public" --cacheDir "$WORK/hugo-run/cache"
fi
rm -rf "$WORK/out-sitegen"
"$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen" 2>/dev/null
python3 bench/sitegen/incremental.py $((RUNS * 2)) "$EDIT" \
    "$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen"
"$SITEGEN" build --source "$WORK/src" --out "$WORK/out-clean" 2>/dev/null
diff -r -q -x .sitegen "$WORK/out-sitegen" "$WORK/out-clean"
echo "incremental output identical to a clean build"
