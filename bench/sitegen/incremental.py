#!/usr/bin/env python3
"""The one-page rebuild: RUNS times, edit one page's body (outside the timing), then time an
incremental `sitegen build` of the whole site. Prints every run and the median.

usage: incremental.py RUNS PAGE_FILE SITEGEN build --source SRC --out OUT
"""
import os
import statistics
import subprocess
import sys
import time


def main():
    runs, page, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    edit = [sys.executable, os.path.join(os.path.dirname(__file__), "edit_page.py"), page]
    times, last = [], ""
    for _ in range(runs):
        subprocess.run(edit, check=True)
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.monotonic() - started)
        if done.returncode != 0:
            sys.exit(f"incremental build failed: {done.stderr}")
        last = done.stderr.strip().splitlines()[-1]
    print("one-page rebuild runs (ms): " + " ".join(f"{t * 1000:.1f}" for t in times))
    print(f"last build reported: {last}")
    print(f"one-page rebuild median of {runs}: {statistics.median(times) * 1000:.1f} ms "
          "(target < 100 ms)")


if __name__ == "__main__":
    main()
