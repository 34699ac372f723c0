#!/usr/bin/env bash
# YOLOv3-tiny (COCO) on darknet's 7 test photos: Tessera against Debian's darknet binary (C,
# same .cfg and .weights, CPU) and the numpy reference (scripts/yolo_reference.py), side by side,
# taking turns ROUNDS times (default 3).
#
# Per-image time is each tool's own figure for one image: darknet's "Predicted in" (network
# only), Tessera's `seconds` of `detect --json` (letterbox, network and decoding), the
# reference's forward pass; summed over the photos, the median over rounds is reported. Peak
# memory is the whole process's (`/usr/bin/time`). darknet runs one process per photo (as its
# `detector test` takes one); its loading is not in its figure.
#
#   bash bench/detect_vs_darknet.sh        (installs Debian's darknet with apt when missing;
#                                           venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
bash scripts/fetch-data.sh yolov3-tiny darknet-photos >&2
if ! command -v darknet >/dev/null; then
    apt-get install -y -qq --no-install-recommends darknet >&2
fi
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/python" -c "import numpy, PIL" 2>/dev/null || "$VENV/bin/pip" install -q numpy pillow
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
M=data/yolov3-tiny
printf 'classes= 80\nnames = %s\n' "$PWD/$M/coco.names" > "$work/coco.data"
photos=(data/darknet-photos/*.jpg)

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); vector level: $(grep -q avx512f /proc/cpuinfo && echo AVX-512 || (grep -q avx2 /proc/cpuinfo && echo AVX2 || echo baseline)); ${#photos[@]} photos, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    for p in "${photos[@]}"; do
        # -out: write the drawn image instead of opening a window (which would wait for a key).
        QT_QPA_PLATFORM=offscreen /usr/bin/time -f "%M" -o "$work/mem" darknet detector test \
            "$work/coco.data" "$M/yolov3-tiny.cfg" "$M/yolov3-tiny.weights" "$p" -thresh 0.25 \
            -out "$work/pred" 2>/dev/null | grep "Predicted in" | sed "s/.*Predicted in \([0-9.]*\).*/darknet $round \1/" >> "$work/times"
        echo "darknet_mem $(cat "$work/mem")" >> "$work/times"
    done
    for threads in 1 2; do
        /usr/bin/time -f "%M" -o "$work/mem" "$BIN" detect --json --threads "$threads" --model "$M" \
            --input "${photos[@]}" > "$work/ours.jsonl"
        python3 -c "import json,sys; print('tessera_$threads $round', sum(json.loads(l)['seconds'] for l in open(sys.argv[1])))" "$work/ours.jsonl" >> "$work/times"
        echo "tessera_${threads}_mem $(cat "$work/mem")" >> "$work/times"
    done
    /usr/bin/time -f "%M" -o "$work/mem" "$VENV/bin/python" scripts/yolo_reference.py --model "$M" \
        "${photos[@]}" --out "$work/ref.jsonl"
    python3 -c "import json,sys; print('reference $round', sum(json.loads(l)['seconds'] for l in open(sys.argv[1])))" "$work/ref.jsonl" >> "$work/times"
    echo "reference_mem $(cat "$work/mem")" >> "$work/times"
done

python3 - "$work/times" "$work/ours.jsonl" "$work/ref.jsonl" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def per_round(name):
    by = {}
    for r in rows:
        if r[0] == name:
            by[r[1]] = by.get(r[1], 0.0) + float(r[2])
    return statistics.median(by.values())
def mem(name):
    return max(int(r[1]) for r in rows if r[0] == name + "_mem") / 1024
dark = per_round("darknet")
print(f"\n{'tool':<34}{'s / 7 photos':>14}{'s / photo':>11}{'vs darknet':>12}{'peak MiB':>10}")
for name, label in [("darknet", "Debian darknet (C, 1 thread)"), ("tessera_1", "Tessera, 1 thread"),
                    ("tessera_2", "Tessera, 2 threads"), ("reference", "numpy reference")]:
    t = per_round(name)
    print(f"{label:<34}{t:>14.3f}{t / 7:>11.3f}{dark / t:>11.2f}x{mem(name):>10.0f}")
ours = [json.loads(l) for l in open(sys.argv[2])]
ref = [json.loads(l) for l in open(sys.argv[3])]
n = sum(len(r["detections"]) for r in ours)
m = sum(len(r["detections"]) for r in ref)
print(f"\ndetections: Tessera {n}, reference {m} (JPEGs: Tessera decodes with zune-jpeg, the reference with Pillow)")
PY
