"""SPSA: the gradient-free L-inf attack of Uesato et al. 2018.

"Adversarial Risk and the Dangers of Evaluating Against Weak Attacks"
(https://arxiv.org/abs/1802.05666), as CleverHans implements it in
`cleverhans/tf2/attacks/spsa.py` (`spsa`, `SPSAAdam`, `projected_optimization`).
It never asks the model for a gradient: each step estimates the gradient of
the logit margin from the model's outputs at random +/-delta probes
(Simultaneous Perturbation Stochastic Approximation) and takes an Adam step
with that estimate. So it still works on a model whose gradients are zero,
missing or useless (gradient masking: quantised inputs, saturations), where
PGD and friends see nothing to follow.

What one step does, per sample, exactly as CleverHans (same ops, same order):
- the loss is CleverHans' `margin_logit_loss` on the LOGITS with its sign:
  untargeted, minimise Z_y - max_{j != y} Z_j; targeted, minimise
  max_{j != t} Z_j - Z_t; negative exactly when the goal is met;
- `samples / 2` Rademacher probes v = delta * sign(uniform(-1, 1)), mirrored
  as concat([v, -v]); the gradient estimate is
  mean(loss(x + (p + probe)) * probe) / delta over the `samples` probes;
- the Adam update of `SPSAAdam._apply_gradients` (beta_1 0.9, beta_2 0.999,
  epsilon 1e-7: Keras Adam's defaults, which SPSAAdam inherits; t from 1);
- the projection of `_project_perturbation`: the perturbation clipped to
  [-eps, eps], then x + perturbation clipped to the data range, minus x. The
  state is the perturbation, as in CleverHans, and the result is x + it.
The start is x plus a uniform draw of the eps-cube, projected the same way.

Where it deliberately differs from calling CleverHans' `spsa`, and why:
- Randomness: CleverHans draws the start and the probes from TensorFlow's
  process-global RNG. Here the start is `attack_run.random_start` (seeded by
  (seed, sample index), as PGD's) and each sample's probes come from its own
  numpy Generator `run.sample_rng(i, STREAM_SPSA_PROBES)`, drawn step after
  step for the whole run (`probe_uniforms`). So a rerun, a shard retried on
  another replica or a different batch size gives the same result, and
  concurrent requests cannot disturb each other's draws. Given the same
  uniforms the result equals CleverHans' (bit for bit on CPU:
  tests/attack/test_attack_spsa.py feeds CleverHans these very draws).
- Batched: CleverHans' `spsa` takes one sample at a time. Here a batch is
  attacked together, every sample independently (its own draws, its own
  Adam state, its own early stop); the probes of several samples share model
  calls. A model may round differently at another batch composition (oneDNN),
  which is the only source of the float round-off above.
- Chunked: a step evaluates n * samples inputs. They go to the model in
  calls of at most MAX_CHUNK_BYTES of float32 inputs (at least one +/- pair
  of probes), so a big image or many probes never exhausts memory. A sample
  whose own probes exceed one call (huge inputs) is estimated from partial
  sums, drawing its probes chunk by chunk from its Generator (the same
  numbers as one draw); only the summation order of its mean then differs.
- Early stop: always on, as CleverHans with early_stop_loss_threshold=0.
  After each step the loss is evaluated at the projected point; a sample
  whose loss is < 0 (the goal is met) keeps that point and is frozen: no
  more probes, no more model calls for it. CleverHans' documentation notes
  this guarantees a success found is returned (the optimiser cannot bounce
  back out of it), so the attack is stronger, and faster. When every sample
  of the batch is frozen the attack ends.
- Cancellation and progress: `run.step` before every step (a cancel stops
  within one step), `run.on_passes(samples)` after each (the spec's cost is
  steps * samples per sample); steps skipped because every sample finished
  early are reported at the end, so a batch always reports its full cost.
"""

from __future__ import annotations

import numpy as np

from advex.attack import backend
from advex.attack.attack_run import STREAM_SPSA_PROBES, AttackRun, random_start

# Most bytes of float32 inputs given to the model in one call.
MAX_CHUNK_BYTES = 64 * 2**20

# Keras Adam's defaults, which CleverHans' SPSAAdam inherits and reads as
# self.beta_1, self.beta_2 and self.epsilon.
BETA_1 = 0.9
BETA_2 = 0.999
ADAM_EPSILON = 1e-7


def probe_uniforms(rng: np.random.Generator, rows: int, dims: tuple[int, ...]) -> np.ndarray:
    """The next `rows` uniform(-1, 1) draws of one sample's probe stream,
    float32 (rows, *dims): what CleverHans draws with
    tf.random.uniform([samples // 2, *dims], -1, 1) for one step. The probes
    are delta * sign(these). Drawing a step's rows in pieces gives the same
    numbers as drawing them at once."""
    return rng.uniform(-1.0, 1.0, size=(rows, *dims)).astype(np.float32)


def start_uniforms(shape: tuple[int, ...], eps: float, seed: int, first: int) -> np.ndarray:
    """The uniform(-eps, eps) draws of the start, float32 `shape` (batch
    first): what CleverHans draws with tf.random.uniform(shape, -eps, eps)."""
    return random_start(shape, "inf", eps, seed, first)


def margin_logit_loss(logits, labels):
    """CleverHans' `margin_logit_loss`, op for op, in keras.ops: per sample,
    the highest logit other than the label's minus the label's logit."""
    from keras import ops

    mask = ops.one_hot(labels, int(logits.shape[-1]), dtype="float32")
    label_logits = ops.sum(mask * logits, axis=-1)
    highest_other = ops.max(logits - mask * 99999, axis=-1)
    return highest_other - label_logits


def spsa(run: AttackRun):
    """The adversarial batch (a backend tensor) of SPSA under `run`."""
    from keras import ops

    attack = run.attack
    eps, delta, lr = float(attack.eps), float(attack.delta), float(attack.learning_rate)
    half = attack.samples // 2
    n, dims = run.n, tuple(int(d) for d in run.x.shape[1:])
    x = run.x
    goal = run.goal
    rows_per_call = max(2, MAX_CHUNK_BYTES // (4 * max(1, int(np.prod(dims)))))

    def project(x_i, perturbation):
        # CleverHans' _project_perturbation, with the same ops.
        clipped = ops.clip(perturbation, -eps, eps)
        return ops.clip(x_i + clipped, run.clip_min, run.clip_max) - x_i

    def loss(inputs, labels):
        # CleverHans' spsa loss_fn: the sign times its margin_logit_loss.
        # A gradient-free attack: the model's passes record nothing.
        logits = backend.no_gradient(run.logits_fn, inputs)
        multiplier = 1 if run.targeted else -1
        return multiplier * margin_logit_loss(logits, labels)

    def losses_in_chunks(inputs, labels):
        return ops.concatenate(
            [loss(inputs[a:a + rows_per_call], labels[a:a + rows_per_call])
             for a in range(0, int(inputs.shape[0]), rows_per_call)],
            axis=0,
        )

    # One Generator per sample for the whole run: its probes continue its
    # own stream step after step, whatever its batch.
    rngs = [run.sample_rng(i, STREAM_SPSA_PROBES) for i in range(n)]
    # The state (perturbation, Adam's m and u) lives in numpy arrays so the
    # rows of the still-active samples can be read and written back; frozen
    # rows are never touched again.
    pert = ops.convert_to_numpy(project(x, ops.convert_to_tensor(start_uniforms((n, *dims), eps, run.seed, run.first))))
    m = np.zeros_like(pert)
    u = np.zeros_like(pert)
    active = np.arange(n)
    steps_done = 0
    for step in range(attack.steps):
        if not len(active):
            break
        run.step(step)
        g = _gradients(loss, x, goal, pert, active, rngs, half, delta, dims, rows_per_call)
        # SPSAAdam._apply_gradients, same expressions in the same order (t,
        # beta_1 and beta_2 Python floats, as there), so it rounds the same.
        t = float(step + 1)
        m_new = BETA_1 * ops.convert_to_tensor(m[active]) + (1.0 - BETA_1) * g
        u_new = BETA_2 * ops.convert_to_tensor(u[active]) + (1.0 - BETA_2) * g * g
        m_hat = m_new / (1.0 - ops.power(BETA_1, t))
        u_hat = u_new / (1.0 - ops.power(BETA_2, t))
        rows = ops.convert_to_tensor(active)
        x_active = ops.take(x, rows, axis=0)
        stepped = ops.convert_to_tensor(pert[active]) - lr * m_hat / (ops.sqrt(u_hat) + ADAM_EPSILON)
        projected = project(x_active, stepped)
        m[active], u[active] = ops.convert_to_numpy(m_new), ops.convert_to_numpy(u_new)
        pert[active] = ops.convert_to_numpy(projected)
        # Early stop (CleverHans' early_stop_loss_threshold=0): the loss at
        # the new point; a sample that met its goal is frozen there.
        now = ops.convert_to_numpy(losses_in_chunks(x_active + projected, ops.take(goal, rows, axis=0)))
        active = active[~(now < 0.0)]
        run.on_passes(attack.samples)
        steps_done += 1
    if steps_done < attack.steps:
        # Every sample finished early: the batch still reports its full cost.
        run.on_passes(attack.samples * (attack.steps - steps_done))
    return x + ops.convert_to_tensor(pert)


def _gradients(loss, x, goal, pert, active, rngs, half, delta, dims, rows_per_call):
    """The SPSA gradient estimates of the active samples, float32
    (len(active), *dims): SPSAAdam._compute_gradients per sample, with the
    probes of several samples sharing model calls of <= rows_per_call rows."""
    from keras import ops

    grads: list = [None] * len(active)
    group: list[tuple[int, object, object]] = []  # (position, probes, inputs)
    labels_np = ops.convert_to_numpy(goal)

    def flush():
        if not group:
            return
        labels = np.concatenate([np.full(int(probes.shape[0]), labels_np[int(active[pos])]) for pos, probes, _ in group])
        values = loss(ops.concatenate([inputs for _, _, inputs in group], 0), ops.convert_to_tensor(labels))
        at = 0
        for pos, probes, _ in group:
            rows = int(probes.shape[0])
            loss_vals = ops.reshape(values[at:at + rows], [rows] + [1] * len(dims))
            grads[pos] = ops.mean(loss_vals * probes, axis=0) / delta
            at += rows
        group.clear()

    for pos, i in enumerate(active):
        x_i = x[int(i):int(i) + 1]
        p_i = ops.convert_to_tensor(pert[int(i):int(i) + 1])
        if 2 * half <= rows_per_call:
            probes = delta * ops.sign(ops.convert_to_tensor(probe_uniforms(rngs[i], half, dims)))
            probes = ops.concatenate([probes, -probes], axis=0)
            if sum(int(p.shape[0]) for _, p, _ in group) + 2 * half > rows_per_call:
                flush()
            group.append((pos, probes, x_i + (p_i + probes)))
        else:
            grads[pos] = _split_gradient(loss, x_i, p_i, labels_np[int(i)], rngs[i], half, delta, dims, rows_per_call)
    flush()
    return ops.stack(grads)


def _split_gradient(loss, x_i, p_i, label, rng, half, delta, dims, rows_per_call):
    """One sample's gradient estimate when its 2 * half probes exceed one
    model call: the probe pairs drawn and evaluated a chunk at a time (the
    same draws as at once), sum(loss * probe) accumulated, then divided by
    the count as reduce_mean would. Only the summation order differs from
    CleverHans."""
    from keras import ops

    pairs = max(1, rows_per_call // 2)
    total = ops.zeros(dims, "float32")
    for a in range(0, half, pairs):
        rows = min(half, a + pairs) - a
        probes = delta * ops.sign(ops.convert_to_tensor(probe_uniforms(rng, rows, dims)))
        probes = ops.concatenate([probes, -probes], axis=0)
        values = loss(x_i + (p_i + probes), ops.convert_to_tensor(np.full(2 * rows, label, dtype=np.int64)))
        total = total + ops.sum(ops.reshape(values, [2 * rows] + [1] * len(dims)) * probes, axis=0)
    return total / float(2 * half) / delta
