"""The trained model as a harness :class:`~training.evaluate.Recommender` (+ ablations).

``score`` is the serving rule (user vector . song vector) and ``boundary`` the boundary
tower's threshold, both computed by the same towers that are exported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from itertools import product
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from coldstream_data.base import Dataset, Interactions

from .selection import Scorer, Tuned, ValidationView
from .tasks import TrainConfig
from .train import TrainResult, train

if TYPE_CHECKING:
    from .coldstart import ColdStartConfig

T = TypeVar("T")

#: Ablation name -> how it differs from the full model.
VARIANTS: dict[str, dict] = {
    "full": {},
    "no-contrastive": {"contrastive_weight": 0.0},
    "no-boundary": {"boundary_weight": 0.0},
    "audio-only": {"use_text": False},
    "text-only": {"use_audio": False, "align_epochs": 0},
    "no-tokens": {"bow_buckets": 0},
}


class TrainedRecommender:
    """Trains on ``fit``'s training view, then scores with the learned vectors.

    Given a validation view, the joint epochs early-stop on its NDCG@20.
    """

    wants_validation = True

    def __init__(self, cfg: TrainConfig | None = None, name: str = "coldstream",
                 progress: bool = False, device: str = "auto") -> None:
        self.cfg, self.name, self.progress = cfg or TrainConfig(), name, progress
        self.device = device
        self.result: TrainResult | None = None

    def fit(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        self.result = train(train_data, self.cfg, device=self.device, progress=self.progress,
                            validation=validation)
        self.items, self.users, self.bounds = self.result.tasks.embed_all()
        self.bias = self.result.tasks.ranking_bias()

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items[items].T + self.bias[items]


class GatedRecommender(TrainedRecommender):
    """Adds the boundary tower's per-user delivery threshold."""

    def boundary(self, users: np.ndarray) -> np.ndarray:
        return self.bounds[users]


class EnsembleRecommender(GatedRecommender):
    """The mean score of ``n`` copies of a model trained from different init seeds.

    The issue's "reduce seed variance: averaging, ensembling" lever: each member trains
    (and early-stops on validation) on its own; ``score`` is their mean. ``items`` are the
    members' unit item vectors side by side, scaled by ``1/sqrt(n)``: their cosine is the
    mean of the members' cosines, what :class:`PathFusion`'s I2I2U reads. ``users`` and
    ``items`` are not a scoring pair (their dot product is not ``score``): rank with
    :meth:`score`. Harness scoring only (one served model has one vector space, and
    ``coldstream train`` accepts base variants only). Costs ``n`` trainings; ``n`` is fixed,
    not selected.
    """

    def __init__(self, members: list[TrainedRecommender]) -> None:
        super().__init__(members[0].cfg, name=members[0].name + f"*{len(members)}",
                         progress=members[0].progress, device=members[0].device)
        self.members = members

    def fit(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        for member in self.members:
            member.fit(train_data, validation)
        root = np.sqrt(len(self.members))
        self.result = self.members[0].result
        self.users = np.concatenate([m.users for m in self.members], axis=1) / root
        self.items = np.concatenate([_unit(m.items) for m in self.members], axis=1) / root
        self.bias = np.mean([m.bias for m in self.members], axis=0)
        self.bounds = np.mean([getattr(m, "bounds", np.zeros(len(m.users)))
                               for m in self.members], axis=0)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.mean([m.score(users, items) for m in self.members], axis=0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)


def pick_on_validation(validation: ValidationView, score: Scorer, options: Iterable[T],
                       apply: Callable[[T], None]) -> T:
    """Apply each option in turn and keep (and leave applied) the one whose ``score`` has
    the best validation NDCG@20; the first wins a tie, so list the neutral option first."""
    from .selection import val_metrics

    best, chosen = -np.inf, None
    for option in options:
        apply(option)
        got = val_metrics(validation, score)["ndcg@20"]
        if got > best:
            best, chosen = got, option
    apply(chosen)  # type: ignore[arg-type]
    return chosen  # type: ignore[return-value]


def popularity_rate(inter: Interactions, n_items: int, floor_days: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per item: events, and events per day since the item's first one (to the last event).

    A new item is measured over its first weeks, so the prior should predict how fast an
    item gathers listeners: an all-time count ranks an old classic above this month's hit.
    On ml-100k's validation items a prior fitted to the rate ranks them better than one
    fitted to the count (docs/results/issue-13/prior-target-validation.json)."""
    counts = np.bincount(inter.item, minlength=n_items).astype(np.float64)
    rate = np.zeros(n_items)
    if len(inter):
        first = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, inter.item, inter.ts)
        seen = counts > 0
        days = (int(inter.ts.max()) - first[seen]) / 86_400_000
        rate[seen] = counts[seen] / np.maximum(days, floor_days)
    return counts, rate


#: The prior's targets, per warm item (log1p of each): all training events or the positive
#: ones, per day since the item's first event or in all. Picked per fit on validation.
PRIOR_TARGETS = ("events/day", "positive/day", "events", "positive")


def popularity_targets(data: Dataset) -> dict[str, np.ndarray]:
    """Each of :data:`PRIOR_TARGETS` per item, from ``data``'s interactions."""
    inter = data.interactions
    counts, rate = popularity_rate(inter, data.n_items)
    positive, positive_rate = popularity_rate(inter.subset(inter.positive()), data.n_items)
    return {"events/day": rate, "positive/day": positive_rate, "events": counts,
            "positive": positive}


class PopularityPrior:
    """A trained model plus a content-predicted popularity prior, weighed on validation.

    Ridge regression from the baselines' content features (:func:`coldstart.content_features`)
    to a popularity target of warm items (:data:`PRIOR_TARGETS`, picked on validation: by
    default how fast an item gathers events, :func:`popularity_rate`) predicts how popular a
    new item will be; the score is ``model + lam * z(prior)``, ``lam`` picked from
    :data:`LAMBDAS` by validation NDCG@20 (0 keeps the model as it is). Harness scoring; the
    worker serves its own prior (:mod:`training.popularity`: the same features minus the
    music worlds' generator-made audio ones) through its delivery calibration.
    """

    wants_validation = True
    LAMBDAS = (0.0, 0.05, 0.1, 0.2, 0.4)

    def __init__(self, model: TrainedRecommender) -> None:
        self.model, self.name = model, model.name + "+prior"
        self.lam, self.target = 0.0, PRIOR_TARGETS[0]

    def fit(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        self.model.fit(train_data, validation)
        self.fit_prior(train_data, validation)
        if validation is not None:
            pick_on_validation(validation, self.score, self.LAMBDAS,
                               lambda lam: setattr(self, "lam", lam))

    def fit_prior(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        """Ridge from content to a popularity target of warm items, z-scored; the target
        from :data:`PRIOR_TARGETS` whose prior alone ranks the validation items best (the
        first without validation)."""
        from sklearn.linear_model import Ridge

        from .coldstart import content_features

        x = content_features(train_data, self.model.cfg.token_min_items,
                             df_warm=self.model.cfg.token_df_warm)
        targets = popularity_targets(train_data)
        warm, fitted = targets["events"] > 0, {}

        def use(name: str) -> None:  # fitted once each: the pick applies its choice again
            if name not in fitted:
                fit = Ridge(alpha=10.0).fit(x[warm], np.log1p(targets[name][warm])).predict(x)
                fitted[name] = ((fit - fit.mean()) / (fit.std() + 1e-9)).astype(np.float32)
            self.target, self.prior = name, fitted[name]

        if validation is None:
            use(PRIOR_TARGETS[0])
        else:
            pick_on_validation(validation, lambda users, items: np.broadcast_to(
                self.prior[items], (len(users), len(items))), PRIOR_TARGETS, use)

    @property
    def chosen(self) -> str:
        return f"prior={self.target},lam={self.lam}"

    @property
    def result(self) -> TrainResult | None:
        return self.model.result

    @property
    def base(self) -> TrainedRecommender:
        """The trained model alone (lam = 0): measured from the same fit."""
        return self.model

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.model.score(users, items) + self.lam * self.prior[items]

    def boundary(self, users: np.ndarray) -> np.ndarray:
        return self.model.boundary(users)  # type: ignore[attr-defined]


class PathFusion(PopularityPrior):
    """The model's two served paths in one score, their weights picked on validation.

    U2I is the model's ``user . song``; I2I2U is the song's similarity to what the user
    liked (mean of the top-``k`` cosines between the new song's vector and the user's
    liked training items, in the same learned space): the worker's two candidate paths.
    ``score = u2i + beta * i2i2u + lam * z(prior)`` with ``beta`` from :data:`BETAS` and
    ``lam`` from :data:`PopularityPrior.LAMBDAS`, the pair with the best validation NDCG@20
    (``beta = lam = 0`` keeps the model). Harness scoring: the worker ranks its paths with
    the calibrated delivery score, not this sum.
    """

    BETAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    MEMO_BATCHES = 16  # of I2I2U matrices kept: a validation view's batches, both spaces

    def __init__(self, model: TrainedRecommender, k: int = 10) -> None:
        super().__init__(model)
        self.k, self.name = k, model.name + "+paths"
        self.beta = 0.0

    def fit(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        from .baselines import _user_items

        self.model.fit(train_data, validation)
        self.fit_prior(train_data, validation)
        self.unit, self._memo = _unit(self.model.items), {}  # a new fit: no old I2I2U batch
        ui = _user_items(train_data)
        self.likes = [ui.indices[ui.indptr[u]: ui.indptr[u + 1]] for u in range(ui.shape[0])]
        if validation is not None:
            pick_on_validation(validation, self.score, self.grid(), self.set_weights)

    def grid(self) -> Iterable[tuple[float, ...]]:
        """Every weight combination validation tries, the neutral one first."""
        return product(self.BETAS, self.LAMBDAS)

    def set_weights(self, weights: tuple[float, ...]) -> None:
        self.beta, self.lam = weights

    @property
    def chosen(self) -> str:
        return f"prior={self.target},beta={self.beta},lam={self.lam}"

    def i2i2u(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Mean of the top-k cosines between each item and the user's liked items."""
        return self.similarity("model", self.unit, users, items)

    def similarity(self, space: str, unit: np.ndarray, users: np.ndarray, items: np.ndarray
                   ) -> np.ndarray:
        """:func:`~training.baselines.top_k_mean_similarity` in ``unit``'s space, kept for
        the last few (users, items) batches per space: a validation grid scores the same
        batches for every weight it tries."""
        from .baselines import top_k_mean_similarity

        key = (space, users.tobytes(), items.tobytes())
        memo = self.__dict__.setdefault("_memo", {})  # set by fit; a test may skip fit
        if key not in memo:
            if len(memo) >= self.MEMO_BATCHES:
                del memo[next(iter(memo))]  # the oldest batch
            memo[key] = top_k_mean_similarity(unit, self.likes, users, items, self.k)
        return memo[key]

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = super().score(users, items)
        return out + self.beta * self.i2i2u(users, items) if self.beta else out


class TextPathFusion(PathFusion):
    """:class:`PathFusion` plus I2I2U in the frozen text space, weighed on validation.

    Why: on a large, sparse catalogue (dslabs movielens) the learned song space keeps a third
    of the content similarity the frozen MiniLM vectors had, and MiniLM kNN beats the model
    (docs/evaluation.md). The same top-``k`` rule over the MiniLM vectors the model is
    trained from (what a worker's text tower already computes per new song) is a third path:
    ``score = paths + delta * text_i2i2u``, with ``beta``, ``lam`` and ``delta`` picked
    together on validation NDCG@20 (``delta = 0`` keeps :class:`PathFusion`). Harness
    scoring: the worker searches only the model's own space.
    """

    DELTAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(self, model: TrainedRecommender, k: int = 10) -> None:
        super().__init__(model, k)
        self.name, self.delta = model.name + "+paths+text", 0.0

    def fit(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        from .baselines import MiniLMEncoder
        from .coldstart import CACHE

        self.text = _unit(np.asarray(MiniLMEncoder(cache_dir=CACHE).encode(train_data),
                                     dtype=np.float32))
        super().fit(train_data, validation)

    def grid(self) -> Iterable[tuple[float, ...]]:
        return product(self.BETAS, self.LAMBDAS, self.DELTAS)

    def set_weights(self, weights: tuple[float, ...]) -> None:
        self.beta, self.lam, self.delta = weights

    @property
    def chosen(self) -> str:
        return f"{super().chosen},delta={self.delta}"

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = super().score(users, items)
        if not self.delta:
            return out
        return out + self.delta * self.similarity("text", self.text, users, items)


class TeacherFusion(PathFusion):
    """:class:`PathFusion` plus a collaborative-teacher head, weighed on validation.

    The head maps a new item's content into the space of a BPR-MF teacher trained on warm
    interactions and scores it against the teacher's user vectors (DropoutNet's objective,
    :class:`training.coldstart.DropoutNet`, early-stopped on validation): the issue's
    "distil a collaborative teacher" lever as a third term. ``score = paths + gamma * s *
    head`` where ``s`` puts the head on the fused score's scale (their sd over validation
    users x validation items) and ``gamma`` comes from :data:`GAMMAS` by validation NDCG@20,
    after ``beta`` and ``lam`` (``gamma = 0`` keeps :class:`PathFusion`). Harness scoring only.
    """

    GAMMAS = (0.0, 0.25, 0.5, 1.0, 2.0)

    def __init__(self, model: TrainedRecommender, k: int = 10,
                 head: ColdStartConfig | None = None, heads: int = 1) -> None:
        """``heads``: teacher heads (each with its own BPR-MF teacher) trained from init
        seeds ``seed + 1000 k`` and averaged, as :class:`EnsembleRecommender` averages the
        model: DropoutNet's NDCG@20 varies by 0.03 from seed to seed on ml-100k."""
        super().__init__(model, k)
        self.name = model.name + "+paths+teacher" + (str(heads) if heads > 1 else "")
        self.gamma, self.scale, self.head_cfg, self.n_heads = 0.0, 0.0, head, heads

    def fit(self, train_data: Dataset, validation: ValidationView | None = None) -> None:
        from .coldstart import make_coldstart

        super().fit(train_data, validation)
        self.heads = [make_coldstart("dropoutnet", seed=self.model.cfg.seed + 1000 * k,
                                     tune=False, base=self.head_cfg)
                      for k in range(self.n_heads)]
        for head in self.heads:
            head.fit(train_data, validation)
        if validation is None:
            return
        users = np.unique(validation.val.user)
        paths = np.std(super().score(users, validation.items))
        self.scale = float(paths / max(np.std(self.head_score(users, validation.items)), 1e-9))
        pick_on_validation(validation, self.score, self.GAMMAS,
                           lambda gamma: setattr(self, "gamma", gamma))

    @property
    def chosen(self) -> str:
        return f"{super().chosen},gamma={self.gamma}"

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = super().score(users, items)
        if not self.gamma:
            return out
        return out + self.gamma * self.scale * self.head_score(users, items)

    def head_score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The teacher heads' mean score."""
        return np.mean([head.score(users, items) for head in self.heads], axis=0)


#: The model's selection budget (same size as every baseline's grid in
#: ``training.coldstart.GRIDS``), picked on validation: the token view. It decides most on
#: dslabs movielens (no view: 2.7x the cold Recall@20), little elsewhere; counting a word's
#: songs among trained songs only helps dslabs and hurts ml-100k (docs/evaluation.md).
MODEL_GRID: dict[str, dict] = {
    "tokens": {},
    "no-tokens": {"bow_buckets": 0},
    "tokens-of-trained-songs": {"token_df_warm": True},
}


def make_variant(variant: str, epochs: int | None = None, seed: int = 0,
                 progress: bool = False, align_epochs: int | None = None,
                 tune: bool = False, audio_graph: str = ""
                 ) -> TrainedRecommender | Tuned | PopularityPrior:
    """A name from :data:`VARIANTS` (full, no-contrastive, no-boundary, audio-only, ...);
    with ``tune`` a :class:`Tuned` over :data:`MODEL_GRID` (selected on validation);
    ``<variant>+prior`` adds :class:`PopularityPrior`, ``<variant>+paths``
    :class:`PathFusion` (I2I2U kNN and the prior, both weighed on validation),
    ``<variant>+paths+text`` :class:`TextPathFusion` (I2I2U also over the frozen MiniLM
    vectors), ``<variant>+paths+teacher`` :class:`TeacherFusion` (and a collaborative-teacher
    head); ``<variant>+ensN`` an :class:`EnsembleRecommender` of N inits (seeds ``seed + 1000
    k``). ``tune`` reaches the trained model inside every wrapper.
    ``audio_graph``: a published audio tower kept frozen (``TrainConfig.audio_graph``)."""
    def inner(name: str, s: int = seed) -> Any:
        return make_variant(name, epochs, s, progress, align_epochs, tune, audio_graph)

    teacher = re.fullmatch(r"(.+)\+paths\+teacher(\d*)", variant)  # "+teacher3": 3 heads
    if teacher:
        return TeacherFusion(inner(teacher[1]), heads=int(teacher[2] or 1))
    if variant.endswith("+paths+text"):
        return TextPathFusion(inner(variant.removesuffix("+paths+text")))
    if variant.endswith("+paths"):
        return PathFusion(inner(variant.removesuffix("+paths")))
    if variant.endswith("+prior"):
        return PopularityPrior(inner(variant.removesuffix("+prior")))
    ens = re.fullmatch(r"(.+)\+ens(\d+)", variant)  # "full+ens3": three inits of "full"
    if ens:
        return EnsembleRecommender([inner(ens[1], seed + 1000 * k) for k in range(int(ens[2]))])
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    cfg = replace(TrainConfig(seed=seed, audio_graph=audio_graph), **VARIANTS[variant])
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if align_epochs is not None and cfg.align_epochs:
        cfg = replace(cfg, align_epochs=align_epochs)
    cls = TrainedRecommender if cfg.boundary_weight == 0 else GatedRecommender
    name = f"coldstream[{variant}]"
    if not tune:
        return cls(cfg, name=name, progress=progress)
    grid = MODEL_GRID if cfg.bow_buckets else {"tokens": {}}  # nothing to choose without
    return Tuned(name, [lambda g=g: cls(replace(cfg, **g), name=name, progress=progress)
                        for g in grid.values()], list(grid))
