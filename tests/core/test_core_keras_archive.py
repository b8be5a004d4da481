"""The shared .keras code-safety policy (advex.core.keras_archive) on crafted
config dicts. That storage and attack apply it to real files is tested in
tests/storage/test_storage_verify.py and tests/attack/test_attack_models.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from advex.core.errors import InvalidArgument
from advex.core.keras_archive import (
    MAX_CONFIG_DEPTH,
    NotJson,
    UnsafeArchive,
    UnsafeModel,
    check_config,
    check_member_name,
    parse_json,
)


def layer(class_name: str, name: str, **config) -> dict:
    return {"module": "keras.layers", "class_name": class_name, "config": {"name": name, **config}}


def sequential(*layers: dict, name: str = "sequential") -> dict:
    return {"module": "keras", "class_name": "Sequential", "config": {"name": name, "layers": list(layers)}}


def refused(config, phrase: str) -> UnsafeModel:
    with pytest.raises(UnsafeModel) as caught:
        check_config(config)
    assert phrase in str(caught.value), str(caught.value)
    assert isinstance(caught.value, InvalidArgument)
    return caught.value


def test_lambda_nested_in_a_functional_model_is_found_with_its_path():
    inner = sequential(layer("Dense", "d1"), layer("Lambda", "scale"), name="block")
    config = {"module": "keras", "class_name": "Functional", "config": {"name": "outer", "layers": [inner]}}
    error = refused(config, "the model contains a Lambda layer at outer/block/scale")
    assert error.where == "outer/block/scale"
    assert "rebuild the model with built-in layers" in str(error)


@pytest.mark.parametrize("class_name", ["Lambda", "TFOpLambda", "SlicingOpLambda"])
def test_every_lambda_layer_is_refused(class_name):
    refused(sequential(layer(class_name, "l")), f"contains a {class_name} layer at sequential/l")


def test_serialized_lambda_outside_a_lambda_layer_is_refused():
    activation = {"class_name": "__lambda__", "config": {"code": "4wEAAAA=", "defaults": None, "closure": None}}
    error = refused(sequential(layer("Dense", "dense", activation=activation)), "serialized Python function")
    assert error.where == "sequential/dense/activation"


def test_keras2_style_lambda_function_is_refused():
    config = sequential(layer("CustomLayer", "c", function_type="lambda", function=["4wEAAAA=", None, None]))
    refused(config, "serialized Python function at sequential/c")


def _dense_with(**changes) -> dict:
    node = layer("Dense", "dense", units=3)
    node.update(changes)
    return node


_CUSTOM = "custom or third-party layers and functions are not supported"


@pytest.mark.parametrize(
    "node, phrases",
    [
        (_dense_with(config={"name": "dense", "activation": {
            "module": "os", "class_name": "function", "config": "system", "registered_name": "system"}}),
         ["refers to 'os.system' at sequential/dense/activation, which is not part of Keras", _CUSTOM]),
        (_dense_with(module="subprocess", class_name="Popen", registered_name="Popen"),
         ["refers to 'subprocess.Popen' at sequential/dense", _CUSTOM]),
        (_dense_with(module="keras_hub.layers"), ["refers to 'keras_hub.layers.Dense' at sequential/dense", _CUSTOM]),
        (_dense_with(config={"name": "dense", "activation": {
            "module": "builtins", "class_name": "function", "config": "eval", "registered_name": None}}),
         ["refers to the Python function 'eval' at sequential/dense/activation", _CUSTOM]),
        (_dense_with(config={"name": "dense", "activation": {
            "module": "builtins", "class_name": "function", "config": "os.system"}}),
         ["refers to the Python function 'os.system' at sequential/dense/activation", _CUSTOM]),
        (_dense_with(class_name="MyDense", registered_name="my_package>MyDense"),
         ["uses the custom object 'my_package>MyDense' at sequential/dense", _CUSTOM]),
        (_dense_with(class_name="Dense>", registered_name="Dense>"), ["uses the custom object 'Dense>'"]),
        (_dense_with(registered_name=["Dense"]), ["uses the custom object '['Dense']' at sequential/dense"]),
        # Only a function may be registered under the name in its config.
        (_dense_with(config="MyDense", registered_name="MyDense"), ["uses the custom object 'MyDense'"]),
        (_dense_with(module="my_package.layers", class_name="MyDense", registered_name="my_package>MyDense"),
         ["refers to 'my_package.layers.MyDense' at sequential/dense, which is not part of Keras", _CUSTOM]),
        (_dense_with(module=None), ["names a module that is not a string (None) at sequential/dense", _CUSTOM]),
        (_dense_with(module=["keras"]), ["names a module that is not a string (['keras']) at sequential/dense"]),
        (_dense_with(class_name=["TFSMLayer"]), ["names a class that is not a string (['TFSMLayer']) at sequential/dense"]),
        (_dense_with(module="keras.utils", class_name="get_file", config={"origin": "http://x", "fname": "/tmp/p"}),
         ["refers to 'keras.utils.get_file' at sequential; keras.utils is not a Keras modelling API",
          "remove it from the model"]),
        (_dense_with(module="keras.src.saving.saving_api", class_name="load_model"),
         ["keras.src.saving.saving_api is not a Keras modelling API"]),
        (_dense_with(config={"name": "dense", "activation": {"module": "keras.config", "class_name": "function",
                                                             "config": "enable_unsafe_deserialization"}}),
         ["'keras.config.enable_unsafe_deserialization' at sequential/dense/activation; keras.config is not"]),
        (_dense_with(config={"name": "dense", "activation": {"module": "keras.models", "class_name": "function",
                                                             "config": "load_model", "registered_name": "load_model"}}),
         ["refers to the function 'keras.models.load_model' at sequential/dense/activation",
          "only Keras activations, losses, metrics"]),
        (_dense_with(class_name="TFSMLayer", config={"name": "dense", "filepath": "/srv/sm"}),
         ["contains a TFSMLayer layer at sequential/dense, which loads a TensorFlow SavedModel",
          "rebuild it with built-in Keras layers"]),
        (_dense_with(class_name="TorchModuleWrapper", config={"name": "dense", "module": "gASV"}),
         ["contains a TorchModuleWrapper layer at sequential/dense, which wraps a pickled PyTorch module"]),
        (_dense_with(class_name="JaxLayer"), ["contains a JaxLayer layer"]),
        (_dense_with(class_name="FlaxLayer"), ["contains a FlaxLayer layer"]),
        (_dense_with(class_name="StringLookup", config={"name": "dense", "vocabulary": "/etc/passwd"}),
         ["the StringLookup layer at sequential/dense takes its vocabulary from '/etc/passwd', not a list",
          "build the layer with vocabulary=[...]"]),
        (_dense_with(class_name="IntegerLookup", config={"name": "dense", "vocabulary": "/srv/ids.txt"}),
         ["the IntegerLookup layer at sequential/dense takes its vocabulary from '/srv/ids.txt'"]),
        (_dense_with(class_name="TextVectorization", config={"name": "dense", "vocabulary": "/etc/passwd"}),
         ["the TextVectorization layer at sequential/dense takes its vocabulary from '/etc/passwd'"]),
        # A value Keras writes without a module may not name one either.
        ({"module": "os", "class_name": "__numpy__", "config": {"value": [1]}}, ["refers to 'os.__numpy__'"]),
    ],
)
def test_anything_outside_keras_is_refused(node, phrases):
    error = refused(sequential(node), phrases[0])
    for phrase in phrases[1:]:
        assert phrase in str(error)


def test_functions_keras_looks_up_by_name_are_accepted():
    loss = {"module": "builtins", "class_name": "function", "config": "sparse_categorical_crossentropy",
            "registered_name": "function"}
    activation = {"module": "keras.activations", "class_name": "function", "config": "gelu",
                  "registered_name": "gelu"}
    config = sequential(layer("Dense", "dense", activation=activation), layer("StringLookup", "s", vocabulary=["a"]))
    config["compile_config"] = {"loss": loss, "metrics": [{"module": "keras.metrics", "class_name": "function",
                                                           "config": "sparse_categorical_accuracy"}]}
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 3], "dtype": "float32"}}
    config["config"]["layers"].append(layer("Add", "add", inputs=[tensor]))
    assert check_config(config)[0] is config


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_an_optimizer_saved_on_any_keras_backend_is_accepted(backend):
    """A model compiled on the PyTorch backend saves its optimizer as
    keras.src.backend.torch.optimizers.torch_adam.Adam: Keras's own."""
    config = sequential(layer("Dense", "dense", units=3))
    config["compile_config"] = {"optimizer": {
        "module": f"keras.src.backend.{backend}.optimizers.{backend}_adam", "class_name": "Adam",
        "config": {"name": "adam", "learning_rate": 0.001}, "registered_name": "Adam"}}
    assert check_config(config)[0] is config


@pytest.mark.parametrize("module, class_name", [
    ("keras.src.backend.torch.core", "convert_to_tensor"),
    ("keras.src.backend.torch.optimizers", "function"),
    ("keras.src.backend.cuda.optimizers", "Adam"),
    ("keras.src.backend.torch.optimizers.torch_adam.x", "Adam"),
])
def test_the_rest_of_keras_backend_stays_refused(module, class_name):
    refused(sequential(_dense_with(module=module, class_name=class_name, config="x")), "is not a Keras modelling API")


def test_every_object_is_returned_in_document_order():
    config = sequential(layer("InputLayer", "in", batch_shape=[None, 3]), layer("Dense", "d"))
    objects = check_config(config)
    assert [o.get("class_name") for o in objects if "class_name" in o] == ["Sequential", "InputLayer", "Dense"]
    assert len(objects) == 6  # the model, its two layers, and the three "config" dicts
    assert check_config("not a model") == [] and check_config([]) == []


def _nested(levels: int) -> dict:
    """A config dict whose deepest container is `levels` levels down (the dict itself is level 1)."""
    node: list = []
    for _ in range(levels - 2):
        node = [{}, node]
    return {"class_name": "Sequential", "config": node}


def test_nesting_is_capped_exactly_and_without_recursion():
    assert check_config(_nested(MAX_CONFIG_DEPTH))
    error = refused(_nested(MAX_CONFIG_DEPTH + 1), f"nested too deeply to be a Keras model (more than {MAX_CONFIG_DEPTH}")
    assert error.where == "the top level"
    refused(_nested(200_000), "config.json is nested too deeply")  # far past Python's recursion limit


def test_json_that_is_too_deep_or_not_json_is_refused():
    with pytest.raises(UnsafeModel, match="metadata.json is nested too deeply"):
        parse_json(b"[" * 100_000 + b"]" * 100_000, "metadata.json")
    for text in (b"{not json", b"\xff\xfe", b'{"n": ' + b"9" * 5000 + b"}"):
        with pytest.raises(NotJson, match=r"config.json in the model is not valid JSON \("):
            parse_json(text, "config.json")
    assert parse_json(json.dumps(sequential()).encode(), "config.json") == sequential()


@pytest.mark.parametrize(
    "member, problem",
    [
        ("../../../tmp/owned", "climbs out of the archive with '..'"),
        ("assets/../../x", "climbs out of the archive with '..'"),
        ("/tmp/owned", "is an absolute path"),
        ("C:/owned", "is an absolute path"),
        ("assets\\..\\x", "contains a backslash"),
    ],
)
def test_member_names_that_escape_the_archive_are_refused(member, problem):
    with pytest.raises(UnsafeArchive) as caught:
        check_member_name(member, "Keras 3 .keras file", "save it again")
    message = str(caught.value)
    assert f"the Keras 3 .keras file holds a file named '{member}' that {problem}" in message
    assert message.endswith("file names inside the archive must be plain relative paths; save it again")


@pytest.mark.parametrize("member", ["config.json", "assets/vocab..txt", "a/b/c.h5", "..hidden"])
def test_plain_member_names_pass(member):
    check_member_name(member, "zip", "fix")


def test_the_shared_checks_never_import_a_machine_learning_framework():
    script = (
        "import sys\n"
        "import advex.core.keras_archive, advex.core.npz_archive\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', 'jax')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
