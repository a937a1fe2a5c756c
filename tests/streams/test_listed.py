"""The growing rows' list index: what a search gathers equals a pass over every row's list."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.stores.listed import ListedRows

N_LISTS = 6
ops = st.lists(st.tuples(st.sampled_from(["file"] * 9 + ["reset"]), st.integers(0, 3000),
                         st.integers(0, N_LISTS)), min_size=30, max_size=300)


def expected(lists: np.ndarray, wanted: list[int]) -> list[int]:
    return sorted(np.flatnonzero(np.isin(lists, wanted)).tolist())


@settings(max_examples=100, deadline=None)
@given(ops, st.lists(st.integers(0, N_LISTS), min_size=1, max_size=4))
def test_rows_in_equals_a_pass_over_every_row(seq: list[tuple[str, int, int]],
                                             wanted: list[int]) -> None:
    """New rows, moves to another list, re-filing under the same list and bulk resets, in
    any order: each list holds exactly the rows whose list it is, each once."""
    index, truth = ListedRows(), np.zeros(0, dtype=np.int32)
    for op, pick, listed in seq:
        if op == "reset":
            truth = np.random.default_rng(pick).integers(0, N_LISTS + 1, pick % 40)
            truth = truth.astype(np.int32)
            index.reset(truth, N_LISTS)
        elif len(truth) and pick % 3:  # an existing row, maybe moved
            row = pick % len(truth)
            index.file(row, listed)
            truth[row] = listed
        else:  # the next new row
            index.file(len(truth), listed)
            truth = np.append(truth, np.int32(listed))
    assert index.n == len(truth)
    assert np.array_equal(index.list_of[:index.n], truth)
    for lists in [[b] for b in range(N_LISTS + 1)] + [sorted(set(wanted))]:
        got = index.rows_in(lists).tolist()
        assert sorted(got) == expected(truth, lists)
        assert len(got) == len(set(got))


def test_rows_grow_past_the_first_arrays() -> None:
    """Thousands of rows into one list and the row map: both arrays double as needed."""
    index = ListedRows()
    index.reset(np.zeros(0, dtype=np.int32), 2)
    for row in range(5000):
        index.file(row, 1 + row % 2)
    assert index.rows_in([2]).tolist() == list(range(1, 5000, 2))
    assert index.rows_in([0]).tolist() == []
