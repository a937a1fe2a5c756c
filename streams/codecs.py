"""Kafka compression codecs: which ones this process can read, and a test hook to lose one.

aiokafka decodes gzip with the standard library and snappy, lz4 and zstd with ``cramjam``
(its ``snappy``/``lz4``/``zstd`` extras), which Coldstream declares as a dependency: every codec
a producer may choose is readable on every input topic. The hook below makes the client act as
if a codec's library were missing, which is how the worker met its first lz4 batch before
(``UnsupportedCodecError``), so the stop-and-alert path (:mod:`streams.unreadable`) is tested
on a real fetch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import aiokafka.codec

log = logging.getLogger(__name__)

#: Codec names as Kafka's ``compression.type`` spells them (``none`` excepted).
CODECS = ("gzip", "snappy", "lz4", "zstd")


def available() -> dict[str, bool]:
    """Which codecs aiokafka can decode in this process."""
    return {name: bool(getattr(aiokafka.codec, f"has_{name}")()) for name in CODECS}


def disable_codecs(names: Iterable[str]) -> None:
    """Test hook: aiokafka reports these codecs' libraries as missing from now on."""
    for name in names:
        if name not in CODECS:
            raise ValueError(f"unknown codec {name!r}; one of {', '.join(CODECS)}")
        setattr(aiokafka.codec, f"has_{name}", lambda: False)
        log.warning("TEST HOOK: the Kafka client behaves as if the %s library were missing", name)
