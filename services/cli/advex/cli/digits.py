"""The demo model and data: a small CNN on scikit-learn's bundled digits.

Nothing is downloaded: `sklearn.datasets.load_digits` ships with scikit-learn
(1,797 8x8 grey images, 10 classes). Pixels are scaled to 0..1, so evaluations
use clip range 0..1 and eps in that scale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray  # float32 (N, 8, 8, 1) in 0..1
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """A fixed, stratified-by-shuffle split of the bundled digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return DigitsSplit(x[train], y[train], x[test], y[test])


def build_digits_cnn(logits: bool = False, seed: int = 0):
    """A small CNN (about 12k parameters); trains in seconds on a CPU."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation=None if logits else "softmax"),
        ]
    )


def train_digits_cnn(split: DigitsSplit, epochs: int = 15, logits: bool = False, seed: int = 0):
    import keras

    model = build_digits_cnn(logits=logits, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2 if epochs < 5 else 3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
        metrics=["accuracy"],
    )
    model.fit(split.x_train, split.y_train, epochs=epochs, batch_size=64, verbose=0)
    return model


def save_dataset(path: Path, x: np.ndarray, y: np.ndarray, class_names=CLASS_NAMES) -> Path:
    """Writes the documented dataset format: npz with x, y, class_names (no pickles)."""
    np.savez(path, x=x, y=y, class_names=np.array(class_names, dtype=np.str_))
    return path


def demo_files_ready(cache_dir: Path, epochs: int = 15) -> bool:
    """Whether demo_files will read its files from cache_dir (no training)."""
    stamp = cache_dir / "recipe.json"
    return (
        (cache_dir / "digits_cnn.keras").exists() and (cache_dir / "digits_test.npz").exists()
        and stamp.exists() and stamp.read_text() == _recipe(epochs)
    )


def _recipe(epochs: int) -> str:
    return json.dumps({"epochs": epochs, "version": 1})


def demo_files(cache_dir: Path, epochs: int = 15) -> tuple[Path, Path]:
    """(model.keras, digits_test.npz), trained once and then read from cache_dir."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_path = cache_dir / "digits_cnn.keras"
    data_path = cache_dir / "digits_test.npz"
    stamp = cache_dir / "recipe.json"
    if demo_files_ready(cache_dir, epochs):
        return model_path, data_path
    split = load_digits_split()
    model = train_digits_cnn(split, epochs=epochs)
    tmp_model = cache_dir / "digits_cnn.tmp.keras"
    model.save(tmp_model)
    tmp_model.replace(model_path)
    save_dataset(data_path, split.x_test, split.y_test)
    stamp.write_text(_recipe(epochs))
    return model_path, data_path


def demo_training_file(cache_dir: Path) -> Path:
    """digits_train.npz: the training split the demo model was trained on,
    for poisoning evaluations (which retrain the model's architecture)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / "digits_train.npz"
    if not path.exists():
        split = load_digits_split()
        tmp = cache_dir / "digits_train.tmp.npz"
        save_dataset(tmp, split.x_train, split.y_train)
        tmp.replace(path)
    return path
