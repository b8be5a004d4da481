"""Backdoor triggers: what a resolved TriggerSpec stamps on an image.

Every trigger is the same operation on a rectangle of the image, set up
once by `make_trigger` and checked there against the images it will be
stamped on:

    x[region] = clip(x[region] * (1 - weight) + values * weight)

- square: a size x size patch, weight 1, every channel set to `value`;
- checker: a size x size checkerboard, weight 1, patch pixel (i, j) is
  `value` where i + j is even and clip_min elsewhere;
- pattern: a user pattern (PATTERN artifact) placed at `position`, weight
  the artifact's mask;
- blend: the whole image, weight alpha * mask (mask all ones for noise),
  values the user pattern or uniform noise in clip_min..clip_max drawn from
  np.random.default_rng(seed) with the image's shape (Chen et al. 2017).

Pixels outside the region are returned exactly as given; the region is
clipped to clip_min..clip_max. A new registry entry (name -> builder) adds a
trigger; the names are poison_specs.TRIGGERS.

Patterns are user data: `load_pattern` reads the npz the way
datasets.load_dataset reads a dataset (npy headers first, size from the
headers, never unpickled), then applies advex.core.trigger_patterns, the
check storage applied on upload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advex.attack.datasets import read_npz
from advex.core import poison_specs
from advex.core.errors import InvalidArgument, ResourceExhausted
from advex.core.poison_specs import ResolvedTrigger, patch_origin
from advex.core.trigger_patterns import (
    SAVE_PATTERN,
    check_pattern_arrays,
    check_pattern_dtypes,
    check_pattern_shapes,
)

ImageShape = tuple[int, int, int]


# ---------------------------------------------------------------------------
# Loading a PATTERN artifact


def load_pattern(path: str | Path, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(pattern float32 (H, W, C), mask float32 (H, W, C)) from a pattern npz.

    InvalidArgument (BadPattern, BadArray) says what to fix; ResourceExhausted
    when pattern and mask as float32 would exceed `max_bytes`."""

    def check(headers) -> None:
        check_pattern_shapes(headers["pattern"].shape, headers["mask"].shape)
        check_pattern_dtypes(headers["pattern"].dtype, headers["mask"].dtype)
        # As applied: pattern and mask, both float32 with the pattern's channels.
        as_float32 = 2 * 4 * int(np.prod(headers["pattern"].shape))
        if as_float32 > max_bytes:
            raise ResourceExhausted(
                f"the trigger pattern of shape {headers['pattern'].shape} takes {as_float32} bytes as float32 "
                f"with its mask; this server accepts at most {max_bytes} (ADVEX_MAX_DATASET_BYTES); "
                "use a smaller pattern"
            )

    arrays = read_npz(
        path,
        ("pattern", "mask"),
        "the trigger pattern",
        SAVE_PATTERN,
        "it must hold pattern (H, W, C) and mask (H, W) with values in 0..1",
        check,
        "use a smaller pattern",
    )
    return check_pattern_arrays(arrays["pattern"], arrays["mask"])


# ---------------------------------------------------------------------------
# Stamping


@dataclass(frozen=True, eq=False)
class Trigger:
    """A trigger set up for images of `image_shape`; see the module docstring."""

    label: str  # e.g. "square size=2 at bottom-right"
    image_shape: ImageShape
    origin: tuple[int, int]  # (row, column) of the region's top-left pixel
    weight: np.ndarray  # float32 (h, w, C): how much of `values` replaces x
    values: np.ndarray  # float32 (h, w, C), inside clip_min..clip_max
    clip_min: float
    clip_max: float

    @property
    def region(self) -> tuple[slice, slice]:
        (row, column), (h, w) = self.origin, self.weight.shape[:2]
        return slice(row, row + h), slice(column, column + w)

    def stamp(self, x: np.ndarray) -> np.ndarray:
        """The images `x` (n, H, W, C) with the trigger, as a new float32
        array; `x` itself is never modified."""
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise InvalidArgument(
                f"images of shape {tuple(x.shape)} cannot take a trigger made for "
                f"{'x'.join(map(str, self.image_shape))} images; expected (n, {', '.join(map(str, self.image_shape))})"
            )
        out = np.array(x, dtype=np.float32, copy=True)
        rows, columns = self.region
        part = out[:, rows, columns, :]
        mixed = part * (np.float32(1) - self.weight) + self.values * self.weight
        out[:, rows, columns, :] = np.clip(mixed, self.clip_min, self.clip_max)
        return out


# A builder gets (resolved, image_shape, clip_min, clip_max, pattern, mask)
# and returns (origin, weight, values) as float32 (h, w, C) arrays.
_Builder = Callable[..., tuple[tuple[int, int], np.ndarray, np.ndarray]]


def _square(resolved, image, clip_min, clip_max, pattern, mask):
    _no_pattern(resolved, pattern)
    size, channels = resolved.size, image[2]
    origin = patch_origin(resolved.position, (size, size), image[:2])
    weight = np.ones((size, size, channels), dtype=np.float32)
    return origin, weight, np.full((size, size, channels), resolved.value, dtype=np.float32)


def _checker(resolved, image, clip_min, clip_max, pattern, mask):
    _no_pattern(resolved, pattern)
    size, channels = resolved.size, image[2]
    origin = patch_origin(resolved.position, (size, size), image[:2])
    i, j = np.indices((size, size))
    board = np.where((i + j) % 2 == 0, resolved.value, clip_min).astype(np.float32)
    weight = np.ones((size, size, channels), dtype=np.float32)
    return origin, weight, np.repeat(board[..., None], channels, axis=2)


def _pattern(resolved, image, clip_min, clip_max, pattern, mask):
    pattern, mask = _user_pattern(resolved, image, clip_min, clip_max, pattern, mask)
    origin = patch_origin(resolved.position, pattern.shape[:2], image[:2])
    return origin, mask, pattern


def _blend(resolved, image, clip_min, clip_max, pattern, mask):
    alpha = np.float32(resolved.alpha)
    if resolved.pattern or pattern is not None:
        pattern, mask = _user_pattern(resolved, image, clip_min, clip_max, pattern, mask)
        if pattern.shape[:2] != image[:2]:
            raise InvalidArgument(
                f"the blend pattern is {pattern.shape[0]}x{pattern.shape[1]} pixels but the images are "
                f"{image[0]}x{image[1]}; a blend pattern covers the whole image, so it must be "
                f"{image[0]}x{image[1]} (or use a 'pattern' trigger to place a smaller patch)"
            )
        return (0, 0), alpha * mask, pattern
    noise = np.random.default_rng(resolved.seed).uniform(clip_min, clip_max, size=image)
    noise = np.clip(noise.astype(np.float32), clip_min, clip_max)
    return (0, 0), np.full(image, alpha, dtype=np.float32), noise


TRIGGER_BUILDERS: dict[str, _Builder] = {
    poison_specs.SQUARE: _square,
    poison_specs.CHECKER: _checker,
    poison_specs.PATTERN: _pattern,
    poison_specs.BLEND: _blend,
}


def make_trigger(
    resolved: ResolvedTrigger,
    image_shape: tuple[int, ...],
    clip_min: float,
    clip_max: float,
    pattern: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> Trigger:
    """`resolved` set up for images of `image_shape` (H, W, C) in
    clip_min..clip_max. `pattern` and `mask` (from load_pattern) are the
    PATTERN artifact the trigger names; InvalidArgument when the trigger
    does not fit the images."""
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise InvalidArgument(f"images of shape {tuple(image_shape)} are not (H, W, C); a trigger needs (H, W, C)")
    if not clip_min < clip_max:
        raise InvalidArgument(f"clip_min ({clip_min:g}) must be below clip_max ({clip_max:g})")
    builder = TRIGGER_BUILDERS.get(resolved.trigger)
    if builder is None:
        raise InvalidArgument(f"unknown trigger '{resolved.trigger}'; known: {', '.join(TRIGGER_BUILDERS)}")
    if resolved.trigger in (poison_specs.SQUARE, poison_specs.CHECKER):
        _check_value(resolved.value, clip_min, clip_max)
    image = tuple(int(d) for d in image_shape)
    origin, weight, values = builder(resolved, image, clip_min, clip_max, pattern, mask)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    values = np.ascontiguousarray(values, dtype=np.float32)
    weight.setflags(write=False)
    values.setflags(write=False)
    return Trigger(
        label=resolved.label,
        image_shape=image,
        origin=(int(origin[0]), int(origin[1])),
        weight=weight,
        values=values,
        clip_min=float(clip_min),
        clip_max=float(clip_max),
    )


def _no_pattern(resolved: ResolvedTrigger, pattern) -> None:
    if pattern is not None:
        raise ValueError(f"internal: a {resolved.trigger} trigger takes no pattern artifact")


def _check_value(value: float, clip_min: float, clip_max: float) -> None:
    if not clip_min <= value <= clip_max:
        raise InvalidArgument(
            f"trigger.value {value:g} is outside the data's range {clip_min:g}..{clip_max:g}; "
            "a trigger must be a valid image value"
        )


def _user_pattern(resolved, image, clip_min, clip_max, pattern, mask) -> tuple[np.ndarray, np.ndarray]:
    """The PATTERN artifact checked and broadcast to the image's channels."""
    if pattern is None:
        raise ValueError(f"internal: the {resolved.trigger} trigger needs its pattern artifact ({resolved.pattern})")
    if mask is None:
        mask = np.ones(np.shape(pattern)[:2], dtype=np.float32)
    pattern, mask = check_pattern_arrays(np.asarray(pattern), np.asarray(mask))
    channels = image[2]
    if pattern.shape[2] not in (channels, 1):
        raise InvalidArgument(
            f"the trigger pattern has {pattern.shape[2]} channels but the images have {channels}; "
            + (
                "give the pattern 1 channel"
                if channels == 1
                else f"give the pattern {channels} channels, or 1 to apply it to every channel"
            )
        )
    low, high = float(pattern.min()), float(pattern.max())
    if low < clip_min or high > clip_max:
        raise InvalidArgument(
            f"the trigger pattern's values span {low:g}..{high:g} but the data's range is {clip_min:g}..{clip_max:g}; "
            "give the pattern in the same scale as the images (e.g. divide a 0..255 pattern by 255 for 0..1 data)"
        )
    if pattern.shape[2] != channels:
        pattern = np.repeat(pattern, channels, axis=2)
        mask = np.repeat(mask, channels, axis=2)
    return pattern, mask
