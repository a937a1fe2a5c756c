"""The ``coldstream`` command: serving (``streams``), offline (``training``) and benchmark
(``bench``) commands under one name.

The only module that imports all three, so that ``streams`` never depends on ``training``.
Each package keeps its own Typer app; they are merged with Typer's public ``add_typer``
(no name: their commands sit at the top level).
"""

from __future__ import annotations

import typer

from bench.cli import app as bench_app
from streams.cli import app as streams_app
from training.cli import app as training_app

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Coldstream: get brand-new songs to the right listeners in seconds.")
for part in (streams_app, training_app, bench_app):
    app.add_typer(part)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
