#!/usr/bin/env bash
# MNIST MLP epoch time, kiln vs PyTorch, on this machine, in one go.
#   bench/mlp_side_by_side.sh [cpu|cuda] [epochs]
# Needs: a built kiln (./kiln.sh build), data/mnist (data/fetch-mnist.sh), PyTorch for some python3
# (Debian: apt-get install python3-torch; set PYTHON=... to choose the interpreter).
# Each side gets its best thread count (1 and all cores are tried); the median epoch of the run is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
epochs=${2:-3}
source bench/common.sh
cores=$(nproc)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-8s %-8s %8s %12s %10s\n' side threads epoch_s test_acc
best_kiln=999; best_torch=999
for t in 1 "$cores"; do
  run=$(mktemp -d)
  OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t $KILN train --dataset mnist --epochs "$epochs" --device "$device" \
    --out "$run/r" --quiet
  s=$(grep '"epoch_s"' "$run/r/metrics.jsonl" | sed 's/.*"epoch_s":\([0-9.e+-]*\).*/\1/' | median)
  acc=$(grep '"test_acc"' "$run/r/metrics.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.e+-]*\).*/\1/')
  printf '%-8s %-8s %8.3f %12.4f\n' kiln "$t" "$s" "$acc"
  best_kiln=$(echo "$s $best_kiln" | awk '{print ($1<$2)?$1:$2}')
  rm -rf "$run"
  out=$($PYTHON bench/torch_mlp.py --epochs "$epochs" --threads "$t" --device "$device")
  s=$(echo "$out" | sed 's/.*"epoch_s": \([0-9.e+-]*\).*/\1/' | median)
  acc=$(echo "$out" | tail -1 | sed 's/.*"test_acc": \([0-9.e+-]*\).*/\1/')
  printf '%-8s %-8s %8.3f %12.4f\n' pytorch "$t" "$s" "$acc"
  best_torch=$(echo "$s $best_torch" | awk '{print ($1<$2)?$1:$2}')
done
echo "best epoch: kiln ${best_kiln}s, PyTorch ${best_torch}s, ratio kiln/PyTorch $(echo "$best_kiln $best_torch" | awk '{printf "%.2f", $1/$2}')"
