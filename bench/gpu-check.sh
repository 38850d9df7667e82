#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: locate cuDNN/cuBLAS (system or PyTorch's pip wheels),
# build kiln for this GPU, run the GPU tests (not skipped), compute-sanitizer on them, and the
# side-by-side benchmarks. Logs go to $OUT (or bench/out/) for bench/RESULTS.md.
#   bench/gpu-check.sh [--no-bench] [--no-sanitizer]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bench=1; sanitize=1
for a in "$@"; do
  case "$a" in --no-bench) bench=0 ;; --no-sanitizer) sanitize=0 ;; *) echo "unknown option $a" >&2; exit 2 ;; esac
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

if [[ $sanitize == 1 ]]; then
  log "compute-sanitizer on the GPU tests"
  compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/tests/kiln_tests --gtest_filter='*gpu*' \
    >"$OUT/sanitizer.log" 2>&1
  echo "compute-sanitizer exit $?" | tee -a "$OUT/summary.txt"
  tail -3 "$OUT/sanitizer.log" | tee -a "$OUT/summary.txt"
fi

if [[ $bench == 1 ]]; then
  [[ -d data/mnist ]] || data/fetch-mnist.sh >/dev/null 2>&1 || log "no MNIST (fetch failed: no network?)"
  if [[ -d data/mnist ]]; then
    log "MLP epoch, kiln vs PyTorch, cuda"
    KILN=build-gpu/kiln bench/mlp_side_by_side.sh cuda 5 2>&1 | tee -a "$OUT/summary.txt"
  fi
fi
