#!/usr/bin/env python3
"""PyTorch peer of `losscope ce` and of `losscope focal --kind softmax`: the
same report content, computed the way a user would in a few lines of PyTorch.

    python3 bench/peer_ce.py [--logits bench/data/ce_logits.npy] [--targets bench/data/ce_targets.npy]
                             [--loss ce|focal]
    python3 bench/peer_ce.py --bundle bench/data/vocab_bf16.safetensors

Loads the .npy files with NumPy (or the `logits` and `targets` of a
.safetensors file with safetensors.torch), hands them to torch, and computes
in float32 (the dtype of the dump, as a user runs it; bfloat16 logits are
converted with .float() inside the timed span): the per-row loss, its mean,
per-class loss sums and counts (reduction='none' + index_add_ / bincount),
and the easy / hard split by p_t > 0.5 with the loss sum of each side. The
loss is F.cross_entropy, or with `--loss focal` kornia's softmax focal_loss
(alpha 0.25, gamma 2; the same formula written in torch when kornia is not
installed), summed over the classes of each row. Prints the results on stdout and the in-process compute
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
parser.add_argument("--bundle", help="a .safetensors file holding `logits` and `targets` (overrides both)")
parser.add_argument("--loss", choices=["ce", "focal"], default="ce")
parser.add_argument("--alpha", type=float, default=0.25)
parser.add_argument("--gamma", type=float, default=2.0)
parser.add_argument("--easy-threshold", type=float, default=0.5)
args = parser.parse_args()

if args.bundle:
    from safetensors.torch import load_file

    tensors = load_file(args.bundle)
    logits, targets = tensors["logits"], tensors["targets"]
else:
    logits = torch.from_numpy(np.load(args.logits))
    targets = torch.from_numpy(np.load(args.targets))
classes = logits.shape[1]


try:
    from kornia.losses import focal_loss
except ImportError:
    focal_loss = None


def softmax_focal(logits, targets):
    """Per-element softmax focal loss, [N, C]: kornia's focal_loss, or its
    formula (alpha on every class but 0, which gets 1 - alpha)."""
    if focal_loss is None:
        log_p = F.log_softmax(logits, dim=1)
        one_hot = F.one_hot(targets, classes).to(logits.dtype)
        alpha = torch.full((classes,), args.alpha, dtype=logits.dtype)
        alpha[0] = 1 - args.alpha
        return -alpha * (1 - log_p.exp()).pow(args.gamma) * one_hot * log_p
    return focal_loss(logits, targets, alpha=args.alpha, gamma=args.gamma, reduction="none")


start, start_cpu = time.perf_counter(), time.process_time()
if logits.dtype != torch.float32:
    logits = logits.float()
if args.loss == "focal":
    losses = softmax_focal(logits, targets).reshape(len(targets), -1).sum(1)
    p_t = F.softmax(logits, dim=1).gather(1, targets[:, None])[:, 0]
else:
    losses = F.cross_entropy(logits, targets, reduction="none")
    p_t = torch.exp(-losses)
mean = losses.mean()
counts = torch.bincount(targets, minlength=classes)
class_sums = torch.zeros(classes, dtype=losses.dtype).index_add_(0, targets, losses)
easy = p_t > args.easy_threshold
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
