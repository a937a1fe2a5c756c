"""Topics and tables, declared once; agents only import them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from .attribution import online_generation
from .monotone_tables import Generation, MonotoneTable, user_generation
from .settings import Settings
from .table_store import DurableTable, table_options

USER_STATE_TABLE = "user_state"
SONG_ENGAGERS_TABLE = "song_engagers"
ONLINE_STATE_TABLE = "online_state"
TABLES = [USER_STATE_TABLE, SONG_ENGAGERS_TABLE, ONLINE_STATE_TABLE]


@dataclass
class Topics:
    songs: Any
    interactions: Any
    interactions_by_song: Any
    user_refresh: Any
    candidates_proposed: Any
    candidates: Any
    model_versions: Any
    dlq: Any


@dataclass
class Tables:
    user_state: Any      # user_id -> history, counts, offsets, recent event ids (changelogged)
    song_engagers: Any   # song_id -> newest positive listeners (changelogged)
    online_state: Any    # user_id -> deliveries in the window and their outcomes (changelogged)


def declare_topics(app: faust.App, s: Settings) -> Topics:
    """Raw bytes in and out: decoding and validation happen in our code, so bad input is
    dead-lettered with a precise reason instead of crashing a Faust serializer."""

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=s.partitions)

    return Topics(
        songs=topic(s.topic_songs), interactions=topic(s.topic_interactions),
        interactions_by_song=topic(s.topic_interactions_by_song),
        user_refresh=topic(s.topic_user_refresh),
        candidates_proposed=topic(s.topic_candidates_proposed),
        candidates=topic(s.topic_candidates), model_versions=topic(s.topic_model_versions),
        dlq=topic(s.topic_dlq))


#: Tables whose values carry a generation; their recovery skips stale records
#: (streams.monotone_tables). song_engagers keeps last-write-wins: its list has no counter.
GENERATIONS: dict[str, Generation] = {USER_STATE_TABLE: user_generation,
                                       ONLINE_STATE_TABLE: online_generation}


def declare_tables(app: faust.App, s: Settings) -> Tables:
    def table(name: str) -> Any:
        # App defaults: str keys, JSON values (plain dicts/lists survive recovery as such).
        # The store comes from the app (streams.app); both kinds learn of changelog acks.
        kwargs: dict[str, Any] = dict(name=name, key_type=str, partitions=s.partitions,
                                      beacon=app.tables.beacon,
                                      options=table_options(s.table_store))
        generation = GENERATIONS.get(name)
        if generation is None:
            return app.tables.add(DurableTable(app, **kwargs))
        return app.tables.add(MonotoneTable(app, generation=generation, **kwargs))

    return Tables(user_state=table(USER_STATE_TABLE), song_engagers=table(SONG_ENGAGERS_TABLE),
                  online_state=table(ONLINE_STATE_TABLE))
