"""Running the evasion engine in the attack tests: a spec from keywords, and
a run's per-sample fields concatenated over its batches."""

from __future__ import annotations

import numpy as np

from advex.attack import datasets, engine
from advex.core import attack_specs
from advex.v1 import evasion_pb2

FIELDS = ("labels", "clean_probs", "adv_probs", "linf", "l2", "l0", "adversarial", "targets")


def resolve(**fields) -> attack_specs.ResolvedAttack:
    return attack_specs.resolve(evasion_pb2.AttackSpec(**fields))


def run_attack(model, dataset, attack, seed=0, batch_size=32, want_images=True, should_stop=lambda: False, **kw):
    """(batches, every per-sample field concatenated over the batches)."""
    batches = list(
        engine.run_evasion(
            model, dataset, attack, 0.0, 1.0, 0, dataset.samples, batch_size, seed, want_images, should_stop, **kw
        )
    )
    return batches, {
        name: np.concatenate([getattr(b, name) for b in batches])
        for name in FIELDS
        if getattr(batches[0], name) is not None
    }


def first_digits(split, n: int) -> datasets.Dataset:
    """The first n held-out digits, as an in-memory dataset."""
    return datasets.from_arrays(split.x_test[:n], split.y_test[:n])


def accuracy(out, labels) -> float:
    """Adversarial accuracy of a run's concatenated fields."""
    return float(np.mean(out["adv_probs"].argmax(1) == labels))
