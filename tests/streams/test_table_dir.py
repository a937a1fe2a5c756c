"""Local RocksDB tables never outlive the log they were built from."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings
from streams.worker import forget_tables_of_a_lost_log


def test_rocksdb_tables_of_a_lost_in_memory_log_are_removed(tmp_path: Path) -> None:
    """A fresh in-memory embedded broker has empty changelogs: old tables must not survive
    (their offsets would crash recovery); durable storage keeps them."""
    for storage, kept in (("memory://tansu/", False), ("s3://tansu/", True)):
        tables = tmp_path / storage[:2] / "tables"
        (tables / "user_state-0.db").mkdir(parents=True)
        forget_tables_of_a_lost_log(Settings(data_dir=tables.parent, table_store="rocksdb",
                                             embedded_kafka_storage=storage))
        assert tables.exists() == kept
