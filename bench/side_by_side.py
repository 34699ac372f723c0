"""The table of a side-by-side benchmark: each side's runs of each mode, written by the calling
script as WORK/{ours,peer}_{infer,train}_{round}.json (`seconds`, `peak_rss_mib`), summarised as
the median of all timed runs and the peak memory.

    python3 bench/side_by_side.py WORK THREADS ROUNDS TITLE PEER INFER_CASE TRAIN_CASE
"""
import glob
import json
import statistics
import sys

work, threads, rounds, title, peer, infer_case, train_case = sys.argv[1:8]


def load(side, mode):
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/{side}_{mode}_*.json"))]
    return {"seconds_median": statistics.median(t for r in runs for t in r["seconds"]),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}


width = max(len(infer_case), len(train_case)) + 4
print(f"{title}, {threads} threads, {rounds} rounds taking turns, median of all timed runs")
print(f"{'case':<{width}}{'tessera s':>11}{peer + ' s':>12}{'speed-up':>10}{'MiB ours':>10}"
      f"{'MiB peer':>10}")
for mode, name in [("infer", infer_case), ("train", train_case)]:
    o, p = load("ours", mode), load("peer", mode)
    print(f"{name:<{width}}{o['seconds_median']:>11.3f}{p['seconds_median']:>12.3f}"
          f"{p['seconds_median'] / o['seconds_median']:>9.2f}x{o['peak_rss_mib']:>10.0f}"
          f"{p['peak_rss_mib']:>10.0f}")
print(f"speed-up: {peer}'s time / ours (>1: we are faster)")
