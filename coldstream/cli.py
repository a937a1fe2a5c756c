"""The ``coldstream`` command: serving (``streams``), offline (``training``) and benchmark
(``bench``) commands under one name.

The only module that imports all three, so that ``streams`` never depends on ``training``.
Each package keeps its own Typer app; they are merged with Typer's public ``add_typer``
(no name: their commands sit at the top level).
"""

from __future__ import annotations

import importlib

import typer

from streams.cli import app as streams_app

#: Offline command sets; an image built without one still runs the worker.
OPTIONAL = ("training.cli", "bench.cli")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Coldstream: get brand-new songs to the right listeners in seconds.")
app.add_typer(streams_app)
for module in OPTIONAL:
    try:
        app.add_typer(importlib.import_module(module).app)
    except ImportError as exc:  # pragma: no cover - a partial install
        typer.echo(f"{module} commands unavailable: {exc}", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
