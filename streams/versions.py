"""Run-time pin of the client libraries whose private parts Coldstream patches.

The offset guard (``streams.offsets``) and the Tansu end-offset shim (``streams.compat``)
override private methods of faust-streaming, mode-streaming and aiokafka. They were proven
(kill -9 storms, broker outages) on exactly the versions below; another version may rename or
reorder what they patch and silently lose the at-least-once guarantee. pyproject.toml pins
them too, but an environment can drift (a later ``pip install``, a distro package), so the
worker checks what is actually installed before it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

from .errors import ColdstreamError

#: Distribution name -> the version the guard and shim were proven on.
PROVEN: Mapping[str, str] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}

#: The setting (environment variable) that lets an operator run untested versions anyway.
OVERRIDE = "COLDSTREAM_ALLOW_UNTESTED_CLIENT_VERSIONS"


class UntestedClientVersions(ColdstreamError):
    """Installed client libraries differ from the ones the offset guard was proven on."""

    kind = "untested_versions"


def installed(lookup: Callable[[str], str] | None = None) -> dict[str, str | None]:
    """Installed version of each pinned distribution (None when it is missing)."""
    lookup = lookup or version
    found: dict[str, str | None] = {}
    for name in PROVEN:
        try:
            found[name] = lookup(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def mismatches(found: Mapping[str, str | None]) -> dict[str, str | None]:
    return {name: got for name, got in found.items() if got != PROVEN[name]}


def check_client_versions(allow_untested: bool,
                          lookup: Callable[[str], str] | None = None) -> dict[str, str | None]:
    """Raise :class:`UntestedClientVersions` unless the proven versions are installed.

    With ``allow_untested`` the mismatches are returned (the caller logs a warning) instead.
    """
    wrong = mismatches(installed(lookup))
    if wrong and not allow_untested:
        got = ", ".join(f"{name} {v or 'missing'} (proven: {PROVEN[name]})"
                        for name, v in wrong.items())
        raise UntestedClientVersions(
            f"untested Kafka client versions: {got}. The offset guard patches their private "
            f"internals and was proven only on the pinned versions: reinstall them "
            f"(pip install coldstream) or set {OVERRIDE}=true to run anyway, at your own risk.")
    return wrong
