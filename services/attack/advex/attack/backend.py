"""What differs between the Keras backends the engine runs on.

Keras 3 runs one `.keras` model on TensorFlow, PyTorch or JAX, chosen by
`KERAS_BACKEND` before Keras is first imported. The attacks are written once,
in `keras.ops`, on whatever tensors the backend makes; what keras.ops does
not cover lives here, one branch per backend:

- `gradient(loss_fn, x)`: the gradient of a scalar loss with respect to the
  input (keras.ops has no autodiff). TensorFlow: a GradientTape; PyTorch:
  `torch.autograd.grad` (a Keras model on the torch backend is a
  `torch.nn.Module`, its forward pass records the autograd graph).
- `compile_function(fn, specs)`: one attack step as a compiled function of fixed
  shapes. TensorFlow: `tf.function` with that input signature (traced once
  per shape, never per batch). PyTorch: run eagerly under `torch.no_grad()`
  (`gradient` turns recording back on for its own pass): torch's kernels are
  already compiled, and `torch.compile` needs a C++ toolchain at run time
  and pays a long first compile per shape for little on small models.
- `is_out_of_memory(exc)`: TensorFlow's ResourceExhaustedError, torch's
  OutOfMemoryError, or Python's MemoryError.

JAX is not supported: its models are pure functions of explicit state
(`stateless_call`), a different engine shape. `check_backend()` refuses it
with a clear message when the service starts. On PyTorch nothing imports
TensorFlow: the service runs where only torch is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SUPPORTED = ("tensorflow", "torch")


@dataclass(frozen=True)
class Spec:
    """Shape and dtype of one argument of a compiled function."""

    shape: tuple[int, ...]
    dtype: str  # "float32", "int64", "int32" or "bool"


def name() -> str:
    """The Keras backend in use ("tensorflow", "torch", ...)."""
    import keras

    return keras.backend.backend()


def check_backend(environ=None) -> str:
    """The backend's name; ValueError naming the choices if it is not one
    the engine runs on (checked from KERAS_BACKEND first: importing Keras
    for a backend that is not installed fails less clearly)."""
    import os

    chosen = (os.environ if environ is None else environ).get("KERAS_BACKEND")
    backend = chosen if chosen and chosen not in SUPPORTED else name()
    if backend not in SUPPORTED:
        raise ValueError(
            f"KERAS_BACKEND={backend} is not supported by the attack service; "
            f"set KERAS_BACKEND to one of: {', '.join(SUPPORTED)}"
        )
    return backend


class _ExpectedRetracing(logging.Filter):
    """TensorFlow warns when many tf.functions of one Python function trace
    ("5 out of the last 9 calls to <function _call.<locals>.logits>
    triggered tf.function retracing"). Here every model (each model a
    poisoning evaluation trains, too) gets its own compiled functions, each
    traced once for its fixed signature: by design, not a leak."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def compile_function(fn: Callable, specs: Sequence[Spec]) -> Callable:
    """`fn` compiled for arguments of exactly `specs`."""
    if name() == "tensorflow":
        import tensorflow as tf

        tf_log = logging.getLogger("tensorflow")
        if not any(isinstance(f, _ExpectedRetracing) for f in tf_log.filters):
            tf_log.addFilter(_ExpectedRetracing())
        return tf.function(fn, input_signature=[tf.TensorSpec(s.shape, getattr(tf, s.dtype)) for s in specs])
    import torch

    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


def gradient(loss_fn: Callable, x):
    """(d loss / d x, aux) where `loss_fn(x)` returns (scalar loss, aux);
    aux (a tensor or a tuple of them) comes back without autodiff state."""
    if name() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            loss, aux = loss_fn(x)
        return tape.gradient(loss, x), aux
    import torch

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss, aux = loss_fn(x)
        (grad,) = torch.autograd.grad(loss, x)
    if isinstance(aux, tuple):
        return grad, tuple(a.detach() for a in aux)
    return grad, aux.detach()


def no_gradient(fn: Callable, *args):
    """`fn(*args)` without recording anything for autodiff (eager forward
    passes outside a compiled step)."""
    if name() == "torch":
        import torch

        with torch.no_grad():
            return fn(*args)
    return fn(*args)


def versions() -> dict[str, str]:
    """The software the engine runs on, for the report's footer: the Keras
    backend, and the versions of advex, keras, the backend's framework,
    cleverhans (what the ops are checked against, where installed) and numpy."""
    from importlib import metadata

    import keras
    import numpy as np

    backend = name()
    found = {"keras_backend": backend, "keras": keras.__version__, "numpy": np.__version__}
    for key, distribution in (("advex", "advex-attack"), ("cleverhans", "cleverhans")):
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    if backend == "tensorflow":
        import tensorflow as tf

        found["tensorflow"] = tf.__version__
    elif backend == "torch":
        import torch

        found["torch"] = torch.__version__
    return found


def evaluate(fn: Callable, *args):
    """`fn(*args)` without autodiff, as a numpy array (from any device)."""
    from keras import ops

    return ops.convert_to_numpy(no_gradient(fn, *args))


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, TensorFlow's ResourceExhaustedError or torch's OutOfMemoryError."""
    if isinstance(exc, MemoryError):
        return True
    kind, module = type(exc).__name__, type(exc).__module__
    return (kind == "ResourceExhaustedError" and module.startswith("tensorflow")) or (
        kind == "OutOfMemoryError" and module.startswith("torch")
    )
