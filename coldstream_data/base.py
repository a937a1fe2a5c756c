"""One in-memory shape for every data source, so split, metrics and replay are written once.

A :class:`Dataset` is a catalogue (a DataFrame, one row per item, row position = item index)
plus interactions held as parallel numpy arrays of item/user *indices*. External ids live in
``catalogue.song_id`` and ``user_ids``; everything downstream works on dense indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

#: The contract's actions, in code order (code = position).
ACTIONS: tuple[str, ...] = ("play", "complete", "collect", "skip")
ACTION_CODE: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}
POSITIVE_ACTIONS: frozenset[str] = frozenset({"complete", "collect"})

#: Columns every catalogue carries (the users' own-data format, see docs/data.md).
CATALOGUE_COLUMNS: tuple[str, ...] = (
    "song_id", "title", "artist", "tags", "description", "audio_path", "released_at",
)


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays, one entry per event. ``rating`` is NaN where the source has none."""

    user: np.ndarray  # int32 user index
    item: np.ndarray  # int32 item index
    action: np.ndarray  # int8 code into ACTIONS
    ts: np.ndarray  # int64 epoch milliseconds
    rating: np.ndarray  # float32, NaN when implicit

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "action", "ts", "rating"):
            if len(getattr(self, name)) != n:
                got = len(getattr(self, name))
                raise ValueError(f"interactions.{name} has {got} rows, not {n}")

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def build(cls, user: Any, item: Any, action: Any, ts: Any,
              rating: Any | None = None) -> Interactions:
        n = len(user)
        return cls(
            user=np.asarray(user, dtype=np.int32),
            item=np.asarray(item, dtype=np.int32),
            action=np.asarray(action, dtype=np.int8),
            ts=np.asarray(ts, dtype=np.int64),
            rating=(np.full(n, np.nan, dtype=np.float32) if rating is None
                    else np.asarray(rating, dtype=np.float32)),
        )

    def subset(self, mask_or_index: np.ndarray) -> Interactions:
        return Interactions(self.user[mask_or_index], self.item[mask_or_index],
                            self.action[mask_or_index], self.ts[mask_or_index],
                            self.rating[mask_or_index])

    def positive(self) -> np.ndarray:
        """Boolean mask of positives: rating >= 4 where rated, else collect/complete."""
        by_action = np.isin(self.action, (ACTION_CODE["collect"], ACTION_CODE["complete"]))
        rated = ~np.isnan(self.rating)
        return np.where(rated, self.rating >= 4.0, by_action)

    def sorted_by_time(self) -> Interactions:
        return self.subset(np.argsort(self.ts, kind="stable"))


@dataclass(frozen=True)
class Dataset:
    """A catalogue, its listeners and what they did; ``truth`` only for generated worlds."""

    name: str
    catalogue: pd.DataFrame
    user_ids: np.ndarray  # str object array, index -> external user id
    interactions: Interactions
    truth: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in CATALOGUE_COLUMNS if c not in self.catalogue.columns]
        if missing:
            raise ValueError(f"catalogue lacks columns {missing}")
        if len(self.interactions):
            if int(self.interactions.item.max()) >= self.n_items:
                raise ValueError("interaction item index beyond the catalogue")
            if int(self.interactions.user.max()) >= self.n_users:
                raise ValueError("interaction user index beyond user_ids")

    @property
    def n_items(self) -> int:
        return len(self.catalogue)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def with_interactions(self, interactions: Interactions) -> Dataset:
        """Same catalogue and users, other events, and no ground truth (models must not see it)."""
        return replace(self, interactions=interactions, truth={})

    def item_texts(self) -> list[str]:
        """One string per item for text encoders: title, artist, tags, description."""
        out = []
        for row in self.catalogue.itertuples(index=False):
            parts = [str(row.title)]
            if row.artist:
                parts.append(f"by {row.artist}")
            if len(row.tags):
                parts.append("tags: " + ", ".join(row.tags))
            if isinstance(row.description, str) and row.description:
                parts.append(row.description)
            out.append(". ".join(parts))
        return out

    def summary(self) -> dict[str, Any]:
        pos = self.interactions.positive()
        return {
            "name": self.name,
            "items": self.n_items,
            "users": self.n_users,
            "interactions": len(self.interactions),
            "positives": int(pos.sum()),
        }


def make_catalogue(song_id: Any, title: Any, artist: Any | None = None,
                   tags: Any | None = None, description: Any | None = None,
                   audio_path: Any | None = None, released_at: Any | None = None,
                   **extra: Any) -> pd.DataFrame:
    """Build a catalogue DataFrame with every standard column filled (tags as lists of str)."""
    n = len(song_id)
    frame = pd.DataFrame({
        "song_id": [str(s) for s in song_id],
        "title": [str(t) if str(t) else str(s) for t, s in zip(title, song_id, strict=True)],
        "artist": [""] * n if artist is None else ["" if _missing(a) else str(a) for a in artist],
        "tags": [[] for _ in range(n)] if tags is None else [_tag_list(t) for t in tags],
        # object dtype: pandas 3 would turn None into NaN in an inferred string column
        "description": pd.Series([None] * n if description is None else
                                 [None if _missing(d) else str(d) for d in description],
                                 dtype=object),
        "audio_path": pd.Series([None] * n if audio_path is None else
                                [None if _missing(p) else str(p) for p in audio_path],
                                dtype=object),
        "released_at": (np.full(n, -1, dtype=np.int64) if released_at is None
                        else np.asarray(released_at, dtype=np.int64)),
    })
    for key, value in extra.items():
        frame[key] = value
    return frame


def index_ids(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """External ids -> (sorted unique ids as str, dense index per value)."""
    as_str = np.asarray([str(v) for v in values], dtype=object)
    uniq, inverse = np.unique(as_str, return_inverse=True)
    return uniq.astype(object), inverse.astype(np.int32)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value == ""


def _tag_list(value: Any) -> list[str]:
    if not isinstance(value, list | tuple | np.ndarray) and _missing(value):
        return []
    parts = value.replace(",", "|").split("|") if isinstance(value, str) else list(value)
    return [p.strip() for p in (str(x) for x in parts) if p.strip()]
