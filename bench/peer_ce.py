#!/usr/bin/env python3
"""PyTorch peer of `losscope ce`: the same report content, computed the way a
user would in a few lines of PyTorch.

    python3 bench/peer_ce.py [--logits bench/data/ce_logits.npy] [--targets bench/data/ce_targets.npy]

Loads the .npy files with NumPy, hands them to torch, and computes in float32
(the dtype of the dump, as a user runs it): the mean cross entropy
(F.cross_entropy), per-class loss sums and counts (reduction='none' +
index_add_ / bincount), and the easy / hard split by p_t > 0.5 with the loss
sum of each side. Prints the results on stdout and the in-process compute
time (loading excluded) on stderr as `compute_seconds=<x>`, and the CPU time
of all its threads over the same span as `compute_cpu_seconds=<x>`.
"""

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser(description="PyTorch peer of `losscope ce`")
parser.add_argument("--logits", default="bench/data/ce_logits.npy")
parser.add_argument("--targets", default="bench/data/ce_targets.npy")
parser.add_argument("--easy-threshold", type=float, default=0.5)
args = parser.parse_args()

logits = torch.from_numpy(np.load(args.logits))
targets = torch.from_numpy(np.load(args.targets))
classes = logits.shape[1]

start, start_cpu = time.perf_counter(), time.process_time()
losses = F.cross_entropy(logits, targets, reduction="none")
mean = losses.mean()
counts = torch.bincount(targets, minlength=classes)
class_sums = torch.zeros(classes, dtype=losses.dtype).index_add_(0, targets, losses)
easy = torch.exp(-losses) > args.easy_threshold  # p_t > 0.5
easy_count, easy_sum = easy.sum(), losses[easy].sum()
hard_count, hard_sum = (~easy).sum(), losses[~easy].sum()
compute_seconds = time.perf_counter() - start
compute_cpu_seconds = time.process_time() - start_cpu  # all threads

print(f"mean {mean.item():.9g}")
print(f"easy {easy_count.item()} examples, loss sum {easy_sum.item():.9g}")
print(f"hard {hard_count.item()} examples, loss sum {hard_sum.item():.9g}")
print("class count loss_sum")
for k, (n, s) in enumerate(zip(counts.tolist(), class_sums.tolist())):
    print(f"{k} {n} {s:.9g}")
print(f"compute_seconds={compute_seconds:.6f}", file=sys.stderr)
print(f"compute_cpu_seconds={compute_cpu_seconds:.6f}", file=sys.stderr)
