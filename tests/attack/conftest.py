"""Fixtures for the attack service tests: small hand-made Keras models.
(`publish`, objects behind presigned GET URLs, is in tests/conftest.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lambda_model_file(tmp_path_factory):
    """(model.keras with a Lambda layer, marker path the Lambda would create if run).

    A real lambda, so Keras saves its bytecode (a named function would be
    saved by reference and could never run on load). A positive control loads
    it UNSAFELY in a subprocess and sees the marker appear: the defences, not
    the file, are what keep it from running in the tests that use it.
    """
    import keras

    folder = tmp_path_factory.mktemp("lambda")
    marker = folder / "lambda-ran"
    inputs = keras.Input(shape=(8, 8, 1))
    # The path is a constant in the lambda's code (Keras cannot reload a
    # lambda's default arguments, and the control must really run it).
    touch = keras.layers.Lambda(eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]"))  # noqa: S307
    model = keras.Model(inputs, keras.layers.Dense(10)(touch(keras.layers.Flatten()(inputs))))
    path = folder / "lambda.keras"
    model.save(path)
    config = zipfile.ZipFile(path).read("config.json").decode()
    assert '"__lambda__"' in config and "touch_marker" not in config
    # Building the model above ran the lambda once; only a load may not.
    marker.unlink()

    unsafe_load = "import sys, keras; keras.saving.load_model(sys.argv[1], safe_mode=False, compile=False)"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", unsafe_load, str(path)], check=True, env=env, capture_output=True, timeout=120
    )
    assert marker.exists(), "control: an unsafe load of the fixture must run its lambda"
    marker.unlink()
    return path, marker


@pytest.fixture
def small_model(tmp_path):
    """small_model(name, head) -> path of an untrained 8x8x1 classifier:
    Flatten, Dense(10), then the `head` layers."""
    import keras

    def build(name: str, head: list) -> Path:
        keras.utils.set_random_seed(1)
        layers = [keras.Input(shape=(8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10), *head]
        path = tmp_path / f"{name}.keras"
        keras.Sequential(layers).save(path)
        return path

    return build


@pytest.fixture(scope="module")
def model(digits_files):
    """The demo digits CNN, loaded as the attack service loads models."""
    from advex.attack import models

    return models.load_model(digits_files[0])
