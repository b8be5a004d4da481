"""Safe loading of Keras 3 `.keras` models, inspection, and their logits.

A model is user data, never code. Before Keras sees the file, its member
names and config.json go through the same policy storage applies on upload
(`advex.core.keras_archive`: only Keras built-ins, no custom or third-party
objects, no Lambda layer or Python lambda, none of the layers that wrap
another framework's model, vocabularies as lists, bounded nesting). Keras
itself then loads with `safe_mode=True`, `compile=False`, and must be >= 3.15
(older versions had safe-mode bypasses, e.g. CVE-2025-1550;
`require_safe_keras` checks it at service start).

Sizes are checked before anything big is allocated: input and layer-output
values per sample and the parameter count (see ModelLimits); running out of
memory anyway is a ResourceExhausted, never an internal error.

CleverHans attacks want logits. A model that ends in softmax is attacked
through a copy without that softmax; one whose probabilities come from an op
that cannot be removed is attacked through log(p), which has the same softmax.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advex.attack.backend import evaluate, is_out_of_memory
from advex.core.errors import InvalidArgument, ResourceExhausted
from advex.core.keras_archive import SAVE_MODEL, TOO_DEEP, check_config, check_member_name, parse_json

log = logging.getLogger(__name__)

NATIVE = "native"
STRIPPED_SOFTMAX = "stripped_softmax"
LOG_PROBABILITIES = "log_probabilities"

# softmax(derived logits) must match the model's own output this closely on
# the probe batch before the derived logits are trusted.
_MATCH_ATOL = 1e-5
# Rows summing to 1 within this are taken for probabilities.
_SUM_TOL = 1e-3
# log(p) of a probability that rounded to 0 would be -inf.
_MIN_PROBABILITY = 1e-30
_PROBE_ROWS = 2
# Stand-in for a free (None) input dimension on the probe batch (and in the
# size limits).
_PROBE_FREE_DIM = 16
MIN_KERAS_VERSION = (3, 15)
_NO_INPUT = (
    "the model has no defined input; build it with keras.Input(shape=...) before saving "
    "(e.g. keras.Sequential([keras.Input(shape=(28, 28, 1)), ...]))"
)


@dataclass(frozen=True)
class ModelLimits:
    """Largest model this replica loads; AttackConfig sets them from the environment."""

    # Values per sample of the input (free dimensions count as _PROBE_FREE_DIM).
    max_input_elements: int = 16_777_216
    # Values per sample of any one layer's output.
    max_activation_elements: int = 268_435_456
    max_parameters: int = 500_000_000


@dataclass(frozen=True)
class ModelSummary:
    # Shape of one input without the batch axis; None for a free dimension.
    input_shape: tuple[int | None, ...]
    num_classes: int
    outputs_probabilities: bool
    logits_source: str  # NATIVE, STRIPPED_SOFTMAX or LOG_PROBABILITIES
    parameter_count: int
    # Values per sample over every layer's output (free dimensions as 16):
    # what a forward+backward pass holds per sample, for the batch size.
    activation_elements: int = 0


@dataclass(frozen=True)
class LoadedModel:
    summary: ModelSummary
    # Maps a float32 batch (a backend tensor) to logits ((n, classes)).
    logits_fn: Callable[[Any], Any]
    keras_model: Any
    # The compiled attack loops of logits_fn (advex.attack.compiled), made
    # on first use and gone with the model.
    kernels: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kernels is None:
            from advex.attack.compiled import Kernels

            object.__setattr__(self, "kernels", Kernels(self.logits_fn))


def load_model(path: str | Path, limits: ModelLimits = ModelLimits()) -> LoadedModel:
    """Loads `path` without running user code and derives its logits."""
    path = Path(path)
    _refuse_unsafe_config(path, limits)
    try:
        model = _keras_load(path)
        return _inspect(model, limits)
    except MemoryError:
        raise out_of_memory("the model") from None


def out_of_memory(what: str, hint: str = "") -> ResourceExhausted:
    return ResourceExhausted(
        f"{what} does not fit in this attack replica's memory{'; ' + hint if hint else ''}"
    )


def require_safe_keras() -> None:
    """RuntimeError unless Keras is new enough for safe_mode to be trusted."""
    import keras

    version = str(getattr(keras, "__version__", "0"))
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) < MIN_KERAS_VERSION:
        floor = ".".join(map(str, MIN_KERAS_VERSION))
        raise RuntimeError(
            f"Keras {version} is installed but the attack service needs keras>={floor}: older versions have "
            "safe_mode bypasses (e.g. CVE-2025-1550) that let a model file run code; upgrade Keras"
        )


def _refuse_unsafe_config(path: Path, limits: ModelLimits = ModelLimits()) -> None:
    """The shared .keras policy (UnsafeModel), then the sizes this replica can allocate (ResourceExhausted)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                check_member_name(name, "Keras 3 .keras file", SAVE_MODEL)
            raw = archive.read("config.json")
    except zipfile.BadZipFile:
        raise InvalidArgument(
            "the model is not a Keras 3 .keras file (it is not a zip archive); save it with model.save('model.keras')"
        ) from None
    except KeyError:
        raise InvalidArgument(
            "the model archive has no config.json, so it is not a Keras 3 .keras file; "
            "save it with model.save('model.keras')"
        ) from None
    except RuntimeError as exc:  # e.g. an encrypted member
        raise InvalidArgument(
            f"the model archive cannot be read ({exc}); save it with model.save('model.keras')"
        ) from None
    nodes = check_config(parse_json(raw, "config.json"))
    # Inputs first, so an oversized input is named as such.
    for node in nodes:
        _check_config_shapes(node, limits, inputs=True)
    for node in nodes:
        _check_config_shapes(node, limits, inputs=False)


def _check_config_shapes(node: dict, limits: ModelLimits, inputs: bool) -> None:
    """ResourceExhausted for an input or layer shape too big to allocate, before Keras builds it."""
    checks = (
        (("batch_shape", limits.max_input_elements, "input", "ADVEX_ATTACK_MAX_INPUT_ELEMENTS"),)
        if inputs
        else (
            ("input_shape", limits.max_activation_elements, "layer input", "ADVEX_ATTACK_MAX_ACTIVATION_ELEMENTS"),
            ("shape", limits.max_activation_elements, "tensor", "ADVEX_ATTACK_MAX_ACTIVATION_ELEMENTS"),
        )
    )
    config = node.get("config")
    for key, limit, what, variable in checks:
        for holder in (node, config if isinstance(config, dict) else {}, node.get("build_config") or {}):
            shape = holder.get(key) if isinstance(holder, dict) else None
            if not _is_shape(shape):
                continue
            elements = _elements(shape[1:])
            if elements > limit:
                what_shape = f"the model's {what} shape {_shape_text(shape[1:])}"
                raise ResourceExhausted(_too_big(what_shape, elements, limit, variable))


def _is_shape(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 1
        and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value)
    )


def _elements(dims) -> int:
    return math.prod(_PROBE_FREE_DIM if d is None else max(int(d), 0) for d in dims)


def _shape_text(dims) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in dims) + ")"


def _too_big(what: str, figure: int, limit: int, variable: str, unit: str = "values per sample") -> str:
    return (
        f"{what} has {figure:,} {unit}, more than this service handles ({limit:,}, {variable}); "
        "use a smaller model or input size, or raise the limit on the attack service"
        + (" (free dimensions count as 16)" if unit == "values per sample" else "")
    )


def _keras_load(path: Path):
    import keras

    # Keras chooses its loader from the file name; only the .keras zip path
    # is wanted (never the legacy H5 or SavedModel ones).
    if path.suffix != ".keras":
        raise ValueError(f"internal: model files must be cached as .keras, got {path.name}")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except RecursionError:
        raise InvalidArgument(TOO_DEEP) from None
    except Exception as exc:  # noqa: BLE001 - any failure here is the file's fault
        if is_out_of_memory(exc):
            raise out_of_memory("the model") from None
        raise InvalidArgument(_explain_load_failure(exc)) from None


_MAX_CAUSE_CHARS = 300
_BUILTINS_ONLY = "only built-in Keras layers and functions are supported; rebuild the model from keras.layers"


def _explain_load_failure(exc: Exception) -> str:
    """A short message naming the actual cause and what to do about it."""
    text = " ".join(str(exc).split())
    prefix = "the model could not be loaded: "
    located = re.search(r"Could not locate (class|function) '([^']{1,200})'", text)
    if located:
        return f"{prefix}it uses the {located[1]} '{located[2]}', which is not a built-in Keras one; {_BUILTINS_ONLY}"
    module = re.search(
        r"Could not deserialize (class|function) '([^']{1,200})' because its parent module (\S{1,200}) cannot", text
    )
    if module:
        return (
            f"{prefix}it uses the {module[1]} '{module[2]}' from module {module[3]}, which this Keras does not "
            f"have; {_BUILTINS_ONLY}"
        )
    not_saveable = re.search(r"Could not deserialize '([^']{1,200})' because it is not a KerasSaveable", text)
    if not_saveable:
        module_name, _, name = not_saveable[1].rpartition(".")
        return (
            f"{prefix}it uses the class '{name}' from module {module_name}, which is not a built-in Keras layer; "
            f"{_BUILTINS_ONLY}"
        )
    lowered = text.lower()
    if "lambda" in lowered and "safe" in lowered:
        return f"{prefix}it contains a Lambda layer or function, which is refused because it would run Python code"
    # Keras wraps the cause once per enclosing layer ("... Exception
    # encountered: <cause>") and appends whole object configs; keep the
    # innermost cause without them.
    cause = text.rsplit("Exception encountered:", 1)[-1].strip()
    cause = re.split(r"\s*(?:Full object config:|Full config:|config=\{)", cause, maxsplit=1)[0]
    if len(cause) > _MAX_CAUSE_CHARS:
        cause = cause[:_MAX_CAUSE_CHARS] + "..."
    return (
        f"{prefix}{type(exc).__name__}: {cause} -- save the model with Keras 3 model.save('model.keras'), "
        "using only built-in Keras layers and functions"
    )


def _inspect(model, limits: ModelLimits) -> LoadedModel:
    """_inspect_model, with any failure the model causes turned into an error the caller can act on."""
    try:
        return _inspect_model(model, limits)
    except (InvalidArgument, ResourceExhausted):
        raise
    except RecursionError:
        raise InvalidArgument(TOO_DEEP) from None
    except Exception as exc:  # noqa: BLE001 - the loaded model is user data; what fails on it is its fault
        if is_out_of_memory(exc):
            raise out_of_memory("the model") from None
        log.warning("inspecting the model failed", exc_info=True)
        cause = " ".join(str(exc).split())[:_MAX_CAUSE_CHARS]
        raise InvalidArgument(
            f"the model could not be inspected ({type(exc).__name__}: {cause}); it must be a classifier built "
            "from built-in Keras layers, with one input made by keras.Input(shape=...) and one (batch, classes) output"
        ) from None


def _inspect_model(model, limits: ModelLimits) -> LoadedModel:
    import keras

    try:
        inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    except (AttributeError, ValueError, TypeError):
        inputs, outputs = [], []
    if not inputs or not outputs:
        raise InvalidArgument(_NO_INPUT)
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidArgument(
            f"the model has {len(inputs)} inputs and {len(outputs)} outputs; "
            "only classifiers with one image input and one class-score output are supported"
        )
    input_shape = tuple(None if d is None else int(d) for d in inputs[0].shape[1:])
    if any(d is not None and d < 1 for d in input_shape):
        raise InvalidArgument(f"the model's input shape {_shape_text(input_shape)} has an empty or negative dimension")
    output_shape = tuple(outputs[0].shape)
    if len(output_shape) != 2 or output_shape[-1] is None or output_shape[-1] < 2:
        raise InvalidArgument(
            f"the model's output has shape {output_shape}; a classifier must output (batch, classes) "
            "with at least 2 classes"
        )
    num_classes = int(output_shape[-1])

    # Sizes first: nothing big is allocated for a model this replica cannot run.
    elements = _elements(input_shape)
    if elements > limits.max_input_elements:
        raise ResourceExhausted(
            _too_big(
                f"the model's input {_shape_text(input_shape)}", elements, limits.max_input_elements,
                "ADVEX_ATTACK_MAX_INPUT_ELEMENTS",
            )
        )
    parameters = int(model.count_params())
    if parameters > limits.max_parameters:
        raise ResourceExhausted(
            _too_big("the model", parameters, limits.max_parameters, "ADVEX_ATTACK_MAX_PARAMETERS", "parameters")
        )
    activation_elements = _check_activations(model, keras, limits)

    probe = np.random.default_rng(0).random(
        (_PROBE_ROWS, *(_PROBE_FREE_DIM if d is None else d for d in input_shape)), dtype=np.float32
    )
    try:
        probs = evaluate(lambda x: model(x, training=False), probe).astype(np.float64)
    except Exception as exc:  # noqa: BLE001
        if is_out_of_memory(exc):
            raise out_of_memory("the model") from None
        cause = " ".join(str(exc).split())[:_MAX_CAUSE_CHARS]
        raise InvalidArgument(f"the model fails on a float32 batch of shape {probe.shape}: {cause}") from None
    if probs.shape != (_PROBE_ROWS, num_classes):
        raise InvalidArgument(
            f"the model outputs shape {probs.shape} for a batch of {_PROBE_ROWS}; a classifier must output "
            f"(batch, {num_classes})"
        )

    logits_model, source = _strip_softmax(model, keras)
    if logits_model is not None:
        try:
            logits = evaluate(lambda x: logits_model(x, training=False), probe).astype(np.float64)
            matches = logits.shape == probs.shape and np.allclose(_softmax(logits), probs, atol=_MATCH_ATOL)
        except Exception as exc:  # noqa: BLE001 - fall back to log(p), which is always right
            if is_out_of_memory(exc):
                raise out_of_memory("the model") from None
            log.warning("the model without its softmax fails; using log(p)", exc_info=True)
            matches = False
        if not matches:
            log.warning("stripping the softmax did not reproduce the model's output; using log(p) instead")
            logits_model = None
    looks_like_probabilities = bool(
        np.all(probs >= 0) and np.all(np.abs(probs.sum(axis=1) - 1.0) < _SUM_TOL)
    )

    if logits_model is not None:
        logits_fn = _call(logits_model)
    elif looks_like_probabilities:
        source, logits_fn = LOG_PROBABILITIES, _log_probabilities(model)
    else:
        source, logits_fn = NATIVE, _call(model)
    summary = ModelSummary(
        input_shape=input_shape,
        num_classes=num_classes,
        outputs_probabilities=source != NATIVE,
        logits_source=source,
        parameter_count=parameters,
        activation_elements=activation_elements,
    )
    return LoadedModel(summary=summary, logits_fn=logits_fn, keras_model=model)


def _check_activations(model, keras, limits: ModelLimits) -> int:
    """ResourceExhausted when one layer's output is too big per sample,
    before the model runs; else the values per sample over all outputs."""
    total = 0
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
        try:
            tensors = keras.tree.flatten(layer.output)
        except Exception:  # noqa: BLE001 - e.g. a layer used twice has no single output
            continue
        for tensor in tensors:
            shape = getattr(tensor, "shape", None)
            if shape is None or len(shape) < 1:
                continue
            elements = _elements(tuple(shape)[1:])
            total += elements
            if elements > limits.max_activation_elements:
                raise ResourceExhausted(
                    _too_big(
                        f"the model's layer '{layer.name}' output {_shape_text(tuple(shape)[1:])}", elements,
                        limits.max_activation_elements, "ADVEX_ATTACK_MAX_ACTIVATION_ELEMENTS",
                    )
                )
    return total


def _strip_softmax(model, keras):
    """(logits model, STRIPPED_SOFTMAX) when the final softmax can be removed, else (None, "")."""
    last = model.layers[-1] if model.layers else None
    if last is None:
        return None, ""
    is_softmax_layer = isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and _is_softmax(getattr(last, "activation", None))
    )
    try:
        if is_softmax_layer:
            # The softmax is a layer of its own: its input is the logits.
            return keras.Model(model.inputs[0], last.input), STRIPPED_SOFTMAX
        if _is_softmax(getattr(last, "activation", None)):
            # Softmax fused into e.g. Dense: a copy with the same weights and a
            # linear activation. The original model is left untouched.
            clone = keras.models.clone_model(model)
            clone.set_weights(model.get_weights())
            clone.layers[-1].activation = keras.activations.linear
            return clone, STRIPPED_SOFTMAX
    except Exception:  # noqa: BLE001 - fall back to log(p), which is always right
        log.warning("could not strip the model's softmax; using log(p)", exc_info=True)
    return None, ""


def _is_softmax(activation) -> bool:
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def _call(model):
    def logits(x):
        return model(x, training=False)

    return logits


def _log_probabilities(model):
    from keras import ops

    def logits(x):
        return ops.log(ops.clip(model(x, training=False), _MIN_PROBABILITY, 1.0))

    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class DigestCache:
    """The last few loaded models (or opened datasets, or clean logits of a
    model and dataset pair), by SHA-256; safe to
    share between threads.

    Loading happens outside the lock, so a slow load never blocks requests for
    cached entries; two simultaneous first loads of one object both load it
    and the second result wins, which is harmless.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            model = self._models.get(sha256)
            if model is not None:
                self._models.move_to_end(sha256)
                return model
        model = load()
        with self._lock:
            self._models[sha256] = model
            self._models.move_to_end(sha256)
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return model

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)
