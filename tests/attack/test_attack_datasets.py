"""npz reading and the dataset/model compatibility rules (datasets.py)."""

from __future__ import annotations

import numpy as np
import pytest

from advex.attack import datasets
from advex.attack.models import NATIVE, ModelSummary
from advex.core.errors import InvalidArgument
from advex.core.npz_archive import BadArray

import crafted_files

DIGITS_MODEL = ModelSummary(
    input_shape=(8, 8, 1), num_classes=10, outputs_probabilities=False, logits_source=NATIVE, parameter_count=1
)


def images(n=4, shape=(8, 8, 1), high=1.0, dtype=np.float32):
    return np.random.default_rng(0).uniform(0, high, size=(n, *shape)).astype(dtype)


def test_greyscale_uint8_npz_loads_as_float32_with_one_channel(tmp_path):
    path = tmp_path / "grey.npz"
    np.savez(path, x=images(5, (8, 8), 255).astype(np.uint8), y=np.arange(5, dtype=np.int32))
    ds = datasets.load_dataset(path)
    assert ds.image_shape == (8, 8, 1) and ds.source_dtype == "uint8" and ds.x.shape == (5, 8, 8, 1)
    assert ds.y.dtype == np.int64 and (ds.min_label, ds.max_label) == (0, 4)
    x, y = ds.batch(1, 3)
    assert x.shape == (2, 8, 8, 1) and x.dtype == np.float32 and list(y) == [1, 2]


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_images_stay_on_disk(tmp_path, save):
    """Stored members are read in place; deflated ones are inflated once,
    in chunks, to a file beside the npz, and read from there."""
    x = images(300, (6, 6, 3), 1.0).astype(np.float32)
    path = tmp_path / "data.npz"
    save(path, x=x, y=np.arange(300) % 7)
    ds = datasets.load_dataset(path)
    assert isinstance(ds.x, datasets.DiskImages) and ds.x.dtype == np.float32
    assert (path.with_name("data.npz.x.raw").exists()) == (save is np.savez_compressed)
    batch, labels = ds.batch(100, 250)
    np.testing.assert_array_equal(batch, x[100:250])
    assert list(labels[:3]) == [100 % 7, 101 % 7, 102 % 7]
    assert (ds.min_value, ds.max_value) == (float(x.min()), float(x.max()))
    again = datasets.load_dataset(path)  # the inflated copy is reused
    np.testing.assert_array_equal(again.batch(0, 300)[0], x)


def test_fortran_ordered_images_are_mapped(tmp_path):
    x = np.asfortranarray(images(20, (4, 4, 1), 1.0).astype(np.float32))
    np.savez(tmp_path / "f.npz", x=x, y=np.zeros(20, dtype=np.int64))
    np.testing.assert_array_equal(datasets.load_dataset(tmp_path / "f.npz").batch(5, 9)[0], x[5:9])


def test_non_finite_values_are_found_in_any_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_SCAN_BYTES", 4 * 16 * 3)  # three images per chunk
    x = images(20, (4, 4, 1), 1.0).astype(np.float32)
    x[17, 2, 2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.zeros(20, dtype=np.int64))
    with pytest.raises(InvalidArgument, match="NaN or infinite"):
        datasets.load_dataset(tmp_path / "nan.npz")


def test_pickled_and_incomplete_npz_are_refused(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, dtype=np.int64))
    with pytest.raises(BadArray, match=r"array 'x' holds Python objects \(dtype=object\); AdvEx never unpickles"):
        datasets.load_dataset(pickled)
    no_labels = tmp_path / "no_labels.npz"
    np.savez(no_labels, x=images())
    with pytest.raises(InvalidArgument, match="lacks array.*y"):
        datasets.load_dataset(no_labels)
    not_npz = tmp_path / "junk.npz"
    not_npz.write_bytes(b"junk" * 10)
    with pytest.raises(InvalidArgument, match="not a readable npz"):
        datasets.load_dataset(not_npz)


def test_label_count_and_dtype_are_checked():
    with pytest.raises(InvalidArgument, match="one label per image"):
        datasets.from_arrays(images(4), np.zeros(3, dtype=np.int64))
    with pytest.raises(InvalidArgument, match="integers"):
        datasets.from_arrays(images(4), np.zeros(4, dtype=np.float32))


def test_image_shape_mismatch_names_both_shapes():
    ds = datasets.from_arrays(images(2, (28, 28, 1)), np.zeros(2, dtype=np.int64))
    with pytest.raises(InvalidArgument, match="dataset images are 28x28x1 but the model expects 8x8x1 inputs"):
        datasets.check_compatible(DIGITS_MODEL, ds, 0.0, 1.0)


def test_labels_outside_the_model_classes_are_named():
    ds = datasets.from_arrays(images(3), np.array([10, 11, 12]))
    with pytest.raises(InvalidArgument, match=r"labels 10\.\.12 are outside the model's 10 classes \(0\.\.9\)"):
        datasets.check_compatible(DIGITS_MODEL, ds, 0.0, 1.0)


def test_values_outside_clip_range_suggest_the_fix():
    ds = datasets.from_arrays(images(3, high=255.0), np.zeros(3, dtype=np.int64))
    expected = r"span 0\.\d+\.\.2\d\d\.\d+ but the clip range is 0\.\.1; pass clip_max="
    with pytest.raises(InvalidArgument, match=expected):
        datasets.check_compatible(DIGITS_MODEL, ds, 0.0, 1.0)
    datasets.check_compatible(DIGITS_MODEL, ds, 0.0, 255.0)


def test_free_model_dimensions_accept_any_size():
    free = ModelSummary((None, None, 1), 10, False, NATIVE, 1)
    datasets.check_compatible(free, datasets.from_arrays(images(2, (28, 28, 1)), np.zeros(2, dtype=np.int64)), 0, 1)


def test_sample_range_rules():
    ds = datasets.from_arrays(images(10), np.zeros(10, dtype=np.int64))
    assert datasets.resolve_range(ds, 0, 0) == (0, 10)
    assert datasets.resolve_range(ds, 3, 7) == (3, 7)
    for start, stop in [(10, 0), (5, 5), (0, 11), (-1, 4)]:
        with pytest.raises(InvalidArgument, match="not inside the dataset's 10 samples"):
            datasets.resolve_range(ds, start, stop)


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    import tracemalloc

    from advex.core.errors import ResourceExhausted

    # 200 zero images of 64x64x3 deflate to a few KB but are 9.8 MB as float32.
    path = crafted_files.npz_with_header(
        tmp_path / "bomb.npz",
        {"descr": "|u1", "fortran_order": False, "shape": (200, 64, 64, 3)},
        bytes(200 * 64 * 64 * 3),
        np.zeros(200, dtype=np.int64),
    )
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ResourceExhausted) as info:
            datasets.load_dataset(path, max_bytes=1024**2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "x has shape (200, 64, 64, 3): 2457600 values, 9830400 bytes as float32" in message
    assert "at most 1048576 bytes as float32 (ADVEX_MAX_DATASET_BYTES)" in message
    assert "use at most 21 images per dataset (split the data into several datasets)" in message
    # Refused from the header: the images were never inflated, let alone converted.
    assert peak < 1_000_000, peak
    # Under the default budget the same file loads.
    assert datasets.load_dataset(path).samples == 200


def test_labels_are_checked_before_they_are_read(tmp_path, monkeypatch):
    path = tmp_path / "labels.npz"
    np.savez(path, x=images(4), y=np.zeros(5, dtype=np.int64))
    monkeypatch.setattr(datasets.npy_format, "read_array", lambda *a, **k: pytest.fail("an array was read"))
    with pytest.raises(InvalidArgument, match=r"dataset y has shape \(5,\); it must be \(4,\): one label per image"):
        datasets.load_dataset(path)


def test_header_that_lies_about_its_size_is_refused(tmp_path):
    # Announces 1000 8x8 float32 images but holds the data of one.
    path = crafted_files.npz_with_header(
        tmp_path / "liar.npz",
        {"descr": "<f4", "fortran_order": False, "shape": (1000, 8, 8)},
        bytes(8 * 8 * 4),
        np.zeros(1000, dtype=np.int64),
    )
    expected = (
        r"array 'x' is truncated: its header promises shape \(1000, 8, 8\) of float32 \(256000 bytes\) but the "
        r"file holds only 256 bytes of data"
    )
    with pytest.raises(BadArray, match=expected):
        datasets.load_dataset(path)


def test_running_out_of_memory_while_reading_is_resource_exhausted(tmp_path, monkeypatch):
    from advex.core.errors import ResourceExhausted

    path = tmp_path / "ok.npz"
    np.savez(path, x=images(), y=np.zeros(4, dtype=np.int64))

    def read_array(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(datasets.npy_format, "read_array", read_array)
    with pytest.raises(ResourceExhausted, match="does not fit in this attack replica's memory; use fewer samples"):
        datasets.load_dataset(path)
