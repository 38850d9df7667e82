#!/usr/bin/env bash
# AlexNet training throughput, kiln vs PyTorch, on this machine, in one go (random data on the device,
# float32, TF32 off on both sides).
#   bench/alexnet_side_by_side.sh [cpu|cuda] [batch] [steps]
# Defaults: cpu 16 5 (the issue's CPU setting); on a GPU use: cuda 256 20.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
batch=${2:-16}
steps=${3:-5}
source bench/common.sh

k=$($KILN bench --model alexnet --batch-size "$batch" --image-size 224 --device "$device" --steps "$steps" 2>/dev/null |
    tee /dev/stderr | sed -n 's/^throughput: \([0-9.]*\) images\/s/\1/p')
t=$($PYTHON bench/torch_alexnet.py --device "$device" --batch-size "$batch" --steps "$steps" |
    sed 's/.*"images_per_s": \([0-9.e+-]*\).*/\1/')
printf '%-10s %-6s %6s %14s\n' side device batch images/s
printf '%-10s %-6s %6s %14.1f\n' kiln "$device" "$batch" "$k"
printf '%-10s %-6s %6s %14.1f\n' pytorch "$device" "$batch" "$t"
echo "ratio kiln/PyTorch throughput: $(echo "$k $t" | awk '{printf "%.2f", $1/$2}')"
