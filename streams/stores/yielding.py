"""A store whose every call first gives way to the worker's event work.

The model swap's thread uses the worker's store through this wrapper: its work is a long
run of store calls (a page read, a batch written), so waiting before each call bounds what a
swap can take from an event to about one batch, while the swap's own code stays plain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..foreground import Foreground
from .base import VectorStore
from .wrapper import StoreWrapper

T = TypeVar("T")


class YieldingStore(StoreWrapper):
    """``inner``, with :meth:`Foreground.give_way` before each call."""

    def __init__(self, inner: VectorStore, foreground: Foreground) -> None:
        super().__init__(inner)
        self.foreground = foreground

    def call(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        self.foreground.give_way()
        return fn(*args)
