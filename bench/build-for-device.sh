#!/usr/bin/env bash
# Builds kiln HERE for the lent GPU machine, whose image has nvcc 13, cuBLAS and PyTorch's cuDNN wheel
# but no apt (no GoogleTest, CLI11, stb, OpenBLAS): CLI11/stb are header-only and GoogleTest is linked
# statically, the CPU twins use the built-in GEMM without OpenMP, and nothing is tuned to this CPU.
# The result, build-device/ (+ data/mnist-gz/ with the gzipped MNIST files), travels with the device
# tool's `carry`; bench/gpu-check.sh --prebuilt build-device then runs everything there.
#   bench/build-for-device.sh [arch]        (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
cmake -S . -B build-device -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DKILN_USE_BLAS=OFF \
  -DKILN_USE_OPENMP=OFF -DKILN_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-device -j "$(nproc)"
cmake --build build-device --target kernel_lab -j "$(nproc)"
# Only what the device needs: binaries and ctest's files (the object files stay here).
find build-device -name '*.o' -delete
if [[ -d data/mnist ]]; then
  mkdir -p data/mnist-gz
  for f in data/mnist/*-ubyte; do gzip -c "$f" >"data/mnist-gz/$(basename "$f").gz"; done
fi
du -sh build-device data/mnist-gz 2>/dev/null
echo "carry: [\"build-device\", \"data/mnist-gz\"]; run: bench/gpu-check.sh --prebuilt build-device"
