#!/usr/bin/env bash
# kiln.sh — one entry point for newcomers: installs what kiln needs, builds it, and runs it.
#
#   ./kiln.sh train mnist     install deps, build, fetch MNIST, train the MLP (GPU if present, else CPU)
#   ./kiln.sh train fashion-mnist [kiln train flags...]
#   ./kiln.sh test            install deps, build, run the test suite (GPU tests skip without a GPU)
#   ./kiln.sh build           install deps and build only
#   ./kiln.sh info            build, then print build options, devices and library versions
#
# Environment:
#   KILN_CUDA=AUTO|ON|OFF|EMULATE  build the CUDA backend (default AUTO: when nvcc is found; EMULATE:
#                             run it on the emulated CPU device of tests/emu, no GPU needed)
#   KILN_SANITIZE=address,undefined  build with these sanitizers
#   KILN_CUDA_ARCHS="75;90"   CUDA architectures to build (default: the GPU in this machine, else T4 … H100 + PTX)
#   KILN_BUILD_DIR=DIR        build folder (default build; build-cpu when KILN_CUDA=OFF, build-emu for EMULATE)
#   KILN_JOBS=N               parallel build jobs (default: all cores)
set -euo pipefail
cd "$(dirname "$0")"

KILN_CUDA=${KILN_CUDA:-AUTO}
case "$KILN_CUDA" in
  OFF) default_dir=build-cpu ;;
  EMULATE) default_dir=build-emu ;;
  *) default_dir=build ;;
esac
BUILD_DIR=${KILN_BUILD_DIR:-$default_dir}
JOBS=${KILN_JOBS:-$(nproc)}

say() { printf '\033[1mkiln:\033[0m %s\n' "$*" >&2; }
die() { printf 'kiln: error: %s\n' "$*" >&2; exit 1; }

install_deps() {
  local pkgs=(cmake g++ make libgtest-dev libopenblas-openmp-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libstb-dev
    python3)  # python3: the tests' image-folder fixtures (tests/cli/image_folder.py, standard library only)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: install them by hand"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
  install_deps
  local args=(-DKILN_CUDA="$KILN_CUDA" -DCMAKE_BUILD_TYPE=Release)
  [[ -n "${KILN_SANITIZE:-}" ]] && args+=(-DKILN_SANITIZE="$KILN_SANITIZE")
  if [[ "$KILN_CUDA" != OFF && "$KILN_CUDA" != EMULATE ]] && ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export CUDACXX=/usr/local/cuda/bin/nvcc
  fi
  [[ -n "${KILN_CUDA_ARCHS:-}" ]] && args+=(-DCMAKE_CUDA_ARCHITECTURES="$KILN_CUDA_ARCHS")
  say "configuring $BUILD_DIR (KILN_CUDA=$KILN_CUDA)"
  cmake -S . -B "$BUILD_DIR" "${args[@]}" >/dev/null
  say "building with $JOBS jobs"
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  build) build ;;
  test)
    build
    say "running the tests"
    (cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS" "$@")
    ;;
  train)
    dataset=${1:-mnist}
    shift || true
    case "$dataset" in
      mnist) fetch=data/fetch-mnist.sh ;;
      fashion-mnist) fetch=data/fetch-fashion-mnist.sh ;;
      *) die "unknown dataset '$dataset' (mnist or fashion-mnist)" ;;
    esac
    build
    "$fetch"
    out="runs/$dataset-mlp-$(date +%Y%m%d-%H%M%S)"
    say "training; run folder $out (open $out/curves.svg in a browser)"
    "$BUILD_DIR/kiln" train --dataset "$dataset" --data "data/$dataset" --epochs 10 --batch-size 128 \
      --optimizer sgd --momentum 0.9 --lr 0.1 --schedule cosine --out "$out" "$@"
    ;;
  info)
    build >/dev/null
    "$BUILD_DIR/kiln" info
    ;;
  help|-h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$cmd' (try ./kiln.sh help)" ;;
esac
