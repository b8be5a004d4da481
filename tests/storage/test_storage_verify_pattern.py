"""verify_pattern on files directly: what a trigger pattern upload must look
like, and that checking one reads headers first and never unpickles. The
rules themselves are tested on arrays in tests/core/test_core_trigger_patterns.py."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from advex.core.trigger_patterns import PATTERN_MAX_ELEMENTS
from advex.storage.verify import PatternSummary, VerificationError, ZipLimits, verify_pattern


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def header(descr: str, shape: tuple[int, ...]) -> bytes:
    """Just the .npy header of an array: what a crafted file can announce."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def zipped(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def rejects(path: Path, phrase: str, **kwargs) -> str:
    with pytest.raises(VerificationError) as caught:
        verify_pattern(path, **kwargs)
    assert phrase in str(caught.value)
    return str(caught.value)


MASK_2D = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]], np.float32)


# ------------------------------------------------------------------ accepted


def test_float_pattern_with_2d_mask(tmp_path):
    pattern = np.linspace(0.1, 0.9, 2 * 3 * 3, dtype=np.float64).reshape(2, 3, 3)
    summary = verify_pattern(npz(tmp_path / "t.npz", pattern=pattern, mask=MASK_2D))
    assert summary.pattern_shape == (2, 3, 3)
    assert summary.mask_shape == (2, 3)
    assert summary.min_value == pytest.approx(0.1) and summary.max_value == pytest.approx(0.9)


def test_uint8_pattern_with_one_channel_uint8_mask_keeps_its_scale(tmp_path):
    pattern = np.array([[[0], [255]], [[17], [200]]], np.uint8)
    mask = np.array([[[1], [0]], [[0], [1]]], np.uint8)
    path = zipped(tmp_path / "t.npz", {"pattern.npy": npy(pattern), "mask.npy": npy(mask)}, zipfile.ZIP_DEFLATED)
    assert verify_pattern(path) == PatternSummary((2, 2, 1), (2, 2, 1), 0.0, 255.0)


def test_3d_mask_with_every_channel_and_bool_mask(tmp_path):
    pattern = np.full((2, 3, 3), 0.5, np.float32)
    per_channel = verify_pattern(npz(tmp_path / "c.npz", pattern=pattern, mask=np.ones((2, 3, 3), np.float16)))
    assert per_channel.mask_shape == (2, 3, 3)
    boolean = verify_pattern(npz(tmp_path / "b.npz", pattern=pattern, mask=MASK_2D > 0.5))
    assert (boolean.mask_shape, boolean.min_value, boolean.max_value) == ((2, 3), 0.5, 0.5)


def test_fortran_order_arrays_are_read_as_saved(tmp_path):
    pattern = np.asfortranarray(np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2))
    summary = verify_pattern(npz(tmp_path / "f.npz", pattern=pattern, mask=np.asfortranarray(MASK_2D)))
    assert (summary.min_value, summary.max_value) == (0.0, 11.0)


def test_other_members_are_ignored(tmp_path):
    path = npz(tmp_path / "t.npz", pattern=np.zeros((2, 3, 1), np.float32), mask=MASK_2D, notes=np.arange(3))
    assert verify_pattern(path).pattern_shape == (2, 3, 1)


def test_summary_round_trips_through_json():
    summary = PatternSummary((4, 4, 3), (4, 4), -0.5, 255.0)
    assert PatternSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary


# ------------------------------------------------------------------ refused


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        ({"pattern": np.zeros((2, 3), np.float32), "mask": MASK_2D},
         "pattern has shape (2, 3); it must be (H, W, C): add a channel axis with pattern[..., None]"),
        ({"pattern": np.zeros((1, 2, 3, 1), np.float32), "mask": MASK_2D}, "drop the batch axis with pattern[0]"),
        ({"pattern": np.zeros((2, 3, 1), np.float32), "mask": np.zeros((3, 2))},
         "mask has shape (3, 2) but pattern has shape (2, 3, 1); the mask's H and W must be the pattern's: (2, 3)"),
        ({"pattern": np.zeros((2, 3, 3), np.float32), "mask": np.zeros((2, 3, 2))},
         "mask has 2 channels but pattern has 3"),
        ({"pattern": np.zeros((2, 3, 1), np.float32), "mask": MASK_2D - 0.2},
         "mask values span -0.2..0.8 but must lie in 0..1"),
        ({"pattern": np.zeros((2, 3, 1), np.float32), "mask": (MASK_2D * 255).astype(np.uint8)},
         "mask values span 0..255 but must lie in 0..1; a 0..255 mask must be divided by 255"),
        ({"pattern": np.full((2, 3, 1), np.nan, np.float32), "mask": MASK_2D},
         "pattern contains NaN or infinite values"),
        ({"pattern": np.zeros((2, 3, 1), np.float32), "mask": np.where(MASK_2D > 0.5, np.nan, 0.0)},
         "mask contains NaN or infinite values"),
        ({"pattern": np.zeros((2, 3, 1), np.int64), "mask": MASK_2D}, "pattern has dtype int64"),
        ({"pattern": np.full((2, 3, 1), 1e300), "mask": MASK_2D}, "beyond float32's range"),
    ],
)
def test_bad_triggers_are_rejected_with_the_fix(tmp_path, arrays, phrase):
    rejects(npz(tmp_path / "t.npz", **arrays), phrase)


@pytest.mark.parametrize(
    "arrays, missing",
    [
        ({"pattern": np.zeros((2, 3, 1), np.float32)}, "'mask'"),
        ({"mask": MASK_2D}, "'pattern'"),
        ({"x": np.zeros((1, 2, 3, 1)), "y": np.zeros(1, np.int64)}, "'pattern' or 'mask'"),
    ],
)
def test_missing_members_are_named(tmp_path, arrays, missing):
    message = rejects(npz(tmp_path / "t.npz", **arrays), f"the .npz has no array {missing}")
    assert "numpy.savez('trigger.npz', pattern=pattern, mask=mask)" in message
    assert f"found: {', '.join(sorted(arrays))}" in message


class _Trap:
    """Unpickling it makes a folder: proof that nothing was unpickled if none appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("array", ["pattern", "mask"])
def test_object_arrays_are_refused_and_never_unpickled(tmp_path, array):
    marker = tmp_path / "unpickled"
    members = {"pattern": npy(np.zeros((2, 3, 1), np.float32)), "mask": npy(MASK_2D)}
    trap = np.empty(6, dtype=object)
    trap[:] = [_Trap(marker)] * 6
    members[array] = npy(trap.reshape(2, 3, 1) if array == "pattern" else trap.reshape(2, 3))
    path = zipped(tmp_path / "t.npz", {f"{name}.npy": data for name, data in members.items()})
    rejects(path, f"array '{array}' holds Python objects (dtype=object); AdvEx never unpickles")
    assert not marker.exists()
    # The trap works: a reader that unpickles springs it.
    with np.load(path, allow_pickle=True) as loaded:
        loaded[array]
    assert marker.is_dir()


def test_huge_pattern_is_refused_from_its_header(tmp_path):
    # Only the headers are there: 64 Gi values announced, no data behind them.
    path = zipped(tmp_path / "t.npz", {"pattern.npy": header("<f8", (131072, 131072, 4)),
                                       "mask.npy": header("<f4", (131072, 131072))})
    message = rejects(path, f"pattern has shape (131072, 131072, 4): {131072 * 131072 * 4} values; at most "
                            f"{PATTERN_MAX_ELEMENTS} are accepted")
    assert "truncated" not in message


def test_header_that_promises_more_than_the_member_holds_is_refused(tmp_path):
    path = zipped(tmp_path / "t.npz", {"pattern.npy": header("<f4", (2, 3, 1)) + b"\0" * 8, "mask.npy": npy(MASK_2D)})
    rejects(path, "array 'pattern' is truncated: its header promises shape (2, 3, 1) of float32 (24 bytes) but the "
                  "file holds only 8 bytes of data")


def test_zip_bomb_is_refused_from_the_directory(tmp_path):
    members = {"pattern.npy": npy(np.zeros((2, 3, 1), np.float32)), "mask.npy": npy(MASK_2D),
               "junk.bin": bytes(8 << 20)}
    path = zipped(tmp_path / "t.npz", members, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    rejects(path, f"'junk.bin' in the .npz trigger pattern expands to {8 << 20} bytes",
            limits=ZipLimits(max_member_bytes=1 << 20))


def test_pattern_limits_fit_the_largest_pattern():
    limits = ZipLimits.for_patterns()
    assert PATTERN_MAX_ELEMENTS * 8 < limits.max_member_bytes < PATTERN_MAX_ELEMENTS * 8 + (2 << 20)
    assert 2 * limits.max_member_bytes <= limits.max_total_bytes


def test_corrupted_data_fails_the_crc_check(tmp_path):
    pattern = np.full((8, 8, 1), 0.75, np.float32)
    path = zipped(tmp_path / "t.npz", {"pattern.npy": npy(pattern), "mask.npy": npy(np.ones((8, 8)))})
    data = bytearray(path.read_bytes())
    data[data.index(np.float32(0.75).tobytes() * 4) + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    rejects(path, "the .npz trigger pattern is damaged and cannot be read")


def test_a_file_that_is_not_a_zip_is_rejected(tmp_path):
    path = tmp_path / "t.npz"
    path.write_bytes(npy(np.zeros((2, 3, 1))))  # an .npy, not an .npz
    rejects(path, "the file is not a .npz trigger pattern: it is not a complete zip archive")
