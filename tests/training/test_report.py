"""Embedding quality in the report, and the PNG plots (tiny world, two cheap baselines)."""

from __future__ import annotations

import json
import math

import pytest

from training import plots, report


@pytest.fixture(scope="module")
def tiny_report():
    return report.run("world:tiny", ["random", "tag-knn", "tfidf-knn"], progress=False,
                      embedding_map="pca")


def test_report_has_embedding_quality_in_valid_ranges(tiny_report):
    eq = tiny_report["embedding_quality"]
    assert set(eq["labels"]) == {"genre", "mood"}
    assert set(eq["models"]) == {"content-knn[tags]", "content-knn[tfidf]"}  # random: no vectors
    for col, stats in eq["labels"].items():
        assert 0 < stats["chance_purity"] < 1, col
        assert stats["classes"] >= 2
    for name, q in eq["models"].items():
        for col in ("genre", "mood"):
            assert 0.0 <= q[col]["purity@10"] <= 1.0, (name, col)
            assert -1.0 <= q[col]["silhouette"] <= 1.0, (name, col)
        # the world's tags and texts are drawn from genre words: far above chance
        assert q["genre"]["purity@10"] > 2 * eq["labels"]["genre"]["chance_purity"], name
    assert tiny_report["_maps"]["content-knn[tags]"]["xy"].shape == (300, 2)


def test_write_emits_json_markdown_and_valid_pngs(tiny_report, tmp_path):
    js, md = report.write(tiny_report, tmp_path)
    saved = json.loads(js.read_text())
    assert "_maps" not in saved
    assert saved["plots"] == ["world-tiny-metrics.png", "world-tiny-map.png"]
    assert math.isfinite(saved["embedding_quality"]["models"]["content-knn[tags]"]["genre"]
                         ["silhouette"])
    text = md.read_text()
    assert "**embedding quality**" in text and "| content-knn[tfidf] | 128 |" in text
    assert "![world-tiny-map](world-tiny-map.png)" in text
    for name in saved["plots"]:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == plots.PNG_MAGIC, name
        assert len(data) > 10_000, name  # a real figure, not an empty canvas


def test_no_labels_no_embedding_section(tiny_report, tmp_path):
    rep = {k: v for k, v in tiny_report.items()
           if k not in ("embedding_quality", "_maps", "plots")}
    js, md = report.write(rep, tmp_path)
    assert "embedding quality" not in md.read_text()
    assert json.loads(js.read_text())["plots"] == ["world-tiny-metrics.png"]


def test_delivery_markdown_lists_only_gated_models() -> None:
    from training.report import DELIVERY_METRICS, delivery_markdown

    gated = {"deliveries": 12, **{k: 0.5 for k in DELIVERY_METRICS}}
    results = [{"model": "random", "segments": {"cold": {}}},
               {"model": "coldstream[full]", "segments": {"cold": {"delivery_gated": gated}}}]
    lines = delivery_markdown(results)
    rows = [line for line in lines if line.startswith("| coldstream")]
    assert rows == ["| coldstream[full] | 12 | " + " | ".join(["0.500"] * len(DELIVERY_METRICS))
                    + " |"]
    assert not any("random" in line for line in lines)
    assert delivery_markdown(results[:1]) == []
