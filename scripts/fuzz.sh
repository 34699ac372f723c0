#!/usr/bin/env bash
# Fuzz every reader of user files (fuzz/fuzz_targets) for FUZZ_SECONDS each (default 60), then minimise
# each corpus (kept in fuzz/corpus/). A crash stops the run and leaves its input in
# fuzz/artifacts/<target>/.
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
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t: ${SECONDS_EACH}s"
    cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=20 2>&1 \
        | grep -E "^#[0-9]+ *DONE|Done [0-9]+ runs|ERROR|panicked|deadly signal" || true
    cargo fuzz cmin "${flags[@]}" "$t" "fuzz/corpus/$t" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
    echo "   corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs"
done
