"""qdrant-client backend: a Qdrant server or cluster (production), or local mode (tests; same
API, no HNSW).

The HTTP client may be called from two threads at once (serving and a model swap). Local mode
keeps its collections in plain Python objects, so there every call takes one lock.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Hit, Point, Where, as_list, make_hit


class QdrantClientStore:
    """qdrant-client backend; collection aliases are real Qdrant aliases on a server."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 path: Path | None = None, timeout: float = 10.0,
                 dtype: str = "float32") -> None:
        """``dtype``: how a new collection stores its vectors (``float16`` halves them)."""
        from qdrant_client import QdrantClient, models

        self.m = models
        if url:
            self.client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout))
        else:
            self.client = QdrantClient(path=str(path) if path else ":memory:")
        self.local = not url
        self.dtype = dtype
        self._local_aliases: dict[str, str] = {}
        self._lock: Any = threading.RLock() if self.local else contextlib.nullcontext()

    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        m = self.m
        with self._lock:
            if self.client.collection_exists(name):
                return
            self.client.create_collection(
                name, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE,
                                                    datatype=m.Datatype(self.dtype)),
                hnsw_config=m.HnswConfigDiff(m=16, ef_construct=128))
            kinds = {"keyword": m.PayloadSchemaType.KEYWORD,
                     "integer": m.PayloadSchemaType.INTEGER, "float": m.PayloadSchemaType.FLOAT}
            for key, kind in indexes.items():
                # Local mode ignores payload indexes (and warns); a server needs them.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    self.client.create_payload_index(name, key, kinds[kind])

    def collections(self) -> list[str]:
        with self._lock:
            return sorted(c.name for c in self.client.get_collections().collections)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = [self.m.PointStruct(id=p.id, vector=as_list(p.vector), payload=p.payload)
                   for p in points]
        with self._lock:
            self.client.upsert(collection, structs, wait=True)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        with self._lock:
            res = self.client.query_points(collection, query=as_list(vector), limit=limit,
                                           query_filter=self._filter(where), with_payload=True)
        return [make_hit(p.id, p.payload, p.score) for p in res.points]

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True,
                 with_payload: bool = True) -> list[Hit]:
        if not ids:
            return []
        with self._lock:
            recs = self.client.retrieve(collection, list(ids), with_payload=with_payload,
                                        with_vectors=with_vector)
        return [make_hit(r.id, r.payload, vector=r.vector if with_vector else None) for r in recs]

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.client.set_payload(collection, payload=payload, points=[point_id], wait=True)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock:
            self.client.delete(collection, points_selector=self.m.PointIdsList(points=list(ids)))

    def count(self, collection: str, where: Where | None = None) -> int:
        with self._lock:
            return self.client.count(collection, count_filter=self._filter(where),
                                     exact=True).count

    def scroll(self, collection: str, offset: str | None, limit: int,
               with_vector: bool = False) -> tuple[list[Hit], str | None]:
        with self._lock:
            records, nxt = self.client.scroll(collection, offset=offset, limit=limit,
                                              with_payload=True, with_vectors=with_vector)
        hits = [make_hit(r.id, r.payload, vector=r.vector if with_vector else None)
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
        with self._lock:
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
