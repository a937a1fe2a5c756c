"""ONNX export with the dynamo exporter (dynamic batch/length axes) and a parity check."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .artifacts import ArtifactError
from .runtime import make_session

PARITY_ATOL = 1e-4


def export_onnx(module: torch.nn.Module, example: Mapping[str, torch.Tensor], path: Path,
                output: str, dynamic: Mapping[str, Mapping[int, str]]) -> Path:
    """Export ``module`` (called with keyword inputs) and check ONNX matches torch."""
    module = module.eval()
    names = list(example)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, tuple(example[n] for n in names), dynamo=True, input_names=names,
            output_names=[output], dynamic_shapes=_dims(dynamic, names))
        program.save(str(path))
    check_parity(module, example, path)
    return path


def _dims(dynamic: Mapping[str, Mapping[int, str]], names: list[str]) -> dict:
    """Named dynamic axes; the same label on two inputs means the same dimension."""
    return {n: dict(dynamic.get(n, {})) for n in names}


def check_parity(module: torch.nn.Module, example: Mapping[str, torch.Tensor], path: Path,
                 atol: float = PARITY_ATOL) -> float:
    session = make_session(path)
    got = session.run(None, {k: v.numpy() for k, v in example.items()})[0]
    with torch.no_grad():
        want = module(*example.values()).numpy()
    diff = float(np.abs(got - want).max())
    if diff > atol:
        raise ArtifactError(f"{path.name}: ONNX differs from torch by {diff:.2e} > {atol}")
    return diff
