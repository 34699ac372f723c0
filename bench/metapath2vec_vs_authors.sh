#!/usr/bin/env bash
# metapath2vec++ on DBIS against the authors' C++ tool (github myazi/metapath2vec,
# bin/metapath2vec.cpp, built on word2vec), side by side on one walk file:
#   - the walks: `tessera metapath2vec walk` (VPAPV, 100 walks per venue, length 100, seed 1);
#   - both trainers with their defaults in ++ mode, d 128, window 7, 5 negatives, 1 iteration,
#     THREADS threads (default 2), taking turns ROUNDS times (default 2);
#   - words per CPU-second (whole process, reading the walks included) and peak memory, the median
#     over the rounds;
#   - the top-10 venues of KDD, SIGMOD, SIGIR, WWW and WSDM from both, side by side, with their
#     overlap.
#
# The authors' tool draws ++ negatives only for tokens whose type letter is v, a, i or f (its
# `NodeType()`); for a token of any other type (Tessera writes papers as `p`) it draws none and
# re-uses the positive as a negative when the centre has the same type. Papers are therefore
# written as `i` in the walk file it reads (the same walks, re-lettered); AS_IS=1 also runs it on
# the walk file as Tessera writes it, to show the difference.
#
#   bash bench/metapath2vec_vs_authors.sh AUTHORS_CHECKOUT
#
# AUTHORS_CHECKOUT: a work tree holding bin/metapath2vec.cpp, or a git directory of the authors'
# repository. Its code is built in a temporary directory and never kept.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:?usage: bench/metapath2vec_vs_authors.sh AUTHORS_CHECKOUT}
DBIS=${DBIS:-../shared/data/dbis}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -f "$SRC/bin/metapath2vec.cpp" ]; then
    cp "$SRC/bin/metapath2vec.cpp" "$work/"
else
    git --git-dir="$SRC" show HEAD:bin/metapath2vec.cpp > "$work/metapath2vec.cpp"
fi
g++ -O3 -march=native -funroll-loops -Wno-unused-result -pthread \
    -o "$work/metapath2vec" "$work/metapath2vec.cpp" -lm
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); vector level: $(grep -q avx512f /proc/cpuinfo && echo AVX-512 || (grep -q avx2 /proc/cpuinfo && echo AVX2 || echo baseline)); $THREADS threads"
"$BIN" metapath2vec walk --graph "$DBIS" --metapath VPAPV --walks-per-node 100 --walk-length 100 \
    --seed 1 --output "$work/walks.txt" --json > "$work/walk.json"
sed 's/\bp\([0-9]\)/i\1/g' "$work/walks.txt" > "$work/walks_i.txt"

timed() { # name, command... -> appends "name wall cpu peak_kib" to $work/times
    local name=$1
    shift
    /usr/bin/time -f "$name %e %U %S %M" -a -o "$work/times" "$@" > "$work/$name.log" 2>&1
}
for round in $(seq "$ROUNDS"); do
    timed authors "$work/metapath2vec" -train "$work/walks_i.txt" -output "$work/authors" -pp 1 \
        -size 128 -window 7 -negative 5 -threads "$THREADS" -iter 1
    timed tessera "$BIN" metapath2vec train --walks "$work/walks.txt" --variant plusplus \
        --dim 128 --window 7 --negatives 5 --threads "$THREADS" --json --output "$work/tessera.txt"
done
if [ "${AS_IS:-0}" = 1 ]; then
    "$work/metapath2vec" -train "$work/walks.txt" -output "$work/authors_as_is" -pp 1 -size 128 \
        -window 7 -negative 5 -threads "$THREADS" -iter 1 > /dev/null 2>&1
fi

QUERIES="vKDD vSIGMODConference vSIGIR vWWW vWSDM"
for side in authors tessera authors_as_is; do
    [ -f "$work/$side.txt" ] || continue
    for q in $QUERIES; do
        "$BIN" metapath2vec similar --embeddings "$work/$side.txt" --node "$q" --type v --k 10 --json
    done > "$work/$side.similar"
done

python3 - "$work" "$QUERIES" <<'PY'
import json, os, statistics, sys
work, queries = sys.argv[1], sys.argv[2].split()
rows = [l.split() for l in open(f"{work}/times")]
tess = json.loads(open(f"{work}/tessera.log").read().strip().splitlines()[-1])
trained = tess["train"]["words"]
def stats(name):
    rs = [r for r in rows if r[0] == name]
    cpu = statistics.median(float(r[2]) + float(r[3]) for r in rs)
    wall = statistics.median(float(r[1]) for r in rs)
    peak = max(int(r[4]) for r in rs) / 1024
    return wall, cpu, peak
print(f"\nsame walks: {tess['walks']['walks']} walks, {tess['walks']['tokens']} tokens; "
      f"{trained} words kept by min-count 5 (both tools' default), {len(rows) // 2} rounds")
print(f"{'trainer':<22}{'wall s':>9}{'CPU s':>9}{'words/CPU-s':>13}{'peak MiB':>10}")
res = {}
for name, label in [("authors", "authors' C++ (-pp 1)"), ("tessera", "Tessera plusplus")]:
    wall, cpu, peak = stats(name)
    res[name] = trained / cpu
    print(f"{label:<22}{wall:>9.1f}{cpu:>9.1f}{trained / cpu:>13.0f}{peak:>10.0f}")
print(f"Tessera: {res['tessera'] / res['authors']:.2f}x the authors' words per CPU-second")

def lists(side):
    path = f"{work}/{side}.similar"
    if not os.path.exists(path):
        return None
    out = {}
    for line in open(path):
        r = json.loads(line)
        out[r["node"]] = [s["node"] for s in r["similar"]]
    return out
a, t, raw = lists("authors"), lists("tessera"), lists("authors_as_is")
total = 0
for q in queries:
    both = set(a[q]) & set(t[q])
    total += len(both)
    print(f"\n{q}: {len(both)}/10 in common")
    print(f"  {'authors C++':<46}{'Tessera':<46}")
    for x, y in zip(a[q], t[q]):
        print(f"  {x[1:][:44]:<46}{y[1:][:44]:<46}")
print(f"\nmean overlap of the top-10 venues: {total / len(queries):.1f}/10")
if raw:
    same = sum(len(set(raw[q]) & set(a[q])) for q in queries) / len(queries)
    with_t = sum(len(set(raw[q]) & set(t[q])) for q in queries) / len(queries)
    print(f"authors' tool on the walk file as written (papers `p`, no ++ negatives for them): "
          f"{same:.1f}/10 in common with its own run on `i`, {with_t:.1f}/10 with Tessera")
PY
