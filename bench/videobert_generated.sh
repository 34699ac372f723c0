#!/usr/bin/env bash
# VideoBERT end to end on the generated narrated corpus, and the paper's ablations, each a config
# change: train and test corpora, DINOv2-S/14 clip features, a codebook, visual words,
# pretraining, zero-shot action classification against the language prior, future prediction.
#
#   bash bench/videobert_generated.sh [VARIANT...]     (default: main alignment flat fewer-levels)
#
# Variants: main (2 levels x 12 words, the config as it is: no alignment objective), flat (one
# level of 144 words: the same vocabulary size), fewer-levels (one level of 12 words), and each
# of them with the suffix -alignment: the paper's alignment objective on (alignment_weight = 1,
# misaligned_prob = 0.3; `alignment` alone is main-alignment). Each runs with CONFIG (default
# configs/videobert-generated-frozen.toml) and `--init INIT` (default centred-centroids), once
# per seed of SEEDS (default "0"; runs differ more between seeds than the test split's sampling
# error, so compare variants over several). Work goes to $OUT (default runs/videobert-generated):
# VARIANT/seed-S/ holds a run and its zero-shot and prediction figures; corpora, features and
# codebooks are made once and reused. TRAIN_VIDEOS (2000), TEST_VIDEOS (500), IMAGE_SIZE (112),
# FRAME_RATE (2) and THREADS (all cores) set the scale.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/videobert-generated}
TRAIN_VIDEOS=${TRAIN_VIDEOS:-2000}
TEST_VIDEOS=${TEST_VIDEOS:-500}
IMAGE_SIZE=${IMAGE_SIZE:-112}
FRAME_RATE=${FRAME_RATE:-2}
THREADS=${THREADS:-$(nproc)}
CONFIG=${CONFIG:-configs/videobert-generated-frozen.toml}
INIT=${INIT:-centred-centroids}
SEEDS=${SEEDS:-0}
VARIANTS=${*:-main alignment flat fewer-levels}
# The codebook of a variant (`alignment` alone is main-alignment): sets levels and k.
codebook() {
    local base=${1%-alignment}
    [ "$1" = alignment ] && base=main
    case $base in
        main) levels=2; k=12;;
        flat) levels=1; k=144;;
        fewer-levels) levels=1; k=12;;
        *) echo "unknown variant $1 (main, flat, fewer-levels, each with or without -alignment; alignment)" >&2; exit 2;;
    esac
}
# Every name checked before any work.
for variant in $VARIANTS; do codebook "$variant"; done
bash scripts/fetch-data.sh mnist-5k fashion-mnist dinov2-s14 minilm ffmpeg
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"
mkdir -p "$OUT"
T="--threads $THREADS"
[ -d "$OUT/train" ] || "$BIN" data videos --count "$TRAIN_VIDEOS" --seed 0 --output "$OUT/train" $T --json > /dev/null
[ -d "$OUT/test" ] || "$BIN" data videos --count "$TEST_VIDEOS" --split test --seed 1 --output "$OUT/test" $T --json > /dev/null
for split in train test; do
    [ -d "$OUT/features-$split" ] || "$BIN" video features --input "$OUT/$split" \
        --image-size "$IMAGE_SIZE" --frame-rate "$FRAME_RATE" --output "$OUT/features-$split" $T
done
for variant in $VARIANTS; do
    [ "$variant" = alignment ] && variant=main-alignment
    codebook "$variant"
    # The codebook and words belong to the codebook; a -alignment variant shares them.
    w="$OUT/${variant%-alignment}"
    d="$OUT/$variant"
    mkdir -p "$w" "$d"
    if [ "$variant" != "${variant%-alignment}" ]; then
        sed -e "s/^alignment_weight = .*/alignment_weight = 1.0/" \
            -e "s/^misaligned_prob = .*/misaligned_prob = 0.3/" \
            "$CONFIG" > "$d/pretrain.toml"
    else
        cp "$CONFIG" "$d/pretrain.toml"
    fi
    [ -f "$w/codebook.safetensors" ] || "$BIN" video codebook --features "$OUT/features-train" \
        --levels $levels --k $k --output "$w/codebook.safetensors" $T
    for split in train test; do
        [ -f "$w/words-$split.jsonl" ] || "$BIN" video tokenize --codebook "$w/codebook.safetensors" \
            --features "$OUT/features-$split" --narration "$OUT/$split/narration.tsv" \
            --output "$w/words-$split.jsonl"
    done
    for seed in $SEEDS; do
        r="$d/seed-$seed"
        mkdir -p "$r"
        "$BIN" videobert pretrain --words "$w/words-train.jsonl" --codebook "$w/codebook.safetensors" \
            --bert minilm --init "$INIT" --config "$d/pretrain.toml" --seed "$seed" --run-dir "$r/run" $T
        "$BIN" videobert zero-shot --model "$r/run" --words "$w/words-test.jsonl" --segments "$OUT/test" \
            --output "$r/zero-shot.jsonl" $T | tee "$r/zero-shot.txt"
        "$BIN" videobert predict --model "$r/run" --words "$w/words-test.jsonl" $T | tee "$r/predict.txt"
    done
done
