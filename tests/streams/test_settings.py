"""Settings: one environment reader; security settings pass through; secrets stay secret."""

from __future__ import annotations

import logging

import faust
import pytest

from streams.app import broker_url, credentials
from streams.broker import client_config
from streams.dlq import dead_letter
from streams.errors import StoreError
from streams.settings import Settings


def test_defaults_are_embedded_and_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.embedded_broker and s.tansu_compat and s.qdrant_url is None
    assert s.metrics_host == "127.0.0.1"  # nothing listens beyond loopback by default
    assert s.effective_session_timeout_s == 6.0 and s.effective_heartbeat_s == 1.0
    assert broker_url(s, "127.0.0.1:9092") == "tansu://127.0.0.1:9092"


def test_real_cluster_uses_stock_transport_and_longer_timeouts() -> None:
    s = Settings(kafka_bootstrap="k1:9092,k2:9092")
    assert not s.tansu_compat and s.effective_session_timeout_s == 30.0
    assert broker_url(s, "k1:9092,k2:9092") == "kafka+guarded://k1:9092;kafka+guarded://k2:9092"


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDSTREAM_PARTITIONS", "8")
    monkeypatch.setenv("COLDSTREAM_AUDIO_ROOTS", '["/srv/audio"]')
    s = Settings()
    assert s.partitions == 8 and [str(p) for p in s.audio_roots] == ["/srv/audio"]
    monkeypatch.setenv("COLDSTREAM_PARTITIONS", "zero")
    with pytest.raises(ValueError, match="partitions"):
        Settings()


def test_sasl_ssl_pass_through_and_secrets_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SASL_SSL",
                 kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="svc",
                 kafka_sasl_password="hunter2-secret", qdrant_api_key="qkey-secret")
    cfg = client_config(s)
    assert cfg["security_protocol"] == "SASL_SSL" and cfg["sasl_mechanism"] == "SCRAM-SHA-512"
    assert cfg["sasl_plain_password"] == "hunter2-secret" and "ssl_context" in cfg
    creds = credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "svc"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings %s", s)
    for text in (repr(s), str(s.model_dump()), caplog.text):
        assert "hunter2-secret" not in text and "qkey-secret" not in text


def test_dead_letters_carry_the_reason_not_the_settings() -> None:
    letter = dead_letter(b"x" * 10, "songs.new", 2, 41, StoreError("boom"))
    assert letter.error_kind == "store" and letter.source_offset == 41
    assert letter.original_size == 10


def settings_table() -> str:
    """The README's settings table, as generated from the Settings fields."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else str(field.default)
        rows.append(f"| `COLDSTREAM_{name.upper()}` | `{default}` | {field.description or ''} |")
    return "\n".join(rows) + "\n"


def test_readme_settings_table_is_generated_from_the_settings() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = settings_table()
    assert table in readme, f"README's settings table is stale; paste this:\n{table}"


def test_worker_output_compression_is_zstd_by_default_and_none_means_uncompressed() -> None:
    assert Settings().producer_compression == "zstd"
    assert Settings(kafka_compression="none").producer_compression is None
    with pytest.raises(ValueError, match="kafka_compression"):
        Settings(kafka_compression="brotli")
