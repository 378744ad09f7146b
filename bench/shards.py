"""Shards and merges, timed as whole processes.

    python3 bench/shards.py [--tiny] [--runs N]

Splits the CE benchmark dump (bench/data/ce_*.npy, 1M x 100 float32; written
by bench/generate.py) into 4 shards and times `losscope ce` over the 4
shards against one pass over the same rows; then cuts it into 1,000 shards,
writes their partial reports and times `losscope merge` of all 1,000. Every
figure is the median of --runs runs after one warm-up, wall clock, and the
merged report is checked against the one-pass report. --tiny runs the same
steps on the tiny dump, once each, as a smoke test.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LOSSCOPE = str(ROOT / "target/release/losscope")
DATA = ROOT / "bench/data"


def timed(args, runs):
    """Median wall seconds of `runs` runs after a warm-up; the last stdout."""
    out = subprocess.run(args, check=True, capture_output=True).stdout
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run(args, check=True, capture_output=True).stdout
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def split(logits, targets, shards, folder):
    folder.mkdir(parents=True, exist_ok=True)
    cuts = np.linspace(0, len(targets), shards + 1).astype(int)
    width = len(str(shards))
    for k in range(shards):
        a, b = cuts[k], cuts[k + 1]
        np.save(folder / f"{k:0{width}d}_logits.npy", logits[a:b])
        np.save(folder / f"{k:0{width}d}_targets.npy", targets[a:b])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = 1 if args.tiny else args.runs
    name = "tiny" if args.tiny else "full"
    logits_path, targets_path = DATA / "ce_logits.npy", DATA / "ce_targets.npy"
    manifest = json.loads((DATA / "manifest.json").read_text())
    if manifest["ce"]["tiny"] != args.tiny:
        sys.exit(f"bench/data holds the {'tiny' if manifest['ce']['tiny'] else 'full'} dump: "
                 f"run python3 bench/generate.py{' --tiny' if args.tiny else ''} first")
    logits = np.load(logits_path, mmap_mode="r")
    targets = np.load(targets_path, mmap_mode="r")
    four, thousand = DATA / f"shards/{name}-4", DATA / f"shards/{name}-1000"
    if not four.exists():
        split(logits, targets, 4, four)
    if not thousand.exists():
        split(logits, targets, 1000, thousand)

    one_pass = [LOSSCOPE, "ce", "--quiet", "--logits", str(logits_path), "--targets", str(targets_path), "--format", "json"]
    sharded = [LOSSCOPE, "ce", "--quiet", "--logits", str(four / "*_logits.npy"),
               "--targets", str(four / "*_targets.npy"), "--format", "json"]
    t_one, one = timed(one_pass, runs)
    t_four, merged = timed(sharded, runs)
    one, merged = json.loads(one), json.loads(merged)
    assert merged["count"] == one["count"], "the sharded run counted other examples"
    assert abs(merged["value"] - one["value"]) <= 4 * sys.float_info.epsilon * abs(one["value"])

    parts = thousand / "parts"
    if not parts.exists():
        parts.mkdir()
        for logits_file in sorted(thousand.glob("*_logits.npy")):
            stem = logits_file.name[: -len("_logits.npy")]
            subprocess.run([LOSSCOPE, "ce", "--quiet", "--logits", str(logits_file),
                            "--targets", str(thousand / f"{stem}_targets.npy"),
                            "--partial", "-o", str(parts / f"{stem}.lsp")], check=True)
    part_bytes = sum(p.stat().st_size for p in parts.glob("*.lsp"))
    t_merge, merged = timed([LOSSCOPE, "merge", str(parts / "*.lsp"), "--format", "json"], runs)
    merged = json.loads(merged)
    assert merged["count"] == one["count"], "the merge counted other examples"
    assert abs(merged["value"] - one["value"]) <= 4 * sys.float_info.epsilon * abs(one["value"])

    rows, classes = logits.shape
    print(f"CE {rows}x{classes} float32, median of {runs} run(s), wall seconds")
    print(f"  one pass                    {t_one:.3f}")
    print(f"  4 shards in one run         {t_four:.3f}  ({t_four / t_one:.2f}x one pass)")
    print(f"  merge of 1000 partials      {t_merge:.3f}  ({part_bytes / 1000 / 1024:.1f} KiB each)")


if __name__ == "__main__":
    main()
