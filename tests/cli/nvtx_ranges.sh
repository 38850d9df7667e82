#!/usr/bin/env bash
# Checks the NVTX ranges kiln emits, without Nsight and without a GPU: short MLP and AlexNet jobs run
# under kiln_nvtx_probe (tests/nvtx_probe/), an NVTX injection library loaded through
# NVTX_INJECTION64_PATH that writes every push and pop to a file. Asserts the range names promised in
# include/kiln/profile.h and docs/profiling.md (`features.0 conv2d fwd`, the loss, the optimizer step,
# data waits, loader batches, and on a GPU the host-to-device copies), that every range is popped on
# the thread that pushed it, and the nesting the code sets up (a layer inside its Sequential's range).
# Needs a CUDA build of kiln (CPU-only builds compile NVTX out); the run itself may be on the CPU.
#   Usage: nvtx_ranges.sh path/to/kiln path/to/libkiln_nvtx_probe.so [cpu|cuda]   (default cpu)
set -u
KILN=$1
PROBE=$(realpath "$2")
DEVICE=${3:-cpu}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { passes=$((passes + 1)); }

[[ -f $PROBE ]] || { echo "FAIL: no probe library at $2"; exit 1; }
case $DEVICE in
  cpu) ;;
  cuda*) echo "device $DEVICE: also requiring the host-to-device copy ranges (loader H2D copy)" ;;
  *) echo "FAIL: device must be cpu or cuda[:N], got '$DEVICE'"; exit 1 ;;
esac

# probe_run RUN kiln-args...: runs kiln under the probe; the ranges land in $T/RUN.ranges, kiln's
# output in $T/RUN.log. Then analyses the ranges (balance per thread and domain) into
#   $T/RUN.pairs   "parent<TAB>name" per default-domain push (parent "-" at depth 0)
#   $T/RUN.counts  "count<TAB>name" per distinct default-domain name
probe_run() {
  local run=$1
  shift
  local status
  NVTX_INJECTION64_PATH=$PROBE KILN_NVTX_PROBE_OUT=$T/$run.ranges timeout 900 "$KILN" "$@" >"$T/$run.log" 2>&1
  status=$?
  if [[ $status -ne 0 ]]; then
    fail "$run: kiln $* exited with status $status"; tail -5 "$T/$run.log"; return 1
  fi
  if grep -q kiln_nvtx_probe "$T/$run.log"; then
    fail "$run: the probe did not initialise: $(grep kiln_nvtx_probe "$T/$run.log" | head -1)"; return 1
  fi
  if [[ ! -s $T/$run.ranges ]]; then
    fail "$run: no NVTX range was recorded (is $KILN a CUDA build? \`kiln info\` says 'CUDA backend yes')"; return 1
  fi
  # Lines: tid, domain, push, depth, name | tid, domain, pop, depth. A stack per (thread, domain).
  awk -F'\t' -v run="$run" -v pairs="$T/$run.pairs" '
    function err(msg) { print "FAIL: " run ": " msg; bad++ }
    {
      key = $1 SUBSEP $2
      n = depth[key] + 0
      if ($3 == "push") {
        if ($4 != n) err("line " NR ": probe depth " $4 " for \"" $5 "\", the stack says " n)
        if ($2 == "-") { print (n ? stack[key, n - 1] : "-") "\t" $5 > pairs; count[$5]++ }
        stack[key, n] = $5
        depth[key] = n + 1
        keys[key] = 1
        pushes++
      } else if ($3 == "pop") {
        if ($4 < 0 || n == 0) err("line " NR ": thread " $1 " popped a range it had not pushed")
        else {
          if ($4 != n - 1) err("line " NR ": probe depth " $4 " for the pop of \"" stack[key, n - 1] "\", the stack says " n - 1)
          depth[key] = n - 1
        }
        pops++
      } else err("line " NR ": unreadable: " $0)
    }
    END {
      for (k in keys) if (depth[k] > 0) {
        split(k, f, SUBSEP)
        open_names = ""
        for (i = 0; i < depth[k]; i++) open_names = open_names " \"" stack[k, i] "\""
        err("thread " f[1] " ended with " depth[k] " range(s) still open:" open_names)
      }
      if (pushes != pops) err(pushes " pushes but " pops " pops")
      for (name in count) printf "%d\t%s\n", count[name], name > (pairs ".counts")
      exit (bad > 0)
    }' "$T/$run.ranges" && ok || fails=$((fails + 1))
  mv "$T/$run.pairs.counts" "$T/$run.counts" 2>/dev/null || : >"$T/$run.counts"
}

count_of() { awk -F'\t' -v n="$2" '$2 == n { c = $1 } END { print c + 0 }' "$T/$1.counts"; }

# expect RUN MIN NAME...: each NAME was pushed at least MIN times.
expect() {
  local run=$1 min=$2
  shift 2
  local name c
  for name in "$@"; do
    c=$(count_of "$run" "$name")
    if [[ $c -lt $min ]]; then
      if [[ $c -eq 0 ]]; then fail "$run: no NVTX range named '$name'"
      else fail "$run: range '$name' pushed $c times, expected at least $min"; fi
    else ok; fi
  done
}

# expect_exactly RUN N NAME
expect_exactly() {
  local c
  c=$(count_of "$1" "$3")
  [[ $c -eq $2 ]] && ok || fail "$1: range '$3' pushed $c times, expected $2 (one per step)"
}

# expect_parent RUN PARENT NAME...: every NAME range opened directly inside a PARENT range.
expect_parent() {
  local run=$1 parent=$2
  shift 2
  local name wrong
  for name in "$@"; do
    wrong=$(awk -F'\t' -v p="$parent" -v n="$name" '$2 == n && $1 != p { print ($1 == "-" ? "no range" : "\x27" $1 "\x27"); exit }' "$T/$run.pairs")
    [[ -z $wrong ]] && ok || fail "$run: '$name' opened inside $wrong, expected inside '$parent'"
  done
}

# The nesting src/nn/modules.cpp and src/core/autograd.cpp set up, for every range of the run:
#  - layer, loss, optimizer and data-wait ranges never open inside a layer's (or the loss's) fwd/bwd
#    range: Sequential closes one layer's range before the next, the autograd engine one node's;
#  - a layer's fwd range at path "a.b.c" opens directly inside the range of its Sequential, named by
#    the bare path "a.b"; one at the top level ("0 linear", "avgpool", the loss) inside no Sequential's
#    range. Whether anything encloses the model (a step range) is not asserted: the code promises
#    nothing either way. Ranges of other libraries (a GPU run may load cuDNN's) are left alone.
expect_nesting() {
  local bad
  bad=$(awk -F'\t' '
    function q(s) { return "\x27" s "\x27" }
    $1 ~ / (fwd|bwd)$/ && $2 ~ / (fwd|bwd|step|data)$/ { print q($2) " inside layer range " q($1); exit }
    $2 ~ / fwd$/ {
      path = $2; sub(/ .*/, "", path)
      if (path ~ /\./) {
        want = path; sub(/\.[^.]*$/, "", want)
        if ($1 != want) { print q($2) " inside " q($1) ", expected inside " q(want); exit }
      } else if ($1 != "-" && $1 !~ / /) { print "top-level " q($2) " inside the Sequential range " q($1); exit }
    }' "$T/$1.pairs")
  [[ -z $bad ]] && ok || fail "$1: wrong nesting: $bad"
}

# On a GPU every batch (training and evaluation) is copied to the device inside its assembly range.
# Unverified on a CPU-only machine: only `nvtx_ranges.sh ... cuda` (bench/gpu-check.sh) gets here.
expect_h2d() {
  [[ $DEVICE == cuda* ]] || return 0
  expect "$1" "$2" "loader H2D copy"
  expect_parent "$1" "loader batch assembly" "loader H2D copy"
}

# Every row of the --profile table printed by `kiln bench` is an NVTX range ("the table rows and the
# ranges share their names"): "features.0 conv2d" -> "features.0 conv2d fwd"/"bwd", "data wait (data)"
# -> "data wait".
expect_table_rows() {
  local run=$1 row name missing="" rows=0
  while IFS= read -r row; do
    rows=$((rows + 1))
    case $row in
      *"("*")") name="${row% (*} ${row##*(}"; name=${name%)}
                [[ $(count_of "$run" "$name") -gt 0 ]] || missing+=" '$name'" ;;
      *) [[ $(count_of "$run" "$row fwd") -gt 0 || $(count_of "$run" "$row bwd") -gt 0 ]] || missing+=" '$row fwd/bwd'" ;;
    esac
  done < <(awk '/^layer +fwd ms/ { on = 1; next } /^sum of the regions/ { on = 0 } on { s = substr($0, 1, 34); sub(/ +$/, "", s); print s }' "$T/$run.log")
  if [[ $rows -eq 0 ]]; then fail "$run: no per-layer table (header 'layer  fwd ms ...') in kiln's output"
  elif [[ -n $missing ]]; then fail "$run: profile table rows without an NVTX range:$missing"
  else ok; fi
}

# ---- MLP: `kiln train` on a fixture dataset (64 training images, batch 16: 4 steps, then evaluation).
# Layer names follow models/mlp.cpp: a Linear and a ReLU per hidden size, then the output Linear,
# children of the unnamed top-level Sequential, so "0 linear", "1 relu", ..., "4 linear".
source "$(dirname "$0")/fixtures.sh"
make_mnist "$T/mnist" 64 16
hidden=(32 16)
steps=4
mlp_layers=()
i=0
for _ in "${hidden[@]}"; do mlp_layers+=("$i linear" "$((i + 1)) relu"); i=$((i + 2)); done
mlp_layers+=("$i linear")
if probe_run mlp train --data "$T/mnist" --epochs 1 --batch-size 16 --hidden "$(IFS=,; echo "${hidden[*]}")" \
     --optimizer adam --device "$DEVICE" --out "$T/run-mlp" --quiet; then
  for l in "${mlp_layers[@]}"; do expect mlp "$steps" "$l fwd" "$l bwd"; done
  expect mlp "$steps" "loss cross_entropy fwd" "loss cross_entropy bwd" "data wait" "loader batch assembly"
  expect_exactly mlp "$steps" "optimizer adam step"
  expect_nesting mlp
  expect_h2d mlp "$steps"
fi

# ---- AlexNet (torchvision layout, models/alexnet.cpp): `kiln bench` on random 64x64 images,
# batch 2, 5 warm-up steps + 1 timed step. Nested Sequentials ("features", "classifier") open a range
# named by their path around their children's ranges.
features=("0 conv2d" "1 relu" "2 maxpool2d" "3 conv2d" "4 relu" "5 maxpool2d" "6 conv2d" "7 relu" "8 conv2d"
          "9 relu" "10 conv2d" "11 relu" "12 maxpool2d")
classifier=("0 dropout" "1 linear" "2 relu" "3 dropout" "4 linear" "5 relu" "6 linear")
bench_steps=2  # --warmup 1 + --steps 1
check_alexnet() {
  local run=$1 l
  shift
  local feats=("$@")
  for l in "${feats[@]}"; do expect "$run" "$bench_steps" "features.$l fwd" "features.$l bwd"; done
  for l in "${classifier[@]}"; do expect "$run" "$bench_steps" "classifier.$l fwd" "classifier.$l bwd"; done
  expect "$run" "$bench_steps" "avgpool adaptiveavgpool2d fwd" "avgpool adaptiveavgpool2d bwd" "flatten flatten fwd" \
    features classifier "loss cross_entropy fwd" "loss cross_entropy bwd" "data wait" "loader batch assembly"
  expect_exactly "$run" "$bench_steps" "optimizer sgd step"
  for l in "${feats[@]}"; do expect_parent "$run" features "features.$l fwd"; done
  for l in "${classifier[@]}"; do expect_parent "$run" classifier "classifier.$l fwd"; done
  expect_nesting "$run"
  expect_table_rows "$run"
  expect_h2d "$run" "$bench_steps"
}
if probe_run alexnet bench --model alexnet --batch-size 2 --image-size 64 --classes 10 --steps 1 --warmup 1 --device "$DEVICE"; then
  check_alexnet alexnet "${features[@]}"
fi

# ---- AlexNet 2012 (the paper's layout: local response norm after conv1 and conv2).
features2012=("0 conv2d" "1 relu" "2 localresponsenorm" "3 maxpool2d" "4 conv2d" "5 relu" "6 localresponsenorm"
              "7 maxpool2d" "8 conv2d" "9 relu" "10 conv2d" "11 relu" "12 conv2d" "13 relu" "14 maxpool2d")
if probe_run alexnet2012 bench --model alexnet2012 --batch-size 2 --image-size 64 --classes 10 --steps 1 --warmup 1 \
     --device "$DEVICE"; then
  check_alexnet alexnet2012 "${features2012[@]}"
fi

if [[ $fails -eq 0 ]]; then
  for run in mlp alexnet alexnet2012; do
    echo "$run: $(awk -F'\t' '$3 == "push"' "$T/$run.ranges" | wc -l) ranges, $(wc -l <"$T/$run.counts") distinct names," \
      "$(awk -F'\t' '{ print $1 }' "$T/$run.ranges" | sort -u | wc -l) threads"
  done
  echo "distinct names over all runs: $(cat "$T"/*.counts | cut -f2 | sort -u | wc -l)"
  cat "$T"/*.counts | cut -f2 | sort -u | awk '{ s = s (NR > 1 ? " | " : "") $0 } END { print "  " s }'
fi
echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
