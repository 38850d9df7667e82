#!/usr/bin/env bash
# Mutation check of the emulated device: plants bugs that only show when GPU code really runs,
# rebuilds an EMULATE build, and expects the named tests to FAIL for each. A planted bug that the
# tests miss is a hole in the emulator or the tests. Not part of .ci/run (one rebuild per mutation);
# run on demand:
#   tests/emu/mutations.sh [BUILD_DIR]     (default /tmp/kiln-mutations; the tree is copied there)
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-/tmp/kiln-mutations}
JOBS=${KILN_JOBS:-$(nproc)}
mkdir -p "$WORK"
rm -rf "$WORK/src" && mkdir -p "$WORK/src"
(cd "$SRC" && tar --exclude=./.git --exclude='./build*' --exclude=./runs --exclude='./data/mnist*' -cf - .) | tar -xf - -C "$WORK/src"
cmake -S "$WORK/src" -B "$WORK/build" -DKILN_CUDA=EMULATE -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$WORK/build" -j "$JOBS" >/dev/null || { echo "the unmutated tree does not build"; exit 1; }

caught=0 missed=0
# mutate NAME FILE PYTHON-OLD PYTHON-NEW TEST-FILTER [ENV...]: replaces OLD by NEW (exactly once) in
# FILE, rebuilds, runs the GPU tests matching the gtest filter (or a ctest regex starting with
# "ctest:"), and restores FILE.
mutate() {
  local name=$1 file=$WORK/src/$2 old=$3 new=$4 filter=$5
  shift 5
  cp "$file" "$file.orig"
  if ! OLD=$old NEW=$new python3 - "$file" <<'PY'
import os, sys
p = sys.argv[1]; s = open(p).read(); old, new = os.environ["OLD"], os.environ["NEW"]
if s.count(old) != 1: sys.exit(f"mutation text found {s.count(old)} times in {p}")
open(p, "w").write(s.replace(old, new))
PY
  then
    echo "MUTATION $name: could not apply"; missed=$((missed + 1)); mv "$file.orig" "$file"; return
  fi
  local status=0
  if ! cmake --build "$WORK/build" -j "$JOBS" >"$WORK/$name.build.log" 2>&1; then
    status=1  # a mutation that does not compile counts as caught by the compiler
  elif [[ $filter == ctest:* ]]; then
    (cd "$WORK/build" && env "$@" ctest -R "${filter#ctest:}" --timeout 900 >"$WORK/$name.log" 2>&1) || status=1
  else
    env "$@" timeout 900 "$WORK/build/tests/kiln_tests" --gtest_filter="$filter" >"$WORK/$name.log" 2>&1 || status=1
  fi
  if [[ $status -ne 0 ]]; then
    echo "caught: $name"; caught=$((caught + 1))
  else
    echo "MISSED: $name (tests passed; log in $WORK/$name.log)"; missed=$((missed + 1))
  fi
  mv "$file.orig" "$file"
  touch "$file"
}

mutate no-syncthreads-in-block-sum kernels/common.cuh \
  $'  if (lane == 0) smem[warp] = v;\n  __syncthreads();' $'  if (lane == 0) smem[warp] = v;' \
  '*OpsTest.Sum*gpu:*OpsTest.Mean*gpu'
mutate off-by-one-elementwise-bound kernels/elementwise.cu \
  'for (int64_t i : grid_stride(4 * n4, n)) y[i] = f(a[i], b[i]);' \
  'for (int64_t i : grid_stride(4 * n4, n + 1)) y[i] = f(a[i], b[i]);' \
  '*OpsTest.AddSubMul*gpu'
mutate no-wait-for-the-loader-copy src/data/loader.cpp \
  'KILN_CUDA_CHECK(cudaStreamWaitEvent(cuda::current_stream(m.opt.device.index), s.copied, 0));' '' \
  '*LoaderDevice*gpu' KILN_EMU_DELAY_US=3000
mutate wrong-leading-dimension src/cuda/blas.cpp \
  'const int lda = static_cast<int>(trans_a ? M : K);' 'const int lda = static_cast<int>(trans_a ? K : M);' \
  '*OpsTest.Linear*gpu:*Autograd*gpu'
mutate swapped-conv-padding src/cuda/conv.cpp \
  'cudnnSetConvolution2dDescriptor(d_, static_cast<int>(p.pad_h), static_cast<int>(p.pad_w),' \
  'cudnnSetConvolution2dDescriptor(d_, static_cast<int>(p.pad_w), static_cast<int>(p.pad_h),' \
  '*ConvTest*gpu'

echo "$caught caught, $missed missed"
cmake --build "$WORK/build" -j "$JOBS" >/dev/null  # leave the build unmutated
exit $((missed > 0))
