#!/usr/bin/env python3
"""PyTorch peer of `losscope ssd`: ssd.pytorch's MultiBoxLoss written in plain
PyTorch, plus the per-class confidence-loss sums.

    python3 bench/peer_ssd.py [--loc bench/data/ssd_loc.npy] [--conf bench/data/ssd_conf.npy]
                              [--priors bench/data/ssd_priors.npy] [--truths bench/data/ssd_truths.json]

The semantics are those of amdegroot/ssd.pytorch (layers/box_utils.py and
layers/modules/multibox_loss.py, with the usual fix of the line order around
`loss_c[pos] = 0`): per image, match the truths to the priors (overlap
threshold 0.5, each truth forced onto its best prior), encode with variances
0.1 / 0.2, smooth L1 over the positives; hard negative mining 3:1 ranked by
log-sum-exp (shifted by the batch's largest logit) minus the background
logit; cross entropy over positives and mined negatives; both sums divided
by the batch's positive count. Computed in float32, as a user runs it.
Prints the results on stdout and the in-process compute time (loading
excluded) on stderr as `compute_seconds=<x>`, and the CPU time of all its
threads over the same span as `compute_cpu_seconds=<x>`.
"""

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

THRESHOLD, NEGPOS_RATIO, VARIANCES = 0.5, 3, (0.1, 0.2)


def point_form(boxes):
    return torch.cat((boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2), 1)


def jaccard(box_a, box_b):
    max_xy = torch.min(box_a[:, None, 2:], box_b[None, :, 2:])
    min_xy = torch.max(box_a[:, None, :2], box_b[None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0).prod(2)
    area_a = ((box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1]))[:, None]
    area_b = ((box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1]))[None, :]
    return inter / (area_a + area_b - inter)


def encode(matched, priors):
    g_cxcy = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (VARIANCES[0] * priors[:, 2:])
    g_wh = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / VARIANCES[1]
    return torch.cat([g_cxcy, g_wh], 1)


def match(truths, labels, priors):
    overlaps = jaccard(truths, point_form(priors))
    _, best_prior_idx = overlaps.max(1)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)  # keep each truth's best prior
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < THRESHOLD] = 0
    return encode(truths[best_truth_idx], priors), conf


parser = argparse.ArgumentParser(description="PyTorch peer of `losscope ssd`")
parser.add_argument("--loc", default="bench/data/ssd_loc.npy")
parser.add_argument("--conf", default="bench/data/ssd_conf.npy")
parser.add_argument("--priors", default="bench/data/ssd_priors.npy")
parser.add_argument("--truths", default="bench/data/ssd_truths.json")
args = parser.parse_args()

loc_data = torch.from_numpy(np.load(args.loc))
conf_data = torch.from_numpy(np.load(args.conf))
priors = torch.from_numpy(np.load(args.priors))
with open(args.truths) as f:
    targets = [torch.tensor(boxes, dtype=torch.float32) for boxes in json.load(f)]

start, start_cpu = time.perf_counter(), time.process_time()
num, num_priors, num_classes = conf_data.shape
loc_t = torch.empty(num, num_priors, 4)
conf_t = torch.empty(num, num_priors, dtype=torch.long)
for idx, boxes in enumerate(targets):
    loc_t[idx], conf_t[idx] = match(boxes[:, :-1], boxes[:, -1].long(), priors)
pos = conf_t > 0

loss_l = F.smooth_l1_loss(loc_data[pos], loc_t[pos], reduction="sum")

batch_conf = conf_data.view(-1, num_classes)
x_max = batch_conf.max()
log_sum_exp = torch.log(torch.exp(batch_conf - x_max).sum(1, keepdim=True)) + x_max
loss_c = (log_sum_exp - batch_conf.gather(1, conf_t.view(-1, 1))).view(num, -1)
loss_c[pos] = 0
_, loss_idx = loss_c.sort(1, descending=True)
_, idx_rank = loss_idx.sort(1)
num_pos = pos.long().sum(1, keepdim=True)
num_neg = torch.clamp(NEGPOS_RATIO * num_pos, max=num_priors - 1)
neg = idx_rank < num_neg

chosen = pos | neg
per_prior = F.cross_entropy(conf_data[chosen], conf_t[chosen], reduction="none")
loss_c = per_prior.sum()
class_sums = torch.zeros(num_classes).index_add_(0, conf_t[chosen], per_prior)
class_counts = torch.bincount(conf_t[chosen], minlength=num_classes)
N = num_pos.sum()
loss_l, loss_c = loss_l / N, loss_c / N
compute_seconds = time.perf_counter() - start
compute_cpu_seconds = time.process_time() - start_cpu  # all threads

print(f"loss {(loss_l + loss_c).item():.9g}  (loc {loss_l.item():.9g}, conf {loss_c.item():.9g})")
print(f"positives {N.item()}, mined negatives {neg.sum().item()}")
print("class count conf_loss_sum")
for k, (n, s) in enumerate(zip(class_counts.tolist(), class_sums.tolist())):
    print(f"{k} {n} {s:.9g}")
print(f"compute_seconds={compute_seconds:.6f}", file=sys.stderr)
print(f"compute_cpu_seconds={compute_cpu_seconds:.6f}", file=sys.stderr)
