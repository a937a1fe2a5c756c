"""Qdrant Edge (Qdrant's Rust engine in-process): the embedded default, persisted under the
data dir. One shard per collection; owned by one process (a lock file says so).

Serving and a background model swap call in from two threads. Each shard has its own lock:
calls on one shard are serialised (the binding's shard is not meant for concurrent use), while
the swap's writes into the new version's shards never wait for serving on the old ones.

``flush`` writes only the shards written since their last flush. The binding holds the GIL for
the whole flush (the event loop stalls), and its cost grows with the points written since the
last one: at 200k points about 4-9 ms for one point, 40-65 ms for 2,500 random updates. So a
shard is also flushed as soon as ``flush_points`` points are unflushed, by a flusher thread
that first syncs its files without the GIL or the shard's lock (:meth:`_flush_shard`): the
writer never waits for the disk, and at 5,000 writes/s the longest stall went from 279-347 ms
(a 5 s timer) to 41-58 ms (``coldstream bench --only flush``, two runs). Durability does not
depend on flushing: Edge's write-ahead log keeps an unflushed write across a kill -9 (a flush
only bounds what a restart replays).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbeddedStoreLocked, StoreError
from .base import Hit, Point, Where, as_list, make_hit
from .pageout import page_out

log = logging.getLogger(__name__)


class EdgeStore:
    """Qdrant Edge shards under ``root``; a lock file makes ownership by one process explicit."""

    def __init__(self, root: Path, flush_points: int = 0, presync: bool = True,
                 dtype: str = "float32") -> None:
        """``flush_points``: the flusher thread flushes a shard once this many points are
        unflushed (0: only on :meth:`flush`); ``presync``: fsync its files first (see
        :meth:`_flush_shard`); ``dtype``: how a new collection stores its vectors
        (``float16`` halves its vector files; an existing one keeps what it was made with)."""
        import qdrant_edge as qe

        self.qe = qe
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _acquire_lock(self.root / "LOCK")
        self._shards: dict[str, Any] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._unflushed: dict[str, int] = {}  # points written since the shard's last flush
        self.flush_points = flush_points
        self.presync = presync
        self.dtype = dtype
        #: Called after every shard flush with (collection, points flushed, seconds).
        self.on_flush: Callable[[str, int, float], None] | None = None
        self._flush_wanted = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closing = False
        self._guard = threading.Lock()  # the shard table and the aliases file
        self._aliases_file = self.root / "aliases.json"
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and (path / "collection.json").exists():
                self._add(path.name, qe.EdgeShard.load(str(path / "shard")))

    # collections ---------------------------------------------------------------------------
    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        """Create ``name`` with payload ``indexes``; an existing one is given those it lacks
        and loses those not asked for. A worker that searches its own mirror asks for none
        (:class:`~.segmented.SegmentedStore`): each index makes every flush cost in
        proportion to the whole collection, with the GIL held."""
        qe = self.qe
        with self._guard:
            folder = self.root / name
            if name in self._shards:
                shard, made = self._shards[name], self._indexes_of(folder)
            else:
                (folder / "shard").mkdir(parents=True, exist_ok=True)
                datatype = {"float32": qe.VectorStorageDatatype.Float32,
                            "float16": qe.VectorStorageDatatype.Float16}[self.dtype]
                config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(
                    size=dim, distance=qe.Distance.Cosine, datatype=datatype))
                shard, made = qe.EdgeShard.create(str(folder / "shard"), config), {}
            missing = {k: v for k, v in indexes.items() if k not in made}
            extra = [k for k in made if k not in indexes]
            if name in self._shards and not missing and not extra:
                return
            kinds = {"keyword": qe.PayloadSchemaType.Keyword,
                     "integer": qe.PayloadSchemaType.Integer,
                     "float": qe.PayloadSchemaType.Float}
            if name not in self._shards:
                self._add(name, shard)
            with self._lock(name):
                for key in extra:
                    shard.update(qe.UpdateOperation.delete_field_index(key))
                for key, kind in missing.items():
                    shard.update(qe.UpdateOperation.create_field_index(key, kinds[kind]))
            (folder / "collection.json").write_text(json.dumps({"dim": dim, "indexes": indexes}))

    @staticmethod
    def _indexes_of(folder: Path) -> dict[str, str]:
        """The payload indexes a collection was given (``collection.json``)."""
        try:
            return dict(json.loads((folder / "collection.json").read_text())["indexes"])
        except (OSError, ValueError, KeyError):
            return {}

    def collections(self) -> list[str]:
        return sorted(self._shards)

    def payload_indexes(self, collection: str) -> set[str]:
        """The payload keys the engine itself indexes in ``collection``."""
        return set(self._call(collection, "info").payload_schema)

    def release_vector_pages(self, collection: str) -> int:
        """Page out ``collection``'s mapped vector files (:mod:`.pageout`); bytes advised. For
        a caller that keeps the vectors itself and only writes them here. Not under the
        shard's lock: the kernel orders it with the engine's own accesses, and a writer
        waiting for it would stall the event loop."""
        self._lock(collection)  # an unknown collection is an error, as elsewhere
        return page_out(self.root / collection, "/vector_storage/vectors/")

    def _add(self, name: str, shard: Any) -> None:
        self._locks[name] = threading.RLock()
        self._unflushed[name] = 0
        self._shards[name] = shard

    def _lock(self, collection: str) -> threading.RLock:
        try:
            return self._locks[collection]
        except KeyError:
            raise StoreError(f"collection {collection!r} does not exist") from None

    def _call(self, collection: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``shard.method(...)`` under that shard's lock."""
        with self._lock(collection):
            return getattr(self._shards[collection], method)(*args, **kwargs)

    def _write(self, collection: str, op: Any, points: int) -> None:
        """Apply an update and count its points as unflushed (under the same lock)."""
        with self._lock(collection):
            self._shards[collection].update(op)
            self._unflushed[collection] += points
            due = self.flush_points and self._unflushed[collection] >= self.flush_points
        if due:
            self._wake_flusher()

    def _wake_flusher(self) -> None:
        if self._flusher is None:
            with self._guard:
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_when_due, daemon=True,
                                                     name="coldstream-flush")
                    self._flusher.start()
        self._flush_wanted.set()

    def _flush_when_due(self) -> None:
        """The flusher thread: flush every shard holding ``flush_points`` unflushed points."""
        while True:
            self._flush_wanted.wait()
            self._flush_wanted.clear()
            if self._closing:
                return
            for name, points in list(self._unflushed.items()):
                if self.flush_points and points >= self.flush_points:
                    try:
                        self._flush_shard(name)
                    except Exception:  # the next write or the timer tries again
                        log.exception("flushing %s failed", name)

    def _flush_shard(self, collection: str) -> None:
        """Flush one shard if it holds unflushed writes; report it to ``on_flush``.

        Most of a flush on a real disk is waiting for fsync, with the GIL held (at 200k
        points: 60-85 ms after 2,500 random updates, 14-19 ms on tmpfs). Syncing the shard's
        files first, with ``os.fsync`` (which releases the GIL) and without the shard's lock
        (writers go on), leaves the binding's own flush less to wait for (41-46 ms in the
        same test)."""
        if self.presync and self._unflushed.get(collection):
            sync_files(self.root / collection / "shard")
        with self._lock(collection):
            shard = self._shards.get(collection)
            if shard is None or not self._unflushed.get(collection):  # closed, or clean
                return
            start = time.perf_counter()
            shard.flush()
            points, self._unflushed[collection] = self._unflushed[collection], 0
        if self.on_flush is not None:
            self.on_flush(collection, points, time.perf_counter() - start)

    # points --------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            return
        qe = self.qe
        op = qe.UpdateOperation.upsert_points([
            qe.Point(p.id, as_list(p.vector), p.payload) for p in points])
        self._write(collection, op, len(points))

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        qe = self.qe
        req = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(as_list(vector)),
                              filter=self._filter(where), with_payload=True)
        return [make_hit(p.id, p.payload, p.score) for p in self._call(collection, "query", req)]

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True,
                 with_payload: bool = True) -> list[Hit]:
        if not ids:
            return []
        records = self._call(collection, "retrieve", list(ids), with_payload=with_payload,
                             with_vector=with_vector)
        return [self._hit(r, with_vector) for r in records]

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self._write(collection, self.qe.UpdateOperation.set_payload([point_id], payload), 1)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if ids:
            self._write(collection, self.qe.UpdateOperation.delete_points(list(ids)), len(ids))

    def count(self, collection: str, where: Where | None = None) -> int:
        return int(self._call(collection, "count",
                              self.qe.CountRequest(exact=True, filter=self._filter(where))))

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        """One page of points in id order and the offset of the next page (None: done)."""
        records, nxt = self._call(collection, "scroll", self.qe.ScrollRequest(
            offset=offset, limit=limit, with_payload=True, with_vector=with_vector))
        return [self._hit(r, with_vector) for r in records], None if nxt is None else str(nxt)

    def optimize(self, collection: str) -> bool:
        """Build HNSW for the collection. Holds the GIL: never call it on the event loop."""
        return bool(self._call(collection, "optimize"))

    @staticmethod
    def _hit(record: Any, with_vector: bool) -> Hit:
        return make_hit(record.id, record.payload,
                        vector=_vector_of(record.vector) if with_vector else None)

    # aliases -------------------------------------------------------------------------------
    def set_alias(self, alias: str, collection: str) -> None:
        with self._guard:
            aliases = self._aliases()
            aliases[alias] = collection
            tmp = self._aliases_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(aliases))
            os.replace(tmp, self._aliases_file)

    def resolve(self, alias: str) -> str | None:
        return self._aliases().get(alias)

    def _aliases(self) -> dict[str, str]:
        if not self._aliases_file.exists():
            return {}
        return json.loads(self._aliases_file.read_text())

    # lifecycle -----------------------------------------------------------------------------
    def unflushed(self) -> dict[str, int]:
        """Points written since each shard's last flush."""
        return dict(self._unflushed)

    def flush(self) -> None:
        """Flush the shards written since their last flush; a clean shard costs nothing."""
        for name in list(self._shards):
            self._flush_shard(name)

    def close(self) -> None:
        self._closing = True
        self._flush_wanted.set()
        if self._flusher is not None:
            self._flusher.join()
        for name in list(self._shards):
            self._call(name, "flush")
            self._call(name, "close")
        self._shards.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _filter(self, where: Where | None) -> Any:
        if where is None:
            return None
        qe = self.qe
        must: list[Any] = [qe.FieldCondition(key=k, match=qe.MatchValue(v))
                           for k, v in where.equals.items()]
        must += [qe.FieldCondition(key=k, range=qe.RangeFloat(gte=float(v)))
                 for k, v in where.at_least.items()]
        must_not = [qe.HasIdCondition(set(where.exclude_ids))] if where.exclude_ids else None
        return qe.Filter(must=must or None, must_not=must_not)


def sync_files(folder: Path) -> None:
    """fsync every file under ``folder`` (without the GIL: the event loop runs meanwhile)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:  # removed meanwhile (a WAL segment rotated away)
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _acquire_lock(path: Path) -> int:
    """Exclusive advisory lock: a second process gets a clear message, not a WAL error."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EmbeddedStoreLocked(
            f"the embedded vector store at {path.parent} is already used by another process. "
            "The embedded Qdrant Edge engine is single-process: to run several workers, start a "
            "Qdrant server and set COLDSTREAM_QDRANT_URL=http://host:6333") from None
    os.write(fd, str(os.getpid()).encode())
    return fd


def _vector_of(vector: Any) -> Any:
    """Edge returns the default vector either bare or as {"": [...]}."""
    if isinstance(vector, dict):
        return next(iter(vector.values()))
    return vector
