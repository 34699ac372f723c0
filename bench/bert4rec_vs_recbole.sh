#!/usr/bin/env bash
# One training epoch of BERT4Rec on MovieLens-100k: Tessera against RecBole 1.2.1 (PyTorch CPU),
# same model size and the same 97,171 training sequences, on this machine, side by side.
# RecBole runs twice: as its users get it, and with OMP_WAIT_POLICY=PASSIVE (PyTorch's OpenMP
# threads spin on these machines; see shared/notes/recbole.md).
#
#   bash bench/bert4rec_vs_recbole.sh            (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import recbole, torch" 2>/dev/null; then
    echo "installing PyTorch and RecBole 1.2.1 into $VENV" >&2
    "$VENV/bin/pip" install -q torch "recbole==1.2.1" "numpy==1.26.4" "pandas<3" "setuptools<81"
fi
bash scripts/fetch-data.sh ml-100k >&2
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use

run=$(mktemp -d)
echo "tessera: one epoch ..." >&2
"$BIN" bert4rec train --data data/ml-100k --config bench/bert4rec-recbole-equivalent.toml \
    --run-dir "$run" --epochs 1 --threads "$THREADS" --json > "$run/out.json"
ours=$("$VENV/bin/python" - "$run" <<'PY'
import json, sys
run = sys.argv[1]
m = [json.loads(l) for l in open(f"{run}/metrics.jsonl")][-1]
o = json.load(open(f"{run}/out.json"))
print(json.dumps({"train_seconds": m["train_seconds"], "loss": m["loss"],
                  "peak_rss_mib": o["train"]["peak_rss_mib"]}))
PY
)
echo "recbole (default OpenMP) ..." >&2
default=$(cd "$run" && "$VENV/bin/python" "$OLDPWD/bench/recbole_epoch.py" "$OLDPWD/data" | tail -n1)
echo "recbole (OMP_WAIT_POLICY=PASSIVE) ..." >&2
passive=$(cd "$run" && OMP_WAIT_POLICY=PASSIVE "$VENV/bin/python" "$OLDPWD/bench/recbole_epoch.py" "$OLDPWD/data" | tail -n1)

"$VENV/bin/python" - "$ours" "$default" "$passive" "$THREADS" <<'PY'
import json, sys
ours, default, passive = (json.loads(a) for a in sys.argv[1:4])
print(f"BERT4Rec, one training epoch on ml-100k ({default['sequences']} sequences, d={default['hidden']}, "
      f"L={default['layers']}, N={default['max_len']}, batch {default['batch_size']}), {sys.argv[4]} threads")
print(f"{'run':<34}{'epoch s':>10}{'peak MiB':>10}{'loss':>9}{'speed-up':>10}{'memory':>9}")
rows = [("tessera (burn flex)", ours), ("RecBole, default OpenMP", default), ("RecBole, OMP_WAIT_POLICY=PASSIVE", passive)]
for name, r in rows:
    su = r["train_seconds"] / ours["train_seconds"]
    mem = ours["peak_rss_mib"] / r["peak_rss_mib"]
    print(f"{name:<34}{r['train_seconds']:>10.1f}{r['peak_rss_mib']:>10.0f}{r['loss']:>9.3f}{su:>9.2f}x{mem:>8.2f}x")
print("speed-up: the peer's epoch time / ours (>1: we are faster); memory: our peak / the peer's")
PY
rm -rf "$run"
