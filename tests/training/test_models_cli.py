"""``models list / promote / rollback`` on a registry with two hand-made versions."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from encoders.artifacts import AudioSpec, Manifest, Registry, TextSpec, write_manifest
from training.cli import app


def _version(reg: Registry, version: str, parent: str | None) -> None:
    with reg.staging(version) as folder:
        (folder / "text.onnx").write_bytes(b"x")
        write_manifest(folder, Manifest(
            version=version, created_at=0, dim=4, parent=parent,
            text=TextSpec(graph="text.onnx", tokenizer="tokenizer.json", dim=4),
            audio=AudioSpec(graph="audio.onnx", dim=4), metrics={"cold_recall@20": 0.25}))


def test_list_promote_rollback(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    _version(reg, "v1", None)
    _version(reg, "v2", "v1")
    run = CliRunner()
    args = ["--registry", str(tmp_path)]
    assert run.invoke(app, ["models", "promote", "v2", *args]).exit_code == 0
    assert reg.current() == "v2"
    listing = run.invoke(app, ["models", "list", *args], terminal_width=200)
    assert listing.exit_code == 0 and "v1" in listing.output and "0.250" in listing.output
    assert run.invoke(app, ["models", "rollback", *args]).exit_code == 0
    assert reg.current() == "v1"
    refused = run.invoke(app, ["models", "rollback", *args])
    assert refused.exit_code == 1 and "no parent" in refused.output
    assert reg.current() == "v1"
