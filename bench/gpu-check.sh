#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: locate cuDNN/cuBLAS (system or PyTorch's pip wheels),
# build kiln for this GPU (or use a build made elsewhere), run the whole test suite with the GPU tests
# running, compute-sanitizer on the GPU tests, and the side-by-side benchmarks. Logs go to $OUT (or
# bench/out/) for bench/RESULTS.md.
#   bench/gpu-check.sh [--prebuilt DIR] [--no-bench] [--no-sanitizer]
# On the lent GPU machine (no apt there): run bench/build-for-device.sh here first, then through the
# device tool: carry ["build-device", "data/mnist-gz"], command "bench/gpu-check.sh --prebuilt build-device".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bench=1; sanitize=1; prebuilt=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-bench) bench=0 ;;
    --no-sanitizer) sanitize=0 ;;
    --prebuilt) prebuilt=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)

# cuDNN: the system's, else the one inside PyTorch's nvidia-cudnn wheel.
cudnn_root=""
for d in /usr/local/cuda /usr; do
  if ls "$d"/include/cudnn.h "$d"/include/*/cudnn.h >/dev/null 2>&1; then cudnn_root=$d; break; fi
done
if [[ -z $cudnn_root ]]; then
  cudnn_root=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)
fi
[[ -n $cudnn_root ]] || { echo "cuDNN not found (system or pip nvidia-cudnn)" >&2; exit 1; }
export CUDNN_ROOT=$cudnn_root
# pip wheels ship libcudnn.so.9 without the unversioned link the linker wants.
if [[ ! -e $cudnn_root/lib/libcudnn.so && -e $cudnn_root/lib/libcudnn.so.9 ]]; then
  mkdir -p /tmp/kiln-cudnn/lib && ln -sf "$cudnn_root"/lib/libcudnn.so.9 /tmp/kiln-cudnn/lib/libcudnn.so
  ln -sfn "$cudnn_root/include" /tmp/kiln-cudnn/include
  export CUDNN_ROOT=/tmp/kiln-cudnn
fi
export LD_LIBRARY_PATH=$cudnn_root/lib:${LD_LIBRARY_PATH:-}
cublas_wheel=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null || true)
[[ -n $cublas_wheel ]] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$cublas_wheel/lib
export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/cuda/lib64

if [[ -n $prebuilt ]]; then
  # A build made on another x86-64 machine (bench/build-for-device.sh): ctest's files hold that
  # machine's paths, so the test binary and the scripts are run directly.
  B=$prebuilt
  log "prebuilt $B, cuDNN from $cudnn_root"
  "$B/kiln" info | tee -a "$OUT/summary.txt"
  log "all tests (GPU instances running)"
  "$B/tests/kiln_tests" >"$OUT/gtest.log" 2>&1
  echo "kiln_tests exit $?" | tee -a "$OUT/summary.txt"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran" "$OUT/gtest.log" | tail -5 | tee -a "$OUT/summary.txt"
  grep -E "^\[  FAILED  \]" "$OUT/gtest.log" | head -40 | tee -a "$OUT/summary.txt"
  bash tests/cli/bad_input.sh "$B/kiln" 2>&1 | tail -3 | tee -a "$OUT/summary.txt"
  bash tests/cli/example.sh "$B/train_mlp_example" 2>&1 | tail -1 | tee -a "$OUT/summary.txt"
  bash tests/cli/nvtx_ranges.sh "$B/kiln" "$B/tests/libkiln_nvtx_probe.so" cuda >"$OUT/nvtx.log" 2>&1
  echo "nvtx_ranges (cuda) exit $?" | tee -a "$OUT/summary.txt"
  { grep "^FAIL" "$OUT/nvtx.log" | head -20; tail -1 "$OUT/nvtx.log"; } | tee -a "$OUT/summary.txt"
  if [[ $sanitize == 1 ]]; then
    log "compute-sanitizer memcheck on the GPU tests"
    compute-sanitizer --tool memcheck --error-exitcode 1 "$B/tests/kiln_tests" --gtest_filter='*gpu*' \
      >"$OUT/sanitizer.log" 2>&1
    echo "compute-sanitizer exit $?" | tee -a "$OUT/summary.txt"
    tail -3 "$OUT/sanitizer.log" | tee -a "$OUT/summary.txt"
  fi
  if [[ $bench == 1 ]]; then
    log "kiln's memory-bound kernels vs the copy bandwidth (target: >= 80%)"
    "$B/kiln" bench --kernels --device cuda --markdown 2>&1 | tee "$OUT/kernels.md" | tee -a "$OUT/summary.txt"
    log "kernel lab"
    for k in softmax_xent bias_relu max_pool sgemm; do "$B/bench/kernel_lab/lab_$k" 2>&1 | tee -a "$OUT/summary.txt"; done
    log "AlexNet bench"
    "$B/kiln" bench --model alexnet --batch-size 256 --device cuda --steps 20 2>&1 | tee -a "$OUT/summary.txt"
    KILN=$B/kiln bench/alexnet_side_by_side.sh cuda 256 20 2>&1 | tail -4 | tee -a "$OUT/summary.txt"
    if [[ -d data/mnist-gz ]]; then
      log "MNIST MLP on the GPU (5 epochs) and side by side"
      "$B/kiln" train --data data/mnist-gz --epochs 5 --device cuda --out /tmp/kiln-run-mlp 2>&1 | tail -6 | tee -a "$OUT/summary.txt"
      rm -rf data/mnist && mkdir -p data/mnist && for f in data/mnist-gz/*.gz; do gunzip -c "$f" >"data/mnist/$(basename "$f" .gz)"; done
      KILN=$B/kiln bench/mlp_side_by_side.sh cuda 5 2>&1 | tail -6 | tee -a "$OUT/summary.txt"
    fi
  fi
  exit 0
fi
log "cuDNN from $cudnn_root, building for sm_$arch"

apt_deps=(libgtest-dev libopenblas-openmp-dev libcli11-dev zlib1g-dev libstb-dev)
missing=(); for p in "${apt_deps[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 || log "could not apt-get ${missing[*]}"
fi

cmake -S . -B build-gpu -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DKILN_CUDNN_INCLUDE_DIR="$CUDNN_ROOT/include" -DKILN_CUDNN_LIBRARY="$CUDNN_ROOT/lib/libcudnn.so" \
  >"$OUT/configure.log" 2>&1 || { log "configure failed"; tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" >"$OUT/build.log" 2>&1 || { log "build failed"; grep -m20 error "$OUT/build.log"; exit 1; }
build-gpu/kiln info | tee -a "$OUT/summary.txt"

log "ctest (all tests, GPU instances running)"
(cd build-gpu && ctest --output-on-failure -j 8) >"$OUT/ctest.log" 2>&1
tail -5 "$OUT/ctest.log" | tee -a "$OUT/summary.txt"
grep -c "Skipped" "$OUT/ctest.log" | xargs -I{} echo "skipped lines: {}" | tee -a "$OUT/summary.txt"
log "NVTX ranges on the GPU (with the host-to-device copies)"
bash tests/cli/nvtx_ranges.sh build-gpu/kiln build-gpu/tests/libkiln_nvtx_probe.so cuda >"$OUT/nvtx.log" 2>&1
echo "nvtx_ranges (cuda) exit $?" | tee -a "$OUT/summary.txt"
{ grep "^FAIL" "$OUT/nvtx.log" | head -20; tail -1 "$OUT/nvtx.log"; } | tee -a "$OUT/summary.txt"

if [[ $sanitize == 1 ]]; then
  log "compute-sanitizer on the GPU tests"
  compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/tests/kiln_tests --gtest_filter='*gpu*' \
    >"$OUT/sanitizer.log" 2>&1
  echo "compute-sanitizer exit $?" | tee -a "$OUT/summary.txt"
  tail -3 "$OUT/sanitizer.log" | tee -a "$OUT/summary.txt"
fi

if [[ $bench == 1 ]]; then
  log "kiln's memory-bound kernels vs the copy bandwidth (target: >= 80%)"
  build-gpu/kiln bench --kernels --device cuda --markdown 2>&1 | tee "$OUT/kernels.md" | tee -a "$OUT/summary.txt"
  if cmake --build build-gpu --target kernel_lab -j "$(nproc)" >>"$OUT/build.log" 2>&1; then
    log "kernel lab"
    for k in softmax_xent bias_relu max_pool sgemm; do build-gpu/bench/kernel_lab/lab_$k 2>&1 | tee -a "$OUT/summary.txt"; done
  fi
  [[ -d data/mnist ]] || data/fetch-mnist.sh >/dev/null 2>&1 || log "no MNIST (fetch failed: no network?)"
  if [[ -d data/mnist ]]; then
    log "MLP epoch, kiln vs PyTorch, cuda"
    KILN=build-gpu/kiln bench/mlp_side_by_side.sh cuda 5 2>&1 | tee -a "$OUT/summary.txt"
  fi
fi
