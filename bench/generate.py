#!/usr/bin/env python3
"""Write the benchmark inputs of losscope (NumPy only, no PyTorch needed).

Six dumps, with fixed seeds so that every run writes the same bytes:

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
  focal4d focal4d_logits.npy  [32, 80, 128, 128] float32, classes on axis 1
                              (168 MB), a dense detector head's output
          focal4d_targets.npy the same shape, float32 one-hot (2% of the
                              cells positive, as in focal)
  ssd256  the ssd dump with batch 256 (ssd256_loc.npy, ssd256_conf.npy,
          ssd256_priors.npy, ssd256_truths.json; 220 MB)
  vocab   vocab_logits.npy    [8192, 128000] float32 (4.2 GB): a language
                              model's vocabulary, Zipf-like targets
          vocab_targets.npy   [8192] int64
          vocab_bf16.safetensors  the same logits rounded to bfloat16 (to
                              nearest, ties to even) as `logits` beside the
                              targets as `targets` (2.1 GB)
          Written only when named (--only vocab): it takes 6.3 GB of disk.

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
FOCAL4D_BATCH, FOCAL4D_SIDE = 32, 128  # [B, 80, side, side]
VOCAB_ROWS, VOCAB_CLASSES = 8192, 128_000
TINY_ROWS, TINY_BATCH = 2_000, 2
TINY_FOCAL4D_SIDE, TINY_VOCAB_ROWS, TINY_VOCAB_CLASSES = 8, 64, 1000

SEEDS = {
    "ce": 20240101,
    "focal": 20240102,
    "ssd": 20240103,
    "focal4d": 20240104,
    "ssd256": 20240105,
    "vocab": 20240106,
}
DEFAULT_DUMPS = "ce,focal,ssd,focal4d,ssd256"  # vocab only when named


def write_npy(path: Path, dtype, shape, fill) -> None:
    """Create `path` as an .npy file of `shape` and let `fill(view)` write
    it chunk by chunk; the file appears under its name only when complete."""
    partial = path.with_name(path.name + ".part")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=tuple(shape))
    fill(array)
    array.flush()
    del array
    os.replace(partial, path)


def chunks(rows: int, chunk: int = CHUNK):
    for start in range(0, rows, chunk):
        yield start, min(start + chunk, rows)


# --------------------------------------------------------------------------- CE


def generate_ce(out: Path, rows: int, classes: int = CE_CLASSES, name: str = "ce") -> dict:
    rng = np.random.default_rng(SEEDS[name])
    chunk = max(1, CHUNK * CE_CLASSES // classes)  # about the same bytes per call
    zipf = 1.0 / np.arange(1, classes + 1)
    zipf /= zipf.sum()
    targets = np.empty(rows, dtype=np.int64)

    def fill(logits):
        for start, stop in chunks(rows, chunk):
            n = stop - start
            t = rng.choice(classes, size=n, p=zipf)
            x = rng.standard_normal((n, classes), dtype=np.float32) * np.float32(2.0)
            # The target logit gets a margin that shrinks towards the rare
            # classes: frequent classes are mostly easy, rare ones mostly hard.
            margin = rng.normal(8.0 - 4.0 * t / (classes - 1), 3.0).astype(np.float32)
            x[np.arange(n), t] += margin
            logits[start:stop] = x
            targets[start:stop] = t

    write_npy(out / f"{name}_logits.npy", np.float32, (rows, classes), fill)
    write_npy(out / f"{name}_targets.npy", np.int64, (rows,), lambda a: a.__setitem__(slice(None), targets))
    return {"files": [f"{name}_logits.npy", f"{name}_targets.npy"], "rows": rows, "classes": classes}


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest, ties to even (as
    torch's .bfloat16()); the inputs are finite."""
    bits = x.view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def generate_vocab(out: Path, rows: int, classes: int) -> dict:
    """The CE recipe at a vocabulary's width, then the same logits as
    bfloat16 in a .safetensors file (logits and targets), as
    safetensors.torch.save_file lays it out."""
    entry = generate_ce(out, rows, classes, "vocab")
    logits = np.load(out / "vocab_logits.npy", mmap_mode="r")
    targets = np.load(out / "vocab_targets.npy")
    logits_bytes = rows * classes * 2
    header = {
        "logits": {"dtype": "BF16", "shape": [rows, classes], "data_offsets": [0, logits_bytes]},
        "targets": {"dtype": "I64", "shape": [rows], "data_offsets": [logits_bytes, logits_bytes + targets.nbytes]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    path = out / "vocab_bf16.safetensors"
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        step = max(1, CHUNK * CE_CLASSES // classes)
        for start, stop in chunks(rows, step):
            f.write(bf16_bits(np.ascontiguousarray(logits[start:stop])).tobytes())
        f.write(targets.tobytes())
    os.replace(partial, path)
    entry["files"].append(path.name)
    return entry


# ------------------------------------------------------------------------ focal


def head_logits(rng, labels: np.ndarray, classes: int) -> np.ndarray:
    """A detector head with the usual prior bias: background logits around
    -4, the positive class (label >= 0) pushed up by a varying amount."""
    x = rng.normal(-4.0, 1.5, size=(labels.size, classes)).astype(np.float32)
    hit = np.flatnonzero(labels >= 0)
    x[hit, labels[hit]] += rng.normal(4.5, 2.0, size=hit.size).astype(np.float32)
    return x


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    block = np.zeros((labels.size, classes), dtype=np.float32)
    hit = np.flatnonzero(labels >= 0)
    block[hit, labels[hit]] = 1.0
    return block


def focal_labels(rng, rows: int, classes: int) -> np.ndarray:
    """-1 (background) but for FOCAL_POSITIVE of the rows, one class each."""
    positives = round(FOCAL_POSITIVE * rows)
    labels = np.full(rows, -1, dtype=np.int64)
    labels[rng.choice(rows, size=positives, replace=False)] = rng.integers(0, classes, size=positives)
    return labels


def generate_focal(out: Path, rows: int) -> dict:
    rng = np.random.default_rng(SEEDS["focal"])
    classes = FOCAL_CLASSES
    labels = focal_labels(rng, rows, classes)
    positives = int((labels >= 0).sum())

    def fill_logits(logits):
        for start, stop in chunks(rows):
            logits[start:stop] = head_logits(rng, labels[start:stop], classes)

    def fill_onehot(onehot):
        for start, stop in chunks(rows):
            onehot[start:stop] = one_hot(labels[start:stop], classes)

    write_npy(out / "focal_logits.npy", np.float32, (rows, classes), fill_logits)
    write_npy(out / "focal_targets.npy", np.float32, (rows, classes), fill_onehot)
    write_npy(out / "focal_labels.npy", np.int64, (rows,), lambda a: a.__setitem__(slice(None), labels))
    return {
        "files": ["focal_logits.npy", "focal_targets.npy", "focal_labels.npy"],
        "rows": rows,
        "classes": classes,
        "positive_rows": positives,
    }


def generate_focal4d(out: Path, batch: int, side: int) -> dict:
    """The focal recipe per cell of a [B, C, H, W] head output: each image's
    H*W cells drawn as rows, then the classes moved to axis 1."""
    rng = np.random.default_rng(SEEDS["focal4d"])
    classes, cells = FOCAL_CLASSES, side * side
    labels = focal_labels(rng, batch * cells, classes)
    shape = (batch, classes, side, side)

    def nchw(make):
        def fill(array):
            for b in range(batch):
                rows = make(labels[b * cells : (b + 1) * cells])
                array[b] = rows.T.reshape(classes, side, side)

        return fill

    write_npy(out / "focal4d_logits.npy", np.float32, shape, nchw(lambda lab: head_logits(rng, lab, classes)))
    write_npy(out / "focal4d_targets.npy", np.float32, shape, nchw(lambda lab: one_hot(lab, classes)))
    return {
        "files": ["focal4d_logits.npy", "focal4d_targets.npy"],
        "shape": list(shape),
        "positive_cells": int((labels >= 0).sum()),
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


def generate_ssd(out: Path, batch: int, name: str = "ssd") -> dict:
    rng = np.random.default_rng(SEEDS[name])
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

    files = [f"{name}_loc.npy", f"{name}_conf.npy", f"{name}_priors.npy", f"{name}_truths.json"]
    write_npy(out / files[0], np.float32, (batch, num_priors, 4), fill_loc)
    write_npy(out / files[1], np.float32, (batch, num_priors, SSD_CLASSES), fill_conf)
    write_npy(out / files[2], np.float32, priors.shape, lambda a: a.__setitem__(slice(None), priors))
    partial = out / (files[3] + ".part")
    partial.write_text(json.dumps(truths) + "\n")
    os.replace(partial, out / files[3])
    return {
        "files": files,
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
    parser.add_argument(
        "--only", default=DEFAULT_DUMPS, help=f"comma-separated dumps of {', '.join(SEEDS)} (default: {DEFAULT_DUMPS})"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: bench/data[/tiny|/scale-F])")
    parser.add_argument("--if-missing", action="store_true", help="skip dumps already written with these settings")
    args = parser.parse_args()

    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(SEEDS)
    if unknown:
        parser.error(f"unknown dump(s): {', '.join(sorted(unknown))} (choose from {', '.join(SEEDS)})")
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
        full_rows = {"ce": CE_ROWS, "vocab": VOCAB_ROWS}.get(name, FOCAL_ROWS)
        full_batch = {"ssd256": 8 * SSD_BATCH, "focal4d": FOCAL4D_BATCH}.get(name, SSD_BATCH)
        if args.tiny:
            rows = TINY_VOCAB_ROWS if name == "vocab" else TINY_ROWS
            batch = 2 * TINY_BATCH if name == "ssd256" else TINY_BATCH
        else:
            rows = max(1, round(args.scale * full_rows))
            batch = max(1, round(args.scale * full_batch))
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
        elif name == "focal4d":
            entry = generate_focal4d(out, batch, TINY_FOCAL4D_SIDE if args.tiny else FOCAL4D_SIDE)
        elif name == "vocab":
            entry = generate_vocab(out, rows, TINY_VOCAB_CLASSES if args.tiny else VOCAB_CLASSES)
        else:
            entry = generate_ssd(out, batch, name)
        entry.update(settings)
        entry["bytes"] = sum((out / f).stat().st_size for f in entry["files"])
        manifest[name] = entry
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"{name}: {entry['bytes'] / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
