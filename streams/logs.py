"""Logging set-up, with repeated library warnings folded into one line per window.

While the broker is down aiokafka logs the same connection error about 140 times a second;
an operator needs the first line and a count, not a flood that buries everything else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Libraries whose repeated warnings and errors are folded.
NOISY = ("aiokafka", "faust", "mode")


class RepeatFolder(logging.Filter):
    """Let the first of identical warnings (logger + message template) through, drop repeats
    for ``window_s``, then let the next one through with the number dropped meanwhile."""

    def __init__(self, window_s: float = 10.0, prefixes: tuple[str, ...] = NOISY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.prefixes, self.clock = window_s, prefixes, clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        since, dropped = self._seen.get(key, (None, 0))
        if since is not None and now - since < self.window_s:
            self._seen[key] = (since, dropped + 1)
            return False
        self._seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} (+{dropped} like it in the last {now - since:.0f} s)"
        return True


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in (*NOISY, "onnx_ir", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    folder = RepeatFolder()
    for handler in logging.getLogger().handlers:
        handler.addFilter(folder)
