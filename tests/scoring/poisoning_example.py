"""The hand-worked poisoning example the scoring tests share (not a test module).

6 test samples, 3 classes, source classes S = {0}, target t = 2, three models
in header order: index 0 poison_count 10, index 1 the baseline (count 0),
index 2 poison_count 5. Every number the tests expect is worked out by hand
in the comments below.

    labels            0  0  0  1  1  2
    in S (attacked)   y  y  y  n  n  n
per class: 3, 2, 1 samples; |S samples| = |A| = 3; non-source samples = 3.
"""

from __future__ import annotations

import numpy as np

from advex.core import tensors
from advex.internal.v1 import records_pb2, scoring_service_pb2
from advex.scoring.poisoning import PoisoningBatch

SAMPLES, CLASSES = 6, 3
SOURCE, TARGET = [0], 2
COUNTS = [10, 0, 5]
FRACTIONS = [0.2, 0.0, 0.1]
LABELS = np.array([0, 0, 0, 1, 1, 2], dtype=np.int64)


def probs(predictions):
    """Rows with 0.8 on the predicted class and 0.1 elsewhere."""
    p = np.full((len(predictions), CLASSES), 0.1, dtype=np.float32)
    p[np.arange(len(predictions)), predictions] = 0.8
    return p


# model 1, baseline (count 0):
#   clean pred  0 0 1 1 1 2 -> right T T F T T T: 5/6; source 2/3; non-source 3/3
#     per class [2/3, 2/2, 1/1]
#   triggered   0 0 1 1 1 2 -> attacked 0..2 never go to 2: ASR 0, successful 0
#     triggered source 2/3, non-source 3/3 -> gap 1/3
# model 2 (count 5):
#   clean pred  0 1 1 1 0 2 -> right T F F T F T: 3/6; source 1/3; non-source 2/3
#     per class [1/3, 1/2, 1/1]; drop 5/6 - 1/2 = 1/3
#   triggered   2 2 0 1 2 2; sample 2 is a tie [.45, .1, .45] between its true
#     class 0 and the target 2: it goes to the lowest index, 0 (right, no success)
#     -> ASR 2/3, successful 2; triggered source 1/3 (sample 2);
#     non-source labels 1 1 2 vs 1 2 2: 2/3; gap 2/3 - 1/3 = 1/3
# model 0 (count 10):
#   clean pred  0 0 0 1 1 0 -> right T T T T T F: 5/6; source 3/3; non-source 2/3
#     per class [1, 1, 0]; drop 5/6 - 5/6 = 0
#   triggered   2 2 2 1 2 2 -> ASR 3/3 = 1, successful 3; triggered source 0;
#     non-source 2/3; gap 2/3
# count_at_90_percent_asr = 10 (5 reaches only 2/3).
CLEAN = [probs([0, 0, 0, 1, 1, 0]), probs([0, 0, 1, 1, 1, 2]), probs([0, 1, 1, 1, 0, 2])]
TRIGGERED = [probs([2, 2, 2, 1, 2, 2]), probs([0, 0, 1, 1, 1, 2]), probs([2, 2, 0, 1, 2, 2])]
TRIGGERED[2][2] = [0.45, 0.1, 0.45]

EXPECTED = {
    0: dict(poison_count=0, poison_fraction=0.0, clean_accuracy=5 / 6, clean_accuracy_source=2 / 3,
            clean_accuracy_non_source=1.0, clean_accuracy_drop=0.0, attack_success_rate=0.0,
            triggered_accuracy_source=2 / 3, triggered_accuracy_non_source=1.0, accuracy_gap=1 / 3,
            per_class_accuracy=(2 / 3, 1.0, 1.0), successful_samples=0),
    5: dict(poison_count=5, poison_fraction=0.1, clean_accuracy=0.5, clean_accuracy_source=1 / 3,
            clean_accuracy_non_source=2 / 3, clean_accuracy_drop=1 / 3, attack_success_rate=2 / 3,
            triggered_accuracy_source=1 / 3, triggered_accuracy_non_source=2 / 3, accuracy_gap=1 / 3,
            per_class_accuracy=(1 / 3, 0.5, 1.0), successful_samples=2),
    10: dict(poison_count=10, poison_fraction=0.2, clean_accuracy=5 / 6, clean_accuracy_source=1.0,
             clean_accuracy_non_source=2 / 3, clean_accuracy_drop=0.0, attack_success_rate=1.0,
             triggered_accuracy_source=0.0, triggered_accuracy_non_source=2 / 3, accuracy_gap=2 / 3,
             per_class_accuracy=(1.0, 1.0, 0.0), successful_samples=3),
}
ATTACKED = 3
COUNT_AT_90 = 10


def batch(model: int, lo: int, hi: int) -> PoisoningBatch:
    return PoisoningBatch(
        first_sample=lo,
        labels=LABELS[lo:hi],
        clean_probabilities=CLEAN[model][lo:hi],
        triggered_probabilities=TRIGGERED[model][lo:hi],
    )


def header(**override) -> dict:
    """The accumulator's keyword arguments; `override` replaces some."""
    return dict(
        num_classes=CLASSES, samples=SAMPLES, source_classes=SOURCE, target_class=TARGET,
        poison_counts=COUNTS, poison_fractions=FRACTIONS,
    ) | override


def header_request(**override) -> scoring_service_pb2.ScorePoisoningRequest:
    return scoring_service_pb2.ScorePoisoningRequest(header=scoring_service_pb2.ScorePoisoningHeader(**header(**override)))


def records_request(model: int, lo: int, hi: int, **override) -> scoring_service_pb2.ScorePoisoningRequest:
    """A records message for samples [lo, hi) of `model`; `override` replaces tensors."""
    b = batch(model, lo, hi)
    fields = {
        name: tensors.to_proto(getattr(b, name))
        for name in ("labels", "clean_probabilities", "triggered_probabilities")
    }
    fields.update(override)
    return scoring_service_pb2.ScorePoisoningRequest(
        records=scoring_service_pb2.ScoredPoisoningRecords(
            model_index=model, records=records_pb2.PoisoningRecords(first_sample=lo, **fields)
        )
    )


def full_stream() -> list[scoring_service_pb2.ScorePoisoningRequest]:
    """Header, then every model in two or three batches, interleaved and out of order."""
    return [
        header_request(),
        records_request(2, 4, 6),
        records_request(0, 3, 6),
        records_request(1, 0, 2),
        records_request(2, 0, 4),
        records_request(1, 2, 6),
        records_request(0, 1, 3),
        records_request(0, 0, 1),
    ]
