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

# What a hostile user tried (issue 14): sizes that overflow, files that block, runs that mix or lose
# work. Each ends with one clear error naming the flag, file or folder.
expect_error "batch size that wraps a size (train)" "--batch-size must be in" \
  "$KILN" train --data "$D" --batch-size 4611686018427387904 --device cpu --out "$T/x"
expect_error "batch size that wraps a size (eval)" "--batch-size must be in" \
  "$KILN" eval --checkpoint "$T/run/model.safetensors" --data "$D" --batch-size 4611686018427387904 --device cpu
expect_error "bench: two billion classes" "--classes must be in" "$KILN" bench --classes 2000000000 --device cpu
expect_error "bench: negative channels" "--channels must be in" "$KILN" bench --channels -1 --device cpu
expect_error "bench: steps that overflow" "--steps must be in" "$KILN" bench --model mlp --steps 2147483647 --device cpu
expect_error "NaN gamma" "--gamma" "$KILN" train --data "$D" --schedule step --gamma nan --device cpu --out "$T/x"
expect_error "negative --profile" "--profile must be in" "$KILN" train --data "$D" --profile -3 --device cpu --out "$T/x"
expect_error "empty --out" "--out must name a run folder" "$KILN" train --data "$D" --out "" --device cpu
mkfifo "$T/fifo"
expect_error "a FIFO as checkpoint" "fifo: not a regular file" "$KILN" eval --checkpoint "$T/fifo" --data "$D" --device cpu
expect_error "a FIFO as image" "fifo: not a regular file" \
  "$KILN" predict --checkpoint "$T/run/model.safetensors" "$T/fifo" --device cpu
mkdir -p "$T/fifodata" && cp "$D"/* "$T/fifodata/" && rm "$T/fifodata/t10k-labels-idx1-ubyte" && mkfifo "$T/fifodata/t10k-labels-idx1-ubyte"
expect_error "a FIFO as dataset file" "t10k-labels-idx1-ubyte: not a regular file" \
  "$KILN" train --data "$T/fifodata" --device cpu --out "$T/x"
{ printf 'P5\n28 28\n255\n'; head -c 784 /dev/urandom; } >"$T/digit.pgm"
expect_error "eval results to a full disk" "cannot write the results to standard output" \
  sh -c '"$1" eval --checkpoint "$2" --data "$3" --device cpu >/dev/full' _ "$KILN" "$T/run/model.safetensors" "$D"
expect_error "predict results to a full disk" "cannot write the results to standard output" \
  sh -c '"$1" predict --checkpoint "$2" "$3" --device cpu >/dev/full' _ "$KILN" "$T/run/model.safetensors" "$T/digit.pgm"
expect_error "resume with another --hidden" "started with --hidden 512,256, not 64" \
  "$KILN" train --data "$D" --out "$T/run" --epochs 2 --hidden 64 --resume --device cpu
expect_error "resume with another --model" "started with --model mlp, not alexnet" \
  "$KILN" train --data "$D" --out "$T/run" --epochs 2 --model alexnet --resume --device cpu
expect_error "resume with another --dataset" "started with --dataset mnist, not fashion-mnist" \
  "$KILN" train --data "$D" --out "$T/run" --epochs 2 --dataset fashion-mnist --resume --device cpu
mkdir -p "$T/modelonly" && cp "$T/run/model.safetensors" "$T/modelonly/"
expect_error "new run over a model without checkpoint" "already holds a trained model" \
  "$KILN" train --data "$D" --out "$T/modelonly" --device cpu
cmp -s "$T/run/model.safetensors" "$T/modelonly/model.safetensors" || { echo "FAIL: the refused run changed the model"; fails=$((fails + 1)); }
expect_error "diverged in the last step" "the test loss became" \
  "$KILN" train --data "$D" --out "$T/diverged" --lr 1e38 --epochs 1 --batch-size 64 --device cpu --quiet
[[ ! -e $T/diverged/model.safetensors ]] || { echo "FAIL: a diverged run saved its weights"; fails=$((fails + 1)); }
expect_error "a run larger than memory" "out of host memory" \
  env KILN_HOST_MEMORY_LIMIT=300M "$KILN" train --data "$D" --out "$T/x" --hidden 8000,8000 --device cpu --quiet
expect_error "negative seed (would wrap)" "--seed: must not be negative" "$KILN" train --data "$D" --seed -1 --out "$T/x"
expect_error "a flag that does not parse" "kiln: error: Could not convert: --epochs" \
  "$KILN" train --data "$D" --epochs abc --out "$T/x"
expect_error "bench --kernels: two billion repeats" "--repeat must be in" \
  "$KILN" bench --kernels --repeat 2000000000 --elements 65536 --device cpu
expect_error "bench --loader-only: batch size 0" "--batch-size must be in" \
  "$KILN" bench --loader-only "$T" --batch-size 0 --device cpu
expect_error "an image-folder flag on MNIST (ignored before)" "--val-data applies to --dataset imagefolder only" \
  "$KILN" train --data "$D" --val-data "$T" --out "$T/x" --device cpu
[[ $(cksum <"$ck") == "$sum_before" ]] || { echo "FAIL: a refused command changed the checkpoint"; fails=$((fails + 1)); }

# --resume without the run's flags continues the run as started (not with the defaults): the
# resumed config line in metrics.jsonl holds the run's --lr, --schedule and --hidden.
R=$T/inherit
"$KILN" train --data "$D" --out "$R" --lr 0.1 --schedule cosine --hidden 64 --epochs 1 --batch-size 16 --device cpu --quiet
if "$KILN" train --data "$D" --out "$R" --epochs 2 --resume --device cpu --quiet &&
  tail -2 "$R/metrics.jsonl" | head -1 | grep -q '"hidden":\[64\],.*"batch_size":16,.*"lr":0.1,.*"schedule":"cosine"'; then
  passes=$((passes + 1))
else
  echo "FAIL: --resume did not continue with the run's flags: $(tail -2 "$R/metrics.jsonl" | head -1)"; fails=$((fails + 1))
fi

# A run killed before its first checkpoint leaves only a config line: the next run starts afresh.
K=$T/killed
mkdir -p "$K" && echo '{"config":{"model":"mlp"},"parameters":1,"resumed_from_epoch":-1}' >"$K/metrics.jsonl"
if "$KILN" train --data "$D" --out "$K" --epochs 1 --batch-size 16 --device cpu --quiet >/dev/null 2>&1 &&
  [[ $(grep -c '"config"' "$K/metrics.jsonl") == 1 ]]; then
  passes=$((passes + 1))
else
  echo "FAIL: a run into a killed run's folder: $(grep -c '"config"' "$K/metrics.jsonl") config lines"; fails=$((fails + 1))
fi

# A run stopped mid-epoch, resumed on a smaller training set, is refused naming both sizes.
M=$T/midepoch
"$KILN" train --data "$D" --epochs 1000 --batch-size 4 --device cpu --out "$M" --quiet >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 600; i++)); do [[ -s $M/checkpoint.safetensors ]] && break; sleep 0.05; done
kill -INT "$pid"; wait "$pid" 2>/dev/null
if head -c 8192 "$M/checkpoint.safetensors" | grep -aq '"batch":"0"'; then
  echo "note: the mid-epoch case stopped on an epoch boundary; not checked"
else
  make_mnist "$T/smaller" 32 16
  expect_error "mid-epoch resume on a smaller dataset" "this one has 32" \
    "$KILN" train --data "$T/smaller" --epochs 1000 --batch-size 4 --device cpu --out "$M" --resume
fi

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
