"""The vector store: one small interface, two backends of the real Qdrant engine.

* :class:`EdgeStore` - Qdrant Edge (Qdrant's Rust engine in-process), the embedded default,
  persisted under the data dir. One shard per collection; owned by one process.
* :class:`QdrantClientStore` - qdrant-client against a Qdrant server/cluster (production), or
  its local mode (tests; same API, no HNSW).

Point ids are UUIDs derived from entity ids (:mod:`streams.ids`), so replays overwrite.
Flags are stored as 0/1 integers: Qdrant Edge stores bools as ints and ``MatchValue(True)``
finds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import EmbeddedStoreLocked, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray | list[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Where:
    """A conjunctive payload filter: equal values, lower bounds, excluded point ids."""

    equals: dict[str, int | str] = field(default_factory=dict)
    at_least: dict[str, float] = field(default_factory=dict)
    exclude_ids: frozenset[str] = frozenset()


class VectorStore(Protocol):
    """What the pipeline needs from a vector database."""

    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None: ...
    def upsert(self, collection: str, points: Sequence[Point]) -> None: ...
    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]: ...
    def retrieve(self, collection: str, ids: Sequence[str],
                 with_vector: bool = True) -> list[Hit]: ...
    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None: ...
    def delete(self, collection: str, ids: Sequence[str]) -> None: ...
    def count(self, collection: str, where: Where | None = None) -> int: ...
    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]: ...
    def collections(self) -> list[str]: ...
    def set_alias(self, alias: str, collection: str) -> None: ...
    def resolve(self, alias: str) -> str | None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Qdrant Edge (embedded)
# ---------------------------------------------------------------------------------------------


class EdgeStore:
    """Qdrant Edge shards under ``root``; a lock file makes ownership by one process explicit."""

    def __init__(self, root: Path) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _acquire_lock(self.root / "LOCK")
        self._shards: dict[str, Any] = {}
        self._guard = threading.Lock()
        self._aliases_file = self.root / "aliases.json"
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and (path / "collection.json").exists():
                self._shards[path.name] = qe.EdgeShard.load(str(path / "shard"))

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
            self._shards[name] = shard

    def collections(self) -> list[str]:
        return sorted(self._shards)

    def _shard(self, name: str) -> Any:
        try:
            return self._shards[name]
        except KeyError:
            raise StoreError(f"collection {name!r} does not exist") from None

    # points --------------------------------------------------------------------------------
    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            return
        qe = self.qe
        op = qe.UpdateOperation.upsert_points([
            qe.Point(p.id, _as_list(p.vector), p.payload) for p in points])
        self._shard(collection).update(op)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        qe = self.qe
        req = qe.QueryRequest(limit=limit, query=qe.Query.Nearest(_as_list(vector)),
                              filter=self._filter(where), with_payload=True)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {}))
                for p in self._shard(collection).query(req)]

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True) -> list[Hit]:
        if not ids:
            return []
        records = self._shard(collection).retrieve(list(ids), with_payload=True,
                                                   with_vector=with_vector)
        return [Hit(str(r.id), 1.0, dict(r.payload or {}),
                    np.asarray(_vector_of(r.vector), dtype=np.float32) if with_vector else None)
                for r in records]

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self._shard(collection).update(self.qe.UpdateOperation.set_payload([point_id], payload))

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if ids:
            self._shard(collection).update(self.qe.UpdateOperation.delete_points(list(ids)))

    def count(self, collection: str, where: Where | None = None) -> int:
        return int(self._shard(collection).count(
            self.qe.CountRequest(exact=True, filter=self._filter(where))))

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        """One page of points in id order and the offset of the next page (None: done)."""
        qe = self.qe
        records, nxt = self._shard(collection).scroll(qe.ScrollRequest(
            offset=offset, limit=limit, with_payload=True, with_vector=with_vector))
        hits = [Hit(str(r.id), 1.0, dict(r.payload or {}),
                    np.asarray(_vector_of(r.vector), dtype=np.float32) if with_vector else None)
                for r in records]
        return hits, None if nxt is None else str(nxt)

    def optimize(self, collection: str) -> bool:
        """Build HNSW for the collection. Holds the GIL: never call it on the event loop."""
        return bool(self._shard(collection).optimize())

    # aliases -------------------------------------------------------------------------------
    def set_alias(self, alias: str, collection: str) -> None:
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
        for shard in self._shards.values():
            shard.flush()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
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


def _as_list(vector: np.ndarray | list[float]) -> list[float]:
    return vector.tolist() if isinstance(vector, np.ndarray) else list(vector)


def _vector_of(vector: Any) -> Any:
    """Edge returns the default vector either bare or as {"": [...]}."""
    if isinstance(vector, dict):
        return next(iter(vector.values()))
    return vector


# ---------------------------------------------------------------------------------------------
# qdrant-client (server, cluster, or local mode)
# ---------------------------------------------------------------------------------------------


class QdrantClientStore:
    """qdrant-client backend; collection aliases are real Qdrant aliases on a server."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 path: Path | None = None, timeout: float = 10.0) -> None:
        from qdrant_client import QdrantClient, models

        self.m = models
        if url:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
        else:
            self.client = QdrantClient(path=str(path) if path else ":memory:")
        self.local = not url
        self._local_aliases: dict[str, str] = {}

    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        m = self.m
        if not self.client.collection_exists(name):
            self.client.create_collection(
                name, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
                hnsw_config=m.HnswConfigDiff(m=16, ef_construct=128))
            kinds = {"keyword": m.PayloadSchemaType.KEYWORD,
                     "integer": m.PayloadSchemaType.INTEGER, "float": m.PayloadSchemaType.FLOAT}
            for key, kind in indexes.items():
                # Local mode ignores payload indexes (and warns); a server needs them.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    self.client.create_payload_index(name, key, kinds[kind])

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if points:
            self.client.upsert(collection, [
                self.m.PointStruct(id=p.id, vector=_as_list(p.vector), payload=p.payload)
                for p in points], wait=True)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        res = self.client.query_points(collection, query=_as_list(vector), limit=limit,
                                       query_filter=self._filter(where), with_payload=True)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in res.points]

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True) -> list[Hit]:
        if not ids:
            return []
        recs = self.client.retrieve(collection, list(ids), with_payload=True,
                                    with_vectors=with_vector)
        return [Hit(str(r.id), 1.0, dict(r.payload or {}),
                    np.asarray(r.vector, dtype=np.float32) if with_vector else None)
                for r in recs]

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        self.client.set_payload(collection, payload=payload, points=[point_id], wait=True)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(collection, points_selector=self.m.PointIdsList(points=list(ids)))

    def count(self, collection: str, where: Where | None = None) -> int:
        return self.client.count(collection, count_filter=self._filter(where), exact=True).count

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        records, nxt = self.client.scroll(collection, offset=offset, limit=limit,
                                          with_payload=True, with_vectors=with_vector)
        hits = [Hit(str(r.id), 1.0, dict(r.payload or {}),
                    np.asarray(r.vector, dtype=np.float32) if with_vector else None)
                for r in records]
        return hits, None if nxt is None else str(nxt)

    def set_alias(self, alias: str, collection: str) -> None:
        if self.local:
            self._local_aliases[alias] = collection  # local mode has no alias API
            return
        m = self.m
        ops: list[Any] = [m.CreateAliasOperation(
            create_alias=m.CreateAlias(collection_name=collection, alias_name=alias))]
        if self.resolve(alias) is not None:
            ops.insert(0, m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def resolve(self, alias: str) -> str | None:
        if self.local:
            return self._local_aliases.get(alias)
        for a in self.client.get_aliases().aliases:
            if a.alias_name == alias:
                return a.collection_name
        return None

    def flush(self) -> None:
        """Writes use wait=True: nothing is buffered client-side."""

    def close(self) -> None:
        self.client.close()

    def _filter(self, where: Where | None) -> Any:
        if where is None:
            return None
        m = self.m
        must: list[Any] = [m.FieldCondition(key=k, match=m.MatchValue(value=v))
                           for k, v in where.equals.items()]
        must += [m.FieldCondition(key=k, range=m.Range(gte=v)) for k, v in where.at_least.items()]
        must_not = [m.HasIdCondition(has_id=list(where.exclude_ids))] if where.exclude_ids else None
        return m.Filter(must=must or None, must_not=must_not)


def open_store(settings: Any) -> VectorStore:
    """The backend the settings ask for: server URL, local mode path, or embedded Edge."""
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClientStore(url=settings.qdrant_url, api_key=key)
    if settings.qdrant_local_path:
        return QdrantClientStore(path=settings.qdrant_local_path)
    return EdgeStore(settings.data_dir / "qdrant")


def scroll_all(store: VectorStore, collection: str, page: int = 256,
               with_vector: bool = False) -> Iterable[Hit]:
    """Every point of a collection, page by page."""
    offset: str | None = None
    while True:
        hits, offset = store.scroll(collection, offset, page, with_vector)
        yield from hits
        if offset is None:
            return


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ---------------------------------------------------------------------------------------------
# Wrappers: metering and error translation around any backend
# ---------------------------------------------------------------------------------------------

_OPS = ("ensure_collection", "upsert", "search", "retrieve", "set_payload", "delete", "count",
        "scroll", "collections", "set_alias", "resolve", "flush", "optimize")


class MeteredStore:
    """Times every call into ``coldstream_vector_store_seconds{op}`` and turns backend failures
    into :class:`StoreError`, so callers retry store outages and nothing else."""

    def __init__(self, inner: VectorStore, metrics: Any) -> None:
        self.inner = inner
        self.metrics = metrics
        # Serving and a background model swap may call in from two threads; calls are short.
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in _OPS:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.metrics.store_call(name), self._lock:
                try:
                    return target(*args, **kwargs)
                except StoreError:
                    raise
                except Exception as exc:  # backend-specific errors: HTTP, gRPC, engine
                    raise StoreError(f"vector store {name} failed: {exc}") from exc

        return call

    def close(self) -> None:
        self.inner.close()


class FaultInjectingStore:
    """Test hook (``COLDSTREAM_TEST_STORE_FAULTS``): makes a fraction of store calls fail or
    slow down, so outage handling is tested against the real engine, not a mock."""

    def __init__(self, inner: VectorStore, spec: str, seed: int = 0) -> None:
        import random

        opts = dict(part.split("=", 1) for part in spec.split(",") if part)
        self.error_rate = float(opts.get("error_rate", 0))
        self.delay_s = float(opts.get("delay_s", 0))
        self.inner = inner
        self.rng = random.Random(int(opts.get("seed", seed)))
        self.injected = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in _OPS or name in ("ensure_collection", "collections"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            import time

            if self.delay_s:
                time.sleep(self.delay_s)
            if self.rng.random() < self.error_rate:
                self.injected += 1
                raise ConnectionError(f"injected vector-store fault #{self.injected} in {name}")
            return target(*args, **kwargs)

        return call

    def close(self) -> None:
        self.inner.close()
