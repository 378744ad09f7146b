#!/usr/bin/env python3
"""Write the benchmark inputs of losscope (NumPy only, no PyTorch needed).

Three dumps, with fixed seeds so that every run writes the same bytes:

  ce      ce_logits.npy     [1_000_000, 100] float32   (400 MB)
          ce_targets.npy    [1_000_000]      int64, Zipf-like class imbalance
                            (class k drawn with probability ~ 1/(k+1))
  focal   focal_logits.npy  [1_000_000, 80]  float32   (320 MB)
          focal_targets.npy [1_000_000, 80]  float32 one-hot (2% of the rows
                            positive, one random class each; the rest all 0)
          focal_labels.npy  [1_000_000]      int64, the same targets as class
                            indices, -1 = background
  ssd     SSD300 on VOC, batch 32, 8732 priors, 21 classes (0 = background)
          ssd_loc.npy       [32, 8732, 4]  float32
          ssd_conf.npy      [32, 8732, 21] float32
          ssd_priors.npy    [8732, 4]      float32, (cx, cy, w, h) exactly as
                            ssd.pytorch's PriorBox builds them for SSD300-VOC
          ssd_truths.json   per image a list of [xmin, ymin, xmax, ymax, label],
                            1-11 valid boxes per image, labels 0..19

plus manifest.json, which records what was written with which settings.

Usage (from the repository root):

    python3 bench/generate.py                    # everything into bench/data/
    python3 bench/generate.py --scale 0.25 --only ce
                                                 # 1/4 of the rows, into bench/data/scale-0.25/
    python3 bench/generate.py --tiny             # small versions into bench/data/tiny/
    python3 bench/generate.py --if-missing ...   # skip dumps already written with these settings

--scale F multiplies the row counts (CE and focal rows, SSD batch size).
Rows are drawn in fixed-size chunks from one seeded generator per dump, so
the bytes depend only on the settings, not on the machine's memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from itertools import product
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
CHUNK = 1 << 16  # rows per generator call; fixed, so that the output never depends on memory

CE_ROWS, CE_CLASSES = 1_000_000, 100
FOCAL_ROWS, FOCAL_CLASSES, FOCAL_POSITIVE = 1_000_000, 80, 0.02
SSD_BATCH, SSD_CLASSES = 32, 21
TINY_ROWS, TINY_BATCH = 2_000, 2

SEEDS = {"ce": 20240101, "focal": 20240102, "ssd": 20240103}


def write_npy(path: Path, dtype, shape, fill) -> None:
    """Create `path` as an .npy file of `shape` and let `fill(view)` write
    it chunk by chunk; the file appears under its name only when complete."""
    partial = path.with_name(path.name + ".part")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=tuple(shape))
    fill(array)
    array.flush()
    del array
    os.replace(partial, path)


def chunks(rows: int):
    for start in range(0, rows, CHUNK):
        yield start, min(start + CHUNK, rows)


# --------------------------------------------------------------------------- CE


def generate_ce(out: Path, rows: int) -> dict:
    rng = np.random.default_rng(SEEDS["ce"])
    classes = CE_CLASSES
    zipf = 1.0 / np.arange(1, classes + 1)
    zipf /= zipf.sum()
    targets = np.empty(rows, dtype=np.int64)

    def fill(logits):
        for start, stop in chunks(rows):
            n = stop - start
            t = rng.choice(classes, size=n, p=zipf)
            x = rng.standard_normal((n, classes), dtype=np.float32) * np.float32(2.0)
            # The target logit gets a margin that shrinks towards the rare
            # classes: frequent classes are mostly easy, rare ones mostly hard.
            margin = rng.normal(8.0 - 4.0 * t / (classes - 1), 3.0).astype(np.float32)
            x[np.arange(n), t] += margin
            logits[start:stop] = x
            targets[start:stop] = t

    write_npy(out / "ce_logits.npy", np.float32, (rows, classes), fill)
    write_npy(out / "ce_targets.npy", np.int64, (rows,), lambda a: a.__setitem__(slice(None), targets))
    return {"files": ["ce_logits.npy", "ce_targets.npy"], "rows": rows, "classes": classes}


# ------------------------------------------------------------------------ focal


def generate_focal(out: Path, rows: int) -> dict:
    rng = np.random.default_rng(SEEDS["focal"])
    classes = FOCAL_CLASSES
    positives = round(FOCAL_POSITIVE * rows)
    labels = np.full(rows, -1, dtype=np.int64)
    labels[rng.choice(rows, size=positives, replace=False)] = rng.integers(0, classes, size=positives)

    def fill_logits(logits):
        for start, stop in chunks(rows):
            n = stop - start
            # A detector head with the usual prior bias: background logits
            # around -4, the positive class pushed up by a varying amount.
            x = rng.normal(-4.0, 1.5, size=(n, classes)).astype(np.float32)
            lab = labels[start:stop]
            hit = np.flatnonzero(lab >= 0)
            x[hit, lab[hit]] += rng.normal(4.5, 2.0, size=hit.size).astype(np.float32)
            logits[start:stop] = x

    def fill_onehot(onehot):
        for start, stop in chunks(rows):
            block = np.zeros((stop - start, classes), dtype=np.float32)
            lab = labels[start:stop]
            hit = np.flatnonzero(lab >= 0)
            block[hit, lab[hit]] = 1.0
            onehot[start:stop] = block

    write_npy(out / "focal_logits.npy", np.float32, (rows, classes), fill_logits)
    write_npy(out / "focal_targets.npy", np.float32, (rows, classes), fill_onehot)
    write_npy(out / "focal_labels.npy", np.int64, (rows,), lambda a: a.__setitem__(slice(None), labels))
    return {
        "files": ["focal_logits.npy", "focal_targets.npy", "focal_labels.npy"],
        "rows": rows,
        "classes": classes,
        "positive_rows": positives,
    }


# -------------------------------------------------------------------------- SSD


def ssd300_voc_priors() -> np.ndarray:
    """ssd.pytorch's PriorBox(voc).forward(): cells row by row; per cell the
    small square, the large square, then each aspect ratio and its inverse.
    torch.Tensor(mean) stores the Python floats as float32, then clamps."""
    image_size = 300
    feature_maps = [38, 19, 10, 5, 3, 1]
    steps = [8, 16, 32, 64, 100, 300]
    min_sizes = [30, 60, 111, 162, 213, 264]
    max_sizes = [60, 111, 162, 213, 264, 315]
    aspect_ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    mean = []
    for k, f in enumerate(feature_maps):
        for i, j in product(range(f), repeat=2):
            f_k = image_size / steps[k]
            cx = (j + 0.5) / f_k
            cy = (i + 0.5) / f_k
            s_k = min_sizes[k] / image_size
            mean += [cx, cy, s_k, s_k]
            s_k_prime = math.sqrt(s_k * (max_sizes[k] / image_size))
            mean += [cx, cy, s_k_prime, s_k_prime]
            for ar in aspect_ratios[k]:
                mean += [cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)]
                mean += [cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)]
    priors = np.array(mean, dtype=np.float64).astype(np.float32).reshape(-1, 4)
    np.clip(priors, np.float32(0), np.float32(1), out=priors)
    assert priors.shape == (8732, 4), priors.shape
    return priors


def generate_ssd(out: Path, batch: int) -> dict:
    rng = np.random.default_rng(SEEDS["ssd"])
    priors = ssd300_voc_priors()
    num_priors = priors.shape[0]

    truths = []
    for _ in range(batch):
        boxes = []
        for _ in range(int(rng.integers(1, 12))):  # 1..11 boxes
            w, h = rng.uniform(0.05, 0.8, size=2)
            cx = rng.uniform(w / 2, 1 - w / 2)
            cy = rng.uniform(h / 2, 1 - h / 2)
            # float32 values, written so that they read back exactly.
            corners = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float32)
            corners = np.clip(corners, np.float32(0), np.float32(1))
            boxes.append([float(v) for v in corners] + [int(rng.integers(0, SSD_CLASSES - 1))])
        truths.append(boxes)

    def fill_loc(loc):
        for b in range(batch):
            loc[b] = rng.standard_normal((num_priors, 4), dtype=np.float32)

    def fill_conf(conf):
        for b in range(batch):
            x = rng.standard_normal((num_priors, SSD_CLASSES), dtype=np.float32) * np.float32(1.5)
            x[:, 0] += np.float32(2.0)  # the background class usually wins
            conf[b] = x

    write_npy(out / "ssd_loc.npy", np.float32, (batch, num_priors, 4), fill_loc)
    write_npy(out / "ssd_conf.npy", np.float32, (batch, num_priors, SSD_CLASSES), fill_conf)
    write_npy(out / "ssd_priors.npy", np.float32, priors.shape, lambda a: a.__setitem__(slice(None), priors))
    partial = out / "ssd_truths.json.part"
    partial.write_text(json.dumps(truths) + "\n")
    os.replace(partial, out / "ssd_truths.json")
    return {
        "files": ["ssd_loc.npy", "ssd_conf.npy", "ssd_priors.npy", "ssd_truths.json"],
        "batch": batch,
        "priors": num_priors,
        "classes": SSD_CLASSES,
        "boxes": sum(len(b) for b in truths),
    }


# ------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the row counts (default 1)")
    parser.add_argument("--tiny", action="store_true", help="small versions for a smoke test")
    parser.add_argument("--only", default="ce,focal,ssd", help="comma-separated subset of ce,focal,ssd")
    parser.add_argument("--out", type=Path, help="output folder (default: bench/data[/tiny|/scale-F])")
    parser.add_argument("--if-missing", action="store_true", help="skip dumps already written with these settings")
    args = parser.parse_args()

    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(SEEDS)
    if unknown:
        parser.error(f"unknown dump(s): {', '.join(sorted(unknown))} (choose from ce, focal, ssd)")
    if args.scale <= 0:
        parser.error("--scale must be positive")

    if args.out is not None:
        out = args.out
    elif args.tiny:
        out = BENCH / "data" / "tiny"
    elif args.scale == 1:
        out = BENCH / "data"
    else:
        out = BENCH / "data" / f"scale-{args.scale:g}"
    out.mkdir(parents=True, exist_ok=True)

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}

    for name in wanted:
        if args.tiny:
            rows, batch = TINY_ROWS, TINY_BATCH
        else:
            rows = max(1, round(args.scale * (CE_ROWS if name == "ce" else FOCAL_ROWS)))
            batch = max(1, round(args.scale * SSD_BATCH))
        settings = {"seed": SEEDS[name], "tiny": args.tiny, "scale": args.scale}
        previous = manifest.get(name)
        if (
            args.if_missing
            and previous is not None
            and all(previous.get(k) == v for k, v in settings.items())
            and all((out / f).exists() for f in previous["files"])
        ):
            print(f"{name}: up to date in {out}", file=sys.stderr)
            continue
        print(f"{name}: writing into {out} ...", file=sys.stderr, flush=True)
        if name == "ce":
            entry = generate_ce(out, rows)
        elif name == "focal":
            entry = generate_focal(out, rows)
        else:
            entry = generate_ssd(out, batch)
        entry.update(settings)
        entry["bytes"] = sum((out / f).stat().st_size for f in entry["files"])
        manifest[name] = entry
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"{name}: {entry['bytes'] / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
