"""Mean pooling over flat token batches: equal to the per-text numpy mean, whatever the batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from transforms.embedding.pooling import drop_token, flatten_ids, mean_pool

RNG = np.random.default_rng(7)
TABLE = RNG.normal(size=(50, 8)).astype(np.float32)
IDS = [[3, 4, 5], [], [7], [9, 9, 9, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]


def naive(ids, table, weights=None, mapping=None, normalize=False):
    out = np.zeros((len(ids), table.shape[1]), np.float64)
    for i, row in enumerate(ids):
        if row:
            rows = table[np.asarray(row) if mapping is None else mapping[row]].astype(np.float64)
            if weights is not None:
                rows = rows * weights[row][:, None]
            out[i] = rows.mean(axis=0)
    if normalize:
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
    return out


def test_flatten_lists_arrays_and_a_mix() -> None:
    cases: list[list[Any]] = [
        list(IDS),
        [np.asarray(r, np.int32) for r in IDS],
        [IDS[0], np.asarray(IDS[3])],
    ]
    for given in cases:
        flat, lengths = flatten_ids(given)
        assert flat.dtype == np.int32
        assert lengths.tolist() == [len(r) for r in given]
        assert flat.tolist() == [t for r in given for t in np.asarray(r).tolist()]
    flat, lengths = flatten_ids([[], []])
    assert flat.size == 0 and lengths.tolist() == [0, 0]


def test_drop_token_removes_it_and_recounts() -> None:
    flat, lengths = flatten_ids([[1, 9, 2], [9, 9], [], [3]])
    kept, counts = drop_token(flat, lengths, 9)
    assert kept.tolist() == [1, 2, 3] and counts.tolist() == [2, 0, 0, 1]
    same, same_counts = drop_token(flat, lengths, 42)
    assert same is flat and same_counts is lengths


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("mapped", [False, True])
def test_mean_pool_equals_the_per_text_mean(normalize, weighted, mapped) -> None:
    weights = RNG.uniform(0.1, 2.0, size=60).astype(np.float32) if weighted else None
    mapping = RNG.integers(0, len(TABLE), size=60) if mapped else None
    ids = [[t + 10 for t in row] for row in IDS] if mapped else IDS
    flat, lengths = flatten_ids(ids)
    got = mean_pool(flat, lengths, TABLE, weights=weights, mapping=mapping, normalize=normalize)
    assert got.dtype == np.float32 and got.shape == (len(ids), 8)
    np.testing.assert_allclose(got, naive(ids, TABLE, weights, mapping, normalize), atol=1e-6)
    assert not got[1].any()  # no tokens: a zero vector, normalised or not


def test_a_batch_pools_as_its_texts_one_by_one() -> None:
    flat, lengths = flatten_ids(IDS)
    whole = mean_pool(flat, lengths, TABLE, normalize=True)
    for i, row in enumerate(IDS):
        one_flat, one_length = flatten_ids([row])
        np.testing.assert_array_equal(
            whole[i], mean_pool(one_flat, one_length, TABLE, normalize=True)[0]
        )


@pytest.mark.parametrize("dtype", [np.int8, np.float16])
def test_stored_dtypes_are_summed_in_float32(dtype) -> None:
    table = (TABLE * 40).astype(dtype)
    flat, lengths = flatten_ids(IDS)
    got = mean_pool(flat, lengths, table)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, naive(IDS, table.astype(np.float32)), rtol=1e-6, atol=1e-5)
