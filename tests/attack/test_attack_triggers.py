"""Triggers: exact pixels on tiny images, and every way a trigger can fail to fit."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from advex.attack import datasets, triggers
from advex.core import poison_specs
from advex.core.errors import InvalidArgument, ResourceExhausted
from advex.v1 import poisoning_pb2


def resolved(clip_min=0.0, clip_max=1.0, **fields) -> poison_specs.ResolvedTrigger:
    return poison_specs.resolve_trigger(poisoning_pb2.TriggerSpec(**fields), clip_min, clip_max)


def images(n=2, h=4, w=5, c=3, seed=0, low=0.0, high=1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=(n, h, w, c)).astype(np.float32)


def outside(stamped, x, rows, columns) -> bool:
    """Every pixel outside rows x columns is exactly as in x."""
    keep = np.ones(x.shape[1:3], dtype=bool)
    keep[rows, columns] = False
    return np.array_equal(stamped[:, keep], x[:, keep])


def test_every_trigger_of_the_catalogue_has_a_builder():
    assert set(triggers.TRIGGER_BUILDERS) == set(poison_specs.TRIGGERS)


@pytest.mark.parametrize(
    "position, rows, columns",
    [
        ("bottom-right", slice(2, 4), slice(3, 5)),
        ("bottom-left", slice(2, 4), slice(0, 2)),
        ("top-right", slice(0, 2), slice(3, 5)),
        ("top-left", slice(0, 2), slice(0, 2)),
        ("center", slice(1, 3), slice(1, 3)),
        ("3,1", slice(1, 3), slice(3, 5)),  # x is the column, y the row
        ("0,2", slice(2, 4), slice(0, 2)),
    ],
)
def test_square_sets_its_patch_to_value_in_every_channel(position, rows, columns):
    trigger = triggers.make_trigger(resolved(trigger="square", size=2, value=0.75, position=position), (4, 5, 3), 0, 1)
    x = images()
    before = x.copy()
    stamped = trigger.stamp(x)
    assert stamped.dtype == np.float32 and stamped is not x
    assert np.array_equal(x, before), "stamp must not modify its input"
    assert np.all(stamped[:, rows, columns, :] == np.float32(0.75))
    assert outside(stamped, x, rows, columns)
    assert np.sum(stamped != x) == np.sum(x[:, rows, columns, :] != np.float32(0.75))


def test_square_defaults_to_clip_max_and_works_on_uint8_input():
    trigger = triggers.make_trigger(resolved(0, 255, trigger="square", size=1), (3, 3, 1), 0, 255)
    x = np.zeros((1, 3, 3, 1), dtype=np.uint8)
    stamped = trigger.stamp(x)
    assert stamped.dtype == np.float32
    assert stamped[0, 2, 2, 0] == 255 and stamped.sum() == 255 and x.sum() == 0


def test_checker_alternates_value_and_clip_min():
    trigger = triggers.make_trigger(
        resolved(-1, 1, trigger="checker", size=3, value=0.5, position="top-left"), (4, 4, 2), -1, 1
    )
    stamped = trigger.stamp(np.zeros((1, 4, 4, 2), dtype=np.float32))
    expected = np.array([[0.5, -1, 0.5], [-1, 0.5, -1], [0.5, -1, 0.5]], dtype=np.float32)
    for channel in range(2):
        assert np.array_equal(stamped[0, :3, :3, channel], expected)
    assert np.all(stamped[0, 3, :, :] == 0) and np.all(stamped[0, :, 3, :] == 0)


def test_pattern_is_mixed_in_by_its_mask_at_its_position():
    pattern = np.array([[[0.2, 0.4, 0.6], [1.0, 1.0, 1.0]]], dtype=np.float32)  # 1x2, 3 channels
    mask = np.array([[0.5, 1.0]], dtype=np.float32)
    trigger = triggers.make_trigger(
        resolved(trigger="pattern", pattern="artifacts/p", position="1,2"), (4, 5, 3), 0, 1, pattern, mask
    )
    x = images()
    stamped = trigger.stamp(x)
    region = x[:, 2:3, 1:3, :].astype(np.float64)
    m = mask[..., None].astype(np.float64)
    assert np.allclose(stamped[:, 2:3, 1:3, :], region * (1 - m) + pattern * m, atol=1e-7, rtol=0)
    assert np.array_equal(stamped[:, 2, 2, :], np.ones((2, 3), dtype=np.float32))  # mask 1: the pattern exactly
    assert outside(stamped, x, slice(2, 3), slice(1, 3))


def test_one_channel_pattern_applies_to_every_channel():
    pattern = np.full((2, 2, 1), 0.9, dtype=np.float32)
    mask = np.ones((2, 2), dtype=np.float32)
    trigger = triggers.make_trigger(resolved(trigger="pattern", pattern="artifacts/p"), (4, 5, 3), 0, 1, pattern, mask)
    stamped = trigger.stamp(images())
    assert np.all(stamped[:, 2:4, 3:5, :] == np.float32(0.9))


def test_blend_noise_mixes_the_whole_image_with_seeded_uniform_noise():
    trigger = triggers.make_trigger(resolved(0, 255, trigger="blend", alpha=0.2, seed=7), (4, 5, 3), 0, 255)
    x = images(low=0, high=255)
    noise = np.random.default_rng(7).uniform(0, 255, size=(4, 5, 3))
    stamped = trigger.stamp(x)
    assert np.allclose(stamped, 0.8 * x.astype(np.float64) + 0.2 * noise, atol=1e-4, rtol=0)
    assert np.all(trigger.values >= 0) and np.all(trigger.values <= 255) and trigger.values.std() > 50
    again = triggers.make_trigger(resolved(0, 255, trigger="blend", alpha=0.2, seed=7), (4, 5, 3), 0, 255)
    other = triggers.make_trigger(resolved(0, 255, trigger="blend", alpha=0.2, seed=8), (4, 5, 3), 0, 255)
    assert np.array_equal(again.stamp(x), stamped) and not np.array_equal(other.stamp(x), stamped)


def test_blend_with_a_pattern_uses_alpha_times_its_mask():
    pattern = np.random.default_rng(1).uniform(size=(4, 5, 1)).astype(np.float32)
    mask = np.zeros((4, 5), dtype=np.float32)
    mask[1:3, 1:4] = 1.0
    mask[0, 0] = 0.5
    trigger = triggers.make_trigger(
        resolved(trigger="blend", alpha=0.4, pattern="artifacts/p"), (4, 5, 3), 0, 1, pattern, mask
    )
    x = images()
    weight = (0.4 * mask)[None, ..., None].astype(np.float64)
    expected = (1 - weight) * x + weight * pattern[None].astype(np.float64)
    stamped = trigger.stamp(x)
    assert np.allclose(stamped, expected, atol=1e-6, rtol=0)
    assert np.array_equal(stamped[:, 3, :, :], x[:, 3, :, :])  # mask 0: untouched


def test_stamped_region_is_clipped_to_the_data_range():
    pattern = np.ones((2, 2, 1), dtype=np.float32)
    trigger = triggers.make_trigger(
        resolved(trigger="pattern", pattern="artifacts/p", position="top-left"), (3, 3, 1), 0, 1,
        pattern, np.full((2, 2), 0.5, dtype=np.float32),
    )
    x = np.full((1, 3, 3, 1), 3.0, dtype=np.float32)  # beyond clip_max: 0.5 * 3 + 0.5 * 1 = 2
    stamped = trigger.stamp(x)
    assert np.all(stamped[0, :2, :2] == 1.0)
    assert np.all(stamped[0, 2, :] == 3.0) and np.all(stamped[0, :, 2] == 3.0)


def test_stamp_refuses_images_of_another_shape():
    trigger = triggers.make_trigger(resolved(trigger="square", size=1), (4, 5, 3), 0, 1)
    with pytest.raises(InvalidArgument, match="4x5x3"):
        trigger.stamp(np.zeros((1, 5, 4, 3), dtype=np.float32))


@pytest.mark.parametrize(
    "fields, image, match",
    [
        ({"trigger": "square", "size": 5}, (4, 5, 3), "5x5 pixels but the images are 4x5"),
        ({"trigger": "checker", "size": 3, "position": "3,0"}, (4, 5, 3), "x must be at most 2"),
        ({"trigger": "square", "size": 2, "position": "0,3"}, (4, 5, 3), "y at most 2"),
    ],
)
def test_patch_that_does_not_fit_the_image_is_refused(fields, image, match):
    with pytest.raises(InvalidArgument, match=match):
        triggers.make_trigger(resolved(**fields), image, 0, 1)


def test_square_value_outside_the_range_is_refused():
    trigger = poison_specs.ResolvedTrigger("square", 2, "bottom-right", 2.0, "", 0.0, 0)
    with pytest.raises(InvalidArgument, match=r"2 is outside the data's range 0\.\.1"):
        triggers.make_trigger(trigger, (4, 4, 1), 0, 1)


def test_images_must_be_hwc():
    with pytest.raises(InvalidArgument, match=r"\(H, W, C\)"):
        triggers.make_trigger(resolved(trigger="square", size=1), (4, 4), 0, 1)


@pytest.mark.parametrize(
    "fields, pattern, mask, match",
    [
        ({"trigger": "pattern"}, np.ones((6, 2, 1)), np.ones((6, 2)), "6x2 pixels but the images are 4x5"),
        ({"trigger": "pattern", "position": "4,0"}, np.ones((2, 3, 1)), np.ones((2, 3)), "x must be at most 2"),
        ({"trigger": "pattern"}, np.ones((2, 2, 2)), np.ones((2, 2)), "has 2 channels but the images have 3"),
        ({"trigger": "pattern"}, np.full((2, 2, 1), 255.0), np.ones((2, 2)), r"span 255\.\.255 .* range is 0\.\.1"),
        ({"trigger": "pattern"}, -np.ones((2, 2, 3)), np.ones((2, 2)), r"span -1\.\.-1 .* range is 0\.\.1"),
        ({"trigger": "pattern"}, np.ones((2, 2, 1)), np.full((2, 2), 2.0), r"mask values span 2\.\.2"),
        ({"trigger": "blend"}, np.ones((4, 4, 1)), np.ones((4, 4)), "blend pattern is 4x4 pixels but the images"),
        ({"trigger": "blend"}, np.ones((4, 5, 2)), np.ones((4, 5)), "has 2 channels but the images have 3"),
    ],
)
def test_pattern_that_does_not_fit_the_images_is_refused(fields, pattern, mask, match):
    with pytest.raises(InvalidArgument, match=match):
        triggers.make_trigger(
            resolved(pattern="artifacts/p", **fields), (4, 5, 3), 0, 1,
            pattern.astype(np.float32), mask.astype(np.float32),
        )


# ---------------------------------------------------------------------------
# load_pattern


def save_pattern(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_load_pattern_returns_float32_pattern_and_channel_mask(tmp_path):
    pattern = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    mask = np.array([[True, False, True], [False, True, False]])
    path = save_pattern(tmp_path / "p.npz", pattern=pattern, mask=mask)
    loaded_pattern, loaded_mask = triggers.load_pattern(path, 10**6)
    assert loaded_pattern.dtype == np.float32 and np.array_equal(loaded_pattern, pattern)
    assert loaded_mask.shape == (2, 3, 3) and np.array_equal(loaded_mask[..., 2], mask.astype(np.float32))


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"pattern": np.ones((2, 2, 1))}, "lacks array.*mask"),
        ({"pattern": np.ones((2, 2)), "mask": np.ones((2, 2))}, r"pattern\[..., None\]"),
        ({"pattern": np.ones((2, 2, 1)), "mask": np.ones((3, 2))}, "mask's H and W must be"),
        ({"pattern": np.ones((2, 2, 1)), "mask": np.full((2, 2), np.nan)}, "NaN"),
        ({"pattern": np.ones((2, 2, 1), dtype=np.int32), "mask": np.ones((2, 2))}, "dtype int32"),
    ],
)
def test_load_pattern_refuses_malformed_artifacts(tmp_path, arrays, match):
    with pytest.raises(InvalidArgument, match=match):
        triggers.load_pattern(save_pattern(tmp_path / "p.npz", **arrays), 10**6)


def test_load_pattern_refuses_pickles_and_non_zip_files_without_unpickling(tmp_path, monkeypatch):
    np.save(tmp_path / "plain.npy", np.ones((2, 2, 1)))
    with pytest.raises(InvalidArgument, match="not a zip archive"):
        triggers.load_pattern(tmp_path / "plain.npy", 10**6)
    objects = np.empty((2, 2, 1), dtype=object)
    path = tmp_path / "objects.npz"
    np.savez(path, pattern=objects, mask=np.ones((2, 2)))
    monkeypatch.setattr(datasets, "_read_array", lambda *a: pytest.fail("an array was read"))
    with pytest.raises(InvalidArgument, match="Python objects"):
        triggers.load_pattern(path, 10**6)


def test_load_pattern_checks_headers_and_budget_before_reading_data(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_read_array", lambda *a: pytest.fail("an array was read"))
    big = save_pattern(tmp_path / "big.npz", pattern=np.ones((16, 16, 3), dtype=np.float32), mask=np.ones((16, 16)))
    with pytest.raises(ResourceExhausted, match="at most 1000"):
        triggers.load_pattern(big, 1000)

    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(lying, "w") as archive:
        with archive.open("pattern.npy", "w") as f:
            npy_format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2000, 2000, 1)})
            f.write(b"\0" * 16)
        buffer = io.BytesIO()
        np.save(buffer, np.ones((2000, 2000)))
        archive.writestr("mask.npy", buffer.getvalue())
    with pytest.raises(InvalidArgument, match="truncated"):
        triggers.load_pattern(lying, 10**9)
