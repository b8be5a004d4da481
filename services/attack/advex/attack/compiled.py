"""Compiled attack loops: the gradient attacks' steps as compiled functions.

An attack of k steps cannot cost less than k forward+backward passes of the
model; run step by step from Python (one eager CleverHans call per step,
then the projection op by op) it costs about twice that on a small model.
Here a whole step (gradient, step, projection, clips) is one compiled
function, called once per step with the iterate and MIM's momentum as
tensors. Not a `tf.range` loop over steps inside the graph: measured on a
CIFAR-sized CNN, a convolution's gradient inside a while loop ran 20-25%
slower (182 ms against 152 ms a step on 256 images), and on the digits CNN
the loop saved nothing over one call a step.

- **Any Keras backend.** The steps are written in `keras.ops`; the
  gradient and the compilation come from `backend.py` (`tf.function` on
  TensorFlow, the default; eager torch under no_grad on PyTorch).
- **Same ops as CleverHans.** A step is CleverHans' `optimize_linear` and
  `clip_eta` (written out here in keras.ops, op for op) on the gradient of
  the same cross-entropy (negated when targeted), clipped to the data
  range after the step and again after the projection, exactly as
  `fast_gradient_method` + `projected_gradient_descent` and
  `momentum_iterative_method` do; tests compare with them called directly.
- **Chunks keep cancel and progress cheap.** `run_chunks` runs one step
  first, then as many as fit CHUNK_SECONDS at the measured speed before
  checking `should_stop` and reporting passes.
- **No retracing per batch.** Each function has a fixed input signature:
  the batch is padded to the request's batch rows (the padding rows are
  computed and dropped, never returned). Functions are cached per model
  (`Kernels`, held by the LoadedModel, so they go when the model leaves
  the cache) and per (attack, norm, targeted, batch shape); eps, step size,
  decay and the clip range are tensor arguments, not part of the key.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from advex.attack import backend
from advex.attack.backend import Spec, compile_function

# How long one compiled call may run before Python looks again (cancel,
# progress). Long enough that the call overhead vanishes, short enough that
# a cancel is felt at once.
CHUNK_SECONDS = 0.2
# Compiled functions kept per model: (attack, norm, goal, batch shape)
# combinations; a request uses one batch shape.
MAX_FUNCTIONS = 64


class Kernels:
    """The compiled step loops of one model's logits function."""

    def __init__(self, logits_fn: Callable) -> None:
        self._logits_fn = logits_fn
        self._lock = threading.Lock()
        self._functions: OrderedDict[tuple, Callable] = OrderedDict()

    def logits(self, x, rows: int):
        """The logits of batch `x` (n <= rows), through the compiled forward
        pass of shape (rows, ...)."""
        n = int(x.shape[0])
        rows = max(rows, n)
        return self.get("logits", "", False, (rows, *(int(d) for d in x.shape[1:])))(pad(x, rows))[:n]

    def get(self, kind: str, norm: str, targeted: bool, shape: tuple[int, ...], build: Callable | None = None):
        """The compiled function `kind` (a builder of this module, or `build`,
        which an attack's own module passes: build(logits_fn, norm,
        targeted, shape) -> backend.compile_function(...) of fixed shapes)."""
        key = (kind, norm, targeted, shape)
        with self._lock:
            function = self._functions.get(key)
            if function is None:
                builder = build or _BUILDERS[kind]
                function = builder(self._logits_fn, np.inf if norm == "inf" else 2, targeted, shape)
                self._functions[key] = function
                if len(self._functions) > MAX_FUNCTIONS:
                    self._functions.popitem(last=False)
            else:
                self._functions.move_to_end(key)
            return function


def _build_logits(logits_fn, norm, targeted, shape):
    """The model's logits on a batch (an eager Keras call costs several ms
    of Python per batch; compiled, it costs the forward pass)."""
    return compile_function(logits_fn, [Spec(shape, "float32")])


def optimize_linear(grad, eps, norm):
    """CleverHans' `optimize_linear`, op for op, in keras.ops: the step of
    size eps that best increases a linear loss of gradient `grad` (its sign
    for L-inf, its direction for L2)."""
    from keras import ops

    if norm == np.inf:
        return eps * ops.sign(grad)
    axes = list(range(1, len(grad.shape)))
    square = ops.maximum(1e-12, ops.sum(ops.square(grad), axis=axes, keepdims=True))
    return eps * (grad / ops.sqrt(square))


def clip_eta(eta, norm, eps):
    """CleverHans' `clip_eta`, op for op, in keras.ops: eta projected onto
    the eps-ball of `norm` (L-inf: clipped; L2: scaled down when longer)."""
    from keras import ops

    if norm == np.inf:
        return ops.clip(eta, -eps, eps)
    axes = list(range(1, len(eta.shape)))
    length = ops.sqrt(ops.maximum(1e-12, ops.sum(ops.square(eta), axis=axes, keepdims=True)))
    return eta * ops.minimum(1.0, eps / length)


def cross_entropy(labels, logits):
    """Per-sample softmax cross-entropy of integer `labels` on `logits`."""
    from keras import ops

    return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _gradient(logits_fn, targeted: bool):
    from keras import ops

    def loss(goal):
        def of(x):
            ce = cross_entropy(goal, logits_fn(x))
            # Summed: each sample's gradient is its own loss's.
            return ops.sum(-ce if targeted else ce), ()

        return of

    def gradient(x, goal):
        return backend.gradient(loss(goal), x)[0]

    return gradient


def _signature(shape, *scalars):
    return [Spec(shape, "float32"), Spec(shape[:1], "int64")], [Spec((), "float32") for _ in scalars]


def _build_fgsm(logits_fn, norm, targeted, shape):
    from keras import ops

    gradient = _gradient(logits_fn, targeted)
    (images, labels), scalars = _signature(shape, "eps", "low", "high")

    def fgsm(x, goal, eps, clip_min, clip_max):
        return ops.clip(x + optimize_linear(gradient(x, goal), eps, norm), clip_min, clip_max)

    return compile_function(fgsm, [images, labels, *scalars])


def _build_pgd(logits_fn, norm, targeted, shape):
    """One step of PGD (BIM) from x_adv around x."""
    from keras import ops

    gradient = _gradient(logits_fn, targeted)
    (images, labels), scalars = _signature(shape, "step_size", "eps", "low", "high")

    def pgd(x, x_adv, goal, step_size, eps, clip_min, clip_max):
        x_adv = x_adv + optimize_linear(gradient(x_adv, goal), step_size, norm)
        x_adv = ops.clip(x_adv, clip_min, clip_max)
        return ops.clip(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max)

    return compile_function(pgd, [images, images, labels, *scalars])


def _build_mim(logits_fn, norm, targeted, shape):
    """One step of MIM from (x_adv, momentum) around x."""
    from keras import ops

    gradient = _gradient(logits_fn, targeted)
    (images, labels), scalars = _signature(shape, "step_size", "eps", "decay", "low", "high")
    axes = list(range(1, len(shape)))

    def mim(x, x_adv, momentum, goal, step_size, eps, decay, clip_min, clip_max):
        grad = gradient(x_adv, goal)
        grad = grad / ops.maximum(1e-12, ops.mean(ops.abs(grad), axis=axes, keepdims=True))
        momentum = decay * momentum + grad
        x_adv = x_adv + optimize_linear(momentum, step_size, norm)
        return ops.clip(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max), momentum

    return compile_function(mim, [images, images, images, labels, *scalars])


_BUILDERS = {"logits": _build_logits, "fgsm": _build_fgsm, "pgd": _build_pgd, "mim": _build_mim}


def repeat(step: Callable, state, k: int):
    """`state = step(state)` k times (state: a tuple of tensors)."""
    for _ in range(k):
        state = step(state)
    return state


def pad(tensor, rows: int):
    """`tensor` with zero rows appended up to `rows` (the compiled shape)."""
    from keras import ops

    missing = rows - int(tensor.shape[0])
    if missing <= 0:
        return tensor
    import keras

    dtype = keras.backend.standardize_dtype(tensor.dtype)
    zeros = ops.zeros((missing, *(int(d) for d in tensor.shape[1:])), dtype=dtype)
    return ops.concatenate([tensor, zeros], axis=0)


def run_chunks(total_steps: int, step: Callable[[int], None], run_steps: Callable[[int], None],
               on_passes: Callable[[int], None]) -> None:
    """Runs `total_steps` steps as `run_steps(k)` calls: one step first (its
    call also traces), then chunks of steps sized to CHUNK_SECONDS.
    `step(done)` is called before each chunk (it raises Cancelled when asked
    to stop) and `on_passes(k)` after it."""
    done, chunk = 0, 1
    while done < total_steps:
        step(done)
        k = min(chunk, total_steps - done)
        started = time.perf_counter()
        run_steps(k)
        elapsed = time.perf_counter() - started
        on_passes(k)
        done += k
        chunk = max(1, int(CHUNK_SECONDS / max(elapsed / k, 1e-9)))
