#!/usr/bin/env bash
# Seeds each target's corpus (fuzz/corpus/<target>/) from the fixtures.
# Safe to run again: files are named after their fixture and overwritten.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../fixtures

# name <file>: a corpus file name for a fixture path.
name() { echo "${1#"$fixtures"/}" | tr '/' '_'; }

mkdir -p corpus/npy corpus/npz corpus/json corpus/truths corpus/report corpus/file corpus/torch
find "$fixtures" -name '*.npy' | while read -r f; do cp "$f" "corpus/npy/$(name "$f")"; done
# Archives over 64 KiB are left out: the npz target runs with -max_len=65536,
# and a truncated archive has lost its central directory.
find "$fixtures" -name '*.npz' -size -65k | while read -r f; do cp "$f" "corpus/npz/$(name "$f")"; done
find "$fixtures" -name '*.json' ! -name 'expected.json' | while read -r f; do
    cp "$f" "corpus/json/$(name "$f")"
done

# truths: the first byte picks the extension (bits 0-1: json, npy, npz, sniffed),
# the key (bits 2-3: none, none, 'truths', 'boxes') and the batch size (bits
# 4-7); the rest is the file. The batch matches the fixtures: the padded .npy
# holds 3 images, the .npz 4 (JSON truths are not checked against it).
find "$fixtures/ssd" -name 'truths.*' | while read -r f; do
    case "$f" in
        *.json) selector='\x00' ;;
        *.npy) selector='\x31' ;;
        *.npz) selector='\x42' ;;
    esac
    { printf "$selector"; cat "$f"; } > "corpus/truths/$(name "$f")"
done

# file: the first byte picks the extension (bits 0-1: npy, npz, json, sniffed)
# and the key (bit 2); the rest is the file. The small fixtures of each format.
find "$fixtures" \( -name '*.npy' -o -name '*.npz' -o -name '*.json' \) ! -name 'expected.json' -size -65k |
    while read -r f; do
        case "$f" in
            *.npy) selector='\x00' ;;
            *.npz) selector='\x01' ;;
            *.json) selector='\x02' ;;
        esac
        { printf "$selector"; cat "$f"; } > "corpus/file/$(name "$f")"
    done

# torch: the first byte picks the key (0: none, 1: 'logits', 2: 'logits.0');
# the rest is the data.pkl of each torch.save fixture written as a zip archive.
python3 - "$fixtures" <<'PYTHON'
import pathlib, sys, zipfile
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.pt")):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickle = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            name = str(path.relative_to(sys.argv[1])).replace("/", "_")
            pathlib.Path("corpus/torch", name).write_bytes(b"\x01" + archive.read(pickle))
PYTHON

# partial: partial reports of a few fixtures, written by the release build
# when there is one (cargo build --release at the top of the repository).
mkdir -p corpus/partial
losscope=../target/release/losscope
if [ -x "$losscope" ]; then
    "$losscope" ce "$fixtures/conventions/softmax.npz" --partial -o corpus/partial/ce.lsp
    "$losscope" bce "$fixtures/conventions/binary.npz" --partial -o corpus/partial/bce.lsp
    "$losscope" ssd --loc "$fixtures/ssd/golden/loc.npy" --conf "$fixtures/ssd/golden/conf.npy" \
        --priors "$fixtures/ssd/golden/priors.npy" --truths "$fixtures/ssd/golden/truths.json" \
        --partial -o corpus/partial/ssd.lsp
fi
