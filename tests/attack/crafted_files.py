"""Small hostile or malformed files built by the attack tests (each a few KB)."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


def rewrite_config(source: Path, target: Path, mutate) -> Path:
    """A copy of the .keras file `source` whose config.json went through mutate(config) (in place)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    mutate(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def free_size_model(folder: Path) -> Path:
    """Input((None, None, 1)) -> GlobalAveragePooling2D -> Dense(10, softmax): tiny, any image size."""
    import keras

    inputs = keras.Input(shape=(None, None, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    path = folder / "free.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def huge_input_model(folder: Path) -> Path:
    """free_size_model with its input edited to 100000x100000x1: a 2 KB file whose
    probe batch alone would need hundreds of GiB."""

    def enlarge(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "InputLayer":
                layer["config"]["batch_shape"] = [None, 100000, 100000, 1]

    return rewrite_config(free_size_model(folder), folder / "huge-input.keras", enlarge)


def unbuilt_sequential(folder: Path) -> Path:
    """A Sequential never given an input shape (storage accepts it)."""
    import keras

    path = folder / "unbuilt.keras"
    with warnings.catch_warnings():  # Keras warns that it is unbuilt: the point here
        warnings.simplefilter("ignore", UserWarning)
        keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)]).save(path)
    return path


def deeply_nested_config(folder: Path, depth: int = 5000) -> Path:
    path = folder / f"deep{depth}.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        nested = "[{}, " * depth + "[]" + "]" * depth
        archive.writestr("config.json", '{"class_name": "Sequential", "config": ' + nested + "}")
    return path


def npz_with_header(path: Path, x_header: dict, x_data: bytes, y: np.ndarray) -> Path:
    """An npz whose x.npy has the header `x_header` followed by exactly `x_data`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as f:
            npy_format.write_array_header_1_0(f, x_header)
            f.write(x_data)
        buffer = io.BytesIO()
        np.save(buffer, y)
        archive.writestr("y.npy", buffer.getvalue())
    return path
