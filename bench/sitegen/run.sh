#!/usr/bin/env bash
# sitegen vs Hugo on a generated corpus, side by side in one run (hyperfine, median of RUNS),
# then the time of sitegen's incremental rebuild after a one-page body edit.
#   bench/sitegen/run.sh            # 10,000 pages, 5 runs
#   PAGES=2000 RUNS=7 bench/sitegen/run.sh
#   INCREMENTAL_ONLY=1 bench/sitegen/run.sh   # one cold sitegen build, no Hugo, then the
#                                             # one-page rebuild timing and a clean-build diff
set -euo pipefail
cd "$(dirname "$0")/../.."
PAGES="${PAGES:-10000}"
RUNS="${RUNS:-5}"
INCREMENTAL_ONLY="${INCREMENTAL_ONLY:-}"
TOOLS="hugo hyperfine"
[ -n "$INCREMENTAL_ONLY" ] && TOOLS=hyperfine
for tool in $TOOLS; do
    if ! command -v "$tool" >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    fi
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-sitegen}"
cargo build --release -q -p sitegen
SITEGEN="$CARGO_TARGET_DIR/release/sitegen"
WORK="$(mktemp -d /tmp/sitegen-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

python3 bench/sitegen/gen_corpus.py "$WORK/src/content" "$PAGES"
cp bench/sitegen/sitegen-site/site.toml "$WORK/src/"
cp -r bench/sitegen/sitegen-site/templates "$WORK/src/"
EDIT="$WORK/src/content/docs/s050/p0050.md"
if [ -n "$INCREMENTAL_ONLY" ]; then
    echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $("$SITEGEN" --version)"
    "$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen" 2>/dev/null
    python3 bench/sitegen/edit_page.py "$EDIT"
    "$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen" 2>/dev/null
    hyperfine --style basic -N --warmup 2 --runs $((RUNS * 2)) --export-json "$WORK/incremental.json" \
        --prepare "python3 bench/sitegen/edit_page.py $EDIT" \
        -n sitegen-one-page-edit "$SITEGEN build --source $WORK/src --out $WORK/out-sitegen"
    "$SITEGEN" build --source "$WORK/src" --out "$WORK/out-clean" 2>/dev/null
    diff -r -q -x .sitegen "$WORK/out-sitegen" "$WORK/out-clean"
    python3 - "$WORK/incremental.json" "$PAGES" <<'PY'
import json, sys
inc = json.load(open(sys.argv[1]))["results"][0]
runs = " ".join(f"{t * 1000:.1f}" for t in inc["times"])
print(f"\nRESULT pages={sys.argv[2]} incremental_one_page_median={inc['median'] * 1000:.1f}ms "
      f"(target < 100 ms) cpu_user_sys_mean={(inc['user'] + inc['system']) * 1000:.1f}ms; "
      "incremental output identical to a clean build")
print(f"incremental runs (ms): {runs}")
PY
    exit 0
fi
cp -r bench/sitegen/hugo-site "$WORK/hugo"
echo "machine: $(nproc) cores; $(hugo version | cut -d' ' -f1-2); $("$SITEGEN" --version)"

SITEGEN_COLD="$SITEGEN build --source $WORK/src --out $WORK/out-sitegen"
HUGO_COLD="hugo --quiet -s $WORK/hugo --contentDir $WORK/src/content -d $WORK/out-hugo"
hyperfine --style basic --warmup 0 --runs "$RUNS" --export-json "$WORK/cold.json" \
    --prepare "rm -rf $WORK/out-sitegen" -n sitegen-cold "$SITEGEN_COLD" \
    --prepare "rm -rf $WORK/out-hugo" -n hugo-cold "$HUGO_COLD"

echo "outputs: sitegen $(find "$WORK/out-sitegen" -name '*.html' | wc -l) HTML files," \
     "hugo $(find "$WORK/out-hugo" -name '*.html' | wc -l) HTML files"

"$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen" 2>/dev/null
python3 bench/sitegen/edit_page.py "$EDIT"
echo "one incremental build after a body edit reports: $("$SITEGEN" build --source "$WORK/src" --out "$WORK/out-sitegen" 2>&1 | tail -1)"
hyperfine --style basic --warmup 2 --runs $((RUNS * 2)) --export-json "$WORK/incremental.json" \
    --prepare "python3 bench/sitegen/edit_page.py $EDIT" \
    -n sitegen-one-page-edit "$SITEGEN build --source $WORK/src --out $WORK/out-sitegen"

python3 - "$WORK/cold.json" "$WORK/incremental.json" "$PAGES" <<'PY'
import json, sys
cold = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
inc = json.load(open(sys.argv[2]))["results"][0]
s, h = cold["sitegen-cold"]["median"], cold["hugo-cold"]["median"]
print(f"\nRESULT pages={sys.argv[3]} sitegen_cold_median={s:.3f}s hugo_cold_median={h:.3f}s "
      f"ratio={s / h:.2f} (target <= 0.8) "
      f"incremental_one_page_median={inc['median'] * 1000:.1f}ms (target < 100 ms)")
for name, result in [("sitegen cold", cold["sitegen-cold"]), ("hugo cold", cold["hugo-cold"]),
                     ("incremental", inc)]:
    print(f"{name} runs (s): " + " ".join(f"{t:.3f}" for t in result["times"]))
PY
