"""Attack engine figures on the digits demo (not pass/fail).

Prints clean and adversarial accuracy per attack, the time of one PGD step
(one forward+backward pass) per 64 samples, and whether wrapping the logits
function in tf.function pays off. Run: `make bench` or
`.venv/bin/python bench/bench_attack.py`.

`--table` instead prints, as markdown, every attack of the catalogue with
its defaults at eps 0.1 L-inf (cw unbounded) on all 359 test digits:
adversarial accuracy, attack success rate, median L2 of the successful
samples, and wall time.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from advex.attack import datasets, engine, models  # noqa: E402
from advex.cli import digits  # noqa: E402
from advex.core import attack_specs  # noqa: E402
from advex.v1 import evasion_pb2  # noqa: E402


def evaluate(model, dataset, spec: evasion_pb2.AttackSpec, batch_size: int = 64):
    attack = attack_specs.resolve(spec)
    passes = [0]

    def count(n):
        passes[0] += n

    started = time.perf_counter()
    batches = list(
        engine.run_evasion(
            model, dataset, attack, 0.0, 1.0, 0, dataset.samples, batch_size, 0, False, lambda: False, count
        )
    )
    elapsed = time.perf_counter() - started
    y = np.concatenate([b.labels for b in batches])
    clean = np.mean(np.concatenate([b.clean_probs for b in batches]).argmax(1) == y)
    adv = np.mean(np.concatenate([b.adv_probs for b in batches]).argmax(1) == y)
    per_pass = elapsed / max(1, passes[0]) * 64 / batch_size
    print(f"{attack.label:32s} clean {clean:.3f}  adversarial {adv:.3f}  {elapsed:6.2f} s  "
          f"{per_pass * 1000:.2f} ms per pass per 64 samples, end to end")


def table(model, dataset) -> None:
    from advex.core.attack_specs import ATTACKS

    print("| attack | adv. acc. | ASR | median L2 (successful) | wall time |")
    print("|---|---|---|---|---|")
    for name, entry in ATTACKS.items():
        fields = {"attack": name}
        if entry.budget == "required":
            fields.update(norm="inf", eps=0.1)
        attack = attack_specs.resolve(evasion_pb2.AttackSpec(**fields))
        started = time.perf_counter()
        batches = list(
            engine.run_evasion(model, dataset, attack, 0.0, 1.0, 0, dataset.samples, 64, 0, False, lambda: False)
        )
        elapsed = time.perf_counter() - started
        y = np.concatenate([b.labels for b in batches])
        clean = np.concatenate([b.clean_probs for b in batches]).argmax(1) == y
        adv = np.concatenate([b.adv_probs for b in batches]).argmax(1) == y
        l2 = np.concatenate([b.l2 for b in batches])
        success = clean & ~adv
        median = float(np.median(l2[success])) if success.any() else 0.0
        print(f"| {attack.label} | {adv.mean():.4f} | {success.sum() / clean.sum():.4f} | {median:.4f} | "
              f"{elapsed:.1f} s |", flush=True)


def step_time(logits_fn, x, y, repeats: int = 50) -> float:
    import tensorflow as tf
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

    x, y = tf.constant(x), tf.constant(y)
    fast_gradient_method(logits_fn, x, 0.01, np.inf, clip_min=0.0, clip_max=1.0, y=y)  # warm-up / trace
    started = time.perf_counter()
    for _ in range(repeats):
        fast_gradient_method(logits_fn, x, 0.01, np.inf, clip_min=0.0, clip_max=1.0, y=y)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    import tensorflow as tf

    folder = Path(os.environ.get("ADVEX_BENCH_DIR", tempfile.gettempdir())) / "advex-bench-digits"
    model_path, data_path = digits.demo_files(folder)
    model = models.load_model(model_path)
    dataset = datasets.load_dataset(data_path)
    print(f"model: {model.summary}\ndataset: {dataset.samples} samples of {dataset.image_shape}")
    if "--table" in sys.argv:
        table(model, dataset)
        return
    for spec in [
        evasion_pb2.AttackSpec(attack="fgsm", eps=0.1),
        evasion_pb2.AttackSpec(attack="fgsm", eps=0.3),
        evasion_pb2.AttackSpec(attack="pgd", eps=0.1, steps=20),
        evasion_pb2.AttackSpec(attack="pgd", eps=0.3, steps=20),
        evasion_pb2.AttackSpec(attack="pgd", norm="2", eps=1.0, steps=20),
    ]:
        evaluate(model, dataset, spec)

    x, y = dataset.batch(0, 64)
    eager = step_time(model.logits_fn, x, y)
    compiled = step_time(tf.function(model.logits_fn, reduce_retracing=True), x, y)
    print(f"one FGSM/PGD step on 64 samples: eager {eager * 1000:.2f} ms, "
          f"tf.function logits {compiled * 1000:.2f} ms (speed-up x{eager / compiled:.2f})")


if __name__ == "__main__":
    main()
