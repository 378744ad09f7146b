#!/usr/bin/env python3
"""PyTorch peer of `losscope focal --kind sigmoid --preset torchvision`: the
same report content, computed the way a user would in a few lines.

    python3 bench/peer_focal.py [--logits bench/data/focal_logits.npy] [--targets bench/data/focal_targets.npy]

Loads the .npy files with NumPy (float32 logits and float32 one-hot targets),
computes in float32 as a user runs it: torchvision.ops.sigmoid_focal_loss
(alpha 0.25, gamma 2, reduction='none'), its mean over all elements, the
per-class sums over columns, the easy / hard split by p_t > 0.5 and the
positive / negative split, each with its loss sum. Prints the results on
stdout and the in-process compute time (loading excluded) on stderr as
`compute_seconds=<x>`, and the CPU time of all its threads over the same span
as `compute_cpu_seconds=<x>`.
"""

import argparse
import sys
import time

import numpy as np
import torch
from torchvision.ops import sigmoid_focal_loss

parser = argparse.ArgumentParser(description="PyTorch peer of `losscope focal`")
parser.add_argument("--logits", default="bench/data/focal_logits.npy")
parser.add_argument("--targets", default="bench/data/focal_targets.npy")
parser.add_argument("--alpha", type=float, default=0.25)
parser.add_argument("--gamma", type=float, default=2.0)
parser.add_argument("--easy-threshold", type=float, default=0.5)
args = parser.parse_args()

logits = torch.from_numpy(np.load(args.logits))
targets = torch.from_numpy(np.load(args.targets))

start, start_cpu = time.perf_counter(), time.process_time()
loss = sigmoid_focal_loss(logits, targets, alpha=args.alpha, gamma=args.gamma, reduction="none")
mean = loss.mean()
class_sums = loss.sum(dim=0)
p = torch.sigmoid(logits)
p_t = p * targets + (1 - p) * (1 - targets)
easy = p_t > args.easy_threshold
easy_count, easy_sum = easy.sum(), loss[easy].sum()
hard_count, hard_sum = (~easy).sum(), loss[~easy].sum()
positive = targets > 0.5
pos_count, pos_sum = positive.sum(), loss[positive].sum()
neg_count, neg_sum = (~positive).sum(), loss[~positive].sum()
compute_seconds = time.perf_counter() - start
compute_cpu_seconds = time.process_time() - start_cpu  # all threads

print(f"mean {mean.item():.9g}")
print(f"easy {easy_count.item()} elements, loss sum {easy_sum.item():.9g}")
print(f"hard {hard_count.item()} elements, loss sum {hard_sum.item():.9g}")
print(f"positives {pos_count.item()} elements, loss sum {pos_sum.item():.9g}")
print(f"negatives {neg_count.item()} elements, loss sum {neg_sum.item():.9g}")
print("class loss_sum")
for k, s in enumerate(class_sums.tolist()):
    print(f"{k} {s:.9g}")
print(f"compute_seconds={compute_seconds:.6f}", file=sys.stderr)
print(f"compute_cpu_seconds={compute_cpu_seconds:.6f}", file=sys.stderr)
