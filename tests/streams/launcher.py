"""``python -m tests.streams.launcher worker``: the real CLI, in a changed environment.

``LAUNCH_BLOCK_MODULES=torch,sentence_transformers`` makes those imports fail, as in an
install without the ``[train]`` extra; ``LAUNCH_FAKE_VERSIONS=aiokafka=9.9.9`` makes the
installed-version lookup report another version, as after an upgrade.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    for name in filter(None, os.environ.get("LAUNCH_BLOCK_MODULES", "").split(",")):
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    fake = dict(pair.split("=", 1) for pair in
                filter(None, os.environ.get("LAUNCH_FAKE_VERSIONS", "").split(",")))
    if fake:
        from streams import versions

        real = versions.version
        versions.version = lambda name: fake.get(name) or real(name)  # type: ignore[assignment]
    from streams.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
