#!/usr/bin/env bash
# Fuzz every reader of user files (fuzz/fuzz_targets) for FUZZ_SECONDS each (default 60), then minimise
# what it grew. The committed seeds in fuzz/corpus/<target> are only read; the grown corpus lives in
# git-ignored fuzz/work/<target> so that later runs start where earlier ones stopped. A crash stops
# that target and leaves its input in fuzz/artifacts/<target>/; the script exits non-zero at the end.
#
#   bash scripts/fuzz.sh [TARGET...]          (default: every target; needs cargo-fuzz)
#
# cargo-fuzz builds with instrumentation flags that stable rustc accepts once RUSTC_BOOTSTRAP=1
# lets it read them; no sanitizer runtime is needed (--sanitizer none), debug assertions are on
# (-a) so that integer overflows are found too.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
flags=(-O -a --sanitizer none)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && mapfile -t targets < <(cargo fuzz list)
cargo fuzz build "${flags[@]}"
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/work/$t"
    echo "== $t: ${SECONDS_EACH}s"
    if ! cargo fuzz run "${flags[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=20 >"fuzz/work/$t.log" 2>&1; then
        failed+=("$t")
        grep -E "ERROR|panicked|deadly signal|Test unit written" "fuzz/work/$t.log" || tail -5 "fuzz/work/$t.log"
    fi
    grep -E "Done [0-9]+ runs" "fuzz/work/$t.log" || true
    cargo fuzz cmin "${flags[@]}" "$t" "fuzz/work/$t" >/dev/null 2>&1 || true
    echo "   grown corpus: $(ls "fuzz/work/$t" | wc -l) inputs"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
