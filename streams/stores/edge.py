"""Qdrant Edge (Qdrant's Rust engine in-process): the embedded default, persisted under the
data dir. One shard per collection; owned by one process (a lock file says so).

Serving and a background model swap call in from two threads. Each shard has its own lock:
calls on one shard are serialised (the binding's shard is not meant for concurrent use), while
the swap's writes into the new version's shards never wait for serving on the old ones.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbeddedStoreLocked, StoreError
from .base import Hit, Point, Where, as_list, make_hit


class EdgeStore:
    """Qdrant Edge shards under ``root``; a lock file makes ownership by one process explicit."""

    def __init__(self, root: Path) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _acquire_lock(self.root / "LOCK")
        self._shards: dict[str, Any] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()  # the shard table and the aliases file
        self._aliases_file = self.root / "aliases.json"
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and (path / "collection.json").exists():
                self._add(path.name, qe.EdgeShard.load(str(path / "shard")))

    # collections ---------------------------------------------------------------------------
    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        qe = self.qe
        with self._guard:
            if name in self._shards:
                return
            folder = self.root / name
            (folder / "shard").mkdir(parents=True, exist_ok=True)
            config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim,
                                                               distance=qe.Distance.Cosine))
            shard = qe.EdgeShard.create(str(folder / "shard"), config)
            kinds = {"keyword": qe.PayloadSchemaType.Keyword,
                     "integer": qe.PayloadSchemaType.Integer,
                     "float": qe.PayloadSchemaType.Float}
            for key, kind in indexes.items():
                shard.update(qe.UpdateOperation.create_field_index(key, kinds[kind]))
            (folder / "collection.json").write_text(json.dumps({"dim": dim, "indexes": indexes}))
            self._add(name, shard)

    def collections(self) -> list[str]:
        return sorted(self._shards)

    def _add(self, name: str, shard: Any) -> None:
        self._locks[name] = threading.RLock()
        self._shards[name] = shard

    def _call(self, collection: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``shard.method(...)`` under that shard's lock."""
        try:
            shard, lock = self._shards[collection], self._locks[collection]
        except KeyError:
            raise StoreError(f"collection {collection!r} does not exist") from None
        with lock:
            return getattr(shard, method)(*args, **kwargs)

    # points --------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            return
        qe = self.qe
        op = qe.UpdateOperation.upsert_points([
            qe.Point(p.id, as_list(p.vector), p.payload) for p in points])
        self._call(collection, "update", op)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        qe = self.qe
        req = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(as_list(vector)),
                              filter=self._filter(where), with_payload=True)
        return [make_hit(p.id, p.payload, p.score) for p in self._call(collection, "query", req)]

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True) -> list[Hit]:
        if not ids:
            return []
        records = self._call(collection, "retrieve", list(ids), with_payload=True,
                             with_vector=with_vector)
        return [self._hit(r, with_vector) for r in records]

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self._call(collection, "update", self.qe.UpdateOperation.set_payload([point_id], payload))

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if ids:
            self._call(collection, "update", self.qe.UpdateOperation.delete_points(list(ids)))

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
    def flush(self) -> None:
        for name in list(self._shards):
            self._call(name, "flush")

    def close(self) -> None:
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
