"""The served path scored as delivered: the worker's own candidate code over a trained model.

The harness in :mod:`training.evaluate` ranks every new item for every user. The worker does
something else: for each new song it finds listeners by I2I2U (similar known songs -> their
engaged listeners) and U2I (users whose vector beats their own boundary), keeps at most
``max_candidates_per_song`` of them, and delivers those. This module runs exactly that step
(:func:`streams.pipeline.score_song`, on a real Qdrant Edge store loaded the way the worker
loads it: known songs with their newest listeners, users with vector and boundary) for
every validation and cold-test item, and scores the result as a delivery:

* reach (users reached per new song), delivery precision and recall, per policy:
  ``i2i2u`` (the seed system's first path alone) and ``i2i2u+u2i`` (plus U2I with boundary);
* the two paths' scores live on different scales (a mean of similarity x engagement vs a
  cosine), so :class:`Calibrator` maps a candidate's evidence to P(relevant) by logistic
  regression fitted on the *validation* items only; ``calibrated`` ranks and caps by it;
  the rows ``...+prior`` add the new song's predicted popularity (the prior a worker serves,
  ``training/popularity.py``) as a fifth input;
* the seed's offline headline: reach of ``i2i2u+u2i`` against ``i2i2u`` at equal delivery
  precision (a threshold on the calibrated probability, chosen on validation, makes the
  larger policy as precise as the smaller one there), read three ways: listeners per new
  song (item side, bounded by the per-song cap), distinct listeners who got any new song
  (user side: what an online A/B counts when it says "users reached"), and distinct
  listeners per window of ``WINDOWS`` songs in upload order (an A/B sees the songs of its
  window, not a whole cold catalogue, which reaches nearly everyone);
* per-user ranking of the delivered candidates (Recall@20 over the cold items, ties and
  undelivered items in random order), to compare with the harness's full ranking.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from coldstream_data.base import ACTIONS, Dataset
from encoders.artifacts import DeliverySpec
from streams.ids import song_point_id, user_point_id
from streams.pipeline import (
    BASE_EVIDENCE,
    EVIDENCE,
    SONG_INDEXES,
    USER_INDEXES,
    Collections,
    PipelineConfig,
    Scored,
    deliverable,
    evidence,
    pack_engagers,
    score_song,
    update_engagers,
)
from streams.stores import EdgeStore, Point, VectorStore

from .metrics import delivery_metrics, ranking_metrics, topk_random_ties
from .split import Split, first_seen

POLICIES = ("i2i2u", "i2i2u+u2i")


class _Play(NamedTuple):
    """The three fields of an interaction that :func:`update_engagers` reads."""

    user_id: str
    action: str
    ts: int


def newest_listeners(data: Dataset, split: Split, limit: int) -> dict[int, list[list[Any]]]:
    """Each training item's listener list as the engagement agent would hold it after
    replaying the training interactions in time order (same rule, same limit)."""
    inter = split.train.sorted_by_time()
    lists: dict[int, list[list[Any]]] = {}
    for u, i, a, ts in zip(inter.user, inter.item, inter.action, inter.ts, strict=True):
        play = _Play(str(data.user_ids[u]), ACTIONS[a], int(ts))
        lists[int(i)] = update_engagers(lists.get(int(i), []), play, limit)  # type: ignore[arg-type]
    return lists


def load_store(store: VectorStore, data: Dataset, split: Split, items: np.ndarray,
               users: np.ndarray, bounds: np.ndarray, cfg: PipelineConfig) -> Collections:
    """Known songs (with listeners) and every trained user, as the worker's collections."""
    cols = Collections.for_version("offline")
    dim = items.shape[1]
    store.ensure_collection(cols.songs, dim, SONG_INDEXES)
    store.ensure_collection(cols.users, dim, USER_INDEXES)
    ids = data.catalogue["song_id"].tolist()
    titles = data.catalogue["title"].tolist()
    listeners = newest_listeners(data, split, cfg.engagers_per_song)
    songs = [Point(song_point_id(ids[i]), items[i], {
        "song_id": ids[i], "title": titles[i], "is_cold": 0 if eng else 1,
        "engagers": pack_engagers(eng)}) for i, eng in listeners.items()]
    trained = np.unique(split.train.user)
    people = [Point(user_point_id(str(data.user_ids[u])), users[u], {
        "user_id": str(data.user_ids[u]), "boundary": float(bounds[u])}) for u in trained]
    for batch in (songs, people):
        for s in range(0, len(batch), 512):
            store.upsert(cols.songs if batch is songs else cols.users, batch[s: s + 512])
    return cols


def score_new_items(store: VectorStore, cols: Collections, data: Dataset,
                    new_items: np.ndarray, items: np.ndarray,
                    cfg: PipelineConfig) -> list[dict[str, Scored]]:
    """The worker's scoring step for each new item, uncapped (capping is the policy's)."""
    ids = data.catalogue["song_id"].tolist()
    return [score_song(store, cols, ids[i], items[i], cfg) for i in new_items]


def as_policy(s: Scored, policy: str) -> Scored:
    """The candidate as a worker serving ``policy`` sees it: an I2I2U-only arm keeps no U2I
    evidence (the same switch :func:`streams.pipeline.apply_arms` sets)."""
    return replace(s, u2i_allowed=False) if policy == "i2i2u" else s


@dataclass
class Calibrator:
    """P(relevant | evidence), logistic regression fitted on validation candidates."""

    coef: np.ndarray = field(default_factory=lambda: np.zeros(4))
    intercept: float = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> Calibrator:
        from sklearn.linear_model import LogisticRegression

        if len(np.unique(y)) < 2:
            return self
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
        self.coef, self.intercept = lr.coef_[0], float(lr.intercept_[0])
        return self

    def p(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

    def spec(self, fitted_on: str = "") -> DeliverySpec:
        """What the worker reads from the manifest (``streams.pipeline.calibrated``)."""
        return DeliverySpec(features=list(EVIDENCE[:len(self.coef)]),
                            coef=[float(c) for c in self.coef],
                            intercept=float(self.intercept), fitted_on=fitted_on)


def average_delivery(specs: Sequence[DeliverySpec], fitted_on: str = "") -> DeliverySpec:
    """One calibration from several seeds' validation fits (the published model is trained
    on all data, so no split of its own is left to fit on)."""
    return DeliverySpec(features=list(specs[0].features),
                        coef=np.mean([sp.coef for sp in specs], axis=0).round(6).tolist(),
                        intercept=round(float(np.mean([sp.intercept for sp in specs])), 6),
                        fitted_on=fitted_on)


def score_item_sets(data: Dataset, split: Split, items: np.ndarray, users: np.ndarray,
                    bounds: np.ndarray, item_sets: Sequence[np.ndarray],
                    cfg: PipelineConfig, workdir: Path | None = None
                    ) -> list[list[dict[str, Scored]]]:
    """A throwaway store loaded as the worker's, and the worker's scoring of each set of new
    items in it."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = EdgeStore(Path(tmp) / "qdrant")
        try:
            cols = load_store(store, data, split, items, users, bounds, cfg)
            return [score_new_items(store, cols, data, new, items, cfg) for new in item_sets]
        finally:
            store.close()


def calibrate_on_validation(data: Dataset, split: Split, items: np.ndarray, users: np.ndarray,
                            bounds: np.ndarray, cfg: PipelineConfig | None = None,
                            workdir: Path | None = None,
                            prior: np.ndarray | None = None) -> Calibrator:
    """Only the validation half of :func:`served_metrics`: the cold test is never loaded.
    With ``prior`` (per item, z-scored) it is the calibration's fifth input."""
    [val] = score_item_sets(data, split, items, users, bounds, [split.val_items],
                            cfg or PipelineConfig(), workdir)
    vb = flatten(data, val, "i2i2u+u2i")
    if prior is not None:
        vb = with_prior(vb, prior[split.val_items])
    return Calibrator(coef=np.zeros(vb.x.shape[1])).fit(
        vb.x, labels(vb, relevance(data, split, split.val_items, "val")))


@dataclass(frozen=True)
class Candidates:
    """All eligible (new item, user) candidates of a set of new items, flattened."""

    item: np.ndarray  # column of the new item in ``items``
    user: np.ndarray  # user index
    raw: np.ndarray  # the worker's score (Scored.score for i2i2u+u2i, i2i2u strength alone)
    x: np.ndarray  # (n, 4) evidence


def flatten(data: Dataset, scored: Sequence[dict[str, Scored]], policy: str) -> Candidates:
    index = {str(u): k for k, u in enumerate(data.user_ids)}
    seen = ((col, as_policy(s, policy)) for col, per_song in enumerate(scored)
            for s in per_song.values())
    rows = [(col, index[s.user_id], s.score, evidence(s)[:len(BASE_EVIDENCE)])
            for col, s in seen if deliverable(s)]  # the prior is joined by item: with_prior
    if not rows:
        return Candidates(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, float)),
                          np.zeros((0, 4)))
    col, user, raw, x = zip(*rows, strict=True)
    return Candidates(np.array(col), np.array(user), np.array(raw, dtype=float), np.stack(x))


def deliver(c: Candidates, order_by: np.ndarray, n_items: int, cap: int,
            threshold: float = -np.inf) -> np.ndarray:
    """Boolean mask over ``c``: per new item, the ``cap`` best by ``order_by`` at or above
    ``threshold`` (ties by user index, as the worker breaks them by user id)."""
    order = np.lexsort((c.user, -order_by, c.item))
    ok = order_by[order] >= threshold
    seen = np.cumsum(ok)  # eligible candidates so far, over all items
    first = np.searchsorted(c.item[order], np.arange(n_items))  # each item's first row
    before = np.concatenate([[0], seen])[first]  # eligible rows of earlier items
    rank = seen - before[c.item[order]]  # 1-based rank among the item's eligible rows
    keep = np.zeros(len(order), dtype=bool)
    keep[order] = ok & (rank <= cap)
    return keep


def relevance(data: Dataset, split: Split, new_items: np.ndarray, segment: str) -> np.ndarray:
    """(users, new items) bool: positives of the held-out segment."""
    target = split.cold_test if segment == "cold" else split.val
    pos = target.subset(target.positive())
    col = np.full(data.n_items, -1, dtype=np.int64)
    col[new_items] = np.arange(len(new_items))
    rel = np.zeros((data.n_users, len(new_items)), dtype=bool)
    ok = col[pos.item] >= 0
    rel[pos.user[ok], col[pos.item[ok]]] = True
    return rel


def labels(c: Candidates, rel: np.ndarray) -> np.ndarray:
    return rel[c.user, c.item]


def delivery(c: Candidates, keep: np.ndarray, rel: np.ndarray,
             attention: np.ndarray) -> dict[str, float]:
    mask = np.zeros_like(rel)
    mask[c.user[keep], c.item[keep]] = True
    return delivery_metrics(mask, rel, attention)


#: Songs per upload-order window for the windowed user-side reach.
WINDOWS = (10, 50)


def reached_per_window(c: Candidates, keep: np.ndarray, upload_rank: np.ndarray,
                       size: int) -> float:
    """Mean over consecutive windows of ``size`` new items (by ``upload_rank``, each
    item's place in upload order) of the distinct users delivered any of them; a last,
    partial window counts if it is at least half full."""
    users = int(c.user.max(initial=0)) + 1
    window = upload_rank[c.item[keep]] // size
    pairs = np.unique(window * users + c.user[keep])  # each (window, user) once
    counts = np.bincount(pairs // users, minlength=-(-len(upload_rank) // size))
    full = len(upload_rank) // size + (len(upload_rank) % size >= size / 2)
    return float(counts[:max(1, full)].mean())


def per_user_recall(c: Candidates, keep: np.ndarray, order_by: np.ndarray, rel: np.ndarray,
                    users: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Each user's delivered new items ranked by score (the rest tie below), as a ranking."""
    scores = np.full(rel.shape, -np.inf)
    scores[c.user[keep], c.item[keep]] = order_by[keep]
    topk = topk_random_ties(scores[users], 20, np.random.default_rng(seed))
    return ranking_metrics(topk, rel[users], (20,))


def threshold_for_precision(c: Candidates, p: np.ndarray, rel: np.ndarray, n_items: int,
                            cap: int, target: float) -> float:
    """The lowest calibrated-probability cut whose capped delivery is at least ``target``
    precise (on the set given: validation items)."""
    y = labels(c, rel)
    for t in np.unique(np.quantile(p, np.linspace(0, 0.99, 100))) if len(p) else []:
        keep = deliver(c, p, n_items, cap, t)
        if keep.any() and y[keep].mean() >= target:
            return float(t)
    return float(np.max(p)) if len(p) else 0.0


@dataclass
class ServedReport:
    """Everything :func:`served_metrics` measured on one split."""

    rows: dict[str, dict[str, float]]
    calibrator: Calibrator
    cut: float  # the calibrated-probability threshold chosen on validation
    #: Reach of i2i2u+u2i over i2i2u at equal precision, every count and variant
    #: (:func:`_lifts`; ``LIFTS`` names them).
    lifts: dict[str, float] = field(default_factory=dict)
    #: With a prior (:func:`served_metrics`): its calibration (its lifts are in ``lifts``).
    prior_calibrator: Calibrator | None = None

    def as_dict(self) -> dict[str, Any]:
        def described(c: Calibrator, features: list[str]) -> dict[str, Any]:
            return {"coef": [round(float(v), 4) for v in c.coef],
                    "intercept": round(c.intercept, 4), "features": features}

        doc = {"rows": self.rows, "equal_precision_cut": round(self.cut, 6),
               "calibration": described(self.calibrator, list(BASE_EVIDENCE))}
        if self.prior_calibrator is not None:
            doc["calibration_with_prior"] = described(self.prior_calibrator, list(EVIDENCE))
        return doc | self.lifts


def served_metrics(data: Dataset, split: Split, items: np.ndarray, users: np.ndarray,
                   bounds: np.ndarray, cfg: PipelineConfig | None = None,
                   workdir: Path | None = None, prior: np.ndarray | None = None
                   ) -> ServedReport:
    """Load the store, score validation and cold items with the worker's code, calibrate on
    validation, and measure each policy's delivery on the cold items. With ``prior`` (each
    item's predicted popularity, z-scored, fitted without the held-out items), the rows
    ``...+prior`` calibrate with it as a fifth input, as a worker does whose model carries a
    prior."""
    cfg = cfg or PipelineConfig()
    val, cold = score_item_sets(data, split, items, users, bounds,
                                [split.val_items, split.cold_items], cfg, workdir)
    return _measure(data, split, val, cold, cfg.max_candidates_per_song, prior)


def with_prior(c: Candidates, prior: np.ndarray) -> Candidates:
    """``c`` with its new item's predicted popularity (``prior``, by column) as a fifth
    input."""
    return Candidates(c.item, c.user, c.raw, np.c_[c.x, prior[c.item]])


def _measure(data: Dataset, split: Split, val: list[dict[str, Scored]],
             cold: list[dict[str, Scored]], cap: int,
             prior: np.ndarray | None = None) -> ServedReport:
    rel_val = relevance(data, split, split.val_items, "val")
    rel = relevance(data, split, split.cold_items, "cold")
    vb, va = flatten(data, val, "i2i2u+u2i"), flatten(data, val, "i2i2u")
    calib = Calibrator().fit(vb.x, labels(vb, rel_val))
    attention = np.bincount(np.searchsorted(split.cold_items, split.cold_test.item),
                            minlength=len(split.cold_items))
    users = np.unique(split.train.user)
    users = users[rel[users].any(1)]
    n_val, n = len(split.val_items), len(split.cold_items)
    upload_rank = np.argsort(np.argsort(first_seen(data)[split.cold_items], kind="stable"))

    def row(c: Candidates, order: np.ndarray, cap: int, t: float = -np.inf) -> dict:
        keep = deliver(c, order, n, cap, t)
        return {**delivery(c, keep, rel, attention),
                **{window_key(w): reached_per_window(c, keep, upload_rank, w)
                   for w in WINDOWS},
                **per_user_recall(c, keep, order, rel, users)}

    def equal_precision_cut(cap: int, calib: Calibrator, vb: Candidates) -> float:
        """On validation: B as precise as A there."""
        target = _precision(va, deliver(va, va.raw, n_val, cap), rel_val)
        return threshold_for_precision(vb, calib.p(vb.x), rel_val, n_val, cap, target)

    rows: dict[str, dict[str, float]] = {}
    by_policy = {policy: flatten(data, cold, policy) for policy in POLICIES}
    for policy, c in by_policy.items():
        rows[f"{policy}:raw"] = row(c, c.raw, cap)
        rows[f"{policy}:calibrated"] = row(c, calib.p(c.x), cap)
    cut, uncapped = equal_precision_cut(cap, calib, vb), data.n_users
    ca, cb = by_policy["i2i2u"], by_policy["i2i2u+u2i"]
    rows["i2i2u+u2i:equal-precision"] = row(cb, calib.p(cb.x), cap, cut)
    rows["i2i2u:raw:uncapped"] = row(ca, ca.raw, uncapped)
    rows["i2i2u+u2i:equal-precision:uncapped"] = row(
        cb, calib.p(cb.x), uncapped, equal_precision_cut(uncapped, calib, vb))
    report = ServedReport(rows, calib, cut, _lifts(rows))
    if prior is not None:  # the same, calibrated with the prior as a fifth input
        vbp, cbp = with_prior(vb, prior[split.val_items]), with_prior(cb, prior[split.cold_items])
        report.prior_calibrator = Calibrator(coef=np.zeros(5)).fit(vbp.x, labels(vbp, rel_val))
        p = report.prior_calibrator.p(cbp.x)
        rows["i2i2u+u2i:calibrated+prior"] = row(cbp, p, cap)
        for name, limit in (("", cap), (":uncapped", uncapped)):
            rows[f"i2i2u+u2i:equal-precision+prior{name}"] = row(
                cbp, p, limit, equal_precision_cut(limit, report.prior_calibrator, vbp))
        report.lifts |= _lifts(rows, "+prior")
    return report


def window_key(size: int) -> str:
    return f"users_reached_per_{size}_songs"


#: The user-side counts of reach: all cold items at once, then per upload-order window.
USER_COUNTS = ("users_reached", *(window_key(w) for w in WINDOWS))
#: Each count of reach by the name its lift is reported under (listeners per item: "reach").
REACH_COUNTS = {"reach": "users_reached_per_item", **{c: c for c in USER_COUNTS}}


def _lifts(rows: dict[str, dict[str, float]], variant: str = "") -> dict[str, float]:
    """B's reach over A's, minus one, for every count, capped and uncapped; ``variant``
    "+prior": B calibrated with the prior."""
    tag = "_with_prior" if variant else ""
    return {f"lift_{name}_equal_precision{tag}{suffix.replace(':', '_')}":
            _lift(rows, suffix, variant, by)
            for name, by in REACH_COUNTS.items() for suffix in ("", ":uncapped")}


def _lift(rows: dict[str, dict[str, float]], suffix: str, variant: str, by: str) -> float:
    base = rows[f"i2i2u:raw{suffix}"][by]
    b = rows[f"i2i2u+u2i:equal-precision{variant}{suffix}"][by]
    return float(b / base - 1) if base else 0.0


def _precision(c: Candidates, keep: np.ndarray, rel: np.ndarray) -> float:
    y = labels(c, rel)
    return float(y[keep].mean()) if keep.any() else 0.0


def _stat(values: Sequence[float]) -> dict[str, float]:
    """Mean, sd (ddof 1; NaN for one seed) and count, as :func:`training.protocol.summarise`."""
    x = np.asarray(values, dtype=float)
    return {"mean": float(x.mean()), "n": len(x),
            "sd": float(x.std(ddof=1)) if len(x) > 1 else float("nan")}


def served_seed(data: Dataset, epochs: int | None, s: int) -> dict[str, Any]:
    """One seed: the full model trained on its split (selected on validation), then the
    served path scored on that split's cold items."""
    from .evaluate import evaluate_segment
    from .popularity import pick_prior, prior_features
    from .recommender import make_variant
    from .selection import fit_on_view, validation_view
    from .split import cold_item_split

    t0 = time.perf_counter()
    split = cold_item_split(data, seed=s)
    model = make_variant("full", epochs=epochs, seed=s)
    train, view = split.train_dataset(data), validation_view(split)
    fit_on_view(model, train, view)
    x = prior_features(train, model.result)  # the prior a worker serves with this model
    target, prior = pick_prior(x, train, view)
    rep = served_metrics(data, split, model.items, model.users, model.bounds, prior=prior)
    full = evaluate_segment(data, split, model, "cold", seed=s)  # the harness's ranking
    rep.rows["model:full-ranking"] = {**full["delivery_gated"], **{
        k: v for k, v in full.items() if "@" in k}}
    return {"seed": int(s), **rep.as_dict(), "prior_target": target,
            "wall_s": round(time.perf_counter() - t0, 1)}


def served_over_seeds(data: Dataset, seeds: Sequence[int], epochs: int | None = None,
                      progress: bool = False, jobs: int = 1) -> dict[str, Any]:
    """:func:`served_seed` for every seed, ``jobs`` at a time; mean ± sd of every row."""
    from .parallel import map_seeds

    runs = map_seeds(partial(served_seed, data, epochs), seeds, jobs, progress=progress,
                     desc="served path")
    return served_doc(data.name, runs)


def served_doc(dataset: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The report over :func:`served_seed` runs (in seed order): mean ± sd of every row and
    of every reach lift."""
    summary: dict[str, Any] = {
        key: {m: _stat([r["rows"][key][m] for r in runs]) for m in metrics}
        for key, metrics in runs[0]["rows"].items()}
    summary["wall_s"] = {"mean": float(np.mean([r["wall_s"] for r in runs]))}
    doc = {"dataset": dataset, "seeds": [r["seed"] for r in runs], "runs": runs,
           "summary": summary}
    for key, _ in LIFTS:
        if key in runs[0]:
            doc[key] = _stat([r[key] for r in runs])
    return doc


TABLE_METRICS = ("users_reached_per_item", *USER_COUNTS, "delivery_precision",
                 "delivery_recall", "recall@20", "ndcg@20")
#: Every reach comparison a report may carry, and how the table words it.
LIFTS = tuple((f"lift_{count}_equal_precision{variant}", f"{what}, {how}")
              for count, what in zip(REACH_COUNTS, ("listeners per new song",
                                                    "distinct listeners reached",
                                                    *(f"distinct listeners per {w} songs"
                                                      for w in WINDOWS)), strict=True)
              for variant, how in (("", "with the per-song cap"),
                                   ("_uncapped", "without the per-song cap"),
                                   ("_with_prior", "calibrated with the prior, with the cap"),
                                   ("_with_prior_uncapped",
                                    "calibrated with the prior, without the cap")))


def served_table(doc: dict[str, Any]) -> str:
    """Markdown: one row per policy/ordering, mean ± sd over the seeds."""
    from .protocol import mean_sd

    n = len(doc["seeds"])
    lines = [f"### {doc['dataset']}: served path on cold items, mean ± sd over {n} seeds "
             f"({', '.join(map(str, doc['seeds']))})", "",
             "| delivery | " + " | ".join(TABLE_METRICS) + " |",
             "|---" * (len(TABLE_METRICS) + 1) + "|"]
    for key, stats in doc["summary"].items():
        if key == "wall_s":
            continue
        lines.append(f"| {key} | " + " | ".join(mean_sd(stats[m]) if m in stats else "-"
                                                  for m in TABLE_METRICS) + " |")
    lines.append("")
    for key, what in LIFTS:
        if key not in doc:
            continue
        lift = doc[key]
        lines.append(f"Reach of i2i2u+u2i over i2i2u alone at equal delivery precision "
                     f"(cut chosen on validation), {what}: {lift['mean']:+.1%}"
                     + (f" ± {lift['sd']:.1%}" if n > 1 else " (one seed)") + "  ")
    lines.append("")
    return "\n".join(lines)
