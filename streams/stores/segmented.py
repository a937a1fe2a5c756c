"""Indexed search for the embedded store without stalling the worker: sealed + growing segments.

The backend (Qdrant Edge) stays the store of record: every write goes to it first, then to the
collection's :class:`~.segments.Segments` mirror under the same lock. ``search`` is answered
by the mirror; so are the hits' payloads where the mirror's columns hold them whole (a
listener's), the others come from the backend in one ``retrieve``. A filter the mirror cannot
evaluate, or a collection it does not hold, goes to the backend as before.

A merger thread watches the growing segments. When one holds ``merge_rows`` points (or a
twentieth of its sealed segment, whichever is more: the exact part of every search stays
small next to the indexed one), it snapshots the collection to ``workdir`` in chunks, builds
the new sealed segment in a child process (:mod:`.sealed`) and installs it. The thread only
waits on the child and copies chunks of rows, both without the GIL held for more than a few
milliseconds (measured in ``coldstream bench --only segments``).

Most merges are *deltas*: the last built index of each collection is kept in ``workdir``
(``<collection>.faiss``), the snapshot holds only the dirty slots, and the child patches the
old index (remove the dirty slots, add the live ones) instead of re-running k-means over
every row - a collection updated thousands of times a second (users) would otherwise rebuild
everything back to back. A *full* build (retrain) runs when there is no previous index, when
the rows changed since the last training reach ``retrain_share`` of the index (the centroids
drift from the data), or when the live count moved past ``relist_factor`` times (or below
1/``relist_factor`` of) the count the list count was chosen for (sqrt(rows) lists).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Hit, Point, VectorStore, Where, scroll_all
from .sealed import DEFAULT_CODES, SealedSegment, finish_build, start_build
from .segments import Segments
from .wrapper import StoreWrapper

log = logging.getLogger(__name__)

COPY_BYTES = 1 << 20  # copied per lock hold while snapshotting: ~0.3 ms with the GIL held


class SegmentedStore(StoreWrapper):
    """A backend whose searches run on in-worker segments; merges build in a child process."""

    def __init__(self, inner: VectorStore, workdir: Path, merge_rows: int = 20_000,
                 nprobe: int = 32, check_s: float = 1.0, build_threads: int = 1,
                 retrain_share: float = 0.5, relist_factor: float = 2.0,
                 codes: str = DEFAULT_CODES, dtype: str = "float32", page_out: bool = False,
                 list_growing: bool = True, engine_indexes: bool = False) -> None:
        """``codes``: what a full build stores per row (``sq8``, ``pq4`` or ``flat``,
        :mod:`.sealed`); a delta merge keeps its base's. ``dtype``: the mirrors' storage
        (:class:`Segments`).
        ``page_out``: release the engine's vector pages after reloads and merges.
        ``list_growing``: search growing rows by the sealed lists (:class:`Segments`).
        ``engine_indexes``: also build the backend's payload indexes. Off by default: the
        mirror's columns answer every filter on those keys, and in Qdrant Edge each index
        makes every flush cost in proportion to the whole collection, with the GIL held
        (docs/benchmarks.md, "Stop 41"); a filter the columns cannot answer still runs in
        the backend, unindexed."""
        super().__init__(inner)
        import faiss  # here, at start: a first import in the merger thread holds the GIL

        # One query at a time: OpenMP threads only spin between searches and take the core
        # the exact (numpy) part and the rest of the worker need.
        faiss.omp_set_num_threads(1)
        self.workdir = Path(workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)  # snapshots a crash left behind
        self.merge_rows, self.nprobe, self.check_s = merge_rows, nprobe, check_s
        self.build_threads, self.codes, self.dtype = build_threads, codes, dtype
        self.page_out, self.list_growing = page_out, list_growing
        self.engine_indexes = engine_indexes
        self.retrain_share, self.relist_factor = retrain_share, relist_factor
        self.segments: dict[str, Segments] = {}
        self.builds: list[dict[str, Any]] = []  # what each build did (pid, mode, rows, s)
        self.on_merge: Callable[[dict[str, Any]], None] | None = None  # after each install
        self._aliases: dict[str, str] = {}  # set by this process
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._merging = threading.Lock()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None

    # the mirror ----------------------------------------------------------------------------
    def ensure_collection(self, name: str, dim: int, indexes: dict[str, str]) -> None:
        """Create in the backend, then load its points (a restart) into a new mirror, whose
        columns hold ``indexes``."""
        self.inner.ensure_collection(name, dim, indexes if self.engine_indexes else {})
        with self._guard:
            if name in self.segments:
                return
            seg = Segments(dim, indexes, self.nprobe, self.dtype, self.list_growing)
            batch: list[Point] = []
            for hit in scroll_all(self.inner, name, page=1024, with_vector=True):
                batch.append(Point(hit.id, hit.vector, hit.payload))  # type: ignore[arg-type]
                if len(batch) == 1024:
                    seg.upsert(batch)
                    batch = []
            seg.upsert(batch)
            self.segments[name] = seg
            self._release_engine_pages(name)  # the reload read them all; serving only writes
            self._start()

    def _release_engine_pages(self, collection: str) -> None:
        """The engine's vector pages go back to the kernel: the mirror answers every vector
        read, so they would only hold memory (:mod:`.pageout`); writes then read their page
        back, which the soak measured as a cost (docs/benchmarks.md), hence a choice."""
        release = getattr(self.inner, "release_vector_pages", None)
        if self.page_out and release is not None:
            release(collection)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        seg = self.segments.get(collection)
        if seg is None:
            self.inner.upsert(collection, points)
            return
        with seg.lock:
            self.inner.upsert(collection, points)
            seg.upsert(points)

    def set_payload(self, collection: str, point_id: str, payload: dict[str, Any]) -> None:
        seg = self.segments.get(collection)
        if seg is None:
            self.inner.set_payload(collection, point_id, payload)
            return
        with seg.lock:
            self.inner.set_payload(collection, point_id, payload)
            seg.set_payload(point_id, payload)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        seg = self.segments.get(collection)
        if seg is None:
            self.inner.delete(collection, ids)
            return
        with seg.lock:
            self.inner.delete(collection, ids)
            seg.delete(ids)

    def search(self, collection: str, vector: np.ndarray, limit: int,
               where: Where | None = None) -> list[Hit]:
        seg = self.segments.get(collection)
        found = None if seg is None else seg.search(vector, limit, where)
        if found is None:
            return self.inner.search(collection, vector, limit, where)
        payloads = self._payloads(collection, seg, [pid for pid, _ in found])
        return [Hit(pid, score, payloads[pid]) for pid, score in found if pid in payloads]

    def _payloads(self, collection: str, seg: Segments, ids: Sequence[str]
                  ) -> dict[str, dict[str, Any]]:
        """Each held id's payload: from the mirror's columns where they hold it whole, else
        from the engine (one ``retrieve`` for the rest)."""
        with seg.lock:
            payloads = seg.payloads_of(ids)
            rest = [pid for pid in ids if pid not in payloads]
            if rest:
                payloads.update((h.id, h.payload) for h in
                                self.inner.retrieve(collection, rest, with_vector=False))
        return payloads

    def retrieve(self, collection: str, ids: Sequence[str], with_vector: bool = True,
                 with_payload: bool = True) -> list[Hit]:
        """Payloads from the mirror's columns or the engine (:meth:`_payloads`); vectors,
        where the collection has a mirror, from it.

        Serving then never reads the engine's vector files. At 1M songs + 1M listeners they
        are 4 GB of page cache; under a memory limit that leaves them little room, each
        lookup that missed it read the disk (an 8 GB cgroup: 81 interactions/s with vectors
        from the engine, 190/s from the mirror; ``coldstream bench --only scale``). Both reads
        hold the mirror's lock, so no write lands between a payload and its vector.

        ``with_payload=False`` (a song's vector for a listener's history): the mirror alone
        answers, and a song's payload, which the columns never hold whole, is not read from
        the engine only to be dropped."""
        seg = self.segments.get(collection)
        if seg is None:
            return self.inner.retrieve(collection, ids, with_vector, with_payload)
        with seg.lock:
            if with_payload:
                payloads = self._payloads(collection, seg, ids)
            else:
                payloads = {pid: {} for pid in ids if pid in seg.slot_of}
            held = [pid for pid in ids if pid in payloads]
            vectors = seg.vectors_of(held) if with_vector else [None] * len(held)
        return [Hit(pid, 1.0, payloads[pid], v) for pid, v in zip(held, vectors, strict=True)]

    def set_alias(self, alias: str, collection: str) -> None:
        """Point the alias; a collection no alias serves any more (the old model version after
        a swap) loses its mirror: its memory is freed and its searches go to the engine."""
        old = self.inner.resolve(alias)
        self.inner.set_alias(alias, collection)
        self._aliases[alias] = collection
        if old and old != collection and old not in self._aliases.values():
            seg = self.segments.get(old)
            if seg is not None:
                with seg.lock:
                    self.segments.pop(old, None)
                self._base_file(old).unlink(missing_ok=True)  # (a merge in flight: below)

    # merges --------------------------------------------------------------------------------
    def needs_merge(self, seg: Segments) -> bool:
        sealed = 0 if seg.sealed is None else seg.sealed.rows
        return seg.growing >= max(self.merge_rows, sealed // 20)

    def delta_base(self, seg: Segments) -> Path | None:
        """The index file a delta merge patches, or None: build from scratch (no kept index,
        too many rows changed since the last training, or the list count no longer fits)."""
        old = seg.sealed
        if old is None or old.path is None or not old.path.exists():
            return None
        trained = int(old.info.get("trained_rows", old.rows))
        changed = int(old.info.get("changed_since_training", 0)) + seg.dirty_count
        if changed >= self.retrain_share * max(1, old.rows):
            return None
        if not trained / self.relist_factor <= len(seg) <= trained * self.relist_factor:
            return None
        return old.path

    def merge(self, collection: str, full: bool = False) -> dict[str, Any] | None:
        """Build and install a new sealed segment for ``collection`` now, a delta from the
        last one when :meth:`delta_base` allows and not ``full`` (None: nothing to do or the
        build failed; the old segment keeps serving)."""
        seg = self.segments.get(collection)
        if seg is None or len(seg) == 0:
            return None
        with self._merging:
            start = time.perf_counter()
            old = seg.sealed
            base = None if full else self.delta_base(seg)
            folder = self.workdir / f"{collection}-{time.time_ns()}"
            folder.mkdir(parents=True)
            try:
                sealed = self._build(seg, folder, base)
            except Exception:
                log.exception("segment merge of %s failed; the old segment keeps serving",
                              collection)
                seg.install(None)
                return None
            finally:
                self._child = None
            try:
                if not seg.install(sealed):
                    return None
                sealed.path = self._keep(collection, folder / "index.faiss")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if self.segments.get(collection) is not seg:  # dropped while it was built
                self._base_file(collection).unlink(missing_ok=True)
            while seg.list_unlisted():  # the rows written while it was built
                time.sleep(0)
            self._release_engine_pages(collection)  # those the writes since paged back in
            info = {"collection": collection, **_lineage(sealed.info, old),
                    "merge_s": time.perf_counter() - start}
            sealed.info = info
            self.builds.append(info)
            if self.on_merge is not None:
                self.on_merge(info)
            return info

    def _build(self, seg: Segments, folder: Path, base: Path | None) -> SealedSegment:
        """Snapshot (every live slot, or the dirty ones for a delta), run the child, load."""
        if base is None:
            write_snapshot(seg, seg.begin_snapshot(), folder)
        else:
            dirty, live = seg.begin_delta()
            np.save(folder / "removed.npy", dirty.astype(np.int64))
            write_snapshot(seg, live, folder)
        self._child = start_build(folder, self.build_threads, base, self.codes)
        if self._stop.is_set():
            self._child.kill()
        return finish_build(self._child, folder)

    def _base_file(self, collection: str) -> Path:
        return self.workdir / f"{collection}.faiss"

    def _keep(self, collection: str, built: Path) -> Path | None:
        """Move the installed segment's index file where the next delta merge reads it
        (None: it could not be kept; the next merge is a full build)."""
        try:
            os.replace(built, self._base_file(collection))
        except OSError:
            log.exception("could not keep the index of %s; its next merge is a full build",
                          collection)
            self._base_file(collection).unlink(missing_ok=True)
            return None
        return self._base_file(collection)

    def _start(self) -> None:
        if self._thread is None and self.merge_rows > 0:
            self._thread = threading.Thread(target=self._merge_loop, name="segment-merger",
                                            daemon=True)
            self._thread.start()

    def _merge_loop(self) -> None:
        while not self._stop.wait(self.check_s):
            for name, seg in list(self.segments.items()):
                if self._stop.is_set():
                    return
                if self.needs_merge(seg):
                    self.merge(name)

    def close(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.inner.close()


def _lineage(info: dict[str, Any], old: SealedSegment | None) -> dict[str, Any]:
    """``info`` plus what the retrain rule needs next time: the rows the lists were trained
    for, and the slots changed since (each delta adds its dirty slots, deletes included)."""
    if info.get("mode") != "delta" or old is None:
        return {**info, "trained_rows": info["rows"], "changed_since_training": 0}
    return {**info, "trained_rows": int(old.info.get("trained_rows", old.rows)),
            "changed_since_training": int(old.info.get("changed_since_training", 0))
            + int(info["dirty"])}


def write_snapshot(seg: Segments, slots: np.ndarray, folder: Path) -> None:
    """``vectors.npy`` and ``labels.npy`` for the child, copied a chunk per lock hold.

    Written with ``tofile`` (the write releases the GIL), not a memmap: flushing a memmap
    (msync) held the GIL for ~35 ms at 100k x 128.
    """
    np.save(folder / "labels.npy", slots.astype(np.int64))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (len(slots), seg.dim)}
    rows = max(64, COPY_BYTES // (4 * seg.dim))
    with open(folder / "vectors.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for i in range(0, len(slots), rows):
            seg.copy_rows(slots[i:i + rows]).tofile(fh)
            time.sleep(0)  # let the event loop's thread take the GIL between chunks
