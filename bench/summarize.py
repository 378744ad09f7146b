#!/usr/bin/env python3
"""Summarize a bench/run.sh results folder: the table of medians and ratios,
peak RSS against the inputs, the CE scaling check and PASS/FAIL per target.

    python3 bench/summarize.py bench/data/results

Reads, per benchmark NAME (ce, focal, focal-labels, focal-softmax, bce,
focal4d, ssd, ssd256, vocab, vocab-bf16, ce-scale-F):
  NAME.losscope.json / NAME.peer.json / NAME.floor.json   hyperfine exports
  NAME.losscope.rss / NAME.peer.rss / NAME.floor.rss      peak RSS in kB
  NAME.peer.compute     the peer's compute_seconds, one per run
  NAME.peer.compute_cpu the peer's compute_cpu_seconds, one per run
  NAME.input_bytes      total size of the inputs losscope read
  NAME.skipped          why the row did not run
and env.txt. Prints Markdown (bench/run.sh keeps a copy as summary.md).
"""

import json
import statistics
import sys
from pathlib import Path

MB = 1e6  # RSS and file sizes in decimal megabytes, as `ls -l` / 1e6

ROWS = ["ce", "focal", "focal-labels", "focal-softmax", "bce", "focal4d", "ssd", "ssd256", "vocab", "vocab-bf16"]

# The targets.
VS_FLOOR = 3.0  # every row: losscope ≤ 3 × its memory floor
FOCAL_SPEEDUP = 20.0  # sigmoid focal rows: against the torchvision script, whole process
FOCAL_ROWS = ["focal", "focal-labels", "focal4d"]
CE_SPEEDUP = 2.0  # CE rows: against PyTorch's in-process compute alone
CE_ROWS = ["ce", "vocab", "vocab-bf16"]
SSD_SPEEDUP = 10.0  # SSD rows: against the PyTorch script, whole process
SSD_ROWS = ["ssd", "ssd256"]
RSS_SLACK_MB = 64.0  # peak RSS ≤ input + 64 MB
# Linear growth (no superlinear cost): at each scale, CPU time (user + sys)
# and peak RSS per MB of input may exceed the lowest per-MB figure of the
# smaller scales by at most 25%. Smaller inputs may cost more per MB (fixed
# costs such as start-up weigh more), never less than that allows for larger
# ones. CPU time rather than wall time: it measures the work done, where wall
# time on 2 shared cores measures how much of them the process got.
SCALING_SPREAD = 0.25

res = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/data/results")


def read(name):
    path = res / name
    return path.read_text().strip() if path.exists() else None


def hyperfine(name):
    """Median, min, max and mean user+system CPU of one hyperfine export."""
    text = read(f"{name}.json")
    if text is None:
        return None
    result = json.loads(text)["results"][0]
    return {
        "median": result["median"],
        "min": result["min"],
        "max": result["max"],
        "cpu": result["user"] + result["system"],
        "runs": len(result["times"]),
    }


def rss_mb(name):
    text = read(f"{name}.rss")
    return int(text.splitlines()[-1]) * 1024 / MB if text else None


def peer_compute(name, suffix="compute"):
    text = read(f"{name}.peer.{suffix}")
    values = [float(v) for v in text.split()] if text else []
    return statistics.median(values) if values else None


def secs(x):
    if x is None:
        return "–"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def mb(x):
    return "–" if x is None else f"{x:.0f} MB"


def rss_limit(input_mb):
    return input_mb + RSS_SLACK_MB


def ratio(a, b, digits=1):
    return f"{a / b:.{digits}f}×" if a and b else "–"


rows = {}
for name in ROWS:
    skipped = read(f"{name}.skipped")
    losscope = hyperfine(f"{name}.losscope")
    if skipped is None and losscope is None:
        continue  # not selected in this run
    input_bytes = read(f"{name}.input_bytes")
    rows[name] = {
        "skipped": skipped,
        "losscope": losscope,
        "peer": hyperfine(f"{name}.peer"),
        "compute": peer_compute(name),
        "compute_cpu": peer_compute(name, "compute_cpu"),
        "floor": hyperfine(f"{name}.floor"),
        "rss": rss_mb(f"{name}.losscope"),
        "peer_rss": rss_mb(f"{name}.peer"),
        "floor_rss": rss_mb(f"{name}.floor"),
        "input_mb": int(input_bytes) / MB if input_bytes else None,
    }

out = []
env = read("env.txt") or ""
out.append("# losscope benchmark\n")
out.append("```\n" + env + "\n```\n")

out.append("## Medians (whole process, warm page cache)\n")
out.append(
    "| benchmark | input | losscope | memory floor | losscope ÷ floor | PyTorch peer, process "
    "| peer ÷ losscope (process) | peer, in-process compute | peer compute ÷ losscope "
    "| losscope peak RSS | RSS limit | peer peak RSS |"
)
out.append("|" + "---|" * 12)
for name, r in rows.items():
    if r["skipped"]:
        out.append(f"| {name} | {r['skipped']} |" + " |" * 10)
        continue
    l, p, f = r["losscope"]["median"], r["peer"] and r["peer"]["median"], r["floor"] and r["floor"]["median"]
    cells = [
        name,
        mb(r["input_mb"]),
        secs(l),
        secs(f),
        ratio(l, f),
        secs(p),
        ratio(p, l),
        secs(r["compute"]),
        ratio(r["compute"], l, 2),
        mb(r["rss"]),
        mb(rss_limit(r["input_mb"])),
        mb(r["peer_rss"]),
    ]
    out.append("| " + " | ".join(cells) + " |")
out.append("")

out.append("## Every timed command\n")
out.append("| command | runs | median | min | max | mean CPU (user + sys) |")
out.append("|---|---|---|---|---|---|")
for name, r in rows.items():
    for who in ["losscope", "peer", "floor"]:
        h = r.get(who)
        if h:
            out.append(
                f"| {name} {who} | {h['runs']} | {secs(h['median'])} | {secs(h['min'])} "
                f"| {secs(h['max'])} | {secs(h['cpu'])} |"
            )
    if r.get("compute"):
        out.append(
            f"| {name} peer, in-process compute | all | {secs(r['compute'])} | | "
            f"| {secs(r['compute_cpu']) + ' (median)' if r['compute_cpu'] else '–'} |"
        )
out.append("")

# Scaling: CE at 1/4, 1/2, 1 and 2x the rows.
scaling = []
for scale in ["0.25", "0.5", "1", "2"]:
    name = "ce" if scale == "1" else f"ce-scale-{scale}"
    h = hyperfine(f"{name}.losscope")
    input_bytes = read(f"{name}.input_bytes")
    if h and input_bytes:
        scaling.append((scale, int(input_bytes) / MB, h["median"], rss_mb(f"{name}.losscope"), h["cpu"]))
if len(scaling) > 1:
    out.append("## Scaling (losscope ce)\n")
    out.append(
        "| scale | input | median (wall) | CPU (user + sys) | CPU ms per 100 MB | × previous "
        "| peak RSS | × previous | RSS limit |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    previous = None
    for scale, size, t, rss, cpu in scaling:
        cr = f"{cpu / previous[4]:.2f}" if previous else "–"
        rr = f"{rss / previous[3]:.2f}" if previous else "–"
        out.append(
            f"| {scale}× | {mb(size)} | {secs(t)} | {secs(cpu)} | {cpu * 1000 / (size / 100):.1f} | {cr} "
            f"| {mb(rss)} | {rr} | {mb(rss_limit(size))} |"
        )
        previous = (scale, size, t, rss, cpu)
    out.append("")

# Targets.
verdicts = []


def verdict(ok, text):
    verdicts.append(f"- **{'PASS' if ok else 'FAIL'}** {text}")


def skip(text):
    verdicts.append(f"- **SKIP** {text}")


for name, r in rows.items():
    if r["skipped"]:
        skip(f"{name}: {r['skipped']}")
        continue
    l = r["losscope"]["median"]
    if r["floor"]:
        f = r["floor"]["median"]
        verdict(l <= VS_FLOOR * f, f"{name}: within {VS_FLOOR:g}× of the memory floor ({l / f:.1f}× : {secs(l)} vs {secs(f)})")
    if name in CE_ROWS and r["compute"]:
        c = r["compute"]
        verdict(
            c >= CE_SPEEDUP * l,
            f"{name}: ≥ {CE_SPEEDUP:g}× faster than PyTorch's in-process compute alone "
            f"({c / l:.2f}× : {secs(l)} vs {secs(c)})",
        )
        if r["compute_cpu"]:
            verdicts.append(
                f"  - in CPU time (steadier on a busy machine): losscope {secs(r['losscope']['cpu'])} "
                f"vs the peer's compute {secs(r['compute_cpu'])}"
            )
    for group, target, what in [(FOCAL_ROWS, FOCAL_SPEEDUP, "the torchvision script"), (SSD_ROWS, SSD_SPEEDUP, "the PyTorch script")]:
        if name in group and r["peer"]:
            p = r["peer"]["median"]
            verdict(p >= target * l, f"{name}: ≥ {target:g}× faster than {what}, whole process ({p / l:.1f}× : {secs(l)} vs {secs(p)})")
    limit = rss_limit(r["input_mb"])
    verdict(
        r["rss"] <= limit,
        f"{name}: peak RSS ≤ input + {RSS_SLACK_MB:.0f} MB ({mb(r['rss'])} for {mb(r['input_mb'])} of input; limit {mb(limit)})",
    )

if len(scaling) > 1:
    bad = []
    for label, per_mb in [
        ("CPU time", [cpu / size for _, size, _, _, cpu in scaling]),
        ("peak RSS", [rss / size for _, size, _, rss, _ in scaling]),
    ]:
        for k in range(1, len(scaling)):
            best_smaller = min(per_mb[:k])
            if per_mb[k] > (1 + SCALING_SPREAD) * best_smaller:
                bad.append(f"{label} per MB at {scaling[k][0]}× is {per_mb[k] / best_smaller:.2f}× that of a smaller scale")
    verdict(
        not bad,
        "ce scaling is linear: at each of "
        + ", ".join(f"{s}×" for s, *_ in scaling)
        + f", CPU time and peak RSS per MB of input ≤ {1 + SCALING_SPREAD:g} × the lowest at a smaller scale"
        + (f" ({'; '.join(bad)})" if bad else ""),
    )
    for scale, size, _, rss, _ in scaling:
        if scale != "1" and rss > rss_limit(size):
            verdict(False, f"ce at {scale}×: peak RSS {mb(rss)} over the limit {mb(rss_limit(size))}")

out.append("## Targets\n")
out.extend(verdicts)
print("\n".join(out))
