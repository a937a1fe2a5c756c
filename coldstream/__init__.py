"""The composition root: the one ``coldstream`` command (see :mod:`coldstream.cli`)."""
