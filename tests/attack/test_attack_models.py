"""Safe loading, inspection and logits derivation (models.py) on real Keras files."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest

from advex.attack import models
from advex.core.errors import InvalidArgument, ResourceExhausted
from advex.core.keras_archive import UnsafeModel

from crafted_files import deeply_nested_config, free_size_model, huge_input_model, rewrite_config, unbuilt_sequential


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_model_is_attacked_through_its_stripped_logits(digits_files, digits_split):
    loaded = models.load_model(digits_files[0])
    s = loaded.summary
    assert (s.input_shape, s.num_classes) == ((8, 8, 1), 10)
    assert s.logits_source == models.STRIPPED_SOFTMAX and s.outputs_probabilities
    assert s.parameter_count == loaded.keras_model.count_params() > 1000
    x = digits_split.x_test[:32]
    logits = np.asarray(loaded.logits_fn(x))
    probs = np.asarray(loaded.keras_model(x, training=False))
    np.testing.assert_allclose(softmax(logits), probs, atol=1e-5)
    # Real logits, not probabilities: rows do not sum to 1 and go negative.
    assert logits.min() < 0 and not np.allclose(logits.sum(axis=1), 1.0)
    # The loaded model itself still ends in softmax (the strip works on a copy).
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_logits_model_is_native(digits_logits_model_file, digits_split):
    loaded = models.load_model(digits_logits_model_file)
    assert loaded.summary.logits_source == models.NATIVE
    assert not loaded.summary.outputs_probabilities
    x = digits_split.x_test[:8]
    np.testing.assert_array_equal(np.asarray(loaded.logits_fn(x)), np.asarray(loaded.keras_model(x, training=False)))


@pytest.mark.parametrize("head", ["softmax_layer", "activation_layer"])
def test_separate_softmax_layer_is_stripped(small_model, digits_split, head):
    import keras

    layer = keras.layers.Softmax() if head == "softmax_layer" else keras.layers.Activation("softmax")
    loaded = models.load_model(small_model(head, [layer]))
    assert loaded.summary.logits_source == models.STRIPPED_SOFTMAX
    x = digits_split.x_test[:8]
    dense_out = keras.Model(loaded.keras_model.inputs[0], loaded.keras_model.layers[-2].output)(x)
    np.testing.assert_allclose(np.asarray(loaded.logits_fn(x)), np.asarray(dense_out), atol=1e-6)


def test_unstrippable_probabilities_use_log_probabilities(small_model, digits_split):
    import keras

    # Softmax followed by a layer that keeps rows summing to 1: nothing to strip.
    path = small_model("rescaled", [keras.layers.Softmax(), keras.layers.Rescaling(1.0)])
    loaded = models.load_model(path)
    assert loaded.summary.logits_source == models.LOG_PROBABILITIES and loaded.summary.outputs_probabilities
    x = digits_split.x_test[:8]
    np.testing.assert_allclose(
        softmax(np.asarray(loaded.logits_fn(x))), np.asarray(loaded.keras_model(x, training=False)), atol=1e-5
    )


def test_lambda_layer_is_refused_without_running_it(lambda_model_file):
    # The fixture proved that an unsafe load of this file runs the lambda.
    path, marker = lambda_model_file
    with pytest.raises(InvalidArgument, match="Lambda layer"):
        models.load_model(path)
    assert not marker.exists()
    # Keras' own safe mode, the second line of defence, refuses it too.
    with pytest.raises(InvalidArgument, match="Lambda layer or function, which is refused"):
        models._keras_load(path)
    assert not marker.exists()


@pytest.fixture
def keras_must_not_load(monkeypatch):
    """Fails the test if the file reaches Keras: the config check must refuse it first."""
    import keras

    def fail(*args, **kwargs):
        raise AssertionError("keras.saving.load_model was called")

    monkeypatch.setattr(keras.saving, "load_model", fail)


def _sequential_layers(config):
    return config["config"]["layers"]  # [InputLayer, Flatten, Dense]


def _set_activation(value):
    return lambda c: _sequential_layers(c)[2]["config"].__setitem__("activation", value)


def _replace_flatten(**fields):
    return lambda c: _sequential_layers(c)[1].update(fields)


# Layer names carry Keras' per-process counters (sequential_3/flatten_7).
_AT_FLATTEN = r" at sequential\w*/flatten\w*"
_AT_ACTIVATION = r" at sequential\w*/dense\w*/activation"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set_activation({"module": "os", "class_name": "function", "config": "system", "registered_name": None}),
         rf"refers to 'os\.system'{_AT_ACTIVATION}, which is not part of Keras"),
        (_replace_flatten(module="subprocess", class_name="Popen", config={"args": ["true"]}),
         r"refers to 'subprocess\.Popen' at sequential\w*, which is not part of Keras"),
        (_replace_flatten(module="keras_hub.layers", class_name="Flatten"),
         rf"refers to 'keras_hub\.layers\.Flatten'{_AT_FLATTEN}, which is not part of Keras"),
        (_replace_flatten(module=None), rf"names a module that is not a string \(None\){_AT_FLATTEN}"),
        (_replace_flatten(registered_name="evil_package>Flatten"),
         rf"uses the custom object 'evil_package>Flatten'{_AT_FLATTEN}"),
        (_replace_flatten(class_name="TFSMLayer"), rf"contains a TFSMLayer layer{_AT_FLATTEN}, which loads"),
        (_replace_flatten(class_name="TorchModuleWrapper"), rf"contains a TorchModuleWrapper layer{_AT_FLATTEN}"),
        (_replace_flatten(class_name="JaxLayer"), rf"contains a JaxLayer layer{_AT_FLATTEN}"),
        (_replace_flatten(class_name="FlaxLayer"), rf"contains a FlaxLayer layer{_AT_FLATTEN}"),
        (_set_activation({"class_name": "__lambda__", "config": {"value": "AAAA", "defaults": None, "closure": None}}),
         rf"serialized Python function{_AT_ACTIVATION}"),
    ],
    ids=["os-function", "popen-class", "third-party-module", "no-module", "registered-name", "tfsm", "torch", "jax",
         "flax", "lambda-activation"],
)
def test_config_outside_the_keras_allowlist_is_refused_before_keras_sees_it(
    small_model, tmp_path, keras_must_not_load, mutate, message
):
    # The policy itself is tested on crafted configs in tests/core/test_core_keras_archive.py;
    # here: the attack service applies it to a real file, before Keras.
    path = rewrite_config(small_model("base", []), tmp_path / "crafted.keras", mutate)
    with pytest.raises(UnsafeModel) as info:
        models.load_model(path)
    assert re.search(message, str(info.value)), str(info.value)
    assert f" at {info.value.where}" in str(info.value)


def test_member_names_that_escape_the_archive_are_refused_before_keras_sees_it(
    small_model, tmp_path, keras_must_not_load
):
    path = small_model("base", [])
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("assets/../../owned", b"x")
    with pytest.raises(InvalidArgument, match="climbs out of the archive with '..'; file names inside the archive"):
        models.load_model(path)


def test_keras_built_ins_pass_the_allowlist(tmp_path):
    import keras

    # Functional (registered_name "Functional"), initializers, regularizers,
    # activations by name and as objects, normalisation, dropout.
    inputs = keras.Input(shape=(8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation=keras.activations.gelu, kernel_regularizer=keras.regularizers.L2(1e-4),
                            kernel_initializer=keras.initializers.HeNormal())(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.1)(keras.layers.GlobalAveragePooling2D()(x))
    outputs = keras.layers.Softmax()(keras.layers.Dense(10, activation="linear")(x))
    path = tmp_path / "functional.keras"
    keras.Model(inputs, outputs).save(path)
    assert models.load_model(path).summary.logits_source == models.STRIPPED_SOFTMAX


def test_oversized_input_is_refused_before_any_batch_is_built(tmp_path):
    path = huge_input_model(tmp_path)
    with pytest.raises(ResourceExhausted) as info:
        models.load_model(path)
    message = str(info.value)
    assert "(100000, 100000, 1)" in message and "10,000,000,000" in message
    assert "16,777,216" in message and "ADVEX_ATTACK_MAX_INPUT_ELEMENTS" in message
    # The same file with free dimensions is fine: they count as 16.
    assert models.load_model(free_size_model(tmp_path)).summary.input_shape == (None, None, 1)


def test_parameter_and_activation_limits(small_model):
    import keras

    with pytest.raises(ResourceExhausted, match=r"has 650 parameters.*\(100, ADVEX_ATTACK_MAX_PARAMETERS\)"):
        models.load_model(small_model("params", []), models.ModelLimits(max_parameters=100))
    # 8x8 upsampled 64 times per side: 262,144 values per sample in one layer.
    path = small_model("upsampled", [])
    big = keras.Sequential(
        [keras.Input(shape=(8, 8, 1)), keras.layers.UpSampling2D(64), keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(10)]
    )
    big.save(path)
    with pytest.raises(ResourceExhausted, match=r"262,144 values per sample.*ADVEX_ATTACK_MAX_ACTIVATION_ELEMENTS"):
        models.load_model(path, models.ModelLimits(max_activation_elements=100_000))
    assert models.load_model(path).summary.parameter_count == 20


@pytest.mark.parametrize("error", ["memory", "tensorflow"])
def test_running_out_of_memory_is_resource_exhausted(small_model, monkeypatch, error):
    import keras
    import tensorflow as tf

    def load(*args, **kwargs):
        if error == "memory":
            raise MemoryError()
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    path = small_model("oom", [])
    monkeypatch.setattr(keras.saving, "load_model", load)
    with pytest.raises(ResourceExhausted, match="does not fit in this attack replica's memory"):
        models.load_model(path)


def test_unbuilt_and_deeply_nested_models_say_what_to_fix(tmp_path):
    with pytest.raises(InvalidArgument, match=r"no defined input; build it with keras.Input\(shape=...\)"):
        models.load_model(unbuilt_sequential(tmp_path))
    for depth in (150, 5000):  # past the walk's limit; past Python's recursion limit in json
        with pytest.raises(InvalidArgument, match="config.json is nested too deeply"):
            models.load_model(deeply_nested_config(tmp_path, depth))
    # Values Python's json cannot take or that are not strings where names go.
    for name, text in [("long-int", '{"class_name": "Sequential", "n": ' + "9" * 5000 + "}"),
                       ("list-class", '{"class_name": ["TFSMLayer"], "config": {}}')]:
        path = tmp_path / f"{name}.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", text)
        with pytest.raises(InvalidArgument):
            models.load_model(path)


def test_unknown_layer_class_is_named_in_a_short_message(small_model, tmp_path):
    unknown = _replace_flatten(class_name="NoSuchLayer")
    path = rewrite_config(small_model("base", []), tmp_path / "unknown.keras", unknown)
    with pytest.raises(InvalidArgument) as info:
        models.load_model(path)
    message = str(info.value)
    assert "'NoSuchLayer'" in message and "only built-in Keras layers" in message, message
    assert "damaged" not in message and len(message) < 300, message


def test_an_old_keras_is_refused_at_start(monkeypatch):
    import keras

    models.require_safe_keras()  # the installed one is new enough
    monkeypatch.setattr(keras, "__version__", "3.14.9")
    with pytest.raises(RuntimeError, match=r"Keras 3.14.9 .* keras>=3.15.*CVE-2025-1550"):
        models.require_safe_keras()


def test_truncated_and_non_zip_files_are_refused(digits_files, tmp_path):
    data = digits_files[0].read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArgument, match="not a zip archive"):
        models.load_model(truncated)
    text = tmp_path / "text.keras"
    text.write_text("definitely not a model")
    with pytest.raises(InvalidArgument, match="not a Keras 3 .keras file"):
        models.load_model(text)


def test_regression_model_is_refused(tmp_path):
    import keras

    path = tmp_path / "regressor.keras"
    keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(1)]).save(path)
    with pytest.raises(InvalidArgument, match="at least 2 classes"):
        models.load_model(path)


def test_model_cache_keeps_the_most_recently_used():
    loads = []

    def loader(name):
        def load():
            loads.append(name)
            return name

        return load

    cache = models.DigestCache(capacity=2)
    assert cache.get("a", loader("a")) == "a"
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # hit: "a" becomes the most recent
    cache.get("c", loader("c"))  # evicts "b"
    cache.get("a", loader("a"))  # still cached
    cache.get("b", loader("b"))  # loaded again
    assert loads == ["a", "b", "c", "b"] and len(cache) == 2
