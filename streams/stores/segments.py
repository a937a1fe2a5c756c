"""One collection's vectors in the worker: a sealed segment plus a growing one (Milvus's
growing/sealed segments; FreshDiskANN's read-only index plus an in-memory delta).

Every point has a slot: a row of ``vectors`` (unit vectors), a bit in ``alive`` and one value
per indexed payload field (:mod:`.columns`). The sealed segment is an index over a snapshot
of slots; a slot written or deleted since that snapshot is *dirty*: the sealed segment's copy
is stale, so sealed results are restricted to clean slots (a tombstone by bitmap, checked
inside the index scan) and the dirty live slots - the growing segment - are searched exactly.
A re-sent song or an updated user therefore shadows its sealed copy at once, and a deleted
slot reused for a new id is never answered from the old vector.

A merge builds a new sealed segment elsewhere (:mod:`.sealed`) and installs it: slots changed
while it was built (``pending``) become the new dirty set. A *full* merge snapshots every live
slot (:meth:`Segments.begin_snapshot`); a *delta* merge snapshots only the dirty slots
(:meth:`Segments.begin_delta`): the old index holds the current vector of every clean live
slot and nothing else, so removing the dirty slots' copies and adding the live dirty rows
gives the same set of points as a full build. Every method runs under ``lock``; callers hold
it for no longer than one numpy pass.

Growing rows are *listed* (``list_growing``): each written row is filed under the sealed
index's nearest IVF list, and a search scans only the growing rows of the lists it probes in
the sealed segment, plus the rows not listed yet (those written while the installed segment
was being built: :meth:`Segments.list_unlisted` files them after the install). The exact
scan of the whole growing segment was what kept search at 1M above its goal just before a
merge (Milvus indexes its growing segments with the sealed ones' lists for the same reason).
A growing row is then found as often as a sealed one (IVF recall); probing every list
(``nprobe`` >= lists) keeps search exact.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Point, Where
from .columns import Column, ColumnPayloads
from .listed import ListedRows
from .sealed import Coarse, SealedSegment, candidates, search_plain

#: Filters matching at most this many points are searched exactly: cheaper than any index.
EXACT_BELOW = 4096
#: Growing rows are read by list only when fewer than 1/LISTED_BELOW of the lists are probed.
LISTED_BELOW = 4
#: Rows of a float16 mirror converted per step of a full scan (numpy has no float16 BLAS).
SCAN_ROWS = 16_384
#: A filter that keeps at least this share of a sample of FILTER_SAMPLE slots is applied to
#: an over-fetched unfiltered search's hits instead of a bitmap over every slot.
POST_FILTER_SHARE = 0.9
FILTER_SAMPLE = 512


class Segments:
    """Slots, the sealed segment and the dirty bitmap of one collection."""

    def __init__(self, dim: int, indexes: dict[str, str], nprobe: int = 32,
                 dtype: str = "float32", list_growing: bool = True) -> None:
        """``dtype``: the mirror's storage (``float16`` halves it). A written vector is
        rounded to it first, so the mirror, the growing rows and every snapshot hold the
        same values and search stays exact over them. ``list_growing``: scan only the
        probed lists' growing rows (False: every growing row, exactly)."""
        self.lock = threading.RLock()
        self.dim, self.nprobe, cap = dim, nprobe, 1024
        self.list_growing = list_growing
        self.exact_below = EXACT_BELOW
        self._sampler = np.random.default_rng(0)  # slots that estimate a filter's share
        self.vectors = np.zeros((cap, dim), dtype=np.dtype(dtype))
        self.alive = np.zeros(cap, dtype=bool)
        self.dirty = np.zeros(cap, dtype=bool)  # changed since the sealed snapshot
        self.pending: np.ndarray | None = None  # changed since the snapshot being built
        self.columns = {key: Column(kind, cap) for key, kind in indexes.items()}
        self.stored = ColumnPayloads(self.columns, cap)  # payloads the columns hold whole
        self.ids: list[str | None] = []
        self.slot_of: dict[str, int] = {}
        self.free: list[int] = []
        self.sealed: SealedSegment | None = None
        self.merges = 0
        # The growing segment, contiguous: one row per dirty slot, so its exact search is one
        # matrix-vector product (a gather of scattered dirty rows cost ~5 ms at 11k rows).
        # Empty while nothing is sealed: every slot is growing then and the search reads
        # ``vectors`` itself (a copy would double the memory of a collection reloaded at start).
        self.grown = np.zeros((1024, dim), dtype=np.float32)
        self.grown_slot = np.zeros(1024, dtype=np.int64)
        self.grown_n = 0
        self.listed = ListedRows()  # each growing row's list (1 + IVF list; 0: none), and back
        self.row_of = np.full(cap, -1, dtype=np.int64)  # slot -> growing row (-1: none)

    # writes ------------------------------------------------------------------------------
    def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        vecs = np.asarray([np.asarray(p.vector, dtype=np.float32) for p in points])
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        if self.vectors.dtype != np.float32:
            vecs = vecs.astype(self.vectors.dtype).astype(np.float32)
        sealed = self.sealed
        listed = self._listed(sealed, vecs)  # ~4 ms per 340 x 512 (faiss lets the GIL go)
        with self.lock:
            if self.sealed is not sealed:  # installed meanwhile: list them after it
                listed = np.zeros(len(vecs), dtype=np.int32)
            for p, v, lst in zip(points, vecs, listed, strict=True):
                slot = self._slot(p.id)
                self.vectors[slot] = v
                for key, col in self.columns.items():
                    col.set(slot, p.payload.get(key))
                self.stored.wrote(slot, p.payload)
                self._touch(slot)
                self._stage(slot, v, int(lst))

    def _listed(self, sealed: SealedSegment | None, vecs: np.ndarray) -> np.ndarray:
        """1 + each vector's list in ``sealed`` (0 everywhere: not listed)."""
        if sealed is None or not self.list_growing:
            return np.zeros(len(vecs), dtype=np.int32)
        return (sealed.assign(vecs) + 1).astype(np.int32)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        """Payload changes move no vector: the slot stays where it is, only columns change."""
        with self.lock:
            slot = self.slot_of.get(point_id)
            if slot is None:
                return
            for key, value in payload.items():
                if key in self.columns:
                    self.columns[key].set(slot, value)
            self.stored.wrote(slot, payload, merge=True)

    def delete(self, ids: Sequence[str]) -> None:
        with self.lock:
            for pid in ids:
                slot = self.slot_of.pop(pid, None)
                if slot is None:
                    continue
                self.alive[slot] = False
                self.ids[slot] = None
                self.stored.forget(slot)
                self._touch(slot)
                self.free.append(slot)

    def _slot(self, point_id: str) -> int:
        slot = self.slot_of.get(point_id)
        if slot is not None:
            return slot
        if self.free:
            slot = self.free.pop()
            self.ids[slot] = point_id
        else:
            slot = len(self.ids)
            self.ids.append(point_id)
            if slot >= len(self.alive):
                self._grow(2 * len(self.alive))
        self.slot_of[point_id] = slot
        self.alive[slot] = True
        return slot

    def _touch(self, slot: int) -> None:
        self.dirty[slot] = True
        if self.pending is not None:
            self.pending[slot] = True

    def _stage(self, slot: int, vector: np.ndarray, listed: int) -> None:
        """Put a written slot's vector in the growing segment (its row, or a new one),
        filed under ``listed`` (1 + its list; 0: not listed)."""
        if self.sealed is None:
            return
        row = int(self.row_of[slot])
        if row < 0:
            row = self.grown_n
            if row == len(self.grown_slot):
                self._regrow(2 * row)
            self.grown_slot[row], self.row_of[slot] = slot, row
            self.grown_n += 1
        self.grown[row] = vector
        self.listed.file(row, listed)

    def _regrow(self, cap: int, rows: np.ndarray | None = None,
                slots: np.ndarray | None = None) -> None:
        """Room for ``cap`` growing rows, holding the current ones (or ``rows`` of ``slots``).

        ``np.zeros`` maps untouched pages, so room costs no memory until written; copying
        only the used rows (not ``concatenate`` with a zero block, which writes both) was
        2.5-4x cheaper at 16k-64k rows x 512, and the work thread pays it at each doubling."""
        if rows is None or slots is None:
            rows, slots = self.grown[:self.grown_n], self.grown_slot[:self.grown_n]
        self.grown, self.grown_slot = _widen(rows, cap), _widen(slots, cap)

    def _grow(self, cap: int) -> None:
        self.vectors = _widen(self.vectors, cap)
        self.alive, self.dirty = _widen(self.alive, cap), _widen(self.dirty, cap)
        row_of = np.full(cap, -1, dtype=np.int64)
        row_of[:len(self.row_of)] = self.row_of
        self.row_of = row_of
        if self.pending is not None:
            self.pending = _widen(self.pending, cap)
        for col in self.columns.values():
            col.grow(cap)
        self.stored.grow(cap)

    # reads -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def growing(self) -> int:
        """Live points answered by exact search (written since the sealed snapshot)."""
        with self.lock:
            if self.sealed is None:
                return len(self.slot_of)
            return int(np.count_nonzero(self.alive[self.grown_slot[:self.grown_n]]))

    def search(self, vector: np.ndarray, k: int,
               where: Where | None = None) -> list[tuple[str, float]] | None:
        """Top ``k`` (id, cosine) over both segments; None: a filter it cannot evaluate."""
        q = np.asarray(vector, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        with self.lock:
            if self.sealed is not None and (where is None or self._mostly_passes(where)):
                found = self._post_filtered(q, k, where)
                if found is not None:
                    return found
            allowed = self._allowed(where)
            if allowed is None:
                return None
            matching = int(np.count_nonzero(allowed))
            if matching <= self.exact_below:
                slots, scores = self._exact(np.flatnonzero(allowed), q, k)
            else:
                # A filter keeping a share s of the points probes nprobe/s lists: its
                # nearest matches may sit in lists far from the query (measured: genre
                # 1/10 at nprobe 16 gave recall 0.73 without this).
                share = matching / max(1, len(self.slot_of))
                nprobe = int(np.ceil(self.nprobe / max(share, 1e-6)))
                coarse = None if self.sealed is None else self.sealed.coarse(q, nprobe)
                slots, scores = self._growing_top(q, k, allowed, nprobe, coarse)
                if self.sealed is not None:
                    clean = allowed & ~self.dirty[:len(allowed)]
                    s_slots, s_scores = self._sealed_top(q, k, nprobe, clean, coarse)
                    slots, scores = _top(np.concatenate([s_slots, slots]),
                                         np.concatenate([s_scores, scores]), k)
            return [(self.ids[s], float(v)) for s, v in zip(slots, scores, strict=True)]

    def _mostly_passes(self, where: Where) -> bool:
        """Whether ``where`` keeps at least :data:`POST_FILTER_SHARE` of a sample of slots
        (the songs search, ``is_cold == 0`` minus the new song, keeps nearly all)."""
        n = len(self.ids)
        sample = self._sampler.integers(0, n, min(n, FILTER_SAMPLE)) if n else np.zeros(0, int)
        alive = self.alive[sample]
        passes = self._passes(where, sample)
        return passes is not None and bool(alive.any()) and \
            np.count_nonzero(passes) >= POST_FILTER_SHARE * np.count_nonzero(alive)

    def _post_filtered(self, q: np.ndarray, k: int, where: Where | None
                       ) -> list[tuple[str, float]] | None:
        """No filter, or one most points pass: over-fetch from the sealed index and drop the
        dirty slots and those the filter rejects, instead of building a bitmap over every
        slot per query (~1 ms at 1M). Exact over the probed lists' candidates: with k of
        them left, no rejected one could have displaced them. None: fewer were left; the
        caller takes the bitmap path."""
        assert self.sealed is not None
        want = 2 * k + 16
        coarse = self.sealed.coarse(q, self.nprobe)
        s_slots, s_scores = self._sealed_top(q, want, self.nprobe, coarse=coarse)
        keep = ~self.dirty[s_slots]
        if where is not None:
            keep &= self._passes(where, s_slots)  # type: ignore[operator]
        if np.count_nonzero(keep) < k and len(s_slots) == want:
            return None
        g_slots, g_scores = self._growing_top(q, k, self.alive if where is None else where,
                                              self.nprobe, coarse)
        slots, scores = _top(np.concatenate([s_slots[keep], g_slots]),
                             np.concatenate([s_scores[keep], g_scores]), k)
        return [(self.ids[s], float(v)) for s, v in zip(slots, scores, strict=True)]

    def _sealed_top(self, q: np.ndarray, k: int, nprobe: int, allowed: np.ndarray | None = None,
                    coarse: Coarse | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The sealed segment's top ``k`` with exact scores: an approximate segment's best
        :func:`~.sealed.candidates` by code are rescored from the mirror (a clean slot's
        mirror row is the row the segment indexed; dirty slots are dropped by every caller)."""
        sealed = self.sealed
        assert sealed is not None
        want = candidates(sealed.codes, k)
        if allowed is None:
            slots, scores = search_plain(sealed, q, want, nprobe, coarse)
        else:
            slots, scores = sealed.search(q, want, allowed, nprobe, coarse)
        if sealed.exact:
            return slots, scores
        return _top(slots, self._score(slots, q), k)

    def _score(self, slots: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Exact scores of the mirror's ``slots``: a float32 mirror is read in place (no copy
        of 1,000 rows of 2 kB per rescored query), a float16 one converted first."""
        if self.vectors.dtype == np.float32:
            return _dot_rows(self.vectors, slots, q)
        return _dot(self._rows(slots), q)

    def _rows(self, slots: np.ndarray) -> np.ndarray:
        """The mirror's rows as float32 (a copy)."""
        return as_float32(np.take(self.vectors, slots, axis=0))  # take: 2x a fancy index

    def _scan(self, q: np.ndarray, n: int) -> np.ndarray:
        """Scores of the first ``n`` slots against ``q``; a float16 mirror in steps."""
        if self.vectors.dtype == np.float32:
            return _dot(self.vectors[:n], q)
        return np.concatenate([_dot(as_float32(self.vectors[i:min(n, i + SCAN_ROWS)]), q)
                               for i in range(0, n, SCAN_ROWS)] or [np.zeros(0, np.float32)])

    def _allowed(self, where: Where | None) -> np.ndarray | None:
        """Every slot's pass of ``where`` (live ones only); None: it cannot be evaluated."""
        n = len(self.ids)
        return self.alive[:n].copy() if where is None else self._passes(where, slice(0, n))

    def _passes(self, where: Where, at: slice | np.ndarray) -> np.ndarray | None:
        """Which of the slots ``at`` are live and pass ``where``; None: a field it has no
        usable column for (the engine must answer)."""
        ok = self.alive[at].copy()
        for key, value in where.equals.items():
            col = self.columns.get(key)
            if col is None or not col.usable:
                return None
            ok &= col.equals(value, at)
        for key, bound in where.at_least.items():
            col = self.columns.get(key)
            if col is None or not col.usable:
                return None
            ok &= col.at_least(bound, at)
        gone = [s for pid in where.exclude_ids if (s := self.slot_of.get(pid)) is not None]
        if gone and isinstance(at, slice):
            ok[gone] = False
        elif gone:
            ok &= ~np.isin(at, gone)
        return ok

    def _growing_top(self, q: np.ndarray, k: int, allowed: np.ndarray | Where, nprobe: int,
                     coarse: Coarse | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of the growing segment: its rows in the lists a sealed search with
        ``nprobe`` scans (``coarse``, if found already), and the unlisted ones (every live
        slot while nothing is sealed). ``allowed``: a mask over every slot, or a filter
        evaluated on the rows read only (sealed segments only)."""
        if self.sealed is None:
            n = len(self.ids)
            scores, keep = self._scan(q, n), allowed[:n]
            return _top(np.flatnonzero(keep), scores[keep], k)
        rows = self._probed_rows(q, nprobe, coarse)
        if rows is None:
            rows = np.arange(self.grown_n)
        slots = self.grown_slot[rows]
        keep = allowed[slots] if isinstance(allowed, np.ndarray) else self._passes(allowed, slots)
        return _top(slots[keep], _dot_rows(self.grown, rows[keep], q), k)

    def _probed_rows(self, q: np.ndarray, nprobe: int,
                     coarse: Coarse | None = None) -> np.ndarray | None:
        """Growing rows a search with ``nprobe`` reads; None: all of them."""
        sealed = self.sealed
        assert sealed is not None
        if not self.list_growing or nprobe * LISTED_BELOW >= sealed.lists:
            return None  # most lists probed: one pass over every row beats a gather
        lists = (sealed.coarse(q, nprobe) if coarse is None else coarse)[1][0]
        return self.listed.rows_in([0, *(lists[lists >= 0] + 1).tolist()])  # 0: unlisted

    def _exact(self, slots: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if len(slots) == 0:
            return slots, np.zeros(0, dtype=np.float32)
        return _top(slots, self._score(slots, q), k)

    # merges ------------------------------------------------------------------------------
    def begin_snapshot(self) -> np.ndarray:
        """The live slots a new sealed segment will cover; changes from now on are pending."""
        with self.lock:
            n = len(self.ids)
            self.pending = np.zeros(len(self.alive), dtype=bool)
            return np.flatnonzero(self.alive[:n])

    def begin_delta(self) -> tuple[np.ndarray, np.ndarray]:
        """The dirty slots (their sealed copies go: stale, deleted or reused) and the live
        ones among them (added with their current vectors); changes from now on are pending.
        Only valid against the installed sealed segment's index: dirty is relative to it."""
        with self.lock:
            n = len(self.ids)
            self.pending = np.zeros(len(self.alive), dtype=bool)
            dirty = np.flatnonzero(self.dirty[:n])
            return dirty, dirty[self.alive[dirty]]

    @property
    def dirty_count(self) -> int:
        """Slots changed since the sealed snapshot (live or not): what a delta merge rewrites."""
        with self.lock:
            return int(np.count_nonzero(self.dirty[:len(self.ids)]))

    def vectors_of(self, ids: Sequence[str]) -> list[np.ndarray | None]:
        """A copy of each id's current (unit) vector; None for an id it does not hold."""
        with self.lock:
            slots = [self.slot_of.get(pid) for pid in ids]
            return [None if s is None else self.vectors[s].astype(np.float32) for s in slots]

    def payloads_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of those ``ids`` that the columns hold whole (the rest: the engine's
        to answer), as the engine holds them now: writes reach both under this lock."""
        with self.lock:
            known = [(pid, slot) for pid in ids if (slot := self.slot_of.get(pid)) is not None]
            got = self.stored.payloads([slot for _, slot in known])
        return {pid: payload for (pid, _), payload in zip(known, got, strict=True)
                if payload is not None}

    def copy_rows(self, slots: np.ndarray) -> np.ndarray:
        """The current vectors of ``slots`` as float32 (a slot changed meanwhile is pending
        anyway)."""
        with self.lock:
            return self._rows(slots)

    def install(self, sealed: SealedSegment | None) -> bool:
        """Swap in the new sealed segment atomically (None: the build failed, keep the old).
        False: nothing was installed (no snapshot was begun)."""
        with self.lock:
            done = sealed is not None and self.pending is not None
            if done:
                self.sealed, self.dirty = sealed, self.pending
                self._compact_growing()
                self.merges += 1
            self.pending = None
            return done

    def list_unlisted(self, chunk: int = 4096) -> int:
        """File up to ``chunk`` unlisted growing rows under the installed segment's lists;
        the rows still to do after it (0: done). The assignment runs outside the lock; a row
        rewritten meanwhile (its vector changed) keeps what its write gave it."""
        with self.lock:
            sealed = self.sealed
            if sealed is None or not self.list_growing:
                return 0
            todo = self.listed.rows_in([0])
            rows = np.sort(todo)[:chunk]
            vecs = self.grown[rows]
        if len(rows) == 0:
            return 0
        listed = self._listed(sealed, vecs)
        with self.lock:
            if self.sealed is not sealed:
                return 0
            same = (self.listed.list_of[rows] == 0) & np.all(self.grown[rows] == vecs, axis=1)
            lists = self.listed.list_of[:self.grown_n].copy()
            lists[rows[same]] = listed[same]
            self.listed.reset(lists, sealed.lists)
        return len(todo) - len(rows)

    def _compact_growing(self) -> None:
        """The growing rows are now the live slots still dirty (written since the new
        snapshot), copied from the mirror: it holds every slot's current vector."""
        n = len(self.ids)
        kept = np.flatnonzero(self.dirty[:n] & self.alive[:n])
        # Room for as many again: the next write would otherwise copy them all at once.
        self._regrow(max(1024, 2 * len(kept)), self._rows(kept), kept)
        self.grown_n = len(kept)
        assert self.sealed is not None
        self.listed.reset(np.zeros(len(kept), dtype=np.int32), self.sealed.lists)  # unlisted
        self.row_of[:] = -1
        self.row_of[kept] = np.arange(len(kept))


def as_float32(rows: np.ndarray) -> np.ndarray:
    """``rows`` (one vector or a matrix) as float32, exactly: a copy unless they are float32
    already. float16 is converted by faiss's fp16 decoder (bit-exact against numpy's cast
    for every finite value, ``tests/streams/test_segments.py``): 0.31 ms for 1,000 x 512,
    against 0.5 ms for a lookup table and 1.2 ms for numpy's cast, which this numpy does not
    vectorise. Rescoring pq4 candidates converts that many rows per query."""
    if rows.dtype == np.float32:
        return rows
    import faiss

    half = np.ascontiguousarray(rows, dtype=np.float16)
    out = np.empty(half.shape, dtype=np.float32)
    if half.size:
        dim = half.shape[-1]
        _half_decoder(dim).decode_c(faiss.swig_ptr(half.view(np.uint8)), faiss.swig_ptr(out),
                                    half.size // dim)
    return out


@functools.cache
def _half_decoder(dim: int) -> Any:
    """faiss's float16 codec for ``dim`` components (stateless: decoding is thread-safe)."""
    import faiss

    return faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)


def _dot(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Scores of float32 rows against q, by faiss's SIMD loop on this thread: never BLAS,
    which hands a matvec this size to its threads (on a busy machine p99 ~85 ms, 11k x 128);
    half the time of numpy's einsum (0.05 vs 0.10 ms for 1,000 x 512)."""
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    out = np.empty(len(rows), dtype=np.float32)
    if len(rows):
        faiss.fvec_inner_products_ny(
            faiss.swig_ptr(out), faiss.swig_ptr(np.ascontiguousarray(q, dtype=np.float32)),
            faiss.swig_ptr(rows), rows.shape[1], len(rows))
    return out


def _dot_rows(matrix: np.ndarray, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Scores of ``matrix[rows]`` against q, read in place by faiss: no copy of the rows
    (1,600 growing rows of 512: 0.33 against 0.55 ms for numpy's gather and einsum)."""
    import faiss

    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous  # read by pointer
    ids = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(len(ids), dtype=np.float32)
    if len(ids):
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(out), faiss.swig_ptr(np.ascontiguousarray(q, dtype=np.float32)),
            faiss.swig_ptr(matrix), faiss.swig_ptr(ids), matrix.shape[1], 1, len(ids))
    return out


def _widen(rows: np.ndarray, cap: int) -> np.ndarray:
    """``rows`` in a zeroed array of ``cap`` rows (same dtype and row shape)."""
    out = np.zeros((cap, *rows.shape[1:]), dtype=rows.dtype)
    out[:len(rows)] = rows
    return out


def _top(slots: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best by score, best first; ties broken by slot for a stable order."""
    if len(slots) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        slots, scores = slots[part], scores[part]
    order = np.lexsort((slots, -scores))
    return slots[order], scores[order]
