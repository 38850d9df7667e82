#!/usr/bin/env bash
# Runs the README's library example (examples/train_mlp.cpp) on a generated dataset: it must train
# one epoch and print its test accuracy.   Usage: example.sh path/to/train_mlp_example
set -u
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
source "$(dirname "$0")/fixtures.sh"
make_mnist "$T/mnist" 256 64
out=$(timeout 120 "$1" "$T/mnist" 2 2>&1)
status=$?
echo "$out"
[[ $status -eq 0 ]] || { echo "example exited with $status"; exit 1; }
[[ $(grep -c "test accuracy" <<<"$out") -eq 2 ]] || { echo "expected one accuracy line per epoch"; exit 1; }
echo "1 passed, 0 failed"
