"""The hand-worked example the scoring tests share (not a test module).

5 samples, 3 classes, 3 attacks: header order is
  0: fgsm Linf eps=0.3, 1: fgsm Linf eps=0.1, 2: pgd Linf eps=0.1 steps=10.
Every number the tests expect is worked out by hand in the comments below.
"""

from __future__ import annotations

import numpy as np

from advex.core import attack_specs, tensors
from advex.internal.v1 import records_pb2, scoring_service_pb2
from advex.scoring.metrics import RecordBatch
from advex.v1 import evasion_pb2

SPEC_PROTOS = [
    evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=0.3),
    evasion_pb2.AttackSpec(attack="fgsm", norm="inf", eps=0.1),
    evasion_pb2.AttackSpec(attack="pgd", norm="inf", eps=0.1, steps=10),
]
SPECS = [attack_specs.resolve(s) for s in SPEC_PROTOS]
SAMPLES, CLASSES = 5, 3

LABELS = np.array([0, 1, 2, 0, 1], dtype=np.int64)

# Clean probabilities, the same for every attack.
#   sample  p                 argmax  right?  max p  p[y]
#   0       [.7, .2, .1]      0       yes     .7     .7
#   1       [.1, .8, .1]      1       yes     .8     .8
#   2       [.2, .2, .6]      2       yes     .6     .6
#   3       [.3, .6, .1]      1       NO      .6     .3
#   4       [.1, .5, .4]      1       yes     .5     .5
# clean_accuracy = 4/5 = 0.8
# mean_confidence_clean = (.7+.8+.6+.6+.5)/5 = 3.2/5 = 0.64
# mean_true_class_probability_clean = (.7+.8+.6+.3+.5)/5 = 2.9/5 = 0.58
CLEAN = np.array(
    [[.7, .2, .1], [.1, .8, .1], [.2, .2, .6], [.3, .6, .1], [.1, .5, .4]], dtype=np.float32
)

ADVERSARIAL = [
    # attack 0, fgsm eps=0.3: every sample wrong.
    #   sample  q               argmax  right?  success?  max q  q[y]
    #   0       [.1, .1, .8]    2       no      yes       .8     .1
    #   1       [.5, .4, .1]    0       no      yes       .5     .4
    #   2       [.5, .1, .4]    0       no      yes       .5     .4
    #   3       [.2, .2, .6]    2       no      no (clean wrong)  .6  .2
    #   4       [.9, .05, .05]  0       no      yes       .9     .05
    # adversarial_accuracy = 0; successful = 4 of 4 clean-correct -> ASR 1
    # mean_confidence_adversarial = (.8+.5+.5+.6+.9)/5 = 3.3/5 = 0.66
    # mean_true_class_probability_adversarial = (.1+.4+.4+.2+.05)/5 = 1.15/5 = 0.23
    # robustness_score = min(1, 0/0.8) = 0
    np.array([[.1, .1, .8], [.5, .4, .1], [.5, .1, .4], [.2, .2, .6], [.9, .05, .05]], dtype=np.float32),
    # attack 1, fgsm eps=0.1:
    #   0       [.4, .5, .1]    1       no      yes       .5     .4
    #   1       [.1, .7, .2]    1       yes     -         .7     .7
    #   2       [.3, .1, .6]    2       yes     -         .6     .6
    #   3       [.2, .7, .1]    1       no      no (clean wrong)  .7  .2
    #   4       [.1, .3, .6]    2       no      yes       .6     .3
    # adversarial_accuracy = 2/5 = 0.4; successful = {0, 4} = 2 of 4 -> ASR 0.5
    # mean_confidence_adversarial = (.5+.7+.6+.7+.6)/5 = 3.1/5 = 0.62
    # mean_true_class_probability_adversarial = (.4+.7+.6+.2+.3)/5 = 2.2/5 = 0.44
    # robustness_score = 0.4/0.8 = 0.5
    np.array([[.4, .5, .1], [.1, .7, .2], [.3, .1, .6], [.2, .7, .1], [.1, .3, .6]], dtype=np.float32),
    # attack 2, pgd eps=0.1:
    #   0       [.2, .7, .1]    1       no      yes       .7     .2
    #   1       [.6, .3, .1]    0       no      yes       .6     .3
    #   2       [.1, .1, .8]    2       yes     -         .8     .8
    #   3       [.9, .05, .05]  0       YES (the attack fixed a clean error)  .9  .9
    #   4       [.2, .2, .6]    2       no      yes       .6     .2
    # adversarial_accuracy = 2/5 = 0.4; successful = {0, 1, 4} = 3 of 4 -> ASR 0.75
    # mean_confidence_adversarial = (.7+.6+.8+.9+.6)/5 = 3.6/5 = 0.72
    # mean_true_class_probability_adversarial = (.2+.3+.8+.9+.2)/5 = 2.4/5 = 0.48
    # robustness_score = 0.4/0.8 = 0.5
    np.array([[.2, .7, .1], [.6, .3, .1], [.1, .1, .8], [.9, .05, .05], [.2, .2, .6]], dtype=np.float32),
]

# Perturbation norms (linf, l2, l0) per sample; only successful samples count.
NORMS = [
    # attack 0: successful {0, 1, 2, 4}; sample 3's (huge) values must be ignored.
    #   linf: all .3 -> mean .3, median .3
    #   l2 {1, 2, 3, 10} -> mean 16/4 = 4, median (2+3)/2 = 2.5
    #   l0 {1, 2, 3, 4}  -> mean 2.5, median 2.5
    (np.array([.3, .3, .3, .3, .3]), np.array([1, 2, 3, 100, 10]), np.array([1, 2, 3, 50, 4])),
    # attack 1: successful {0, 4}
    #   linf {.1, .1} -> .1, .1;  l2 {.5, .9} -> mean .7, median .7;  l0 {10, 20} -> 15, 15
    (np.array([.1, .1, .1, .1, .1]), np.array([.5, .6, .7, .8, .9]), np.array([10, 12, 14, 16, 20])),
    # attack 2: successful {0, 1, 4}
    #   linf {.1, .08, .09} -> mean .09, median .09
    #   l2 {.2, .4, 1.5}    -> mean 2.1/3 = .7, median .4
    #   l0 {5, 7, 30}       -> mean 42/3 = 14, median 7
    (np.array([.1, .08, .1, .05, .09]), np.array([.2, .4, 9, 9, 1.5]), np.array([5, 7, 99, 99, 30])),
]

# Worst case, per (norm, eps):
#   (inf, 0.1) = {fgsm, pgd}: right under both? 0 no/no, 1 yes/no, 2 yes/yes,
#     3 no/yes, 4 no/no -> only sample 2 -> accuracy 1/5 = 0.2; score 0.2/0.8 = 0.25
#   (inf, 0.3) = {fgsm}: accuracy 0; score 0
# report robustness_score = mean(0.25, 0) = 0.125
# Curves (clean_accuracy / 2 = 0.4, "below" is strict):
#   fgsm inf: (0.1, 0.4), (0.3, 0.0) -> 0.4 is not below 0.4, 0.0 is -> eps_at_half = 0.3
#   pgd inf:  (0.1, 0.4)             -> never below -> unset
EXPECTED_ATTACKS = [
    dict(adversarial_accuracy=0.0, attack_success_rate=1.0, clean_correct_samples=4, successful_samples=4,
         mean_confidence_clean=0.64, mean_confidence_adversarial=0.66,
         mean_true_class_probability_clean=0.58, mean_true_class_probability_adversarial=0.23,
         robustness_score=0.0,
         perturbation_linf_mean=0.3, perturbation_linf_median=0.3,
         perturbation_l2_mean=4.0, perturbation_l2_median=2.5,
         perturbation_l0_mean=2.5, perturbation_l0_median=2.5),
    dict(adversarial_accuracy=0.4, attack_success_rate=0.5, clean_correct_samples=4, successful_samples=2,
         mean_confidence_clean=0.64, mean_confidence_adversarial=0.62,
         mean_true_class_probability_clean=0.58, mean_true_class_probability_adversarial=0.44,
         robustness_score=0.5,
         perturbation_linf_mean=0.1, perturbation_linf_median=0.1,
         perturbation_l2_mean=0.7, perturbation_l2_median=0.7,
         perturbation_l0_mean=15.0, perturbation_l0_median=15.0),
    dict(adversarial_accuracy=0.4, attack_success_rate=0.75, clean_correct_samples=4, successful_samples=3,
         mean_confidence_clean=0.64, mean_confidence_adversarial=0.72,
         mean_true_class_probability_clean=0.58, mean_true_class_probability_adversarial=0.48,
         robustness_score=0.5,
         perturbation_linf_mean=0.09, perturbation_linf_median=0.09,
         perturbation_l2_mean=0.7, perturbation_l2_median=0.4,
         perturbation_l0_mean=14.0, perturbation_l0_median=7.0),
]


def batch(attack: int, lo: int, hi: int) -> RecordBatch:
    linf, l2, l0 = NORMS[attack]
    return RecordBatch(
        first_sample=lo,
        labels=LABELS[lo:hi],
        clean_probabilities=CLEAN[lo:hi],
        adversarial_probabilities=ADVERSARIAL[attack][lo:hi],
        perturbation_linf=linf[lo:hi].astype(np.float32),
        perturbation_l2=l2[lo:hi].astype(np.float32),
        perturbation_l0=l0[lo:hi].astype(np.float32),
    )


def records_request(attack: int, lo: int, hi: int, **override) -> scoring_service_pb2.ScoreEvasionRequest:
    """A records message for samples [lo, hi) of `attack`; `override` replaces tensors."""
    b = batch(attack, lo, hi)
    fields = {
        name: tensors.to_proto(getattr(b, name))
        for name in ("labels", "clean_probabilities", "adversarial_probabilities",
                     "perturbation_linf", "perturbation_l2", "perturbation_l0")
    }
    fields.update(override)
    return scoring_service_pb2.ScoreEvasionRequest(
        records=scoring_service_pb2.ScoredRecords(
            attack_index=attack, records=records_pb2.EvasionRecords(first_sample=lo, **fields)
        )
    )


def header_request(attacks=None, samples=SAMPLES, num_classes=CLASSES) -> scoring_service_pb2.ScoreEvasionRequest:
    return scoring_service_pb2.ScoreEvasionRequest(
        header=scoring_service_pb2.ScoreEvasionHeader(
            attacks=SPEC_PROTOS if attacks is None else attacks, samples=samples, num_classes=num_classes
        )
    )


def full_stream() -> list[scoring_service_pb2.ScoreEvasionRequest]:
    """Header, then every attack in two batches, interleaved and out of order."""
    return [
        header_request(),
        records_request(2, 3, 5),
        records_request(0, 2, 5),
        records_request(1, 0, 1),
        records_request(2, 0, 3),
        records_request(1, 1, 5),
        records_request(0, 0, 2),
    ]
