"""A distributed run on a real Dask cluster: a LocalCluster of worker
processes maps `losscope ... --partial` over shards of a batch (one
subprocess per shard), the partials are gathered and merged, and the merged
report must equal the single-process report over the concatenated data.

Usage: python3 tests/dask/map_merge.py PATH_TO_LOSSCOPE
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from dask.distributed import Client, LocalCluster, get_worker

SHARDS = 8
ROWS, CLASSES = 24_000, 10
# The plain (diagnostic) sums may move by about one ulp per example when the
# data is split; the compensated ones (value, sum, per-class sums) by a few.
PLAIN_ULPS = 2.0 * ROWS * CLASSES
COMPENSATED_ULPS = 4.0


def run_shard(args):
    """Runs one map step on a worker; returns the partial and the worker."""
    subprocess.run(args, check=True, capture_output=True)
    return args[-1], get_worker().address, os.getpid()


def ulps_apart(a, b):
    if a == b:
        return 0.0
    return abs(a - b) / (max(abs(a), abs(b)) * sys.float_info.epsilon / 2)


def assert_same(one, merged, path="", scale=None):
    """Integers and strings identical, floats within PLAIN_ULPS of themselves
    or of the report's sum (a difference of two sums is as exact as they are)."""
    if scale is None:
        scale = abs(one["sum"])
    if isinstance(one, dict):
        for key, value in one.items():
            if path == "" and key == "inputs":
                continue
            assert key in merged, f"{path}.{key} is missing"
            assert_same(value, merged[key], f"{path}.{key}", scale)
    elif isinstance(one, list):
        assert len(one) == len(merged), f"{path}: lengths differ"
        for i, (a, b) in enumerate(zip(one, merged)):
            assert_same(a, b, f"{path}[{i}]", scale)
    elif isinstance(one, float) or isinstance(merged, float):
        close = abs(one - merged) <= PLAIN_ULPS * scale * sys.float_info.epsilon / 2
        assert ulps_apart(float(one), float(merged)) <= PLAIN_ULPS or close, f"{path}: {one} vs {merged}"
    else:
        assert one == merged, f"{path}: {one!r} vs {merged!r}"


def report(*args):
    out = subprocess.run(list(args) + ["--format", "json"], check=True, capture_output=True)
    return json.loads(out.stdout)


def main():
    losscope = sys.argv[1]
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(ROWS, CLASSES)).astype(np.float32)
    targets = rng.integers(0, CLASSES, ROWS)
    targets[::13] = -100
    np.save(tmp / "all_logits.npy", logits)
    np.save(tmp / "all_targets.npy", targets)
    cuts = [0, *sorted(rng.choice(np.arange(1, ROWS), SHARDS - 1, replace=False).tolist()), ROWS]
    for k in range(SHARDS):
        a, b = cuts[k], cuts[k + 1]
        np.save(tmp / f"shard-{k:02d}_logits.npy", logits[a:b])
        np.save(tmp / f"shard-{k:02d}_targets.npy", targets[a:b])

    losses = {"ce": [], "focal": ["--kind", "softmax", "--preset", "kornia"]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            jobs = [
                [losscope, loss, *extra, "--quiet",
                 "--logits", str(tmp / f"shard-{k:02d}_logits.npy"),
                 "--targets", str(tmp / f"shard-{k:02d}_targets.npy"),
                 "--partial", "-o", str(tmp / f"{loss}-part-{k:02d}.lsp")]
                for loss, extra in losses.items() for k in range(SHARDS)
            ]
            done = client.gather(client.map(run_shard, jobs))
    workers = {address for _, address, _ in done}
    processes = {pid for _, _, pid in done}
    assert len(workers) >= 2 and len(processes) >= 2, f"the map ran on {workers}, processes {processes}"

    for loss, extra in losses.items():
        parts = sorted(path for path, _, _ in done if Path(path).name.startswith(f"{loss}-"))
        # Merge them in reverse order: the order given does not matter.
        merged = report(losscope, "merge", *reversed(parts))
        one = report(losscope, loss, *extra, "--logits", str(tmp / "all_logits.npy"),
                     "--targets", str(tmp / "all_targets.npy"))
        assert_same(one, merged)
        for field in ("value", "sum", "normalizer"):
            assert ulps_apart(one[field], merged[field]) <= COMPENSATED_ULPS, (field, one[field], merged[field])
        assert merged["count"] == one["count"] and merged["ignored"] == one["ignored"]
        assert len(merged["inputs"]) == 2 * SHARDS
        # The same shards read by one invocation give the same bytes as the merge.
        sharded = report(losscope, loss, *extra, "--logits", str(tmp / "shard-*_logits.npy"),
                         "--targets", str(tmp / "shard-*_targets.npy"))
        assert sharded == merged, "the sharded run and the merge differ"
        print(f"{loss}: {SHARDS} shards on {len(workers)} Dask workers, merged value {merged['value']!r} "
              f"= single-process {one['value']!r}")
    assert not math.isnan(merged["value"])


if __name__ == "__main__":
    main()
