#!/usr/bin/env python3
"""Cold builds side by side: each command RUNS times, alternating, every run into an empty
folder. Wall time from a monotonic clock; user
CPU, system CPU and peak resident memory from the child's rusage (wait4), so the figures are
the generator's own. Prints per-run figures, the medians, and the medians of the paired
ratios (run i of the first command over run i of the second).

usage: compare.py RUNS NAME OUT_DIR COMMAND... -- NAME OUT_DIR COMMAND...

Each run writes into a folder that has never existed: OUT_DIR in COMMAND is replaced by
OUT_DIR.N, and every output is removed only after the last run. Removing the previous output
just before a run (FRESH=0 does, as this script did before) makes the run pay for the
removal on ext4 without a journal, as this machine's disk is: its inode allocator skips every
inode freed in the last 60 s (360 s while the freed inode's block is dirty), so each file
created right after an rm -rf of thousands scans past them, a cost that grows with the square
of the files made. Journaled ext4 (every distribution's default) and tmpfs do not do this.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time


def parse(args):
    commands, current = [], []
    for arg in args:
        if arg == "--":
            commands.append(current)
            current = []
        else:
            current.append(arg)
    commands.append(current)
    return [(c[0], c[1], c[2:]) for c in commands]


FRESH = os.environ.get("FRESH", "1") != "0"


def run_once(out_dir, argv, run):
    if FRESH:
        fresh = f"{out_dir}.{run}"
        argv = [arg.replace(out_dir, fresh) for arg in argv]
        out_dir = fresh
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{argv[0]} failed ({child.returncode}): {stderr.decode(errors='replace')}")
    # ru_maxrss is in KiB on Linux.
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024}


def main():
    runs = int(sys.argv[1])
    commands = parse(sys.argv[2:])
    results = {name: [] for name, _, _ in commands}
    for i in range(runs):
        # Alternate which command goes first, so neither always follows the other.
        order = commands if i % 2 == 0 else list(reversed(commands))
        for name, out_dir, argv in order:
            r = run_once(out_dir, argv, i + 1)
            results[name].append(r)
            print(f"run {i + 1} {name}: wall {r['wall']:.2f} s, user {r['user']:.2f} s, "
                  f"sys {r['sys']:.2f} s, peak {r['peak_mib']:.0f} MiB", flush=True)
    for name, out_dir, _ in commands:
        last = f"{out_dir}.{runs}" if FRESH else out_dir
        files = sum(len(names) for _, _, names in os.walk(last))
        print(f"output of {name}'s last run: {files} files")
    if FRESH:
        for name, out_dir, _ in commands:
            for i in range(runs):
                shutil.rmtree(f"{out_dir}.{i + 1}", ignore_errors=True)
    fields = [("wall", "wall (s)", "{:.2f}"), ("user", "user CPU (s)", "{:.2f}"),
              ("sys", "system CPU (s)", "{:.2f}"), ("peak_mib", "peak memory (MiB)", "{:.0f}")]
    names = [name for name, _, _ in commands]
    print(f"\nmedians of {runs} runs:")
    print("| | " + " | ".join(label for _, label, _ in fields) + " |")
    print("|---|" + "---:|" * len(fields))
    for name in names:
        cells = [fmt.format(statistics.median(r[key] for r in results[name]))
                 for key, _, fmt in fields]
        print(f"| {name} | " + " | ".join(cells) + " |")
    reference = names[-1]
    for name in names[:-1]:
        cells = []
        for key, _, _ in fields:
            ratios = [x[key] / y[key] for x, y in zip(results[name], results[reference])]
            cells.append(f"{statistics.median(ratios):.2f}")
        print(f"| {name}/{reference} (median of paired ratios) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
