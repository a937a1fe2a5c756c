"""Data sources shared by serving (the demo) and training, all returning one :class:`Dataset`
shape; :func:`load_source` picks by name. Depends on neither `streams` nor `training`."""

from __future__ import annotations

from pathlib import Path

from .base import ACTION_CODE, ACTIONS, Dataset, Interactions, make_catalogue

__all__ = ["ACTIONS", "ACTION_CODE", "Dataset", "Interactions", "SOURCES", "load_source",
           "make_catalogue"]

SOURCES = (
    "ml-100k", "dslabs-movielens", "world:<tiny|demo|large|sim-large>[:seed]", "immich-music",
    "singularity-music", "lastfm-1k:<path>", "music4all:<path>", "<folder in own format>",
)


def load_source(spec: str) -> Dataset:
    """``ml-100k``, ``world:demo:7``, ``lastfm-1k:/data/lastfm``, or a folder path."""
    kind, _, rest = spec.partition(":")
    if kind == "ml-100k":
        from .movielens import load_ml100k
        return load_ml100k()
    if kind in ("dslabs-movielens", "dslabs"):
        from .movielens import load_dslabs_movielens
        return load_dslabs_movielens()
    if kind == "world":
        from .music_world import generate_world
        size, _, seed = rest.partition(":")
        return generate_world(size or "demo", **({"seed": int(seed)} if seed else {}))
    if kind == "immich-music":
        from .audio import load_immich_music
        return load_immich_music()
    if kind == "singularity-music":
        from .audio import load_singularity_music
        return load_singularity_music()
    if kind in ("lastfm-1k", "music4all"):
        from .converters import CONVERTERS
        return CONVERTERS[kind](rest)
    if Path(spec).is_dir():
        from .own import load_dir
        return load_dir(spec)
    raise ValueError(f"unknown data source {spec!r}; expected one of {', '.join(SOURCES)}")
