#!/usr/bin/env bash
# Builds kiln's libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer, CPU backend)
# and runs each for SECONDS, a few at a time. Exits non-zero when a fuzzer finds a crash, a hang
# (an input running over 10 s), a leak or memory blow-up (over 2 GiB), and keeps the input that does
# it in BUILD/findings/ with the command that replays it. See docs/testing.md.
#
#   tests/fuzz/run.sh [SECONDS] [FUZZER...]     default: 60 seconds each, every fuzzer
#
# Environment: KILN_FUZZ_BUILD_DIR (default build-fuzz), KILN_FUZZ_JOBS (fuzzers at once; default:
# the CPU count), CXX (a clang++; default: clang++, else clang++-14..19).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
shift || true
ALL=(fuzz_idx fuzz_safetensors fuzz_image fuzz_cli)
FUZZERS=("${@:-${ALL[@]}}")
BUILD=${KILN_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${KILN_FUZZ_JOBS:-$(nproc)}
[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: SECONDS must be a positive integer, got '$SECONDS_EACH'" >&2; exit 2; }
for f in "${FUZZERS[@]}"; do
  [[ " ${ALL[*]} " == *" $f "* ]] || { echo "run.sh: unknown fuzzer '$f' (one of: ${ALL[*]})" >&2; exit 2; }
done

find_clang() {
  if [[ -n ${CXX:-} ]]; then echo "$CXX"; return; fi
  for c in clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    command -v "$c" >/dev/null && { echo "$c"; return; }
  done
  echo "run.sh: no clang++ found; install clang-14 and libclang-rt-14-dev (libFuzzer)" >&2
  exit 2
}

build() {
  local cxx
  cxx=$(find_clang)
  echo "== building the fuzzers in $BUILD with $cxx"
  cmake -S . -B "$BUILD" -DCMAKE_CXX_COMPILER="$cxx" -DKILN_FUZZ=ON -DKILN_SANITIZE=address,undefined \
    -DKILN_CUDA=OFF -DKILN_BUILD_TESTS=OFF -DKILN_USE_OPENMP=OFF -DKILN_USE_BLAS=OFF >/dev/null
  cmake --build "$BUILD" -j "$JOBS" --target "${FUZZERS[@]}"
}

# One fuzzer: its corpus grows in BUILD/corpus/NAME from the committed seeds; a finding lands in
# BUILD/findings/NAME-*; the last lines of its log (libFuzzer's final stats) go to BUILD/logs/NAME.log.
run_one() {
  local name=$1 short=${1#fuzz_} dict=()
  mkdir -p "$BUILD/corpus/$name" "$BUILD/findings" "$BUILD/logs"
  [[ -f tests/fuzz/$short.dict ]] && dict=(-dict="tests/fuzz/$short.dict")
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$BUILD/tests/fuzz/$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$BUILD/findings/$name-" "${dict[@]}" "$BUILD/corpus/$name" "tests/fuzz/seeds/$short" \
    >"$BUILD/logs/$name.log" 2>&1
}

final_stat() {  # final_stat NAME KEY: a number from libFuzzer's final stats
  sed -n "s/^stat::$2: *//p" "$BUILD/logs/$1.log" | tail -1
}

report() {
  local failed=0
  printf '\n%-18s %8s %12s %10s %8s %6s  %s\n' fuzzer seconds executions exec/s corpus cov result
  for name in "${FUZZERS[@]}"; do
    local status=ok execs secs cov
    execs=$(final_stat "$name" number_of_executed_units)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$BUILD/logs/$name.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$BUILD/logs/$name.log" | tail -1 | cut -d' ' -f2)
    if [[ -f "$BUILD/logs/$name.failed" ]]; then status="FAILED: $(ls "$BUILD/findings/$name-"* 2>/dev/null | head -1)"; failed=1; fi
    printf '%-18s %8s %12s %10s %8s %6s  %s\n' "$name" "${secs:-?}" "${execs:-?}" \
      "$(( ${execs:-0} / (${secs:-0} > 0 ? ${secs:-1} : 1) ))" "$(ls "$BUILD/corpus/$name" | wc -l)" "${cov:-?}" "$status"
  done
  if (( failed )); then
    echo
    echo "A fuzzer failed. Its log: $BUILD/logs/<fuzzer>.log. Replay a finding with:"
    echo "  $BUILD/tests/fuzz/<fuzzer> $BUILD/findings/<fuzzer>-<kind>-<hash>"
    echo "then turn it into a unit test (docs/testing.md, Fuzzing)."
  fi
  return $failed
}

build
rm -f "$BUILD"/logs/*.failed
echo "== running ${FUZZERS[*]} for $SECONDS_EACH s each, $JOBS at a time"
running=0
for name in "${FUZZERS[@]}"; do
  (run_one "$name" || touch "$BUILD/logs/$name.failed") &
  running=$((running + 1))
  if (( running >= JOBS )); then wait -n || true; running=$((running - 1)); fi
done
wait
report
