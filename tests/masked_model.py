"""A classifier whose gradients are masked, for the tests that show the
product sees through it (SPSA, the gradient-masking warnings)."""

from __future__ import annotations

import numpy as np


def gradient_masked_model(base, path, levels: int = 17, sharpness: float = 1e6):
    """`base` (an 8x8x1 Keras classifier) behind an input quantiser with a
    zero gradient, saved as a .keras file at `path`; returns the path.

    The quantiser rounds each pixel to the nearest of `levels` levels in
    0..1 (levels=17: multiples of 1/16, which the digits already are, so the
    clean accuracy is the base model's). It is built from built-in layers
    only, so the product's safe loader accepts it: a 1x1 Conv2D computes
    hard_sigmoid(sharpness * (x - threshold)) for each threshold between two
    levels (a step function, flat almost everywhere), and a second 1x1
    Conv2D sums the steps / (levels - 1). Its gradient is exactly zero except
    within 3 / sharpness of a threshold (tf.round instead would give TF a
    None gradient, which CleverHans' gradient attacks cannot even take). The
    base model's layers are shared, not copied.
    """
    import keras

    thresholds = (np.arange(1, levels) - 0.5) / (levels - 1)
    steps = keras.layers.Conv2D(levels - 1, 1, activation="hard_sigmoid", name="quantise_steps")
    total = keras.layers.Conv2D(1, 1, use_bias=False, name="quantise_sum")
    masked = keras.Sequential([keras.Input(shape=tuple(base.inputs[0].shape[1:])), steps, total, *base.layers])
    steps.set_weights(
        [np.full((1, 1, 1, levels - 1), sharpness, np.float32), (-sharpness * thresholds).astype(np.float32)]
    )
    total.set_weights([np.full((1, 1, levels - 1, 1), 1.0 / (levels - 1), np.float32)])
    masked.save(path)
    return path
