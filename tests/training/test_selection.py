"""Selection never sees the cold test: structurally, through the hook, and by swapping it."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest

import training.train as train_mod
from coldstream_data.base import ACTION_CODE, Dataset, Interactions
from training.coldstart import ColdStartConfig, DropoutNet
from training.evaluate import evaluate
from training.recommender import (
    PRIOR_TARGETS,
    GatedRecommender,
    PathFusion,
    PopularityPrior,
    TeacherFusion,
    TextPathFusion,
    make_variant,
)
from training.selection import Tuned, ValidationView, val_metrics, validation_view
from training.split import Split, cold_item_split
from training.tasks import TrainConfig

CFG = TrainConfig(epochs=3, align_epochs=1, seed=0, patience=1)


def _garbage(split: Split, seed: int) -> Split:
    """The same split with its cold test replaced by random positives on the cold items."""
    rng = np.random.default_rng(seed)
    n = len(split.cold_test)
    junk = Interactions.build(rng.permutation(split.cold_test.user),
                              rng.choice(split.cold_items, n),
                              np.full(n, ACTION_CODE["complete"]), split.cold_test.ts, None)
    return replace(split, cold_test=junk)


def test_view_holds_no_cold_item(tiny_world: Dataset) -> None:
    split = cold_item_split(tiny_world, seed=0)
    view = validation_view(split)
    assert {f.name for f in dataclasses.fields(ValidationView)} == {"train", "val", "items"}
    cold = set(split.cold_items.tolist())
    assert cold and not cold & set(view.items.tolist())
    assert not cold & set(view.val.item.tolist())
    assert not cold & set(view.train.item.tolist())
    with pytest.raises(ValueError):  # a cold-test slice cannot pose as validation
        ValidationView(train=split.train, val=split.cold_test, items=split.val_items)


def test_validation_hook_ranks_only_validation_items(tiny_world: Dataset, monkeypatch) -> None:
    split = cold_item_split(tiny_world, seed=0)
    seen: list[np.ndarray] = []

    def spy(view: ValidationView, score, **kw):  # noqa: ANN001, ANN003, ANN202
        def recording(users: np.ndarray, items: np.ndarray) -> np.ndarray:
            seen.append(np.asarray(items))
            return score(users, items)
        return val_metrics(view, recording, **kw)

    monkeypatch.setattr(train_mod, "val_metrics", spy)
    rec = GatedRecommender(CFG, name="spy")
    evaluate(tiny_world, split, rec, segments=("cold",))
    assert len(seen) >= 2  # one call per joint epoch until early stopping
    asked = np.unique(np.concatenate(seen))
    assert set(asked.tolist()) == set(split.val_items.tolist())
    assert rec.result.best_epoch is not None
    assert [h["val_ndcg@20"] for h in rec.result.history if "val_ndcg@20" in h]


def test_choices_do_not_move_when_the_cold_test_changes(tiny_world: Dataset) -> None:
    split = cold_item_split(tiny_world, seed=0)
    runs = []
    base = ColdStartConfig(epochs=4, patience=1, teacher_epochs=5, seed=0)
    for s in (split, _garbage(split, 1)):
        tuned = Tuned("dropoutnet", [lambda: DropoutNet(replace(base, lr=1e-3)),
                                     lambda: DropoutNet(replace(base, lr=1e-2))],
                      ["lr=1e-3", "lr=1e-2"])
        rec = PopularityPrior(GatedRecommender(CFG, name="m"))
        fused = TeacherFusion(GatedRecommender(CFG, name="f"), head=base, heads=2)
        text = TextPathFusion(GatedRecommender(CFG, name="t"))
        cold = evaluate(tiny_world, s, tuned, segments=("cold",))["segments"]["cold"]
        for model in (rec, fused, text):
            evaluate(tiny_world, s, model, segments=("cold",))
        runs.append((tuned.chosen, {k: v for k, v in tuned.val.items() if "fit_s" not in k},
                     tuned.model.best_epoch, rec.result.best_epoch, rec.lam, rec.target,
                     [h.get("val_ndcg@20") for h in rec.result.history], fused.chosen,
                     text.chosen, cold["recall@20"]))
    *choices0, r0 = runs[0]
    *choices1, r1 = runs[1]
    assert choices0 == choices1
    assert choices0[4] in PopularityPrior.LAMBDAS and choices0[5] in PRIOR_TARGETS
    picked = dict(x.split("=") for x in choices0[7].split(","))
    assert picked["prior"] in PRIOR_TARGETS
    assert float(picked["beta"]) in PathFusion.BETAS
    assert float(picked["lam"]) in PopularityPrior.LAMBDAS
    assert float(picked["gamma"]) in TeacherFusion.GAMMAS
    assert float(dict(x.split("=") for x in choices0[8].split(","))["delta"]) in \
        TextPathFusion.DELTAS
    assert r0 != r1  # the cold test did change, and only the reported figure moved
    assert [h.cfg.seed for h in fused.heads] == [0, 1000]  # two teachers, averaged
    users, items = np.arange(5), split.cold_items[:7]
    heads = [h.score(users, items) for h in fused.heads]
    assert np.allclose(fused.head_score(users, items), (heads[0] + heads[1]) / 2)


def test_teacher_heads_are_named_in_the_variant() -> None:
    one, three = make_variant("full+paths+teacher"), make_variant("full+ens2+paths+teacher3")
    assert isinstance(one, TeacherFusion) and one.n_heads == 1
    assert isinstance(three, TeacherFusion) and three.n_heads == 3
    assert three.name.endswith("*2+paths+teacher3")
