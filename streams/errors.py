"""One error root for Coldstream; each per-event error names its DLQ ``kind``.

ColdstreamError
├── EventError                 a single event cannot be processed (goes to the DLQ)
│   ├── DecodeError            not JSON / not an object / too large
│   ├── EventValidationError   wrong or missing fields, bad values
│   │   └── SchemaVersionError unknown schema_version
│   ├── UnknownEntityError     refers to a song/user we do not know
│   └── AudioError             audio_uri refused or undecodable
│       ├── AudioNotAllowed    scheme/root/traversal/symlink escape
│       ├── AudioTooLarge      byte or duration limit
│       └── AudioDecodeError   the decoder failed
├── StoreError                 the vector store failed (retried, never DLQ'd)
│   └── EmbeddedStoreLocked    a second process opened the embedded engine
├── ModelArtifactError         a model directory is missing, broken or mismatched
└── StateFormatError           a stored user state is newer than this worker reads
"""

from __future__ import annotations


class ColdstreamError(Exception):
    """Root of every error Coldstream raises on purpose."""

    kind = "error"


class EventError(ColdstreamError):
    """A per-event failure: the event goes to the dead-letter topic, the stream goes on."""

    kind = "event"


class DecodeError(EventError):
    kind = "decode"


class EventValidationError(EventError):
    kind = "validation"


class SchemaVersionError(EventValidationError):
    kind = "schema_version"


class UnknownEntityError(EventError):
    kind = "unknown_entity"


class AudioError(EventError):
    kind = "audio"


class AudioNotAllowed(AudioError):
    kind = "audio_not_allowed"


class AudioTooLarge(AudioError):
    kind = "audio_too_large"


class AudioDecodeError(AudioError):
    kind = "audio_decode"


class StoreError(ColdstreamError):
    """The vector store failed; callers retry with backoff and do not commit the event."""

    kind = "store"


class EmbeddedStoreLocked(StoreError):
    kind = "store_locked"


class ModelArtifactError(ColdstreamError):
    kind = "model_artifact"


class StateFormatError(ColdstreamError):
    """A stored table value has a format newer than this worker reads (a rollback across a
    format change): refusing beats silently rewriting it in the older form."""
