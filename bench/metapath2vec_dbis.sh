#!/usr/bin/env bash
# metapath2vec++ on the paper's DBIS network: 100 walks per venue (VPAPV), length 100, d = 128,
# window 7, 5 negatives, 2 threads. Prints walk-generation time, training words per second and
# per CPU-second, and peak memory.
#
# The authors' C++ tool runs side by side on the same walks in bench/metapath2vec_vs_authors.sh
# (it is fetched, not packaged).
set -euo pipefail
cd "$(dirname "$0")/.."
DBIS=${DBIS:-../shared/data/dbis}
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use
out=$(mktemp -d)
for variant in plusplus plain; do
    "$BIN" metapath2vec train --graph "$DBIS" --metapath VPAPV --walks-per-node 100 --walk-length 100 \
        --dim 128 --window 7 --negatives 5 --threads 2 --variant "$variant" --json \
        --output "$out/dbis-$variant.txt" > "$out/$variant.json"
    python3 - "$out/$variant.json" "$variant" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["train"]
print(f"metapath2vec {sys.argv[2]:<9} walks {r['walks']['walks']} ({r['walks']['tokens']} tokens) in {r['walk_seconds']:.2f}s; "
      f"training {t['words']} words in {t['seconds']:.1f}s = {t['words_per_second']:.0f} words/s, "
      f"{t['words_per_cpu_second']:.0f} words/CPU-s; peak {r['peak_rss_mib']:.0f} MiB")
PY
done
rm -rf "$out"
