#!/usr/bin/env bash
# End to end on the emulated CUDA device (KILN_CUDA=EMULATE builds): the MLP trains for an epoch
# through the real GPU data path (pinned ring, copy stream, events), a resumed run equals an
# uninterrupted one bit for bit, AlexNet trains a few steps at a small image size, and
# `kiln bench --kernels --device cuda` runs and says its figures mean nothing there.
#   Usage: emulated_gpu.sh path/to/kiln
set -u
KILN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() {  # name, kiln args...: runs kiln, keeps its output in $T/name.log
  local name=$1
  shift
  timeout 600 "$KILN" "$@" >"$T/$name.log" 2>&1
  local status=$?
  [[ $status -eq 0 ]] || { fail "$name: kiln $* exited with status $status"; tail -5 "$T/$name.log"; }
  return $status
}
source "$(dirname "$0")/fixtures.sh"
make_mnist "$T/mnist" 256 64

common=(--dataset mnist --data "$T/mnist" --batch-size 32 --hidden 64,32 --optimizer adam --lr 0.001 --seed 7
        --device cuda --quiet)
if run mlp train "${common[@]}" --epochs 1 --out "$T/mlp"; then
  grep -q '"epoch"' "$T/mlp/metrics.jsonl" || fail "mlp: no epoch row in metrics.jsonl"
  [[ -s $T/mlp/model.safetensors ]] || fail "mlp: no model.safetensors"
fi

# Two epochs in one go, and one epoch then --resume to two: the same bytes.
run full train "${common[@]}" --epochs 2 --out "$T/full"
run first train "${common[@]}" --epochs 1 --out "$T/resumed"
run second train "${common[@]}" --epochs 2 --out "$T/resumed" --resume
cmp -s "$T/full/model.safetensors" "$T/resumed/model.safetensors" ||
  fail "resume: model.safetensors of the resumed run differs from the uninterrupted one"

make_mnist "$T/small" 24 8
run alexnet train --model alexnet --dataset mnist --data "$T/small" --resize 64 --epochs 1 --batch-size 8 \
  --optimizer sgd --lr 0.01 --device cuda --quiet --out "$T/alexnet"
[[ -s $T/alexnet/model.safetensors ]] || fail "alexnet: no model.safetensors"

if run kernels bench --kernels --device cuda --elements 65536 --repeat 1; then
  grep -q 'emulated' "$T/kernels.log" || fail "bench --kernels: the output does not say the device is emulated"
fi

[[ $fails -eq 0 ]] && echo "emulated GPU end to end: all passed"
exit $((fails > 0))
