"""The streamed, reproducible npz writer: numpy reads what it writes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from advex.core.npz_writer import NpzWriter, write_npz


def test_rows_streamed_in_pieces_read_back_as_numpy_arrays(tmp_path, rng):
    x = rng.random((10, 4, 4, 1), dtype=np.float32)
    y = rng.integers(0, 10, 10)
    path = tmp_path / "set.npz"
    with NpzWriter(path) as npz:
        rows = npz.rows("x", np.float32, x.shape)
        for lo in range(0, 10, 3):
            rows.write(x[lo : lo + 3])
        rows.finish()
        npz.add("y", y)
    with np.load(path, allow_pickle=False) as data:
        assert list(data.keys()) == ["x", "y"]
        assert np.array_equal(data["x"], x) and np.array_equal(data["y"], y)


def test_same_arrays_same_bytes(tmp_path, rng):
    arrays = {"x": rng.random((3, 2), dtype=np.float32), "y": np.arange(3)}
    digests = {hashlib.sha256(write_npz(tmp_path / name, arrays).read_bytes()).hexdigest() for name in ("a.npz", "b.npz")}
    assert len(digests) == 1


def test_missing_or_extra_rows_fail_and_leave_no_file(tmp_path):
    path = tmp_path / "short.npz"
    with pytest.raises(ValueError, match="2 rows written of the 3 declared"):
        with NpzWriter(path) as npz:
            rows = npz.rows("x", np.float32, (3, 2))
            rows.write(np.zeros((2, 2)))
            rows.finish()
    with pytest.raises(ValueError, match="more than the 3 rows declared"):
        with NpzWriter(path) as npz:
            npz.rows("x", np.float32, (3, 2)).write(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"rows of shape \(3,\) where \(2,\) was declared"):
        with NpzWriter(path) as npz:
            npz.rows("x", np.float32, (3, 2)).write(np.zeros((1, 3)))
    assert list(tmp_path.iterdir()) == []


def test_a_scalar_member_stays_a_scalar(tmp_path):
    with NpzWriter(tmp_path / "s.npz") as npz:
        npz.add("samples", np.array(80, dtype=np.int64))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        assert data["samples"].shape == () and int(data["samples"]) == 80
