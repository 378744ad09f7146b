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
#   --only LIST     comma-separated benchmarks (default: all but vocab):
#                   ce             CE 1M x 100
#                   focal          sigmoid focal 1M x 80, one-hot targets, and
#                                  the same with class-index targets
#                   focal-softmax  softmax focal (kornia) on the CE dump
#                   bce            BCE with logits on the focal dump
#                   focal4d        sigmoid focal [32, 80, 128, 128], classes
#                                  on axis 1
#                   ssd            SSD300-VOC, batch 32
#                   ssd256         SSD300-VOC, batch 256
#                   vocab          CE [8192, 128000] float32 (4.2 GB) and the
#                                  same as bfloat16 .safetensors (2.1 GB);
#                                  written only when named, after a disk check
#
# Requirements of the full run: cargo, python3 with torch, torchvision,
# numpy (kornia and safetensors where those rows run; without kornia the
# softmax focal peer is its formula in torch), hyperfine, GNU time
# (/usr/bin/time; Debian package `time`), about 3.5 GB free in bench/data/
# (generated on first use by bench/generate.py), 6.3 GB more for vocab.
#
# Every command is timed as a whole process with hyperfine on a warm page
# cache; peak RSS comes from `/usr/bin/time -f %M`; the peers also report
# their in-process compute time and its CPU time (`compute_seconds=` and
# `compute_cpu_seconds=` on stderr), collected from every run. Each row has
# its memory floor: bench/floor maps the row's input files and sums their
# values once, with one thread per core as losscope uses. Raw results
# go to bench/data/results/; the summary table (with PASS/FAIL per target)
# is printed and kept in bench/data/results/summary.md.
#
# A row is skipped, with a note, while `target/release/losscope <sub> --help`
# fails.

set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
RUNS=10
SCALING=1
ONLY=ce,focal,focal-softmax,bce,focal4d,ssd,ssd256
ROWS=(ce focal focal-labels focal-softmax bce focal4d ssd ssd256 vocab vocab-bf16)
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
        focal-softmax) CMD=("$LOSSCOPE" focal --logits "$d/ce_logits.npy" --targets "$d/ce_targets.npy"
                            --kind softmax --preset kornia) ;;
        bce) CMD=("$LOSSCOPE" bce --logits "$d/focal_logits.npy" --targets "$d/focal_targets.npy") ;;
        focal4d) CMD=("$LOSSCOPE" focal --logits "$d/focal4d_logits.npy" --targets "$d/focal4d_targets.npy"
                      --kind sigmoid --preset torchvision --class-axis 1) ;;
        ssd | ssd256) CMD=("$LOSSCOPE" ssd --loc "$d/${row}_loc.npy" --conf "$d/${row}_conf.npy"
                           --priors "$d/${row}_priors.npy" --truths "$d/${row}_truths.json") ;;
        vocab) CMD=("$LOSSCOPE" ce --logits "$d/vocab_logits.npy" --targets "$d/vocab_targets.npy" --top 20) ;;
        vocab-bf16) CMD=("$LOSSCOPE" ce --logits "$d/vocab_bf16.safetensors:logits"
                         --targets "$d/vocab_bf16.safetensors:targets" --top 20) ;;
    esac
    sub=${CMD[1]}
    # No progress bar, where the subcommand has the flag.
    if "$LOSSCOPE" "$sub" --help 2>/dev/null | grep -q -- '--quiet'; then CMD+=(--quiet); fi
}

# The input files of a row (what peak RSS is compared with, and what its
# memory floor sums).
row_inputs() {
    local row=$1 d=$2
    case "$row" in
        ce | focal-softmax) INPUTS=("$d/ce_logits.npy" "$d/ce_targets.npy") ;;
        focal | bce) INPUTS=("$d/focal_logits.npy" "$d/focal_targets.npy") ;;
        focal-labels) INPUTS=("$d/focal_logits.npy" "$d/focal_labels.npy") ;;
        focal4d) INPUTS=("$d/focal4d_logits.npy" "$d/focal4d_targets.npy") ;;
        ssd | ssd256) INPUTS=("$d/${row}_loc.npy" "$d/${row}_conf.npy" "$d/${row}_priors.npy" "$d/${row}_truths.json") ;;
        vocab) INPUTS=("$d/vocab_logits.npy" "$d/vocab_targets.npy") ;;
        vocab-bf16) INPUTS=("$d/vocab_bf16.safetensors") ;;
    esac
}

# The PyTorch peer of a row: script and arguments.
peer_cmd() {
    local row=$1 d=$2
    case "$row" in
        ce) PEER=(bench/peer_ce.py --logits "$d/ce_logits.npy" --targets "$d/ce_targets.npy") ;;
        focal) PEER=(bench/peer_focal.py --logits "$d/focal_logits.npy" --targets "$d/focal_targets.npy") ;;
        focal-labels) PEER=(bench/peer_focal.py --logits "$d/focal_logits.npy" --targets "$d/focal_labels.npy" --labels) ;;
        focal-softmax) PEER=(bench/peer_ce.py --logits "$d/ce_logits.npy" --targets "$d/ce_targets.npy" --loss focal) ;;
        bce) PEER=(bench/peer_focal.py --logits "$d/focal_logits.npy" --targets "$d/focal_targets.npy" --loss bce) ;;
        focal4d) PEER=(bench/peer_focal.py --logits "$d/focal4d_logits.npy" --targets "$d/focal4d_targets.npy"
                       --class-axis 1) ;;
        ssd | ssd256) PEER=(bench/peer_ssd.py --loc "$d/${row}_loc.npy" --conf "$d/${row}_conf.npy"
                            --priors "$d/${row}_priors.npy" --truths "$d/${row}_truths.json") ;;
        vocab) PEER=(bench/peer_ce.py --logits "$d/vocab_logits.npy" --targets "$d/vocab_targets.npy") ;;
        vocab-bf16) PEER=(bench/peer_ce.py --bundle "$d/vocab_bf16.safetensors") ;;
    esac
}

# The --only name of a row, and the bench/generate.py dump it reads.
row_group() { case "$1" in focal-labels) echo focal ;; vocab-bf16) echo vocab ;; *) echo "$1" ;; esac; }
row_dump() {
    case "$1" in
        ce | focal-softmax) echo ce ;;
        focal | focal-labels | bce) echo focal ;;
        vocab-bf16) echo vocab ;;
        *) echo "$1" ;;
    esac
}

selected() { [[ ",$ONLY," == *",$(row_group "$1"),"* ]]; }

for group in ${ONLY//,/ }; do
    case "$group" in
        ce | focal | focal-softmax | bce | focal4d | ssd | ssd256 | vocab) ;;
        *) echo "run.sh: unknown benchmark '$group' in --only (see --help)" >&2; exit 2 ;;
    esac
done

# --------------------------------------------------------------------- tiny

if [[ $MODE == tiny ]]; then
    started=$SECONDS
    python3 -c 'import numpy' 2>/dev/null || { echo "run.sh --tiny: python3 with numpy is required" >&2; exit 1; }
    build
    built=$SECONDS
    say "tiny data"
    python3 bench/generate.py --tiny --if-missing --only ce,focal,ssd,focal4d,ssd256,vocab
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
    for row in "${ROWS[@]}"; do
        row_inputs "$row" "$DATA/tiny"
        check "floor $row" "$FLOOR" "${INPUTS[@]}"
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
if [[ ",$ONLY," == *,vocab,* ]]; then
    python3 -c 'import safetensors' 2>/dev/null || missing+=("python3 with safetensors (pip install safetensors)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    printf 'run.sh: missing %s\n' "${missing[@]}" >&2
    exit 1
fi

build

say "data (bench/generate.py, written once)"
DUMPS=()
for row in "${ROWS[@]}"; do
    if selected "$row" && [[ " ${DUMPS[*]} " != *" $(row_dump "$row") "* ]]; then DUMPS+=("$(row_dump "$row")"); fi
done
if [[ " ${DUMPS[*]} " == *" vocab "* && ! -f $DATA/vocab_bf16.safetensors ]]; then
    mkdir -p "$DATA"
    free_gb=$(df -P -B1G "$DATA" | awk 'NR == 2 {print $4}')
    if [[ ${free_gb:-0} -lt 8 ]]; then
        echo "run.sh: vocab needs 6.3 GB in $DATA; only ${free_gb:-?} GB free" >&2
        exit 1
    fi
fi
python3 bench/generate.py --if-missing --only "$(IFS=,; echo "${DUMPS[*]}")"
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
    stat -c %s "${INPUTS[@]}" | awk '{s += $1} END {printf "%.0f\n", s}' >"$RES/$name.input_bytes"
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

bench_peer() {  # NAME ROW DATA-FOLDER
    local name=$1 row=$2 d=$3
    peer_cmd "$row" "$d"
    local peer=(python3 "${PEER[@]}") log="$RES/$name.peer.log"
    say "$name: PyTorch peer (${PEER[0]})"
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

bench_floor() {  # NAME (after bench_losscope, which set INPUTS)
    local name=$1
    say "$name: memory floor"
    "$FLOOR" "${INPUTS[@]}" >"$RES/$name.floor.out"
    peak_rss "$name.floor" "$FLOOR" "${INPUTS[@]}"
    time_it "$name.floor" "$RUNS" "$(quote "$FLOOR" "${INPUTS[@]}")" -N
}

for row in "${ROWS[@]}"; do
    if selected "$row" && bench_losscope "$row" "$row" "$DATA"; then
        bench_floor "$row"
        bench_peer "$row" "$row" "$DATA"
    fi
done
if [[ ${#SCALES[@]} -gt 0 && -f $RES/ce.losscope.json ]]; then
    for s in "${SCALES[@]}"; do
        bench_losscope "ce-scale-$s" ce "$DATA/scale-$s" || true
    done
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"
python3 bench/summarize.py "$RES" | tee "$RES/summary.md"
