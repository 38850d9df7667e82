#!/usr/bin/env bash
# End-to-end checks of the `kiln` tool on bad input: each case must fail with exit status != 0 and
# one `kiln: error:` line naming the culprit, never crash (status >= 128) or hang, and never damage
# an existing checkpoint.   Usage: bad_input.sh path/to/kiln
set -u
KILN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0

# expect_error "what" "needle" cmd...: non-zero exit below 128, stderr mentions needle.
expect_error() {
  local what=$1 needle=$2
  shift 2
  local err status
  err=$(timeout 60 "$@" 2>&1 >/dev/null)
  status=$?
  if [[ $status -eq 0 || $status -ge 124 ]]; then
    echo "FAIL: $what: exit status $status"; echo "$err" | head -3; fails=$((fails + 1)); return
  fi
  if ! grep -qF -- "$needle" <<<"$err"; then
    echo "FAIL: $what: message lacks '$needle':"; echo "$err" | head -3; fails=$((fails + 1)); return
  fi
  passes=$((passes + 1))
}

D=$T/mnist
source "$(dirname "$0")/fixtures.sh"
make_mnist "$D" 64 16

# A good run to have a checkpoint to protect.
if ! "$KILN" train --data "$D" --epochs 1 --batch-size 16 --device cpu --out "$T/run" --quiet; then
  echo "FAIL: the fixture run did not train"; exit 1
fi
ck=$T/run/checkpoint.safetensors
sum_before=$(cksum <"$ck")

# Flags
expect_error "batch size 0" "--batch-size" "$KILN" train --data "$D" --batch-size 0 --out "$T/x"
expect_error "NaN lr" "--lr" "$KILN" train --data "$D" --lr nan --out "$T/x"
expect_error "bench --kernels, tiny tensors" "--elements" "$KILN" bench --kernels --device cpu --elements 10
expect_error "bench --kernels, filter matches nothing" "--filter 'no-such-kernel'" \
  "$KILN" bench --kernels --device cpu --elements 65536 --filter no-such-kernel
expect_error "negative lr" "--lr" "$KILN" train --data "$D" --lr -1 --out "$T/x"
expect_error "unknown model" "--model" "$KILN" train --data "$D" --model resnet --out "$T/x"
expect_error "unknown dataset" "--dataset" "$KILN" train --data "$D" --dataset cifar --out "$T/x"
expect_error "bad device" "cuda:x" "$KILN" train --data "$D" --device cuda:x --out "$T/x"
if [[ $("$KILN" info) == *"no CUDA device"* ]]; then
  expect_error "CUDA without a device" "no CUDA device" "$KILN" train --data "$D" --device cuda --out "$T/x"
fi
expect_error "unknown flag" "--frobnicate" "$KILN" train --out "$T/x" --frobnicate

# Datasets
mkdir -p "$T/trunc" && cp "$D"/* "$T/trunc/" && truncate -s 1000 "$T/trunc/train-images-idx3-ubyte"
expect_error "truncated IDX" "train-images-idx3-ubyte" "$KILN" train --data "$T/trunc" --out "$T/x" --device cpu
mkdir -p "$T/magic" && cp "$D"/* "$T/magic/" && printf '\x12\x34' | dd of="$T/magic/t10k-labels-idx1-ubyte" conv=notrunc 2>/dev/null
expect_error "bad IDX magic" "t10k-labels-idx1-ubyte" "$KILN" train --data "$T/magic" --out "$T/x" --device cpu
expect_error "missing dataset" "fetch-mnist" "$KILN" train --data "$T/nothing" --out "$T/x" --device cpu
mkdir -p "$T/empty"
expect_error "empty image folder" "$T/empty" "$KILN" train --model alexnet --dataset imagefolder --data "$T/empty" --out "$T/x" --device cpu

# Checkpoints: never overwritten by a new run, resume refuses what does not fit, truncated file reported
expect_error "new run over a checkpoint" "--resume" "$KILN" train --data "$D" --out "$T/run" --device cpu
expect_error "resume a finished run" "--epochs" "$KILN" train --data "$D" --out "$T/run" --epochs 1 --resume --device cpu
expect_error "resume with another optimizer" "optimizer" "$KILN" train --data "$D" --out "$T/run" --epochs 2 --optimizer adam --resume --device cpu
[[ $(cksum <"$ck") == "$sum_before" ]] || { echo "FAIL: a refused command changed the checkpoint"; fails=$((fails + 1)); }
cp "$ck" "$T/cut.safetensors" && truncate -s 100 "$T/cut.safetensors"
expect_error "truncated checkpoint (eval)" "cut.safetensors" "$KILN" eval --checkpoint "$T/cut.safetensors" --data "$D" --device cpu
head -c 5000 /dev/urandom >"$T/garbage.safetensors"
expect_error "garbage checkpoint" "garbage.safetensors" "$KILN" predict --checkpoint "$T/garbage.safetensors" "$T/none.png" --device cpu
mkdir -p "$T/cutrun" && cp "$T/run/"* "$T/cutrun/" && truncate -s 2000 "$T/cutrun/checkpoint.safetensors"
expect_error "resume from a truncated checkpoint" "checkpoint.safetensors" "$KILN" train --data "$D" --out "$T/cutrun" --epochs 2 --resume --device cpu
[[ $(stat -c %s "$T/cutrun/checkpoint.safetensors") == 2000 ]] || { echo "FAIL: the failed resume replaced the checkpoint"; fails=$((fails + 1)); }

# Run-folder lock: a second run (new or --resume) on a folder that a live run uses fails at once,
# naming the folder and the holder's pid. SIGKILLed, the holder leaves its lock file (and maybe a
# half-written temporary) behind, but neither blocks --resume, which removes the temporary.
L=$T/locked
"$KILN" train --data "$D" --epochs 100000 --batch-size 16 --device cpu --out "$L" --quiet >/dev/null 2>&1 &
holder=$!
for ((i = 0; i < 600; i++)); do [[ -s $L/checkpoint.safetensors ]] && break; sleep 0.05; done
busy="the run folder $L is in use by another kiln process (pid $holder)"
expect_error "new run on a folder in use" "$busy" "$KILN" train --data "$D" --out "$L" --batch-size 16 --device cpu
expect_error "resume of a folder in use" "$busy" "$KILN" train --data "$D" --out "$L" --epochs 100000 --batch-size 16 --resume --device cpu
kill -0 "$holder" 2>/dev/null || { echo "FAIL: the holder stopped while the other runs were refused"; fails=$((fails + 1)); }
kill -KILL "$holder"
wait "$holder" 2>/dev/null
[[ -e $L/.lock ]] || { echo "FAIL: the killed run left no lock file (the test proves nothing)"; fails=$((fails + 1)); }
done_epochs=$(head -c 8192 "$L/checkpoint.safetensors" | grep -ao '"epoch":"[0-9]*"' | head -1 | tr -dc 0-9)
if "$KILN" train --data "$D" --out "$L" --epochs $((done_epochs + 1)) --batch-size 16 --resume --device cpu --quiet >/dev/null; then
  passes=$((passes + 1))
else
  echo "FAIL: --resume after the holder was killed"; fails=$((fails + 1))
fi
leftover=$(ls -A "$L" | grep -E '\.tmp\.|^\.lock$')
[[ -z $leftover ]] || { echo "FAIL: left in the run folder: $leftover"; fails=$((fails + 1)); }

# Images
echo "not an image" >"$T/bad.png"
expect_error "undecodable image" "bad.png" "$KILN" predict --checkpoint "$T/run/model.safetensors" "$T/bad.png" --device cpu
expect_error "missing image" "missing.png" "$KILN" predict --checkpoint "$T/run/model.safetensors" "$T/missing.png" --device cpu

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
