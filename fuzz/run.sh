#!/usr/bin/env bash
# Runs one fuzz target under libFuzzer with AddressSanitizer, after an incremental build of the driver.
#
#   fuzz/run.sh TARGET [SECONDS] [more libFuzzer options]     e.g. fuzz/run.sh tokenizer 1800
#   fuzz/run.sh --build                                       build only
#   fuzz/run.sh --list                                        the targets
#
# Seeds are read from fuzz/corpus/TARGET (committed); inputs the fuzzer finds go to .build-fuzz/corpus/TARGET and
# crashes, leaks, timeouts and out-of-memory inputs to .build-fuzz/artifacts/TARGET (neither is committed: copy a
# crash into fuzz/corpus/TARGET once it is fixed, so the replay test keeps it fixed). The log, with libFuzzer's
# exec/s and cov: figures, is .build-fuzz/logs/TARGET.log. Everything runs under nice, one core. FUZZ_NO_BUILD=1
# skips the incremental build (for parallel runs after one `fuzz/run.sh --build`).
set -euo pipefail

# All in one function, read whole before it runs: editing this file while a long fuzz run is going does not
# change what that run does next.
main() {
  root="$(cd "$(dirname "$0")/.." && pwd)"
  scratch="$root/.build-fuzz"

  # libFuzzer without its main (ours picks the target first), from the toolchain the build uses.
  swiftc_path="$(readlink -f "$(command -v swiftc)")"
  runtime="$(dirname "$swiftc_path")/../lib/swift/clang/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a"
  [ -f "$runtime" ] || { echo "fuzz/run.sh: libFuzzer runtime not found at $runtime (needs a Swift toolchain with compiler-rt)" >&2; exit 2; }

  build() {
    # Release with UNCLIP_CHECKED_RELEASE: -O instead of the package's usual -Ounchecked, so Swift's overflow and
    # bounds checks stay on at optimized speed (2-3x the executions of the debug build). ASan everywhere; coverage for
    # libFuzzer in Swift (-sanitize-coverage) and C (-fsanitize=fuzzer-no-link).
    UNCLIP_CHECKED_RELEASE=1 nice -n 10 swift build --package-path "$root/fuzz" -c release --scratch-path "$scratch" ${FUZZ_BUILD_JOBS:+-j "$FUZZ_BUILD_JOBS"} \
      -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table \
      -Xcc -fsanitize=fuzzer-no-link,address \
      -Xlinker "$runtime" -Xlinker -lstdc++ 2>&1 | grep -v "Cannot export local symbol" >&2
  }

  case "${1:-}" in
    ""|-h|--help) sed -n 2,11p "$0" | sed "s/^# \{0,1\}//"; exit 2 ;;
    --build) build; exit 0 ;;
    --list) build; { "$scratch/release/unclip-fuzz" --list 2>&1 || true; } | sed -n "s/^targets: //p" | tr , "\n" | sed "s/^ //"; exit 0 ;;
  esac

  target="$1"; seconds="${2:-60}"; shift $(( $# >= 2 ? 2 : 1 ))
  [ -d "$root/fuzz/corpus/$target" ] || { echo "fuzz/run.sh: no seed corpus fuzz/corpus/$target" >&2; exit 2; }
  # FUZZ_NO_BUILD=1: several targets running at once share one build (SwiftPM would make them queue on its lock).
  [ -n "${FUZZ_NO_BUILD:-}" ] || build
  mkdir -p "$scratch/corpus/$target" "$scratch/artifacts/$target" "$scratch/logs"
  # The store target writes a scratch SQLite store per input: keep those on local disk, away from others' /tmp use.
  export TMPDIR="${TMPDIR:-$scratch/tmp}"; mkdir -p "$TMPDIR"
  # Leak checking is on (libFuzzer checks each input whose mallocs and frees do not balance).
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
  # Swift's own crash backtracer would race ASan's report (and trips ASan reading the stack): let libFuzzer report.
  export SWIFT_BACKTRACE=enable=no
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$root/fuzz/lsan.supp:print_suppressions=0}"
  dict=(); [ -f "$root/fuzz/dict/$target.dict" ] && dict=(-dict="$root/fuzz/dict/$target.dict")
  cd "$scratch/artifacts/$target"
  nice -n 10 "$scratch/release/unclip-fuzz" "$target" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$scratch/artifacts/$target/" "${dict[@]}" "$@" \
    "$scratch/corpus/$target" "$root/fuzz/corpus/$target" 2>&1 | tee "$scratch/logs/$target.log"
}
main "$@"; exit
