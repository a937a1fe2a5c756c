"""Table state on disk (RocksDB) that never runs ahead of its changelog.

Faust's RocksDB store writes a value to disk the moment an agent sets it, before its changelog
record is acknowledged. After a kill -9 the local copy can then hold a user state the
changelog never received. Our user state remembers the events applied (streams.pipeline), so
when the worker re-reads those events it takes them for duplicates and drops them: the
changelog, and the interactions forwarded by song, would miss them for good, and a later cold
rebuild would roll the user back. The in-memory store cannot do this: it is rebuilt from the
changelog at every start.

So this store keeps a value in memory until the broker acknowledges its changelog record, and
only then writes it to RocksDB, together with that record's offset (one write batch). The local
copy is always a prefix of the changelog, as the in-memory store is after recovery, and a warm
restart replays the changelog from the persisted offset on. Reads see the newest value, pending
or not. Pending writes are few: Faust flushes the producer at every commit and rebalance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import faust
import rocksdict
from faust.stores import STORES
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import current_event

from . import packed_tables

SCHEME = "rocksdb+acked"

#: RocksDB per partition database. Faust's defaults (a 2 GiB block cache and 3 x 64 MiB write
#: buffers per database, 8 databases per worker here) would let RSS grow to several GB.
ROCKSDB_OPTIONS: dict[str, int] = {
    "block_cache_size": 32 * 1024**2,
    "write_buffer_size": 16 * 1024**2,
    "max_write_buffer_number": 2,
}


class AckedRocksDBStore(RocksDBStore):
    """Faust's RocksDB store; a value reaches disk only once its changelog record is acked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: key -> (partition, value or None for a deletion), oldest first, not yet acked.
        self._pending: dict[bytes, deque[tuple[int, bytes | None]]] = {}

    def _queue(self, key: bytes, value: bytes | None) -> None:
        event = current_event()
        assert event is not None, "table writes happen inside an agent"
        partition = event.message.partition
        self._key_index[key] = partition
        self._pending.setdefault(key, deque()).append((partition, value))

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._queue(key, value)

    def _del(self, key: bytes) -> None:
        self._queue(key, None)

    def _get(self, key: bytes) -> bytes | None:
        queued = self._pending.get(key)
        if queued:
            return queued[-1][1]
        return super()._get(key)

    def _contains(self, key: bytes) -> bool:
        queued = self._pending.get(key)
        if queued:
            return queued[-1][1] is not None
        return super()._contains(key)

    def acknowledge(self, partition: int, offset: int, key: Any) -> None:
        """The changelog record at ``offset`` (the oldest pending write of ``key``) is acked:
        write it and its offset to disk together."""
        raw = self._encode_key(key)
        queued = self._pending.get(raw)
        if not queued:  # its partition was revoked: recovery reads it from the changelog
            return
        _, value = queued.popleft()
        if not queued:
            del self._pending[raw]
        batch = rocksdict.WriteBatch(raw_mode=True)
        if value is None:
            batch.delete(raw)
        else:
            batch.put(raw, value)
        batch.put(self.offset_key, str(offset).encode())
        self._db_for_partition(partition).write(batch)

    def pending(self) -> int:
        """Writes waiting for their changelog acknowledgement (tests, metrics)."""
        return sum(len(q) for q in self._pending.values())

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        """Faust flushed the producer before this; what is still pending was never acked."""
        gone = {tp.partition for tp in tps if tp.topic in table.changelog_topic.topics}
        for key in [k for k, q in self._pending.items() if q[-1][0] in gone]:
            del self._pending[key]
        super().revoke_partitions(table, tps)

    def _pending_items(self) -> dict[bytes, bytes | None]:
        return {k: q[-1][1] for k, q in self._pending.items()}

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        pending = self._pending_items()
        for key, value in super()._iteritems():
            if key not in pending:
                yield key, value
        for key, pending_value in pending.items():
            if pending_value is not None:
                yield key, pending_value

    def _iterkeys(self) -> Iterator[bytes]:
        for key, _ in self._iteritems():
            yield key

    def _itervalues(self) -> Iterator[bytes]:
        for _, value in self._iteritems():
            yield value

    def _size(self) -> int:
        return sum(1 for _ in self._iterkeys())


class DurableTable(faust.Table):
    """A table whose store learns when each changelog record is acknowledged."""

    def _on_changelog_sent(self, fut: Any) -> None:
        acknowledge = getattr(self.data, "acknowledge", None)
        if acknowledge is None:  # Faust's own stores
            super()._on_changelog_sent(fut)
            return
        res = fut.result()
        acknowledge(res.topic_partition.partition, res.offset, fut.message.key)


def store_url(kind: str) -> str:
    """Faust's store URL for ``COLDSTREAM_TABLE_STORE``: memory holds values as bytes
    (:mod:`streams.packed_tables`)."""
    return f"{SCHEME}://" if kind == "rocksdb" else f"{packed_tables.SCHEME}://"


def table_options(kind: str) -> dict[str, int] | None:
    return dict(ROCKSDB_OPTIONS) if kind == "rocksdb" else None


def register() -> None:
    """Make ``rocksdb+acked://`` and ``memory+packed://`` resolve to our stores
    (idempotent)."""
    STORES.aliases[SCHEME] = f"{__name__}:AckedRocksDBStore"
    packed_tables.register()
