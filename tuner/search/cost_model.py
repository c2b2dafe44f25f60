"""A learned cost model of a kernel's configs: log-latency predicted from the config (and the problem
size), numpy only (the GPU machine's environment has numpy but no scikit-learn).

Features are taken by value, not by position in a domain: a power-of-two tile as its log2, an
integer as itself, a boolean as 0/1, a string choice one-hot. The same kernel at another shape,
whose domains may differ (a softmax BLOCK follows the row length), then shares the features,
and a model fit on other recorded spaces of the kernel transfers (with the problem's sizes, as
log2, among the features).

The model is an ensemble of two learners that fail differently: ridge regressions on the
features and their pairwise products (the smooth trends: bigger tiles, more warps), each fit on a
bootstrap resample, whose spread is the model's uncertainty; and a distance-weighted k-nearest-
neighbours regression (the local structure a quadratic misses: the one tile that fits). Failures
are learned as "slower than the slowest correct config" (a soft penalty), not as the search's
penalty value, which would swamp a regression of log-latencies.
"""
from __future__ import annotations

import math

import numpy as np

RIDGE_ALPHA = 1.0
BOOTSTRAPS = 8
NEIGHBOURS = 5
FAIL_MARGIN = 0.3  # log10: a failed config is learned as twice as slow as the slowest correct one


def _is_pow2_list(values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and not v & (v - 1) for v in values)


class Featurizer:
    """Configs (and problems) -> feature vectors, by value (module docstring). `params`: the
    space's parameter descriptions (Space.describe form: name, kind, values)."""

    def __init__(self, params: list[dict], problems: list[dict] = ()):
        self.columns: list[tuple] = []  # (param, how, value for one-hot)
        for p in params:
            kind, values = p["kind"], list(p["values"])
            if kind == "Const":
                continue
            if kind == "Pow2" or (kind == "Choice" and _is_pow2_list(values)):
                self.columns.append((p["name"], "log2", None))
            elif kind == "IntRange" or all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           for v in values):
                self.columns.append((p["name"], "value", None))
            elif all(isinstance(v, bool) for v in values):
                self.columns.append((p["name"], "bool", None))
            else:
                self.columns += [(p["name"], "onehot", v) for v in values]
        self.problem_columns = sorted({k for pr in problems for k, v in pr.items()
                                       if isinstance(v, int) and not isinstance(v, bool)})

    def vector(self, config: dict, problem: dict | None = None) -> list[float]:
        out = []
        for name, how, value in self.columns:
            v = config.get(name)
            if how == "log2":
                out.append(math.log2(v) if isinstance(v, (int, float)) and v > 0 else 0.0)
            elif how == "value":
                out.append(float(v) if isinstance(v, (int, float)) else 0.0)
            elif how == "bool":
                out.append(1.0 if v else 0.0)
            else:
                out.append(1.0 if v == value else 0.0)
        for k in self.problem_columns:
            v = (problem or {}).get(k)
            out.append(math.log2(v + 1) if isinstance(v, (int, float)) and v >= 0 else 0.0)
        return out

    def matrix(self, configs: list[dict], problem: dict | None = None) -> np.ndarray:
        width = len(self.columns) + len(self.problem_columns)
        return np.array([self.vector(c, problem) for c in configs], dtype=float).reshape(len(configs), width)


def targets(values: list[float], failed: list[bool]) -> np.ndarray:
    """What the model learns: log-latencies centred on their median (scale-free across shapes), a
    failure as FAIL_MARGIN slower than the slowest correct config."""
    ok = np.array([v for v, f in zip(values, failed) if not f], dtype=float)
    if not len(ok):
        return np.zeros(len(values))
    worst, mid = ok.max(), float(np.median(ok))
    return np.array([(worst + FAIL_MARGIN if f else v) - mid for v, f in zip(values, failed)], dtype=float)


def _quadratic(z: np.ndarray) -> np.ndarray:
    n, d = z.shape
    iu = np.triu_indices(d)
    pairs = (z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]]
    return np.hstack([np.ones((n, 1)), z, pairs])


class CostModel:
    """Ridge ensemble + k-nearest neighbours over standardized features (module docstring)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.fitted = False

    def fit(self, x: np.ndarray, y: np.ndarray) -> "CostModel":
        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0)
        # A feature constant in the data (a prior of one other shape: its problem sizes) teaches
        # nothing: its scale stays 1 (not a float residue's 1e-16), and the neighbours ignore it,
        # else a new shape would be equally far from every recorded config.
        self.varies = self.scale > 1e-9
        self.scale[~self.varies] = 1.0
        self.x = (x - self.mean) / self.scale
        self.y = y
        q = _quadratic(self.x)
        eye = RIDGE_ALPHA * np.eye(q.shape[1])
        eye[0, 0] = 0.0  # the intercept is not shrunk
        self.weights = []
        for _ in range(BOOTSTRAPS):
            idx = self.rng.integers(0, len(y), len(y))
            a, b = q[idx], y[idx]
            self.weights.append(np.linalg.solve(a.T @ a + eye, a.T @ b))
        self.weights = np.array(self.weights)
        self.fitted = True
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted centred log-latency, uncertainty) per row."""
        z = (x - self.mean) / self.scale
        ridge = _quadratic(z) @ self.weights.T  # rows x bootstraps
        k = min(NEIGHBOURS, len(self.y))
        # squared distances by |a|^2 + |b|^2 - 2ab: a pool x training matrix, not a 3-D array
        a, b = z[:, self.varies], self.x[:, self.varies]
        d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.sqrt(np.take_along_axis(d2, near, axis=1)) + 1e-3)
        knn = (w * self.y[near]).sum(axis=1) / w.sum(axis=1)
        return 0.5 * ridge.mean(axis=1) + 0.5 * knn, ridge.std(axis=1)
