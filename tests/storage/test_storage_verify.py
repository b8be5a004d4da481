"""verify.py on files directly: what a model or dataset must look like, and
that checking one never imports Keras or unpickles anything."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from numpy.lib import format as npy_format

from advex.core.errors import ResourceExhausted
from advex.storage.verify import (
    DEFAULT_MAX_DATASET_BYTES,
    DatasetSummary,
    TooLarge,
    VerificationError,
    ZipLimits,
    verify_dataset,
    verify_model,
)

H5_HEAD = b"\x89HDF\r\n\x1a\n" + b"\0" * 56


def layer(class_name: str, name: str, **config) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "config": {"name": name, **config}}


def keras_zip(
    path: Path,
    config: dict,
    *,
    weights: bytes = H5_HEAD,
    compression=zipfile.ZIP_DEFLATED,
    metadata: str = '{"keras_version": "3.15.1"}',
) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("metadata.json", metadata)
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights)
    return path


def sequential(*layers: dict, name: str = "sequential") -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": name, "layers": list(layers)}}


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def rejects(check, path: Path, phrase: str, **kwargs) -> str:
    with pytest.raises(VerificationError) as caught:
        check(path, **kwargs)
    assert phrase in str(caught.value)
    return str(caught.value)


# ------------------------------------------------------------------ models


def test_real_model_summary(digits_files):
    summary = verify_model(digits_files[0])
    assert summary.model_class == "Sequential"
    assert summary.layer_count == 6  # InputLayer is not counted, as in model.layers
    assert summary.keras_version.startswith("3.")


def test_functional_model_layers_are_counted(tmp_path):
    config = {
        "module": "keras",
        "class_name": "Functional",
        "config": {"name": "f", "layers": [layer("InputLayer", "in"), layer("Dense", "d")]},
    }
    assert verify_model(keras_zip(tmp_path / "f.keras", config)).layer_count == 2


def test_lambda_nested_in_a_functional_model_is_found_with_its_path(tmp_path):
    inner = sequential(layer("Dense", "d1"), layer("Lambda", "scale"), name="block")
    config = {"module": "keras", "class_name": "Functional", "config": {"name": "outer", "layers": [inner]}}
    message = rejects(verify_model, keras_zip(tmp_path / "m.keras", config), "Lambda layer at outer/block/scale")
    assert "rebuild the model with built-in layers" in message


NESTED_TOO_DEEP = (
    "config.json is nested too deeply to be a Keras model (more than 100 levels); Keras' own model.save never "
    "writes such a file; save the model with Keras 3: model.save('model.keras')"
)


# 90 levels parse and pass; 150 and 500 parse but exceed the shared policy's
# MAX_CONFIG_DEPTH (100, the attack service's limit too); 100000 exceed the
# JSON parser's own recursion limit. All are valid JSON. The exact boundary
# is tested in tests/core/test_core_keras_archive.py.
@pytest.mark.parametrize(
    "depth, expected", [(90, None), (150, NESTED_TOO_DEEP), (500, NESTED_TOO_DEEP), (100_000, NESTED_TOO_DEEP)]
)
def test_absurdly_nested_config_is_rejected_not_a_crash(tmp_path, depth, expected):
    path = tmp_path / "m.keras"
    text = '{"class_name": "Sequential", "config": ' + "[{}, " * depth + "[]" + "]" * depth + "}"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", text)
        archive.writestr("model.weights.h5", H5_HEAD)
    if expected is None:
        assert verify_model(path).model_class == "Sequential"
        return
    with pytest.raises(VerificationError) as caught:
        verify_model(path)
    assert str(caught.value) == expected


def test_corrupted_weights_fail_the_crc_check(tmp_path):
    path = keras_zip(tmp_path / "m.keras", sequential(layer("Dense", "d")), weights=H5_HEAD + b"w" * 4096,
                     compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    data[data.index(b"w" * 64) + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    rejects(verify_model, path, "damaged")


def test_weights_that_are_not_hdf5_are_rejected(tmp_path):
    path = keras_zip(tmp_path / "m.keras", sequential(layer("Dense", "d")), weights=b"pickle? no")
    rejects(verify_model, path, "model.weights.h5 is not an HDF5 file")


def test_config_that_is_not_json_is_rejected(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", "{not json")
        archive.writestr("model.weights.h5", H5_HEAD)
    rejects(verify_model, path, "config.json in the model is not valid JSON")


def test_zip_bomb_is_refused_from_the_directory(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (4 << 20))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", H5_HEAD)
    assert path.stat().st_size < 64 << 10
    rejects(verify_model, path, "expands to", limits=ZipLimits(max_member_bytes=1 << 20))
    rejects(verify_model, path, "expands to", limits=ZipLimits(max_total_bytes=2 << 20))
    rejects(verify_model, path, "holds 3 files", limits=ZipLimits(max_members=2))


def test_checking_a_lambda_model_never_imports_keras(lambda_model_file):
    """In a fresh interpreter, so the test process's own Keras import cannot hide one."""
    script = (
        "import sys\n"
        "from advex.storage import server, verify\n"
        "try:\n"
        f"    verify.verify_model(__import__('pathlib').Path({str(lambda_model_file)!r}))\n"
        "except verify.VerificationError as error:\n"
        "    print('REJECTED:', error)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'jax'))\n"
        "print('LOADED:', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert "REJECTED: the model contains a Lambda layer at with_lambda/double" in result.stdout
    assert "LOADED: []" in result.stdout


# ------------------------------------------- models: only Keras, no outside code


@pytest.fixture(scope="session")
def legitimate_models(tmp_path_factory) -> dict[str, Path]:
    """Real Keras 3 files built from ordinary parts: what the allowlist must accept."""
    import keras
    from keras import layers, ops

    folder = tmp_path_factory.mktemp("legit")
    inputs = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(1e-4),
                      kernel_constraint=keras.constraints.MaxNorm(2))(inputs)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    h = layers.Dropout(0.2)(h)
    h = layers.Activation(keras.activations.gelu)(h)
    h = layers.GlobalAveragePooling2D()(h)
    h = ops.add(h, 1.0)[:, :4]
    h = layers.Dense(3, kernel_initializer=keras.initializers.HeNormal(seed=1))(h)
    functional = keras.Model(inputs, layers.Softmax()(h))
    functional.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
                       loss=keras.losses.sparse_categorical_crossentropy,
                       metrics=[keras.metrics.sparse_categorical_accuracy, "accuracy"])
    text = keras.Input((1,), dtype="string")
    vectorize = layers.TextVectorization(max_tokens=10)
    vectorize.adapt(["a b c", "c d"])
    # One output (a model with two is refused at upload: AdvEx evaluates one).
    lookup = keras.Model(text, layers.Concatenate()([layers.StringLookup(vocabulary=["a", "b"])(text), vectorize(text)]))
    nested = keras.Sequential([keras.Input((3,)), keras.Sequential([layers.Dense(4)]), layers.Dense(2, "softmax")])
    paths = {}
    for name, model in {"functional": functional, "lookup": lookup, "nested": nested}.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    return paths


@pytest.mark.parametrize("name, model_class, layer_count", [
    ("functional", "Functional", 11), ("lookup", "Functional", 4), ("nested", "Sequential", 2),
])
def test_ordinary_keras_models_pass_the_allowlist(legitimate_models, name, model_class, layer_count):
    summary = verify_model(legitimate_models[name])
    assert (summary.model_class, summary.layer_count) == (model_class, layer_count)


def test_the_demo_model_passes_the_allowlist(digits_files):
    assert verify_model(digits_files[0]).layer_count == 6


# The whole policy is tested on crafted configs in tests/core/test_core_keras_archive.py;
# these prove verify_model applies it to an uploaded file, naming the layer's path.
@pytest.mark.parametrize(
    "node, phrases",
    [
        (layer("Dense", "d", activation={"module": "os", "class_name": "function", "config": "system"}),
         ["refers to 'os.system' at sequential/d/activation, which is not part of Keras",
          "custom or third-party layers and functions are not supported"]),
        (layer("Dense", "d", activation={"class_name": "__lambda__", "config": {"code": "4wE="}}),
         ["holds a serialized Python function at sequential/d/activation"]),
        (layer("TFSMLayer", "sm", filepath="/srv/sm"),
         ["contains a TFSMLayer layer at sequential/sm, which loads a TensorFlow SavedModel"]),
        (layer("StringLookup", "words", vocabulary="/etc/passwd"),
         ["the StringLookup layer at sequential/words takes its vocabulary from '/etc/passwd', not a list"]),
    ],
)
def test_anything_outside_keras_is_rejected(tmp_path, node, phrases):
    message = rejects(verify_model, keras_zip(tmp_path / "m.keras", sequential(node)), phrases[0])
    for phrase in phrases[1:]:
        assert phrase in message


# Every kind of escaping name is tested on the shared check in tests/core/test_core_keras_archive.py;
# these prove storage applies it to models and datasets alike.
@pytest.mark.parametrize(
    "member, problem",
    [("../../../tmp/owned", "climbs out of the archive with '..'"), ("C:/owned", "is an absolute path")],
)
def test_member_names_that_escape_the_archive_are_rejected(tmp_path, member, problem):
    path = keras_zip(tmp_path / "m.keras", sequential(layer("Dense", "d")))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(member, b"x")
    message = rejects(verify_model, path, problem)
    assert "file names inside the archive must be plain relative paths" in message
    dataset = npz(tmp_path / "d.npz", x=np.zeros((1, 2, 2, 1), np.uint8), y=np.zeros(1, np.int64))
    with zipfile.ZipFile(dataset, "a") as archive:
        archive.writestr(member, b"x")
    rejects(verify_dataset, dataset, problem)


def test_a_member_stored_twice_is_rejected(tmp_path):
    path = npz(tmp_path / "d.npz", x=np.zeros((1, 2, 2, 1), np.uint8), y=np.zeros(1, np.int64))
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x.npy", _npy(np.zeros((1, 2, 2, 1), np.int32)))
    rejects(verify_dataset, path, "holds two files named 'x.npy'")


@pytest.mark.parametrize("version", ["3.15.1", "3.4.0.dev2024061103", "3.0.0rc1", "3.6.0+local"])
def test_real_keras_versions_are_accepted(tmp_path, version):
    path = keras_zip(tmp_path / "m.keras", sequential(), metadata=json.dumps({"keras_version": version}))
    assert verify_model(path).keras_version == version


@pytest.mark.parametrize(
    "metadata, shown",
    [
        ('{"keras_version": "\\ud800"}', "'\\ud800'"),  # a lone surrogate, as JSON may encode one
        (json.dumps({"keras_version": "3." + "9" * 6_000_000}), "'3.999"),
        (json.dumps({"keras_version": "3.15.1; rm -rf /"}), "'3.15.1; rm -rf /'"),
        (json.dumps({"keras_version": "3.15.1\n"}), "'3.15.1\\u000a'"),
    ],
)
def test_keras_version_must_be_a_version_number(tmp_path, metadata, shown):
    path = keras_zip(tmp_path / "m.keras", sequential(), metadata=metadata)
    message = rejects(verify_model, path, "which is not a version number like '3.15.1' (at most 32 characters)")
    assert f"names the Keras version {shown}" in message
    assert len(message) < 400
    message.encode("utf-8")  # the message itself can be sent


@pytest.mark.parametrize(
    "class_name, phrase",
    [
        ("M" * 201, "the model class in config.json is 201 characters long; at most 200 are accepted"),
        ("Seq\ud800", "the model class in config.json ('Seq\\ud800') is not valid Unicode text"),
        ("Seq\x1b[31m", "the model class in config.json ('Seq\\u001b[31m') contains control characters"),
        ("Seq\u2028uential", "the model class in config.json ('Seq\\u2028uential') is not printable text"),
    ],
)
def test_model_class_must_be_short_printable_text(tmp_path, class_name, phrase):
    config = {"module": "keras", "class_name": class_name, "config": {"name": "m", "layers": []}}
    rejects(verify_model, keras_zip(tmp_path / "m.keras", config), phrase)


# ---------------------------------------------------------------- datasets


def test_real_dataset_summary(digits_files):
    summary = verify_dataset(digits_files[1])
    assert (summary.samples, summary.image_shape, summary.dtype) == (359, (8, 8, 1), "float32")
    assert summary.class_names == tuple(str(d) for d in range(10))
    assert (summary.min_value, summary.max_value) == (0.0, 1.0)


def test_value_range_is_recorded_as_float32_and_old_summaries_lack_it(tmp_path):
    path = tmp_path / "v.npz"
    np.savez(path, x=np.array([0.1, -2.5, 3.0000000001, 7.0]).reshape(4, 1, 1, 1), y=np.arange(4))
    summary = verify_dataset(path)
    assert (summary.min_value, summary.max_value) == (-2.5, float(np.float32(7.0)))
    assert DatasetSummary.from_json(summary.to_json()) == summary
    old = {k: v for k, v in summary.to_json().items() if k not in ("min_value", "max_value")}
    assert DatasetSummary.from_json(old).min_value is None


def test_uint8_compressed_dataset_without_class_names(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=np.full((5, 4, 3, 3), 255, np.uint8), y=np.array([0, 1, 2, 3, 7], np.uint16),
                        extra=np.arange(3))
    summary = verify_dataset(path)
    assert (summary.samples, summary.image_shape, summary.dtype) == (5, (4, 3, 3), "uint8")
    assert (summary.min_label, summary.max_label, summary.class_names) == (0, 7, ())


def test_big_dataset_is_streamed_in_blocks(tmp_path):
    # 24 MiB of float32: several read blocks, and a NaN only in the last one.
    x = np.zeros((1536, 64, 64, 1), np.float32)
    y = np.zeros(1536, np.int64)
    assert verify_dataset(npz(tmp_path / "ok.npz", x=x, y=y)).samples == 1536
    x[-1, -1, -1, 0] = np.nan
    rejects(verify_dataset, npz(tmp_path / "nan.npz", x=x, y=y), "NaN or infinite")


@pytest.mark.parametrize(
    "arrays, phrase",
    [
        ({"x": np.zeros((2, 4, 4), np.float32), "y": np.zeros(2, np.int64)}, "add a channel axis: x[..., None]"),
        ({"x": np.zeros((2, 16), np.float32), "y": np.zeros(2, np.int64)}, "must be 4-D (N, H, W, C)"),
        ({"x": np.zeros((0, 4, 4, 1), np.float32), "y": np.zeros(0, np.int64)}, "at least one sample"),
        ({"x": np.zeros((2, 4, 4, 1), np.int32), "y": np.zeros(2, np.int64)}, "float16, float32 or float64"),
        ({"x": np.full((2, 4, 4, 1), np.inf, np.float32), "y": np.zeros(2, np.int64)}, "NaN or infinite"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.zeros(3, np.int64)}, "x holds 2 images"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.zeros((2, 1), np.int64)}, "y must be 1-D"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.zeros(2, np.float32)}, "labels must be integers"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.array([0, -1])}, "labels must be >= 0"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.array([0, 5]), "class_names": np.array(["a", "b"])},
         "class_names lists only 2 classes"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.array([0, 1]), "class_names": np.array([1, 2])},
         "must be a 1-D string array"),
        ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.array([0, 1]),
          "class_names": np.array(["a", None], dtype=object)}, "array 'class_names' holds Python objects"),
        ({"x": np.array([[[[1]]], "a"], dtype=object), "y": np.array([0, 1])}, "array 'x' holds Python objects"),
        ({"y": np.array([0, 1])}, "the .npz has no array 'x'"),
    ],
)
def test_bad_datasets_are_rejected(tmp_path, arrays, phrase):
    rejects(verify_dataset, npz(tmp_path / "d.npz", **arrays), phrase)


def test_truncated_array_data_is_rejected(tmp_path):
    # A consistent zip whose x.npy promises more data than it holds.
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 2, 2, 1), np.float32))
    data = buffer.getvalue()[:-8]
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", data)
        archive.writestr("y.npy", _npy(np.zeros(4, np.int64)))
    rejects(verify_dataset, path, "array 'x' is truncated")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_pickle_disguised_as_npz_is_not_a_zip(tmp_path):
    path = tmp_path / "pickle.npz"
    path.write_bytes(b"\x80\x04\x95" + b"\0" * 100)
    rejects(verify_dataset, path, "not a complete zip archive")


# ------------------------------------------- datasets: sizes from the headers


def _header(descr: str, shape: tuple[int, ...]) -> bytes:
    """Just the .npy header of an array: what a crafted file can announce."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


X_SMALL = np.zeros((2, 4, 4, 1), np.uint8)
Y_SMALL = np.array([0, 1], np.int64)


def test_too_many_pixels_are_refused_from_the_header(tmp_path):
    # The reviewer's bomb: a 3 MB deflated x of 12.6 GB as float32. Only its
    # header is needed to refuse it; here the data is not even there.
    members = {"x.npy": _header("|u1", (4000, 512, 512, 3)), "y.npy": _npy(np.zeros(4000, np.int64))}
    path = _zip(tmp_path / "bomb.npz", members)
    with pytest.raises(TooLarge) as caught:
        verify_dataset(path)
    assert isinstance(caught.value, ResourceExhausted) and isinstance(caught.value, VerificationError)
    assert str(caught.value) == (
        "x has shape (4000, 512, 512, 3): 3145728000 values, 12582912000 bytes as float32 (the form attacks use); "
        f"this server accepts datasets of at most {DEFAULT_MAX_DATASET_BYTES} bytes as float32 "
        "(ADVEX_MAX_DATASET_BYTES); use at most 1365 images per dataset (split the data into several datasets)"
    )


def test_dataset_size_limit_is_exact(tmp_path):
    limits = ZipLimits.for_datasets(2048)  # 512 values as float32
    fits = npz(tmp_path / "fits.npz", x=np.zeros((8, 8, 8, 1), np.uint8), y=np.zeros(8, np.int64))
    assert verify_dataset(fits, limits).samples == 8
    over = npz(tmp_path / "over.npz", x=np.zeros((9, 8, 8, 1), np.uint8), y=np.zeros(9, np.int64))
    message = rejects(verify_dataset, over, "2304 bytes as float32", limits=limits)
    assert "at most 2048 bytes" in message and "use at most 8 images per dataset" in message
    huge_image = npz(tmp_path / "img.npz", x=np.zeros((1, 32, 32, 1), np.uint8), y=np.zeros(1, np.int64))
    rejects(verify_dataset, huge_image, "use smaller images", limits=limits)


def test_zip_limits_follow_the_configuration():
    datasets = ZipLimits.for_datasets(1 << 20)
    assert datasets.max_dataset_bytes == 1 << 20
    # x as float64 is twice its float32 size; x and y together at most 4x.
    assert 2 << 20 < datasets.max_member_bytes <= 3 << 20
    assert 4 << 20 < datasets.max_total_bytes <= (4 << 20) + (128 << 20)
    models = ZipLimits.for_models(1 << 20)
    assert 4 << 20 < models.max_member_bytes == models.max_total_bytes <= 5 << 20
    assert ZipLimits().max_total_bytes < 17 * 1024**3  # was 64 GiB


def test_data_beyond_the_header_is_refused_before_it_is_read(tmp_path):
    # 32 bytes of pixels announced, 64 MiB of zeros behind them (64 KiB deflated).
    x = _npy(X_SMALL) + bytes(64 << 20)
    path = _zip(tmp_path / "x.npz", {"x.npy": x, "y.npy": _npy(Y_SMALL)}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    rejects(verify_dataset, path, f"array 'x' holds {64 << 20} bytes more than its header's shape (2, 4, 4, 1)")


def test_header_that_promises_more_than_the_member_holds_is_refused(tmp_path):
    path = _zip(tmp_path / "y.npz", {"x.npy": _npy(X_SMALL), "y.npy": _header("<i8", (2,)) + b"\0" * 8})
    rejects(verify_dataset, path, "array 'y' is truncated: its header promises shape (2,) of int64 (16 bytes) "
                                  "but the file holds only 8 bytes of data")


@pytest.mark.parametrize(
    "y, accepted",
    [(np.array([0, 2**63 - 1], np.uint64), True), (np.array([0, 2**63], np.uint64), False),
     (np.array([0, 2**64 - 1], np.uint64), False)],
)
def test_labels_must_fit_int64(tmp_path, y, accepted):
    path = npz(tmp_path / "d.npz", x=X_SMALL, y=y)
    if accepted:
        assert verify_dataset(path).max_label == 2**63 - 1
    else:
        message = rejects(verify_dataset, path, f"y contains the label {int(y.max())}; labels are class indices")
        assert "must be below 2**63" in message


def test_float64_images_must_fit_float32(tmp_path):
    path = npz(tmp_path / "d.npz", x=np.full((2, 4, 4, 1), 1e300), y=Y_SMALL)
    rejects(verify_dataset, path, "x contains values beyond float32's range")
    assert verify_dataset(npz(tmp_path / "ok.npz", x=np.full((2, 4, 4, 1), 1e30), y=Y_SMALL)).dtype == "float64"


def test_longdouble_images_are_refused(tmp_path):
    path = npz(tmp_path / "d.npz", x=np.zeros((2, 4, 4, 1), np.longdouble), y=Y_SMALL)
    if np.dtype(np.longdouble).itemsize > 8:
        rejects(verify_dataset, path, "images must be uint8, float16, float32 or float64")
    else:  # a platform where longdouble is float64
        assert verify_dataset(path).dtype == "float64"


def _with_class_names(path: Path, class_names: bytes) -> Path:
    return _zip(path, {"x.npy": _npy(X_SMALL), "y.npy": _npy(Y_SMALL), "class_names.npy": class_names})


@pytest.mark.parametrize(
    "class_names, phrase",
    [
        # Announced sizes that would need gigabytes (MemoryError) or cannot exist (OverflowError).
        (_header("<U100000000", (1_000_000,)) + b"\0" * 100, "class_names lists 1000000 names; at most 100000"),
        (_header("<U100000000", (2,)), "names of up to 100000000 characters; at most 200 characters per name"),
        (_header("<U4", (2**100,)), f"class_names lists {2**100} names"),
        (_header("<U4", (-5,)), "array 'class_names' has the impossible shape (-5,) in its header"),
        (_header("<U4", (2,)) + b"\0" * 8, "array 'class_names' is truncated"),
        (_npy(np.array(["a", "b" * 201])), "names of up to 201 characters"),
        (_npy(np.array(["a", "b\x07"])), "class_names[1] ('b\\u0007') contains control characters"),
        (_npy(np.array(["a", "b"])).replace((0x62).to_bytes(4, "little"), (0xD800).to_bytes(4, "little")),
         "class_names[1] ('\\ud800') is not valid Unicode text (it holds a lone surrogate)"),
        (_npy(np.array(["n" * 20] * 60_000)), "class_names hold 1200000 bytes of text; at most 1048576"),
    ],
)
def test_class_names_are_checked_before_and_after_reading(tmp_path, class_names, phrase):
    message = rejects(verify_dataset, _with_class_names(tmp_path / "d.npz", class_names), phrase)
    message.encode("utf-8")


def test_unicode_class_names_are_accepted(tmp_path):
    names = np.array(["chat ✓", "näme", "猫"])
    summary = verify_dataset(npz(tmp_path / "d.npz", x=X_SMALL, y=Y_SMALL, class_names=names))
    assert summary.class_names == ("chat ✓", "näme", "猫")
