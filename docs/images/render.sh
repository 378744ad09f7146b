#!/usr/bin/env bash
# Renders the screenshots in this folder from the shipped fixtures:
# an HTML report per loss, drawn by headless Chromium (apt-get install chromium).
# Run from anywhere: bash docs/images/render.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release --quiet
bin="$root/target/release/losscope"
out="$root/docs/images"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd fixtures
"$bin" ce --logits big/ce_logits.npz:logits --targets big/ce_targets.npy --weight big/ce_weight.npy \
    --format html -o "$tmp/ce.html" -q
"$bin" focal focal/sigmoid_onehot.npz --format html -o "$tmp/focal.html" -q
"$bin" ssd --loc ssd/ssd300_voc/inputs.npz:loc --conf ssd/ssd300_voc/inputs.npz:conf --priors ssd300-voc \
    --truths ssd/ssd300_voc/truths.npz --format html -o "$tmp/ssd.html" -q
for kind in ce focal ssd; do
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=900,1300 \
        --screenshot="$out/$kind.png" "file://$tmp/$kind.html" 2>/dev/null
done
ls -l "$out"/*.png
