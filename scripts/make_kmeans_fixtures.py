"""Reference k-means runs for Tessera's tests, from scikit-learn run outside the project.

    python scripts/make_kmeans_fixtures.py OUT.safetensors

Needs numpy, scikit-learn and safetensors from PyPI. Points: 3,000 float32 rows of 24 features
around 10 random centres (unequal spreads). Level 1: `KMeans(k=6, init=the first 6 rows,
n_init=1, algorithm="lloyd")` on all points; level 2: the same with k=4 on the points of each
level-1 cluster, initialised with that cluster's first 4 points (in row order). Stored: the
points, and per run its labels and inertia.
"""

import sys

import numpy as np
from safetensors.numpy import save_file
from sklearn.cluster import KMeans

rng = np.random.default_rng(7)
centres = rng.normal(0, 3, (10, 24))
which = rng.integers(0, 10, 3000)
spread = rng.uniform(0.5, 2.0, 10)[which][:, None]
x = (centres[which] + rng.normal(0, 1, (3000, 24)) * spread).astype(np.float32)

out = {"x": x}
km = KMeans(n_clusters=6, init=x[:6], n_init=1, algorithm="lloyd", max_iter=300, tol=1e-4).fit(x)
out["level1_labels"] = km.labels_.astype(np.int64)
out["level1_inertia"] = np.array([km.inertia_], np.float64)
print("level 1 inertia", km.inertia_, "iterations", km.n_iter_)
for c in range(6):
    sub = x[km.labels_ == c]
    k2 = KMeans(n_clusters=4, init=sub[:4], n_init=1, algorithm="lloyd", max_iter=300, tol=1e-4)
    k2.fit(sub)
    out[f"level2_{c}_labels"] = k2.labels_.astype(np.int64)
    out[f"level2_{c}_inertia"] = np.array([k2.inertia_], np.float64)
    print(" cluster", c, len(sub), "inertia", k2.inertia_, "iterations", k2.n_iter_)
save_file(out, sys.argv[1])
