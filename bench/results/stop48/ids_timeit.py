"""Stop 48: a point id as the standard library makes it, against ``streams.ids.uuid5_str``,
in the same run (timeit, best of 5 repeats of 200k calls each).

    .venv/bin/python bench/results/stop48/ids_timeit.py"""
import timeit
import uuid

from streams.ids import NAMESPACE, uuid5_str

NAME = "user:u123456"
assert uuid5_str(NAME) == str(uuid.uuid5(NAMESPACE, NAME))
N = 200_000
std = min(timeit.repeat(lambda: str(uuid.uuid5(NAMESPACE, NAME)), number=N, repeat=5)) / N
fast = min(timeit.repeat(lambda: uuid5_str(NAME), number=N, repeat=5)) / N
print(f"str(uuid.uuid5(...)): {std * 1e6:.2f} us, uuid5_str: {fast * 1e6:.2f} us, "
      f"{std / fast:.1f}x")
