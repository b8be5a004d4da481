"""What the attack service counts for Prometheus (served by advex.core.metrics).

Rates come from Prometheus: `rate(advex_attack_samples_total[1m])` is the
samples attacked per second.
"""

from __future__ import annotations

from prometheus_client import Counter

SAMPLES_ATTACKED = Counter(
    "advex_attack_samples_total",
    "Samples whose adversarial examples were computed and sent, by attack and norm.",
    ("attack", "norm"),
)
TRAINING_EPOCHS = Counter(
    "advex_training_epochs_total", "Training epochs finished (poisoning evaluations), by kind of poisoning.", ("kind",)
)
