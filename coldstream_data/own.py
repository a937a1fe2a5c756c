"""Users' own data: two plain files that any dump can be converted into.

``catalogue.csv`` (or ``.parquet``): song_id, title, artist, tags, description, audio_path,
and optionally released_at (epoch ms); tags are ``|``-separated in CSV, lists in Parquet.
``interactions.csv`` (or ``.parquet``): user_id, song_id, action, ts (epoch ms or ISO-8601),
and optionally rating. Extra columns are kept. See docs/data.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import ACTION_CODE, ACTIONS, CATALOGUE_COLUMNS, Dataset, Interactions, make_catalogue

REQUIRED_CATALOGUE = ("song_id", "title")
REQUIRED_INTERACTIONS = ("user_id", "song_id", "action", "ts")


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)  # needs pyarrow (not a default dependency)
    return pd.read_csv(path, dtype={"song_id": str, "user_id": str}, keep_default_na=False,
                       na_values={"released_at": [""], "rating": [""]})


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; have {list(frame.columns)}")


def parse_ts(values: pd.Series) -> np.ndarray:
    """Epoch ms as ints, or ISO-8601 strings (UTC assumed when no zone) -> epoch ms."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.int64)
    as_num = pd.to_numeric(values, errors="coerce")
    out = as_num.fillna(0).to_numpy(dtype=np.int64)
    text = as_num.isna().to_numpy()
    if text.any():
        stamps = pd.to_datetime(values[text], utc=True, format="mixed")
        out[text] = stamps.to_numpy(dtype="datetime64[ms]").astype(np.int64)
    return out


def load_catalogue(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    frame = _read_table(path)
    _require(frame, REQUIRED_CATALOGUE, path)
    if frame["song_id"].duplicated().any():
        dup = frame.loc[frame["song_id"].duplicated(), "song_id"].iloc[0]
        raise ValueError(f"{path}: song_id {dup!r} appears more than once")
    extra = {c: frame[c].to_numpy() for c in frame.columns if c not in CATALOGUE_COLUMNS}
    released = frame.get("released_at")
    if released is not None:
        released = released.fillna(-1).to_numpy(dtype=np.int64)
    return make_catalogue(
        song_id=frame["song_id"], title=frame["title"],
        artist=frame.get("artist"), tags=frame.get("tags"),
        description=frame.get("description"), audio_path=frame.get("audio_path"),
        released_at=released, **extra,
    )


def load_own(catalogue: str | Path, interactions: str | Path, name: str = "own") -> Dataset:
    """Read the two files; interactions on unknown songs are an error, not silently dropped."""
    cat = load_catalogue(catalogue)
    path = Path(interactions)
    frame = _read_table(path)
    _require(frame, REQUIRED_INTERACTIONS, path)
    item_index = pd.Index(cat["song_id"])
    item = item_index.get_indexer(frame["song_id"].astype(str))
    if (item < 0).any():
        bad = frame["song_id"].astype(str)[item < 0].iloc[0]
        raise ValueError(f"{path}: song_id {bad!r} is not in the catalogue")
    unknown = set(frame["action"]) - set(ACTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown action(s) {sorted(unknown)}; allowed {ACTIONS}")
    user_ids, user = np.unique(frame["user_id"].astype(str).to_numpy(), return_inverse=True)
    rating = (pd.to_numeric(frame["rating"], errors="coerce").to_numpy(dtype=np.float32)
              if "rating" in frame else None)
    inter = Interactions.build(user, item, frame["action"].map(ACTION_CODE).to_numpy(),
                               parse_ts(frame["ts"]), rating)
    return Dataset(name, cat, user_ids.astype(object), inter.sorted_by_time())


def load_dir(directory: str | Path) -> Dataset:
    """A folder holding catalogue.{csv,parquet} + interactions.{csv,parquet} (+ world truth)."""
    root = Path(directory)
    cat = _first(root, "catalogue")
    inter = _first(root, "interactions")
    data = load_own(cat, inter, name=root.name)
    truth_file = root / "truth.npz"
    if truth_file.exists():
        with np.load(truth_file, allow_pickle=False) as npz:
            truth: dict[str, Any] = {k: npz[k] for k in npz.files}
        meta = root / "world.json"
        if meta.exists():
            truth.update(json.loads(meta.read_text()))
        data = Dataset(data.name, data.catalogue, data.user_ids, data.interactions, truth)
    return data


def _first(root: Path, stem: str) -> Path:
    for ext in (".parquet", ".csv"):
        if (root / f"{stem}{ext}").exists():
            return root / f"{stem}{ext}"
    raise FileNotFoundError(f"{root}: no {stem}.csv or {stem}.parquet")


def write_own(data: Dataset, directory: str | Path, fmt: str = "csv") -> Path:
    """Write a Dataset in the own-data format (the inverse of :func:`load_dir`)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    cat = data.catalogue.copy()
    inter = pd.DataFrame({
        "user_id": data.user_ids[data.interactions.user],
        "song_id": cat["song_id"].to_numpy()[data.interactions.item],
        "action": np.asarray(ACTIONS, dtype=object)[data.interactions.action],
        "ts": data.interactions.ts,
    })
    if not np.isnan(data.interactions.rating).all():
        inter["rating"] = data.interactions.rating
    if fmt == "parquet":
        cat.to_parquet(root / "catalogue.parquet", index=False)
        inter.to_parquet(root / "interactions.parquet", index=False)
    else:
        cat["tags"] = ["|".join(t) for t in cat["tags"]]
        cat.to_csv(root / "catalogue.csv", index=False)
        inter.to_csv(root / "interactions.csv", index=False)
    arrays = {k: np.asarray(v) for k, v in data.truth.items() if isinstance(v, np.ndarray)}
    if arrays:
        np.savez_compressed(root / "truth.npz", **arrays)
        rest = {k: v for k, v in data.truth.items() if not isinstance(v, np.ndarray)}
        (root / "world.json").write_text(json.dumps(rest, indent=2))
    return root
