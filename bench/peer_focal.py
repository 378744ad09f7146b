#!/usr/bin/env python3
"""PyTorch peer of `losscope focal --kind sigmoid --preset torchvision` and of
`losscope bce`: the same report content, computed the way a user would in a
few lines.

    python3 bench/peer_focal.py [--logits bench/data/focal_logits.npy] [--targets bench/data/focal_targets.npy]
                                [--loss focal|bce] [--labels] [--class-axis K]

Loads the .npy files with NumPy (float32 logits and float32 one-hot targets,
or with --labels int64 class indices, -1 = background, turned into one-hot
targets with F.one_hot inside the timed span), computes in float32 as a user
runs it: torchvision.ops.sigmoid_focal_loss (alpha 0.25, gamma 2,
reduction='none'), or with `--loss bce` F.binary_cross_entropy_with_logits,
its mean over all elements, the per-class sums, the easy / hard split by
p_t > 0.5 and the positive / negative split, each with its loss sum. With
`--class-axis K` the classes are on axis K ([B, C, H, W]: 1) and are moved
last first (`movedim`), as a user does for the per-class sums. Prints the results on
stdout and the in-process compute time (loading excluded) on stderr as
`compute_seconds=<x>`, and the CPU time of all its threads over the same span
as `compute_cpu_seconds=<x>`.
"""

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

parser = argparse.ArgumentParser(description="PyTorch peer of `losscope focal` (sigmoid) and `losscope bce`")
parser.add_argument("--logits", default="bench/data/focal_logits.npy")
parser.add_argument("--targets", default="bench/data/focal_targets.npy")
parser.add_argument("--loss", choices=["focal", "bce"], default="focal")
parser.add_argument("--labels", action="store_true", help="the targets are class indices, -1 = background")
parser.add_argument("--class-axis", type=int, default=-1)
parser.add_argument("--alpha", type=float, default=0.25)
parser.add_argument("--gamma", type=float, default=2.0)
parser.add_argument("--easy-threshold", type=float, default=0.5)
args = parser.parse_args()

logits = torch.from_numpy(np.load(args.logits))
targets = torch.from_numpy(np.load(args.targets))

start, start_cpu = time.perf_counter(), time.process_time()
logits = logits.movedim(args.class_axis, -1)
classes = logits.shape[-1]
if args.labels:
    targets = F.one_hot(targets + 1, classes + 1)[:, 1:].to(logits.dtype)  # -1 -> all zeros
else:
    targets = targets.movedim(args.class_axis, -1)
if args.loss == "bce":
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
else:
    loss = sigmoid_focal_loss(logits, targets, alpha=args.alpha, gamma=args.gamma, reduction="none")
mean = loss.mean()
class_sums = loss.reshape(-1, classes).sum(dim=0)
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
