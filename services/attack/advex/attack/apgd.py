"""Auto-PGD (APGD): PGD with momentum whose step size adapts itself.

Reference: F. Croce and M. Hein, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", ICML 2020,
Algorithm 1 (APGD-CE, APGD-DLR, and the targeted APGD-T of AutoAttack).

Per sample, from a start x0 in the eps-ball, with the loss f maximised:
- x1 = P(x0 + eta * s(grad f(x0))), then for k >= 1
  z = P(x_k + eta * s(grad f(x_k))) and
  x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1})), alpha 0.75;
  s is sign (L-inf) or grad / ||grad||_2 (L2); P is AttackRun.project (the
  eps-ball, then the data range); eta starts at 2 * eps.
- Checkpoints w_j = ceil(p_j * N), p_0 = 0, p_1 = 0.22,
  p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (`checkpoints`). At each,
  eta halves and the iterate restarts from the best-loss point x_max when
  condition 1 (the loss rose at fewer than rho = 0.75 of the steps since the
  last checkpoint) or condition 2 (neither eta nor the best loss f_max
  changed since the last checkpoint) holds (`halves_step`).
- Losses: cross-entropy, or the Difference of Logits Ratio,
  untargeted  DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12),
  targeted    DLR = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)
  (pi sorts the logits in decreasing order); targeted CE is -CE(target).
- Result: the first iterate that meets the goal (misclassified, or
  classified as the target), else x_max. Restarts draw new random starts; a
  sample keeps the first run's result that meets the goal.

Everything is per sample (step size, counters, checkpoint decisions, best
points), so a sample's result never depends on its batch. N = `steps`: one
forward+backward pass per step (at x_0 .. x_{N-1}), plus one forward pass to
score the last iterate x_N, as the paper evaluates f(x_0) .. f(x_N).

Where this differs from the AutoAttack reference implementation
(fra31/auto-attack, autopgd_base.py), and why:
- The checkpoints are the paper's ceil(p_j * N), computed exactly in integer
  hundredths (a float 0.41 * 100 would ceil to 42); AutoAttack uses a
  discretised version (first gap int(0.22 N), shrinking by int(0.03 N) to
  int(0.06 N)). Both give 22, 41, 57, 70, 80, 87, 93, 99 for N = 100; they
  can differ by a step for other N. Checkpoints that round to the same
  iteration (small N) are merged.
- Condition 1 is the paper's strict "< rho * (w_j - w_{j-1})"; AutoAttack
  uses "<=".
- Condition 2 is the paper's at every checkpoint, the first included (eta
  has not changed since w_0 = 0, so the first checkpoint halves eta when no
  step improved on f(x0)); AutoAttack skips it at the first checkpoint.
- After a restart from x_max, the next "did the loss rise" comparison is
  against f(x_max), the loss of the point the iterate actually is; AutoAttack
  compares with the loss of the discarded iterate.
- The start is AttackRun.random_start: uniform in the eps-ball, seeded per
  (seed, sample, restart), as PGD's here; AutoAttack starts on the ball's
  surface (L-inf: x + eps * t / ||t||_inf; L2: a random direction of length
  eps) and draws from the global torch RNG.
- The returned success is the FIRST iterate meeting the goal; AutoAttack
  keeps the latest. Either is a valid witness; the first makes restarts and
  "the first success stands" one rule.
- Every sample is attacked, every restart, also those the clean model
  already gets wrong or an earlier restart already broke (AutoAttack skips
  them): the cost is then steps * restarts passes, as the engine counts.
- No EOT (expectation over transformation) iterations: gradients are exact.
"""

from __future__ import annotations

import numpy as np

from advex.attack.attack_run import AttackRun, with_restarts
from advex.core.errors import InvalidArgument

# Algorithm 1's constants.
ALPHA = 0.75  # weight of the new step against the previous one (momentum)
RHO = 0.75  # condition 1: fraction of steps at which the loss must have risen
ETA_FACTOR = 2.0  # eta(0) = 2 * eps, for L-inf and L2 alike (AutoAttack)
DLR_EPSILON = 1e-12  # keeps DLR finite where the top logits tie


def checkpoints(n_iter: int) -> list[int]:
    """The iterations [w_0 = 0, w_1, ...] at which APGD may halve its step:
    w_j = ceil(p_j * n_iter) for every p_j <= 1, with p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06). Strictly increasing:
    p_j that round to the same iteration give one checkpoint."""
    # The p_j are multiples of 0.01: in integer hundredths ceil is exact.
    marks = [0]
    previous, p = 0, 22
    while p <= 100:
        w = -(-p * n_iter // 100)
        if w > marks[-1]:
            marks.append(w)
        previous, p = p, p + max(p - previous - 3, 6)
    return marks


def halves_step(increases, span, reduced_last, f_max, f_max_last, rho: float = RHO):
    """Per sample, at a checkpoint w_j (numpy arrays of shape (n,)): should
    eta halve (and the iterate restart from x_max)?

    increases: at how many of the steps i in [w_{j-1}, w_j) the loss rose,
      f(x_{i+1}) > f(x_i); span: w_j - w_{j-1};
    reduced_last: eta was halved at w_{j-1} (False at w_0);
    f_max, f_max_last: the best loss so far, now and at w_{j-1}.
    """
    condition1 = np.asarray(increases) < rho * span
    # f_max never decreases: "unchanged" is "not above its last value".
    condition2 = ~np.asarray(reduced_last, dtype=bool) & (np.asarray(f_max) <= np.asarray(f_max_last))
    return condition1 | condition2


def dlr_loss(logits, labels, targets=None):
    """Per-sample Difference of Logits Ratio, to be maximised (positive once
    the sample is misclassified / classified as the target). Needs at least
    3 classes (targeted: 4)."""
    from keras import ops

    classes = int(logits.shape[1])
    if classes < (4 if targets is not None else 3):
        which = "targeted DLR needs at least 4" if targets is not None else "DLR needs at least 3"
        raise InvalidArgument(
            f"apgd: loss 'dlr': {which} classes (it divides by the gap between the top logits), "
            f"the model has {classes}; use loss 'ce'"
        )
    top = ops.top_k(logits, k=4 if targets is not None else 3, sorted=True)[0]
    true = _logit_of(logits, labels)
    if targets is not None:
        target = _logit_of(logits, targets)
        return -(true - target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPSILON)
    is_label = ops.equal(ops.expand_dims(labels, 1), ops.arange(classes, dtype="int64"))
    others = ops.where(is_label, float(np.finfo(np.float32).min), logits)
    return -(true - ops.max(others, axis=1)) / (top[:, 0] - top[:, 2] + DLR_EPSILON)


def _logit_of(logits, classes):
    """Per sample, the logit of its class in `classes` (n,)."""
    from keras import ops

    return ops.squeeze(ops.take_along_axis(logits, ops.expand_dims(classes, 1), axis=1), axis=1)


def attack_loss(run: AttackRun, logits):
    """Per-sample loss the attack maximises."""
    return _loss(run.attack.loss, logits, run.y, run.targets)


def _loss(kind: str, logits, labels, targets):
    from advex.attack.compiled import cross_entropy

    if kind == "dlr":
        return dlr_loss(logits, labels, targets)
    ce = cross_entropy(labels if targets is None else targets, logits)
    # Targeted: minimise the cross-entropy of the target.
    return ce if targets is None else -ce


def _builder(kind: str):
    """The builder of APGD's compiled loss-and-gradient for loss `kind`
    (compiled.Kernels keeps it per model, goal and batch shape: the next
    batch reuses the trace)."""

    def build(logits_fn, norm, targeted: bool, shape):
        from keras import ops

        from advex.attack import backend
        from advex.attack.backend import Spec

        def loss_and_gradient(x, y, targets):
            def loss_of(x):
                logits = logits_fn(x)
                loss = _loss(kind, logits, y, targets if targeted else None)
                # Summed over the batch: each sample's gradient is its own loss's.
                return ops.sum(loss), (logits, loss)

            grad, (logits, loss) = backend.gradient(loss_of, x)
            return logits, loss, grad

        labels = Spec(shape[:1], "int64")
        return backend.compile_function(loss_and_gradient, [Spec(shape, "float32"), labels, labels])

    return build


def apgd(run: AttackRun):
    """APGD over the batch; with restarts, a sample keeps the first run's
    result that meets the goal."""
    return with_restarts(run, _apgd_once)


def _apgd_once(run: AttackRun, restart: int, trace: list | None = None):
    """One run of Algorithm 1 from `run.random_start(restart)`. `trace`
    (tests) receives, per step, the eta (n,) that step moves with."""
    from keras import ops

    from advex.attack import backend

    steps = run.attack.steps
    n = run.n
    per_sample = (-1,) + (1,) * (len(run.x.shape) - 1)

    def each(values):
        """An (n,) numpy array as a tensor broadcasting over a sample."""
        return ops.reshape(ops.convert_to_tensor(values), per_sample)

    def direction(grad):
        if run.norm == np.inf:
            return ops.sign(grad)
        norm = ops.sqrt(ops.sum(ops.square(grad), axis=list(range(1, len(grad.shape))), keepdims=True))
        return grad / ops.maximum(norm, 1e-12)

    # Compiled (7x faster than eager), the batch padded to its fixed shape.
    loss_and_gradient = run.kernel(f"apgd-{run.attack.loss}", _builder(run.attack.loss))
    y, targets = run.padded(run.y), run.padded(run.targets if run.targeted else run.y)

    def evaluate(x):
        logits, loss, grad = loss_and_gradient(run.padded(x), y, targets)
        return logits[:n], ops.convert_to_numpy(loss)[:n], grad[:n]

    marks = checkpoints(steps)
    is_mark = set(marks[1:])
    eta = np.full(n, ETA_FACTOR * run.attack.eps, dtype=np.float32)
    x_k = run.random_start(restart)
    x_prev = x_k
    # Best-loss point, its loss and its gradient (the step after a restart
    # from x_max uses the stored gradient: no extra pass).
    x_max = grad_max = f_max = None
    # Since the last checkpoint: loss rises counted, f_max there, was eta halved.
    increases = np.zeros(n, dtype=np.int64)
    f_max_last = None
    reduced_last = np.zeros(n, dtype=bool)
    last_mark = 0
    f_prev = None
    # The first iterate meeting the goal, per sample.
    found = np.zeros(n, dtype=bool)
    x_found = x_k

    def note_success(logits, x):
        nonlocal found, x_found
        now = ops.convert_to_numpy(run.succeeded(logits))
        first = now & ~found
        if first.any():
            x_found = ops.where(each(first), x, x_found)
        found = found | now

    for k in range(steps):
        run.step(k, restart)
        logits, loss, grad = evaluate(x_k)
        run.on_passes(1)
        note_success(logits, x_k)
        if k == 0:
            x_max, grad_max, f_max = x_k, grad, loss
            f_max_last = loss
        else:
            increases += loss > f_prev
            better = loss > f_max
            if better.any():
                x_max = ops.where(each(better), x_k, x_max)
                grad_max = ops.where(each(better), grad, grad_max)
                f_max = np.where(better, loss, f_max)
        f_prev = loss
        if k in is_mark:
            halve = halves_step(increases, k - last_mark, reduced_last, f_max, f_max_last)
            if halve.any():
                eta = np.where(halve, eta / 2, eta).astype(np.float32)
                # x_prev stays the point before the discarded iterate, so the
                # next step's momentum is x_max - x_prev (as in the paper,
                # where x^(k+1) = x_max follows x^(k); and in AutoAttack).
                x_k = ops.where(each(halve), x_max, x_k)
                grad = ops.where(each(halve), grad_max, grad)
                # The iterate is now x_max: the next rise is measured from f_max.
                f_prev = np.where(halve, f_max, f_prev)
            reduced_last, f_max_last, last_mark = halve, f_max, k
            increases = np.zeros(n, dtype=np.int64)
        if trace is not None:
            trace.append(eta.copy())
        z = run.project(x_k + each(eta) * direction(grad))
        if k == 0:
            # The first step has no previous step to carry momentum from.
            x_next = z
        else:
            x_next = run.project(x_k + ALPHA * (z - x_k) + (1 - ALPHA) * (x_k - x_prev))
        x_prev, x_k = x_k, x_next

    # The last iterate x_N: scored (a forward pass), never stepped from.
    logits = backend.no_gradient(run.logits_fn, x_k)
    note_success(logits, x_k)
    better = ops.convert_to_numpy(attack_loss(run, logits)) > f_max
    x_max = ops.where(each(better), x_k, x_max)
    return ops.where(each(found), x_found, x_max)
