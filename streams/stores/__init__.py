"""The vector store: one small interface, two backends of the real Qdrant engine.

* :mod:`.base` - the interface (:class:`VectorStore`), :class:`Point`, :class:`Hit`,
  :class:`Where` and paging helpers;
* :mod:`.edge` - :class:`EdgeStore`, Qdrant Edge in-process (the embedded default);
* :mod:`.qdrant` - :class:`QdrantClientStore`, qdrant-client against a server or local mode;
* :mod:`.wrapper` - :class:`StoreWrapper`, the explicit interface routed through one method;
* :mod:`.metered` - :class:`MeteredStore`, timing and error translation around either;
* :mod:`.segmented` - :class:`SegmentedStore`, in-worker indexed search over sealed + growing
  segments (:mod:`.segments`, :mod:`.sealed`, :mod:`.columns`) for the embedded engine;
* :mod:`.yielding` - :class:`~.yielding.YieldingStore`, a model swap's view of the store: each
  call first gives way to the worker's event work;
* :mod:`.pageout` - hands the engine's mapped vector pages back to the kernel after a reload;
* :mod:`.faults` - a test hook, imported only when ``COLDSTREAM_TEST_STORE_FAULTS`` is set.
"""

from __future__ import annotations

from typing import Any

from .base import Hit, Point, VectorStore, Where, chunks, make_hit, scroll_all
from .edge import EdgeStore
from .metered import MeteredStore
from .qdrant import QdrantClientStore
from .segmented import SegmentedStore

__all__ = ["EdgeStore", "Hit", "MeteredStore", "Point", "QdrantClientStore", "SegmentedStore",
           "VectorStore", "Where", "chunks", "make_hit", "open_store", "scroll_all"]


def open_store(settings: Any) -> VectorStore:
    """The backend the settings ask for: server URL, local mode path, or embedded Edge."""
    if settings.qdrant_url:
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClientStore(url=settings.qdrant_url, api_key=key,
                                 dtype=settings.vector_dtype)
    if settings.qdrant_local_path:
        return QdrantClientStore(path=settings.qdrant_local_path, dtype=settings.vector_dtype)
    edge = EdgeStore(settings.data_dir / "qdrant", settings.store_flush_points,
                     settings.store_presync, settings.vector_dtype)
    if settings.search_index == "engine":
        return edge
    return SegmentedStore(edge, settings.data_dir / "segments", settings.segment_merge_rows,
                          settings.segment_nprobe,
                          retrain_share=settings.segment_retrain_share,
                          codes=settings.segment_codes, dtype=settings.vector_dtype,
                          page_out=settings.segment_page_out,
                          list_growing=settings.segment_growing_lists,
                          engine_indexes=settings.engine_payload_indexes)
