"""In-memory table state kept as encoded bytes, so the garbage collector never walks it.

Faust's memory store keeps each table value as the Python object it decoded: a user's state
is a dict holding a dozen lists, a song's listeners a list of lists. Every user an
interaction touches adds those objects to the collector's oldest generation for good, and a
full collection walks all of them with the GIL held: 1.16M objects after 4 minutes of a 200k
soak, and a 0.7 s stall of the event loop in the 1M soak (``streams.gc_census``,
docs/benchmarks.md). This store keeps each value as its JSON bytes (orjson), which the
collector does not track, and decodes a fresh copy on every read, as the RocksDB store does.

A read returns a copy: changing it changes nothing until it is written back with
``table[key] = value``, which is also the only way a change reaches the changelog. Values go
through JSON on the way in, so a tuple reads back as a list, as it does after a recovery.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
from faust.stores import STORES
from faust.stores.memory import Store as MemoryStore

SCHEME = "memory+packed"


def encode_value(value: Any) -> bytes:
    """JSON bytes as Faust's json codec would write them (non-str keys become strings).

    Copied out of orjson's result: that object keeps orjson's whole 4 KiB write buffer
    however short the JSON (100k small values: 412 MB of RSS, against 6 MB copied); the copy
    costs 0.15 us."""
    return memoryview(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)).tobytes()


class PackedValues(MutableMapping[Any, Any]):
    """A dict whose values are held encoded; reads decode, writes encode."""

    __slots__ = ("raw",)

    def __init__(self) -> None:
        self.raw: dict[Any, bytes] = {}

    def __getitem__(self, key: Any) -> Any:
        return orjson.loads(self.raw[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        self.raw[key] = encode_value(value)

    def __delitem__(self, key: Any) -> None:
        del self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def __iter__(self) -> Iterator[Any]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def clear(self) -> None:
        """At once, without decoding each value (MutableMapping's pops them one by one)."""
        self.raw.clear()

    def nbytes(self) -> int:
        """Bytes of encoded values held (tests)."""
        return sum(len(v) for v in self.raw.values())


class PackedMemoryStore(MemoryStore):
    """Faust's memory store (rebuilt from the changelog at every start) over
    :class:`PackedValues`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = PackedValues()


def register() -> None:
    """Make ``memory+packed://`` resolve to :class:`PackedMemoryStore` (idempotent)."""
    STORES.aliases[SCHEME] = f"{__name__}:PackedMemoryStore"
