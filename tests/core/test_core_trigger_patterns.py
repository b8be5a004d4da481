"""The shared trigger check (advex.core.trigger_patterns) on arrays. That
storage applies it to uploads is tested in tests/storage/test_storage_verify.py."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from advex.core.errors import InvalidArgument
from advex.core.trigger_patterns import (
    PATTERN_MAX_ELEMENTS,
    BadPattern,
    PatternTooLarge,
    check_pattern_arrays,
    check_pattern_dtypes,
    check_pattern_shapes,
)


def refused(pattern, mask) -> str:
    with pytest.raises(InvalidArgument) as caught:
        check_pattern_arrays(pattern, mask)
    assert isinstance(caught.value, BadPattern)
    return str(caught.value)


# ------------------------------------------------------------------ accepted


def test_float_pattern_with_2d_mask_is_broadcast_to_every_channel():
    pattern = np.linspace(0, 1, 3 * 4 * 3, dtype=np.float64).reshape(3, 4, 3)
    mask = np.zeros((3, 4), np.float64)
    mask[1, 2] = 0.5
    out_pattern, out_mask = check_pattern_arrays(pattern, mask)
    assert out_pattern.dtype == out_mask.dtype == np.float32
    assert out_pattern.shape == out_mask.shape == (3, 4, 3)
    np.testing.assert_allclose(out_pattern, pattern, rtol=1e-6)
    assert out_mask[1, 2].tolist() == [0.5, 0.5, 0.5]
    assert out_mask.sum() == pytest.approx(1.5)


def test_uint8_pattern_keeps_its_scale():
    pattern = np.full((2, 2, 1), 255, np.uint8)
    out_pattern, out_mask = check_pattern_arrays(pattern, np.ones((2, 2), np.uint8))
    assert out_pattern.dtype == np.float32 and out_pattern.max() == 255.0
    assert out_mask.shape == (2, 2, 1) and out_mask.min() == 1.0


@pytest.mark.parametrize("weights, expected", [([0.25], [0.25, 0.25, 0.25]), ([1.0, 0.5, 0.0], [1.0, 0.5, 0.0])])
def test_3d_mask_with_one_or_all_channels(weights, expected):
    mask = np.zeros((2, 2, len(weights)), np.float32)
    mask[0, 0] = weights
    _, out_mask = check_pattern_arrays(np.zeros((2, 2, 3), np.float32), mask)
    assert out_mask.shape == (2, 2, 3)
    assert out_mask[0, 0].tolist() == expected
    assert out_mask[1, 1].tolist() == [0.0, 0.0, 0.0]


def test_bool_mask_becomes_0_and_1():
    mask = np.array([[True, False], [False, True]])
    _, out_mask = check_pattern_arrays(np.zeros((2, 2, 1), np.float16), mask)
    assert out_mask[..., 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_results_are_fresh_writable_arrays():
    pattern = np.zeros((2, 2, 3), np.float32)
    mask = np.ones((2, 2, 3), np.float32)
    out_pattern, out_mask = check_pattern_arrays(pattern, mask)
    out_pattern[...] = 7
    out_mask[...] = 0
    assert pattern.max() == 0 and mask.min() == 1


# ------------------------------------------------------------------ refused


@pytest.mark.parametrize(
    "pattern_shape, mask_shape, message",
    [
        ((3, 3), (3, 3), "pattern has shape (3, 3); it must be (H, W, C): add a channel axis with pattern[..., None]"),
        ((1, 3, 3, 1), (3, 3), "pattern has shape (1, 3, 3, 1); it must be (H, W, C): drop the batch axis with "
                               "pattern[0]"),
        ((3,), (3,), "pattern has shape (3,); it must be 3-D (H, W, C)"),
        ((0, 3, 1), (0, 3), "pattern has shape (0, 3, 1); H, W and C must each be at least 1"),
        ((3, 3, 0), (3, 3), "pattern has shape (3, 3, 0); H, W and C must each be at least 1"),
        ((3, 3, 1), (3,), "mask has shape (3,); it must be (H, W) or (H, W, C) with the pattern's H and W"),
        ((3, 3, 1), (1, 3, 3, 1), "mask has shape (1, 3, 3, 1); it must be (H, W) or (H, W, C) with the pattern's "
                                  "H and W"),
        ((3, 3, 1), (3, 4), "mask has shape (3, 4) but pattern has shape (3, 3, 1); the mask's H and W must be the "
                            "pattern's: (3, 3)"),
        ((3, 3, 3), (3, 3, 2), "mask has 2 channels but pattern has 3; give the mask 3 channels or 1, or make it "
                               "2-D (H, W)"),
    ],
)
def test_shapes_are_refused_with_the_fix(pattern_shape, mask_shape, message):
    assert refused(np.zeros(pattern_shape, np.float32), np.zeros(mask_shape, np.float32)) == message


def test_size_is_checked_from_shapes_alone():
    fits = (2048, 2048, 4)
    assert np.prod(fits) == PATTERN_MAX_ELEMENTS
    check_pattern_shapes(fits, fits[:2])
    with pytest.raises(PatternTooLarge) as caught:  # RESOURCE_EXHAUSTED, as every size limit
        check_pattern_shapes((2048, 2049, 4), (2048, 2049))
    assert str(caught.value) == (
        f"pattern has shape (2048, 2049, 4): {2048 * 2049 * 4} values; at most {PATTERN_MAX_ELEMENTS} are accepted "
        "(e.g. 2048 x 2048 x 4); use a smaller pattern"
    )
    # Shapes a crafted header could announce: refused without arithmetic trouble.
    with pytest.raises(PatternTooLarge, match="values; at most"):
        check_pattern_shapes((2**40, 2**40, 2**40), (2**40, 2**40))


@pytest.mark.parametrize(
    "pattern_dtype, mask_dtype, message",
    [
        (np.int64, np.float32, "pattern has dtype int64; it must be uint8, float16, float32 or float64: "
                               "e.g. pattern.astype(np.float32)"),
        (np.bool_, np.float32, "pattern has dtype bool; it must be uint8"),
        (np.complex64, np.float32, "pattern has dtype complex64"),
        (np.float32, np.int32, "mask has dtype int32; it must be float16, float32, float64, uint8 or bool: "
                               "e.g. mask.astype(np.float32)"),
        (object, np.float32, "pattern holds Python objects (dtype=object); AdvEx never unpickles"),
        (np.float32, object, "mask holds Python objects (dtype=object); AdvEx never unpickles"),
    ],
)
def test_dtypes_are_refused_with_the_fix(pattern_dtype, mask_dtype, message):
    with pytest.raises(BadPattern) as caught:
        check_pattern_dtypes(np.dtype(pattern_dtype), np.dtype(mask_dtype))
    assert message in str(caught.value)
    assert message in refused(np.zeros((2, 2, 1), pattern_dtype), np.zeros((2, 2), mask_dtype))


def test_longdouble_is_refused_where_it_is_wider_than_float64():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("longdouble is float64 on this platform")
    assert "pattern has dtype float128" in refused(np.zeros((2, 2, 1), np.longdouble), np.zeros((2, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pattern_must_be_finite(bad):
    pattern = np.zeros((2, 2, 1), np.float32)
    pattern[1, 1, 0] = bad
    assert refused(pattern, np.ones((2, 2))) == (
        "pattern contains NaN or infinite values; every value must be a finite number"
    )


def test_float64_pattern_must_fit_float32():
    pattern = np.full((2, 2, 1), 1e300)
    assert "pattern contains values beyond float32's range" in refused(pattern, np.ones((2, 2)))
    assert check_pattern_arrays(np.full((2, 2, 1), 1e30), np.ones((2, 2)))[0].max() == np.float32(1e30)


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.array([[-0.2, 1.0], [0.0, 0.5]]), "mask values span -0.2..1 but must lie in 0..1"),
        (np.array([[0.0, 1.5], [0.0, 0.5]], np.float32), "mask values span 0..1.5 but must lie in 0..1"),
        (np.array([[0, 255], [0, 255]], np.uint8), "mask values span 0..255 but must lie in 0..1; a 0..255 mask "
                                                   "must be divided by 255"),
        (np.array([[0.0, np.nan], [0.0, 0.5]]), "mask contains NaN or infinite values; every value must be a "
                                                "number in 0..1"),
        (np.array([[0.0, np.inf], [0.0, 0.5]], np.float16), "mask contains NaN or infinite values; every value "
                                                            "must be a number in 0..1"),
    ],
)
def test_mask_values_must_lie_in_0_to_1(mask, message):
    assert refused(np.zeros((2, 2, 1), np.float32), mask) == message


def test_a_crafted_bool_byte_cannot_smuggle_a_value_above_1():
    mask = np.array([[0, 2], [0, 1]], np.uint8).view(np.bool_)
    try:
        _, out_mask = check_pattern_arrays(np.zeros((2, 2, 1), np.float32), mask)
    except BadPattern as error:
        assert "must lie in 0..1" in str(error)
    else:
        assert out_mask.max() <= 1.0


def test_non_arrays_are_refused():
    assert "must be numpy arrays" in refused([[[0.0]]], np.ones((1, 1)))


def test_importing_it_needs_no_tensorflow_and_no_storage():
    """In a fresh interpreter, so the test process's own imports cannot hide one."""
    script = (
        "import sys\n"
        "import advex.core.trigger_patterns\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'jax')\n"
        "             or m.startswith('advex.storage') or m.startswith('advex.attack')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
