#!/usr/bin/env bash
# The losscope benchmark suite.
#
#   bash bench/run.sh            full run: losscope against its PyTorch peers,
#                                the memory floor and the CE scaling check
#   bash bench/run.sh --tiny     smoke test for CI: tiny data, each losscope
#                                command run once, must exit 0 (no PyTorch, no
#                                hyperfine; needs python3 with numpy)
#
# Options (full run):
#   --runs N        timed runs per command (default 10, after 1 warm-up run)
#   --no-scaling    skip the CE scaling check (1/4, 1/2, 1 and 2x the rows)
#   --only LIST     comma-separated subset of ce,focal,ssd (default: all)
#
# Requirements of the full run: cargo, python3 with torch, torchvision and
# numpy, hyperfine, GNU time (/usr/bin/time; Debian package `time`), about
# 3 GB free in bench/data/ (generated on first use by bench/generate.py).
#
# Every command is timed as a whole process with hyperfine on a warm page
# cache; peak RSS comes from `/usr/bin/time -f %M`; the peers also report
# their in-process compute time and its CPU time (`compute_seconds=` and
# `compute_cpu_seconds=` on stderr), collected from every run. Raw results
# go to bench/data/results/; the summary table (with PASS/FAIL per target)
# is printed and kept in bench/data/results/summary.md.
#
# `losscope focal` and `losscope ssd` rows are skipped, with a note, while
# `target/release/losscope <sub> --help` fails.

set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
RUNS=10
SCALING=1
ONLY=ce,focal,ssd
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tiny) MODE=tiny ;;
        --runs) RUNS="$2"; shift ;;
        --no-scaling) SCALING=0 ;;
        --only) ONLY="$2"; shift ;;
        -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

LOSSCOPE=target/release/losscope
FLOOR=bench/floor/target/release/floor
DATA=bench/data

say() { printf '\n== %s\n' "$*" >&2; }

build() {
    say "building losscope and the memory floor (release)"
    cargo build --release --quiet
    (cd bench/floor && cargo build --release --quiet)
}

# Whether this build of losscope has the subcommand.
has_sub() { "$LOSSCOPE" "$1" --help >/dev/null 2>&1; }

# The losscope command line of a benchmark row, for the data folder $2.
losscope_cmd() {
    local row=$1 d=$2 sub
    case "$row" in
        ce) CMD=("$LOSSCOPE" ce --logits "$d/ce_logits.npy" --targets "$d/ce_targets.npy") ;;
        focal) CMD=("$LOSSCOPE" focal --logits "$d/focal_logits.npy" --targets "$d/focal_targets.npy"
                    --kind sigmoid --preset torchvision) ;;
        focal-labels) CMD=("$LOSSCOPE" focal --logits "$d/focal_logits.npy" --targets "$d/focal_labels.npy"
                           --kind sigmoid --preset torchvision) ;;
        ssd) CMD=("$LOSSCOPE" ssd --loc "$d/ssd_loc.npy" --conf "$d/ssd_conf.npy"
                  --priors "$d/ssd_priors.npy" --truths "$d/ssd_truths.json") ;;
    esac
    sub=${CMD[1]}
    # No progress bar, where the subcommand has the flag.
    if "$LOSSCOPE" "$sub" --help 2>/dev/null | grep -q -- '--quiet'; then CMD+=(--quiet); fi
}

# The input files of a row (what peak RSS is compared with).
row_inputs() {
    local row=$1 d=$2
    case "$row" in
        ce) INPUTS=("$d/ce_logits.npy" "$d/ce_targets.npy") ;;
        focal) INPUTS=("$d/focal_logits.npy" "$d/focal_targets.npy") ;;
        focal-labels) INPUTS=("$d/focal_logits.npy" "$d/focal_labels.npy") ;;
        ssd) INPUTS=("$d/ssd_loc.npy" "$d/ssd_conf.npy" "$d/ssd_priors.npy" "$d/ssd_truths.json") ;;
    esac
}

selected() { [[ ",$ONLY," == *",${1%-labels},"* ]]; }

# --------------------------------------------------------------------- tiny

if [[ $MODE == tiny ]]; then
    started=$SECONDS
    python3 -c 'import numpy' 2>/dev/null || { echo "run.sh --tiny: python3 with numpy is required" >&2; exit 1; }
    build
    built=$SECONDS
    say "tiny data"
    python3 bench/generate.py --tiny --if-missing
    # The peers must at least parse (running them needs PyTorch).
    python3 -c 'import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]' bench/*.py
    bash -n bench/run.sh
    failures=0
    check() {  # label, command...
        local label=$1; shift
        if "$@" >/dev/null 2>"$DATA/tiny/last.err"; then
            echo "ok       $label"
        else
            echo "FAILED   $label (exit $?): $*"; sed 's/^/         /' "$DATA/tiny/last.err"
            failures=$((failures + 1))
        fi
    }
    say "tiny runs"
    check "floor" "$FLOOR" "$DATA/tiny/ce_logits.npy"
    for row in ce focal focal-labels ssd; do
        losscope_cmd "$row" "$DATA/tiny"
        if has_sub "${CMD[1]}"; then
            check "losscope $row" "${CMD[@]}"
        else
            echo "skipped  losscope $row: \`losscope ${CMD[1]}\` not available"
        fi
    done
    echo "tiny benchmark: $failures failure(s); build $((built - started)) s, data and runs $((SECONDS - built)) s"
    [[ $failures -eq 0 ]]
    exit
fi

# --------------------------------------------------------------------- full

missing=()
command -v hyperfine >/dev/null || missing+=("hyperfine (apt-get install hyperfine)")
[[ -x /usr/bin/time ]] || missing+=("GNU time (apt-get install time)")
python3 -c 'import torch, torchvision, numpy' 2>/dev/null || missing+=("python3 with torch, torchvision, numpy (pip install torch torchvision numpy)")
if [[ ${#missing[@]} -gt 0 ]]; then
    printf 'run.sh: missing %s\n' "${missing[@]}" >&2
    exit 1
fi

build

say "data (bench/generate.py, written once)"
python3 bench/generate.py --if-missing --only "$ONLY"
SCALES=()
if [[ $SCALING -eq 1 ]] && selected ce; then
    SCALES=(0.25 0.5 2)
    for s in "${SCALES[@]}"; do python3 bench/generate.py --if-missing --only ce --scale "$s"; done
fi

RES=$DATA/results
rm -rf "$RES"
mkdir -p "$RES"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
    echo "cores: $(nproc)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GB"}')"
    echo "losscope: $("$LOSSCOPE" --version), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' + local changes'), binary sha256 $(sha256sum "$LOSSCOPE" | cut -c1-12)"
    echo "python: $(python3 -c 'import sys, torch, torchvision, numpy; print(sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__, "torch threads", torch.get_num_threads())')"
    echo "hyperfine: $(hyperfine --version)"
    echo "runs: $RUNS (+1 warm-up)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RES/env.txt"

# hyperfine NAME RUNS COMMAND-STRING [hyperfine options]
time_it() {
    local name=$1 runs=$2 command=$3; shift 3
    hyperfine --warmup 1 --runs "$runs" --style basic --export-json "$RES/$name.json" "$@" "$command" >&2
}

# Peak RSS of one run, in kB.
peak_rss() {
    local name=$1; shift
    /usr/bin/time -f %M -o "$RES/$name.rss" "$@" >/dev/null
}

quote() { printf '%q ' "$@"; }

bench_losscope() {  # NAME ROW DATA-FOLDER
    local name=$1 row=$2 d=$3
    losscope_cmd "$row" "$d"
    row_inputs "$row" "$d"
    if ! has_sub "${CMD[1]}"; then
        echo "skipped: \`losscope ${CMD[1]}\` not available" >"$RES/$name.skipped"
        say "$name: $(cat "$RES/$name.skipped")"
        return 1
    fi
    say "$name: losscope"
    stat -c %s "${INPUTS[@]}" | awk '{s += $1} END {print s}' >"$RES/$name.input_bytes"
    local status=0
    "${CMD[@]}" >"$RES/$name.out" 2>"$RES/$name.err" || status=$?
    if [[ $status -ne 0 ]]; then
        echo "failed: \`$(quote "${CMD[@]}")\` exited with $status (see $RES/$name.err)" >"$RES/$name.skipped"
        say "$name: $(cat "$RES/$name.skipped")"
        return 1
    fi
    peak_rss "$name.losscope" "${CMD[@]}"
    time_it "$name.losscope" "$RUNS" "$(quote "${CMD[@]}")" -N
}

bench_peer() {  # NAME PEER-SCRIPT ARGS...
    local name=$1 script=$2; shift 2
    local peer=(python3 "$script" "$@") log="$RES/$name.peer.log"
    say "$name: PyTorch peer ($script)"
    if ! "${peer[@]}" >"$RES/$name.peer.out" 2>>"$log"; then
        echo "run.sh: the peer failed: $(quote "${peer[@]}")" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    peak_rss "$name.peer" "${peer[@]}" 2>>"$log"
    time_it "$name.peer" "$RUNS" "$(quote "${peer[@]}") 2>>$(quote "$log")"
    sed -n 's/^compute_seconds=//p' "$log" >"$RES/$name.peer.compute"
    sed -n 's/^compute_cpu_seconds=//p' "$log" >"$RES/$name.peer.compute_cpu"
}

D=$DATA
if selected ce && bench_losscope ce ce "$D"; then
    say "ce: memory floor"
    "$FLOOR" "$D/ce_logits.npy" >"$RES/ce.floor.out"
    peak_rss ce.floor "$FLOOR" "$D/ce_logits.npy"
    time_it ce.floor "$RUNS" "$(quote "$FLOOR" "$D/ce_logits.npy")" -N
    bench_peer ce bench/peer_ce.py --logits "$D/ce_logits.npy" --targets "$D/ce_targets.npy"
fi
if selected focal && bench_losscope focal focal "$D"; then
    bench_peer focal bench/peer_focal.py --logits "$D/focal_logits.npy" --targets "$D/focal_targets.npy"
    bench_losscope focal-labels focal-labels "$D" || true
fi
if selected ssd && bench_losscope ssd ssd "$D"; then
    bench_peer ssd bench/peer_ssd.py --loc "$D/ssd_loc.npy" --conf "$D/ssd_conf.npy" \
        --priors "$D/ssd_priors.npy" --truths "$D/ssd_truths.json"
fi
if [[ ${#SCALES[@]} -gt 0 && -f $RES/ce.losscope.json ]]; then
    for s in "${SCALES[@]}"; do
        bench_losscope "ce-scale-$s" ce "$D/scale-$s" || true
    done
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"
python3 bench/summarize.py "$RES" | tee "$RES/summary.md"
