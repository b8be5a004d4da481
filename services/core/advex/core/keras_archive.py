"""The one code-safety policy for Keras 3 `.keras` files, applied by storage
(on upload) and by attack (before Keras sees the file).

A `.keras` file is a zip whose config.json tells Keras which classes and
functions to import and call. A model is user data, never code, so the
config is refused unless every object in it is a Keras built-in:

- every `module` is `keras` or `keras.*`, and not one of the Keras namespaces
  that do something other than modelling (files, downloads, settings);
  `builtins` only for a function referred to by name (`class_name:
  "function"`), which Keras looks up among its own activations, losses and
  metrics, and never the name of a Python builtin (eval, exec, open);
- a function from a Keras module only from the activations, losses,
  metrics, initializers, regularizers, constraints, ops, optimizers and
  random namespaces;
- no registered custom object (`registered_name` other than the object's own
  name, or any "package>Name");
- no Lambda layer and no serialized Python function (`__lambda__`, Keras 2's
  `function_type: "lambda"`): they carry bytecode;
- none of the layers that run another framework's code or graph
  (TFSMLayer, TorchModuleWrapper, JaxLayer, FlaxLayer);
- lookup vocabularies given as lists, never as a path to read;
- at most MAX_CONFIG_DEPTH levels of nesting, walked without recursion;
- zip member names that stay inside the folder they are extracted to.

No Keras, TensorFlow or gRPC here: storage checks uploads without them.
Each refusal is an UnsafeModel naming the offending layer's path (its
`where`) and what to do instead.
"""

from __future__ import annotations

import builtins
import json
import re
from typing import Any

from advex.core.errors import InvalidArgument, printable, quoted

SAVE_MODEL = "save the model with Keras 3: model.save('model.keras')"
# Keras' own configs nest about 10 levels per nested model, and Keras
# recurses per level when it loads one; JSON nested deeper is refused.
MAX_CONFIG_DEPTH = 100


def _too_deep(name: str) -> str:
    return (
        f"{name} is nested too deeply to be a Keras model (more than {MAX_CONFIG_DEPTH} levels); Keras' own "
        f"model.save never writes such a file; {SAVE_MODEL}"
    )


TOO_DEEP = _too_deep("config.json")
KERAS_ONLY = (
    "AdvEx accepts models built only from Keras built-in layers, activations and functions; custom or "
    "third-party layers and functions are not supported; rebuild the model with built-in Keras layers "
    "and save it again"
)

_LAMBDA_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")
# Keras layers that load code or graphs from outside the .keras file.
_EXTERNAL_CODE_LAYERS = {
    "TFSMLayer": "loads a TensorFlow SavedModel (a graph from a path outside the file)",
    "TorchModuleWrapper": "wraps a pickled PyTorch module",
    "JaxLayer": "wraps arbitrary JAX functions",
    "FlaxLayer": "wraps a Flax module's Python code",
}
_LOOKUP_LAYERS = ("StringLookup", "IntegerLookup", "TextVectorization")
# Public Keras namespaces whose functions a model may refer to.
_FUNCTION_MODULES = (
    "keras.activations",
    "keras.constraints",
    "keras.initializers",
    "keras.losses",
    "keras.metrics",
    "keras.ops",
    "keras.optimizers",
    "keras.random",
    "keras.regularizers",
)
# Keras namespaces that do things other than modelling (files, downloads,
# settings); nothing in a model config belongs there.
_NON_MODELING = {
    "applications",
    "backend",
    "callbacks",
    "config",
    "datasets",
    "distribution",
    "export",
    "legacy",
    "preprocessing",
    "saving",
    "utils",
    "visualization",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The one part of keras.backend a model config names: a model compiled on the
# PyTorch or JAX backend saves its optimizer under the backend's own module
# (keras.src.backend.torch.optimizers.torch_adam.Adam), a Keras optimizer
# like keras.optimizers.Adam.
_BACKEND_OPTIMIZER = re.compile(r"keras\.src\.backend\.(tensorflow|torch|jax|numpy)\.optimizers(\.[a-z_]+)?")


class UnsafeModel(InvalidArgument):
    """config.json asks Keras for something outside Keras and the file (code,
    custom or third-party objects, outside files), or nests too deeply.

    `where` is the path of the offending layer ("outer/block/scale"), "the
    top level", or "" when the file is refused as a whole."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


class UnsafeArchive(InvalidArgument):
    """A zip member named so that extracting it would write outside the folder."""


class NotJson(InvalidArgument):
    """A member that must be JSON (config.json, metadata.json) is not."""


def parse_json(data: bytes, name: str) -> Any:
    """Member `name` of a `.keras` file, parsed; NotJson, or UnsafeModel when
    it nests deeper than the parser can follow."""
    try:
        return json.loads(data)
    except RecursionError:
        raise UnsafeModel(_too_deep(name)) from None
    except ValueError as error:  # not UTF-8, not JSON, or an integer too long to convert
        raise NotJson(f"{name} in the model is not valid JSON ({printable(str(error))}); {SAVE_MODEL}") from None


def check_member_name(name: str, what: str, fix: str) -> None:
    """UnsafeArchive for a member of the zip `what` (e.g. "Keras 3 .keras
    file") whose name would escape a folder the zip is extracted to; `fix`
    says how to save the file properly."""
    if "\\" in name:
        problem = "contains a backslash"
    elif name.startswith("/") or re.match(r"[A-Za-z]:", name):
        problem = "is an absolute path"
    elif ".." in name.split("/"):
        problem = "climbs out of the archive with '..'"
    else:
        return
    raise UnsafeArchive(
        f"the {what} holds a file named {quoted(name)} that {problem}; file names inside the archive must be "
        f"plain relative paths; {fix}"
    )


def check_config(config: Any) -> list[dict[str, Any]]:
    """UnsafeModel unless the parsed config.json `config` holds only Keras
    built-ins (see the module docstring).

    Returns every object (dict) of the config in document order, so that a
    caller with checks of its own need not walk it again. Iterative: no
    nesting depth can exhaust the Python stack.
    """
    objects: list[dict[str, Any]] = []
    # (value, path of layer names above it, nesting level)
    stack: list[tuple[Any, tuple[str, ...], int]] = [(config, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise UnsafeModel(TOO_DEEP, _where(path))
        if isinstance(node, list):
            stack.extend((item, path, depth + 1) for item in reversed(node) if isinstance(item, dict | list))
            continue
        if not isinstance(node, dict):
            continue
        label = _layer_label(node)
        here = (*path, label) if label else path
        _check_object(node, _where(here))
        objects.append(node)
        # Layer names make the path; the structural keys between them would only add noise.
        stack.extend(
            (value, here if label or key in ("config", "layers") else (*here, key), depth + 1)
            for key, value in reversed(node.items())
            if isinstance(value, dict | list)
        )
    return objects


def _where(path: tuple[str, ...]) -> str:
    return printable("/".join(path)) if path else "the top level"


def _layer_label(node: dict[str, Any]) -> str | None:
    config = node.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else None


def _check_object(node: dict[str, Any], where: str) -> None:
    """UnsafeModel when this one object carries code or reaches outside Keras and the file.

    Keras 3 serializes a Lambda layer as class_name "Lambda" whose "function"
    is {"class_name": "__lambda__", "config": {"code": <marshalled bytecode>}};
    Keras 2 wrote "function_type": "lambda" next to the marshalled function.
    """
    class_name = node.get("class_name")
    if "class_name" in node and not isinstance(class_name, str):
        raise UnsafeModel(
            f"the model config names a class that is not a string ({printable(repr(class_name), 80)}) at {where}; "
            f"{SAVE_MODEL}",
            where,
        )
    if class_name in _LAMBDA_LAYERS:
        raise UnsafeModel(
            f"the model contains a {class_name} layer at {where}; Lambda layers hold arbitrary Python code that "
            "AdvEx will not run; rebuild the model with built-in layers",
            where,
        )
    if class_name == "__lambda__" or node.get("function_type") == "lambda":
        raise UnsafeModel(
            f"the model config holds a serialized Python function at {where}; AdvEx will not run code from "
            "uploaded models; use built-in Keras layers, activations and functions by name",
            where,
        )
    if class_name in _EXTERNAL_CODE_LAYERS:
        raise UnsafeModel(
            f"the model contains a {class_name} layer at {where}, which {_EXTERNAL_CODE_LAYERS[class_name]}; "
            "AdvEx only accepts self-contained Keras models; rebuild it with built-in Keras layers",
            where,
        )
    if class_name in _LOOKUP_LAYERS:
        config = node.get("config")
        vocabulary = config.get("vocabulary") if isinstance(config, dict) else None
        if vocabulary is not None and not isinstance(vocabulary, list):
            raise UnsafeModel(
                f"the {class_name} layer at {where} takes its vocabulary from {quoted(str(vocabulary))}, not a "
                "list; AdvEx does not read files named in a model; build the layer with vocabulary=[...] "
                "(a list of tokens) and save it again",
                where,
            )
    if "module" in node:
        _check_module(node, class_name, where)
    registered = node.get("registered_name")
    if registered is not None:
        # Keras writes None for built-ins, or the class name (a function's
        # name) itself; "package>Name" is an object registered by user code.
        own_names = (class_name, node.get("config")) if class_name == "function" else (class_name,)
        if not isinstance(registered, str) or ">" in registered or registered not in own_names:
            raise UnsafeModel(
                f"the model uses the custom object {quoted(str(registered))} at {where}; {KERAS_ONLY}", where
            )


def _check_module(node: dict[str, Any], class_name: str | None, where: str) -> None:
    """UnsafeModel when the object's module makes Keras import from outside its modelling API."""
    module = node["module"]
    inner = node.get("config")
    if not isinstance(module, str):
        raise UnsafeModel(
            f"the model config names a module that is not a string ({printable(repr(module), 80)}) at {where}; "
            f"{KERAS_ONLY}",
            where,
        )
    target = inner if class_name == "function" and isinstance(inner, str) else class_name
    shown = quoted(f"{module}.{target}" if target else module)
    if module == "builtins" and class_name == "function":
        # Keras resolves these names only among its own activations, losses,
        # metrics, ...; a Python builtin (eval, exec, open) is never one.
        if not (isinstance(inner, str) and _IDENTIFIER.fullmatch(inner)) or hasattr(builtins, inner):
            raise UnsafeModel(
                f"the model config refers to the Python function {quoted(str(inner))} at {where}; {KERAS_ONLY}",
                where,
            )
    elif module != "keras" and not module.startswith("keras."):
        raise UnsafeModel(
            f"the model config refers to {shown} at {where}, which is not part of Keras; {KERAS_ONLY}", where
        )
    elif _keras_namespace(module) in _NON_MODELING and not (
        class_name != "function" and _BACKEND_OPTIMIZER.fullmatch(module)
    ):
        raise UnsafeModel(
            f"the model config refers to {shown} at {where}; {module} is not a Keras modelling API "
            "(layers, activations, losses, metrics, ops); remove it from the model and save it again",
            where,
        )
    elif class_name == "function" and not (
        isinstance(inner, str) and _IDENTIFIER.fullmatch(inner) and _in_namespace(module, _FUNCTION_MODULES)
    ):
        raise UnsafeModel(
            f"the model config refers to the function {quoted(f'{module}.{inner}')} at {where}; only Keras "
            "activations, losses, metrics, initializers, regularizers, constraints and ops may be used "
            "as functions; use one of those by name",
            where,
        )


def _in_namespace(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _keras_namespace(module: str) -> str:
    """'utils' for 'keras.utils.x' or 'keras.src.utils.x'; '' for 'keras'."""
    parts = module.split(".")[1:]
    if parts[:1] == ["src"]:
        parts = parts[1:]
    return parts[0] if parts else ""
