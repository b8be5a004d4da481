"""The one check of a backdoor trigger (a PATTERN artifact), applied by
storage (on upload) and attack (when it loads a pattern), so that an upload
that passes also loads.

A trigger is `pattern` (H, W, C), in the input scale of the data it will be
stamped on (uint8 or float, finite), and `mask` (H, W) or (H, W, C) with
values in 0..1 saying how much of the pattern covers each pixel (float,
uint8 or bool). A 3-D mask has the pattern's C channels or 1 (the same
weight on every channel).

Shapes and dtypes are checked on their own first (`check_pattern_shapes`,
`check_pattern_dtypes`), so a caller that reads npy headers before the data
(storage, via advex.core.npz_archive) refuses an oversized or malformed
trigger before anything is decompressed.

No gRPC servers, no TensorFlow, no storage: numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from advex.core.errors import InvalidArgument, ResourceExhausted

# 2048 x 2048 pixels of 4 channels: far beyond any image a patch trigger is
# stamped on, and at most 128 MiB as float64 (the widest accepted dtype).
PATTERN_MAX_ELEMENTS = 2048 * 2048 * 4

SAVE_PATTERN = "save it with numpy.savez('trigger.npz', pattern=pattern, mask=mask)"

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class BadPattern(InvalidArgument):
    """The pattern or mask does not follow the documented rules; the message
    says what to change."""


class PatternTooLarge(ResourceExhausted):
    """The pattern holds more values than any server accepts."""


def _fmt(value: float) -> str:
    return f"{value:g}"


def _is_float(dtype: np.dtype) -> bool:
    # itemsize <= 8 leaves out longdouble, which numpy cannot save portably.
    return dtype.kind == "f" and dtype.itemsize <= 8


def check_pattern_shapes(pattern_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> None:
    """BadPattern unless `pattern_shape` is (H, W, C) with H, W, C >= 1 and at
    most PATTERN_MAX_ELEMENTS values, and `mask_shape` is (H, W) or (H, W, C)
    with the pattern's H and W and its C channels or 1. Needs the shapes
    only, so it can run on npy headers before any data is read."""
    pattern_shape, mask_shape = tuple(pattern_shape), tuple(mask_shape)
    if len(pattern_shape) == 2:
        raise BadPattern(
            f"pattern has shape {pattern_shape}; it must be (H, W, C): add a channel axis with pattern[..., None]"
        )
    if len(pattern_shape) == 4 and pattern_shape[0] == 1:
        # The commonest slip: a pattern cut from a batch of images.
        raise BadPattern(
            f"pattern has shape {pattern_shape}; it must be (H, W, C): drop the batch axis with pattern[0]"
        )
    if len(pattern_shape) != 3:
        raise BadPattern(f"pattern has shape {pattern_shape}; it must be 3-D (H, W, C)")
    if min(pattern_shape) < 1:
        raise BadPattern(f"pattern has shape {pattern_shape}; H, W and C must each be at least 1")
    values = math.prod(pattern_shape)
    if values > PATTERN_MAX_ELEMENTS:
        raise PatternTooLarge(
            f"pattern has shape {pattern_shape}: {values} values; at most {PATTERN_MAX_ELEMENTS} are accepted "
            "(e.g. 2048 x 2048 x 4); use a smaller pattern"
        )
    height, width, channels = pattern_shape
    if len(mask_shape) not in (2, 3):
        raise BadPattern(f"mask has shape {mask_shape}; it must be (H, W) or (H, W, C) with the pattern's H and W")
    if mask_shape[:2] != (height, width):
        raise BadPattern(
            f"mask has shape {mask_shape} but pattern has shape {pattern_shape}; the mask's H and W must be "
            f"the pattern's: ({height}, {width})"
        )
    if len(mask_shape) == 3 and mask_shape[2] not in (channels, 1):
        raise BadPattern(
            f"mask has {mask_shape[2]} channels but pattern has {channels}; give the mask {channels} channels "
            f"or 1, or make it 2-D (H, W)"
        )


def check_pattern_dtypes(pattern_dtype: np.dtype, mask_dtype: np.dtype) -> None:
    """BadPattern unless the pattern is uint8 or float16/32/64 and the mask
    float16/32/64, uint8 or bool. Needs the dtypes only (npy headers)."""
    pattern_dtype, mask_dtype = np.dtype(pattern_dtype), np.dtype(mask_dtype)
    for name, dtype in (("pattern", pattern_dtype), ("mask", mask_dtype)):
        if dtype.hasobject:
            raise BadPattern(
                f"{name} holds Python objects (dtype=object); AdvEx never unpickles; save a numeric array: "
                f"np.asarray({name}, dtype=np.float32)"
            )
    if not (pattern_dtype == np.uint8 or _is_float(pattern_dtype)):
        raise BadPattern(
            f"pattern has dtype {pattern_dtype}; it must be uint8, float16, float32 or float64: "
            "e.g. pattern.astype(np.float32)"
        )
    if not (mask_dtype == np.uint8 or mask_dtype == np.bool_ or _is_float(mask_dtype)):
        raise BadPattern(
            f"mask has dtype {mask_dtype}; it must be float16, float32, float64, uint8 or bool: "
            "e.g. mask.astype(np.float32)"
        )


def check_pattern_arrays(pattern: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checks a trigger and returns it as the attack applies it: pattern
    float32 (H, W, C) and mask float32 (H, W, C), broadcast to the pattern's
    channels. Neither input is modified. BadPattern (an InvalidArgument)
    says what to fix."""
    if not isinstance(pattern, np.ndarray) or not isinstance(mask, np.ndarray):
        raise BadPattern(f"pattern and mask must be numpy arrays; {SAVE_PATTERN}")
    check_pattern_shapes(pattern.shape, mask.shape)
    check_pattern_dtypes(pattern.dtype, mask.dtype)

    if pattern.dtype.kind == "f" and not np.isfinite(pattern).all():
        raise BadPattern("pattern contains NaN or infinite values; every value must be a finite number")
    if pattern.dtype.itemsize > 4 and np.abs(pattern).max() > _FLOAT32_MAX:
        raise BadPattern(
            f"pattern contains values beyond float32's range (|v| > {_FLOAT32_MAX:.4g}); triggers are applied "
            "in float32; give the pattern in the data's input scale, e.g. [0, 1] or [0, 255]"
        )
    pattern32 = pattern.astype(np.float32)

    if mask.dtype.kind == "f" and not np.isfinite(mask).all():
        raise BadPattern("mask contains NaN or infinite values; every value must be a number in 0..1")
    # The range is checked on the float32 values the attack will use: a
    # crafted bool byte other than 0 or 1 is caught whatever it converts to.
    mask32 = mask.astype(np.float32)
    low, high = float(mask32.min()), float(mask32.max())
    if low < 0 or high > 1:
        advice = "; a 0..255 mask must be divided by 255" if high > 1 and mask.dtype == np.uint8 else ""
        raise BadPattern(f"mask values span {_fmt(low)}..{_fmt(high)} but must lie in 0..1{advice}")
    if mask32.ndim == 2:
        mask32 = mask32[..., None]
    if mask32.shape != pattern32.shape:
        # A copy, not broadcast_to's read-only view: callers may write into it.
        mask32 = np.repeat(mask32, pattern32.shape[2], axis=2)
    return pattern32, mask32
