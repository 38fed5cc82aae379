"""Two-sample statistics behind the drift monitor (pure numpy/scipy).

All permutation statistics share one split matrix ``member`` (N, P + 1) of 0/1: column j marks the
rows that play the first sample ("x") under permutation j, column 0 is the observed split. Every
statistic is then a handful of matrix products over all permutations at once.
"""

from __future__ import annotations

import numpy as np


def permutation_splits(m: int, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """(m + n, permutations + 1) membership of the first sample; column 0 is the observed split."""
    member = np.zeros((m + n, permutations + 1))
    member[:m, 0] = 1.0
    if permutations:
        picks = np.argsort(rng.random((permutations, m + n)), axis=1)[:, :m]  # (P, m) random x-sets
        member[picks, np.arange(1, permutations + 1)[:, None]] = 1.0
    return member


def permutation_p(stats: np.ndarray) -> float:
    """One-sided permutation p-value of stats[0] among stats[1:] (counting the observed one)."""
    return (1.0 + float((stats[1:] >= stats[0]).sum())) / float(len(stats))


def mmd2_stats(z: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Unbiased RBF MMD^2 per split; bandwidth by the median heuristic, k = exp(-|a-b|^2 / median|a-b|^2)."""
    z = z.astype(np.float64)  # (N, d)
    sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)  # (N, N)
    off = d2[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.median(off)) or float(off.mean()) or 1.0
    k = np.exp(-d2 / bandwidth)
    m = member.sum(axis=0)  # (P + 1,) all equal
    n = len(z) - m
    km = k @ member  # (N, P + 1)
    row = k.sum(axis=1)
    total = float(row.sum())
    xx = np.einsum("ij,ij->j", member, km)  # sum of k over x-x pairs, diagonal included
    xy = member.T @ row - xx
    yy = total - xx - 2.0 * xy
    # The RBF diagonal is exactly 1: drop it from the within-sample sums for the unbiased estimator.
    return (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)


def mmd2_permutation(
    x: np.ndarray, y: np.ndarray, *, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Unbiased RBF MMD^2 of x (m, d) vs y (n, d) and its permutation p-value."""
    stats = mmd2_stats(np.vstack([x, y]), permutation_splits(len(x), len(y), permutations, rng))
    return float(stats[0]), permutation_p(stats)


def centroid_shift_stats(z: np.ndarray, member: np.ndarray) -> np.ndarray:
    """1 - cos between the mean unit vectors of the two samples, per split."""
    u = unit_rows(z)  # (N, d)
    m = member.sum(axis=0)
    sx = u.T @ member  # (d, P + 1) sums over x
    sy = u.sum(axis=0)[:, None] - sx
    cx, cy = sx / m, sy / (len(z) - m)
    den = np.maximum(np.linalg.norm(cx, axis=0) * np.linalg.norm(cy, axis=0), 1e-300)
    return 1.0 - np.einsum("ij,ij->j", cx, cy) / den


def log2_variance_ratio_stats(z: np.ndarray, member: np.ndarray) -> np.ndarray:
    """|log2(total variance of y / total variance of x)| per split (total variance: trace of covariance)."""
    z = z.astype(np.float64)
    m = member.sum(axis=0)
    n = len(z) - m
    sq = np.einsum("ij,ij->i", z, z)
    sx = z.T @ member  # (d, P + 1)
    sy = z.sum(axis=0)[:, None] - sx
    var_x = (member.T @ sq) / m - np.einsum("ij,ij->j", sx, sx) / m**2
    var_y = (sq.sum() - member.T @ sq) / n - np.einsum("ij,ij->j", sy, sy) / n**2
    return np.abs(np.log2(np.maximum(var_y, 1e-300) / np.maximum(var_x, 1e-300)))


def domain_classifier(
    x: np.ndarray, y: np.ndarray, *, folds: int, regularization: float, seed: int
) -> tuple[float, float]:
    """Out-of-fold ROC AUC of an L2 logistic regression separating x (label 0) from y (label 1), and an
    approximate one-sided p-value (Mann-Whitney on the out-of-fold scores).

    scikit-learn: standardised features and ``LogisticRegression(C=regularization)`` refitted on each
    fold of a shuffled ``StratifiedKFold``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = np.vstack([x, y]).astype(np.float64)  # (m + n, d)
    labels = np.r_[np.zeros(len(x)), np.ones(len(y))]
    k = max(2, min(folds, len(x), len(y)))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=1000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, feats, labels, cv=cv, method="decision_function")
    return auc_mann_whitney(labels, scores)


def auc_mann_whitney(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC AUC (ties count one half) and the one-sided p-value of AUC > 0.5 (normal approximation)."""
    from scipy.stats import mannwhitneyu

    pos = labels == 1
    res = mannwhitneyu(scores[pos], scores[~pos], alternative="greater", method="asymptotic")
    return float(res.statistic) / (int(pos.sum()) * int((~pos).sum())), float(res.pvalue)


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic D and two-sided p-value."""
    from scipy.stats import ks_2samp as _ks

    r = _ks(a, b)
    return float(r.statistic), float(r.pvalue)


def unit_rows(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / den if den > 0 else 0.0
