"""Training a model on (poisoned) data with a TrainingRecipe.

Fresh weights by default: the uploaded model's architecture, cloned and
initialised from the seed, so the poisoned models and the clean baseline of
one spec differ only in their data. With `recipe.fine_tune` training starts
from the uploaded weights instead. The uploaded model itself is never
changed (it may be shared through the model cache).

Reproducible: the same model, data, recipe and seed give the same weights
and numbers in one process. Keras draws initial weights and the shuffle
order from process-global seeds (keras.utils.set_random_seed), so trainings
run one at a time (a module-level lock).

Cancellable: `should_stop()` is checked after every batch (Keras checks
`model.stop_training` after each batch), and a stopped training raises
Cancelled. `iter_training` runs the training on a worker thread and yields
its progress; closing the iterator stops the training within one batch.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advex.attack.backend import is_out_of_memory
from advex.attack.models import LoadedModel, out_of_memory
from advex.core.errors import Cancelled, InvalidArgument
from advex.core.poison_specs import ResolvedRecipe

# Seconds between looks at should_stop() while another training runs.
_LOCK_POLL_SECONDS = 0.5
_TRAINING_LOCK = threading.Lock()


@dataclass(frozen=True)
class TrainingProgress:
    steps_done: int  # batches trained so far, over all epochs
    steps_total: int
    epoch: int  # 1-based
    epochs: int
    loss: float  # mean over the epoch's batches so far
    accuracy: float  # likewise
    epoch_end: bool  # the last batch of `epoch`


@dataclass(frozen=True, eq=False)
class TrainedModel:
    keras_model: Any
    training_seconds: float
    final_loss: float  # mean over the last epoch
    final_accuracy: float
    steps_done: int


def _adam(keras, rate):
    return keras.optimizers.Adam(learning_rate=rate)


def _sgd(keras, rate):
    return keras.optimizers.SGD(learning_rate=rate, momentum=0.9)


def _rmsprop(keras, rate):
    return keras.optimizers.RMSprop(learning_rate=rate)


# One entry per poison_specs.OPTIMIZERS.
OPTIMIZERS: dict[str, Callable[[Any, float], Any]] = {"adam": _adam, "sgd": _sgd, "rmsprop": _rmsprop}


def train(
    model: LoadedModel,
    x: np.ndarray,
    y: np.ndarray,
    recipe: ResolvedRecipe,
    seed: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[TrainingProgress], None] = lambda event: None,
) -> TrainedModel:
    """A copy of `model` trained on (x, y) as `recipe` says.

    Cancelled when should_stop() turns true (checked after every batch);
    ResourceExhausted when the batch does not fit in memory."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim < 2 or len(x) == 0 or y.shape != (len(x),):
        raise InvalidArgument(f"training needs images (N, ...) and N labels, got x {x.shape} and y {y.shape}")
    _acquire(should_stop)
    try:
        return _train(model, x, y, recipe, seed, should_stop, on_progress)
    finally:
        _TRAINING_LOCK.release()


def _acquire(should_stop: Callable[[], bool]) -> None:
    while not _TRAINING_LOCK.acquire(timeout=_LOCK_POLL_SECONDS):
        if should_stop():
            raise Cancelled("the training was cancelled while it waited for another training to finish")


def _train(model, x, y, recipe, seed, should_stop, on_progress) -> TrainedModel:
    import keras

    if should_stop():
        raise Cancelled("the training was cancelled before it started")
    started = time.perf_counter()
    steps_per_epoch = math.ceil(len(x) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    progress = _Progress(steps_per_epoch, recipe.epochs, should_stop, on_progress)
    try:
        keras.utils.set_random_seed(keras_seed(seed))
        network = keras.models.clone_model(model.keras_model)
        if recipe.fine_tune:
            network.set_weights(model.keras_model.get_weights())
        network.compile(
            optimizer=OPTIMIZERS[recipe.optimizer](keras, recipe.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not model.summary.outputs_probabilities),
            metrics=["accuracy"],
        )
        network.fit(
            x,
            y,
            batch_size=recipe.batch_size,
            epochs=recipe.epochs,
            shuffle=True,
            verbose=0,
            callbacks=[progress.callback(keras)],
        )
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(
                f"training with batch_size {recipe.batch_size} on this model",
                "pass a smaller training.batch_size, or use smaller images or a smaller model",
            ) from None
        raise
    if progress.stopped:
        raise Cancelled(f"the training was cancelled after {progress.steps_done} of {total} steps")
    last = progress.last
    return TrainedModel(
        keras_model=network,
        training_seconds=time.perf_counter() - started,
        final_loss=last.loss if last else math.nan,
        final_accuracy=last.accuracy if last else math.nan,
        steps_done=progress.steps_done,
    )


def keras_seed(seed: int) -> int:
    """`seed` as keras.utils.set_random_seed takes it (0 .. 2**32 - 1): as it
    is when it fits, so a small seed means the same as in a Keras script,
    else hashed into that range."""
    if 0 <= seed < 2**32:
        return int(seed)
    return int(np.random.SeedSequence(abs(int(seed))).generate_state(1)[0])


class _Progress:
    """Counts steps, reports them, and stops fit when asked to."""

    def __init__(self, steps_per_epoch, epochs, should_stop, on_progress) -> None:
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.should_stop, self.on_progress = should_stop, on_progress
        self.steps_done, self.stopped, self.epoch = 0, False, 1
        self.last: TrainingProgress | None = None

    def callback(self, keras):
        progress = self

        class ProgressCallback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                progress.epoch = epoch + 1

            def on_train_batch_end(self, batch, logs=None):
                progress.batch_end(self.model, batch, logs or {})

        return ProgressCallback()

    def batch_end(self, network, batch: int, logs: dict) -> None:
        self.steps_done += 1
        event = TrainingProgress(
            steps_done=self.steps_done,
            steps_total=self.epochs * self.steps_per_epoch,
            epoch=self.epoch,
            epochs=self.epochs,
            loss=float(logs.get("loss", math.nan)),
            accuracy=float(logs.get("accuracy", math.nan)),
            epoch_end=batch + 1 == self.steps_per_epoch,
        )
        if event.epoch_end:
            self.last = event
        self.on_progress(event)
        if self.should_stop():
            self.stopped = True
            network.stop_training = True


_END = object()


class _Mailbox:
    """Progress from the training thread to the consumer. Never blocks the
    training: a step event not yet taken is replaced by the next one (epoch
    ends are always kept)."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._items: deque = deque()
        self._done = False
        self.result: TrainedModel | None = None
        self.error: BaseException | None = None

    def put(self, event: TrainingProgress) -> None:
        with self._ready:
            if self._items and not self._items[-1].epoch_end:
                self._items[-1] = event
            else:
                self._items.append(event)
            self._ready.notify()

    def finish(self, result: TrainedModel | None = None, error: BaseException | None = None) -> None:
        with self._ready:
            self.result, self.error, self._done = result, error, True
            self._ready.notify()

    def get(self):
        with self._ready:
            while not self._items and not self._done:
                self._ready.wait()
            return self._items.popleft() if self._items else _END


def iter_training(
    model: LoadedModel,
    x: np.ndarray,
    y: np.ndarray,
    recipe: ResolvedRecipe,
    seed: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[TrainingProgress | TrainedModel]:
    """`train` on a worker thread: yields TrainingProgress events (a step
    event the consumer was too slow for is skipped; every epoch end comes),
    then the TrainedModel. Errors (Cancelled, ...) are raised here. Closing
    the iterator stops the training within one batch and joins the thread."""
    stop = threading.Event()
    mailbox = _Mailbox()

    def work() -> None:
        try:
            trained = train(model, x, y, recipe, seed, lambda: stop.is_set() or should_stop(), mailbox.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            mailbox.finish(error=exc)
        else:
            mailbox.finish(result=trained)

    thread = threading.Thread(target=work, name="advex-training", daemon=True)
    thread.start()
    try:
        while (event := mailbox.get()) is not _END:
            yield event
        if mailbox.error is not None:
            raise mailbox.error
        yield mailbox.result
    finally:
        stop.set()
        thread.join()


def save_model(trained: TrainedModel, directory: str | Path, name: str = "model.keras") -> Path:
    """Saves the trained model as `directory/name` (a Keras 3 .keras file),
    written to a temporary name first and then renamed."""
    directory = Path(directory)
    final = directory / name
    partial = directory / f".{uuid.uuid4().hex}.partial.keras"
    try:
        trained.keras_model.save(partial)
        os.replace(partial, final)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory("saving the trained model") from None
        raise
    finally:
        partial.unlink(missing_ok=True)
    return final


def probabilities(loaded: LoadedModel, x: np.ndarray, batch_size: int) -> np.ndarray:
    """softmax(logits) of `x`, float32 (n, classes), batch by batch."""
    from keras import ops

    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty((len(x), loaded.summary.num_classes), dtype=np.float32)
    try:
        for first in range(0, len(x), batch_size):
            batch = np.asarray(x[first : first + batch_size], dtype=np.float32)
            logits = loaded.kernels.logits(ops.convert_to_tensor(batch), batch_size)
            out[first : first + len(batch)] = ops.convert_to_numpy(ops.softmax(logits))
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(
                f"a batch of {batch_size} samples on this model", "pass a smaller batch_size"
            ) from None
        raise
    return out
