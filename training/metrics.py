"""Ranking, delivery and embedding metrics, all written for hand-checkable tiny cases.

Ties are broken by a fresh random key per (user, item), never by id or position: on
ml-100k ids correlate with popularity, and a constant scorer whose ties fell to ascending
id looked like a strong model. Recall divides by all of a user's relevant items (RecBole's
convention); NDCG's ideal DCG uses min(#relevant, K) hits.
"""

from __future__ import annotations

import numpy as np


def topk_random_ties(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Column indices of the ``k`` best scores per row; equal scores in random order."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    k = min(k, s.shape[1])
    noise = rng.random(s.shape)
    order = np.lexsort((noise, -s), axis=1)  # last key is the primary one
    return order[:, :k]


def ranking_metrics(topk: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...]
                    ) -> dict[str, float]:
    """Mean Recall/NDCG/HitRate/Precision@k over rows with at least one relevant item.

    ``topk``: (users, K) candidate column indices, best first; ``relevant``: (users, items) bool.
    """
    n_rel = relevant.sum(1)
    rows = n_rel > 0
    hits = np.take_along_axis(relevant, topk, axis=1)[rows].astype(np.float64)
    n_rel = n_rel[rows].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, topk.shape[1] + 2))
    out: dict[str, float] = {}
    if not rows.any():
        return {f"{m}@{k}": float("nan") for k in ks
                for m in ("recall", "ndcg", "hit", "precision")}
    for k in ks:
        h = hits[:, :k]
        found = h.sum(1)
        dcg = (h * discounts[: h.shape[1]]).sum(1)
        ideal = np.cumsum(discounts)[np.minimum(n_rel, k).astype(int) - 1]
        out[f"recall@{k}"] = float(np.mean(found / n_rel))
        out[f"ndcg@{k}"] = float(np.mean(dcg / ideal))
        out[f"hit@{k}"] = float(np.mean(found > 0))
        out[f"precision@{k}"] = float(np.mean(found / k))
    return out


def long_tail_mask(popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """True for items outside the ``head_share`` most popular (ties by random-free rank)."""
    n = len(popularity)
    n_head = int(np.ceil(head_share * n))
    order = np.argsort(-popularity, kind="stable")
    tail = np.ones(n, dtype=bool)
    tail[order[:n_head]] = False
    return tail


def delivery_metrics(delivered: np.ndarray, relevant: np.ndarray, popularity: np.ndarray
                     ) -> dict[str, float]:
    """What pushing new items to users did: reach, precision, coverage, tail, bias.

    Reach is read two ways: ``users_reached_per_item`` (how many listeners each new item
    got, an item-side figure a per-song cap bounds) and ``users_reached`` (how many distinct
    listeners got at least one new item, the user-side figure an online A/B counts per arm).

    ``delivered``/``relevant``: (users, items) bool; ``popularity``: realised attention per
    item in the evaluated period (known only after the fact; used for judging, never scoring).
    ``popularity_lift`` is the delivery-weighted mean popularity over the plain mean: 1.0 means
    no popularity bias, above 1 favours the head.
    """
    n_del = int(delivered.sum())
    per_item = delivered.sum(0)
    tail = long_tail_mask(popularity)
    mean_pop = float(popularity.mean()) if len(popularity) else 0.0
    return {
        "deliveries": float(n_del),
        "users_reached_per_item": float(per_item.mean()) if len(per_item) else 0.0,
        "users_reached": float(delivered.any(1).sum()),
        "delivery_precision": float((delivered & relevant).sum() / n_del) if n_del else 0.0,
        "delivery_recall": float((delivered & relevant).sum() / max(1, relevant.sum())),
        "item_coverage": float((per_item > 0).mean()) if len(per_item) else 0.0,
        "long_tail_share": float(per_item[tail].sum() / n_del) if n_del else 0.0,
        "popularity_lift": (float(per_item @ popularity / n_del / mean_pop)
                            if n_del and mean_pop > 0 else 0.0),
    }


def knn_purity(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each item's k nearest neighbours (cosine) that carry its label."""
    v = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argpartition(-sims, kth=min(k, len(v) - 1) - 1, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def silhouette(vectors: np.ndarray, labels: np.ndarray, seed: int = 0,
               sample: int = 2000) -> float:
    """Cosine silhouette of vectors by label (sampled for speed)."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    n = min(sample, len(vectors))
    return float(silhouette_score(vectors, labels, metric="cosine", sample_size=n,
                                  random_state=seed))
