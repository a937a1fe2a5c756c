"""The one per-message failure handler: record where the event came from and why it failed,
send it to the dead-letter topic, and let the stream go on."""

from __future__ import annotations

import base64
import logging
from typing import Any

from .errors import ColdstreamError
from .events import DeadLetter, encode, now_ms

log = logging.getLogger(__name__)

#: Dead letters must stay under the broker's message size limit (1 MiB by default).
MAX_ORIGINAL_BYTES = 512 * 1024


def error_kind(exc: BaseException) -> str:
    """The DLQ ``error_kind`` (and metric label) of a failure: our errors name their kind,
    anything else is a bug in the worker ("internal")."""
    return exc.kind if isinstance(exc, ColdstreamError) else "internal"


def dead_letter(value: bytes | None, topic: str, partition: int, offset: int,
                exc: BaseException) -> DeadLetter:
    raw = value or b""
    kind = error_kind(exc)
    message = str(exc) if isinstance(exc, ColdstreamError) else f"{type(exc).__name__}: {exc}"
    return DeadLetter(
        schema_version=1, event_id=f"dlq:{topic}:{partition}:{offset}",
        original_b64=base64.b64encode(raw[:MAX_ORIGINAL_BYTES]).decode("ascii"),
        original_size=len(raw), source_topic=topic, source_partition=partition,
        source_offset=offset, error_kind=kind, error_message=message[:2000],
        failed_at=now_ms())


async def send_to_dlq(dlq_topic: Any, event: Any, exc: BaseException) -> DeadLetter:
    msg = event.message
    record = dead_letter(event.value, msg.topic, msg.partition, msg.offset, exc)
    log.warning("dead-lettered %s[%d]@%d: %s: %s", msg.topic, msg.partition, msg.offset,
                record.error_kind, record.error_message[:200])
    await dlq_topic.send(key=event.key, value=encode(record))
    return record
