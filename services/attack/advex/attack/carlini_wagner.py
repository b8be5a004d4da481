"""The Carlini-Wagner L2 attack, written out step by step.

Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks",
IEEE S&P 2017 (arXiv:1608.04644); the reference is the authors' code
(github.com/carlini/nn_robust_attacks, l2_attack.py), and CleverHans'
`cleverhans.tf2.attacks.carlini_wagner_l2` is the same algorithm for TF2.

The attack looks for the smallest L2 perturbation that meets the goal. It
optimises w in tanh space, x_new = (tanh(w) + 1) / 2 * (clip_max - clip_min)
+ clip_min, so every iterate lies in the data range without clipping; w
starts at atanh of x scaled to [-1, 1] times 0.999999 (atanh(+-1) is
infinite) plus a modifier that starts at 0 every round. Per sample it
minimises

    ||x_new - x_ref||_2^2 + c * f(x_new)

with x_ref the clean input sent through the same tanh round trip (as both
references do), and, on the LOGITS Z, f = max(Z_y - max_{j!=y} Z_j +
confidence, 0) untargeted (leave the true class y) or f = max(max_{j!=t} Z_j
- Z_t + confidence, 0) targeted (reach the target t). Each round runs
`steps` Adam steps on the modifier; between rounds a binary search moves
each sample's own constant c: a round that met the goal sets upper = min(
upper, c), one that did not sets lower = max(lower, c), and c becomes
(lower + upper) / 2, or c * 10 while no upper bound is known (upper >= 1e9).
With 10 rounds or more the last one runs at c = upper (the original's
"repeat"). A sample keeps its successful iterate of smallest L2 over all
rounds and steps; a sample never broken comes back clean.

Deviations from CleverHans, each to follow the original or to keep a
sample's result independent of its batch:
- c is one number per sample. CleverHans makes it the image's full shape,
  so `reduce_sum(const * loss_1)` broadcasts (n, H, W, C) against (n,) and
  mixes samples (with batch 1 and one channel it is a constant H*W*C times
  too big).
- The binary search is the original's. CleverHans decides success from the
  best score over ALL rounds rather than the round just run, and its last
  `set_with_mask(const, const * 10, ...)` also multiplies the constant of
  every sample that succeeded by 10.
- Success with a confidence margin is the original's: untargeted, the
  argmax of the logits with the true class's logit raised by confidence
  differs from y; targeted, the argmax with the target's logit lowered by
  confidence is t. CleverHans adds confidence to every logit untargeted,
  which changes nothing, so it accepts examples short of the margin.
- No early abort. CleverHans (abort_early) and the original stop a round
  when the loss summed over the whole batch stalls, so a sample's result
  would depend on which samples share its batch; every round runs all its
  steps here (abort_early=False in CleverHans' terms).
- Adam is written out in keras.ops, with Keras 3 `keras.optimizers.Adam`'s
  exact update (beta_1 0.9, beta_2 0.999, epsilon 1e-7, its bias
  correction), state and step count reset every round. It is elementwise,
  so samples stay independent, and no optimizer object or tf.Variable is
  shared between concurrent requests (CleverHans keeps one Keras optimizer
  per attack object and resets it through `optimizer.variables()`, which
  Keras 3 made a list: it no longer runs as is).
- The labels are given explicitly (true labels untargeted, targets
  targeted); CleverHans with y=None attacks the model's own predictions,
  and passing y makes it targeted.

`run.step` is called before every Adam step (the whole attack counts
steps * binary_search_steps of them), so a cancelled request stops within
one step; `run.on_passes(1)` after each, one forward and backward pass over
the batch.
"""

from __future__ import annotations

from advex.attack.attack_run import AttackRun

# atanh(+-1) is infinite: the original and CleverHans shrink x this much.
_TANH_SHRINK = 0.999999
# "No upper bound yet" and the initial best L2: the original's values.
_NO_BOUND = 1e10
_BOUND_KNOWN_BELOW = 1e9
# Keras 3 Adam's defaults (keras.optimizers.Adam), the optimizer both
# references use.
_BETA_1 = 0.9
_BETA_2 = 0.999
_EPSILON = 1e-7
# From this many rounds on the last one reruns at the best known c.
_REPEAT_FROM = 10


def carlini_wagner_l2(run: AttackRun):
    """The adversarial batch (a backend tensor float32, the shape of run.x)."""
    from keras import ops

    attack = run.attack
    n = run.n
    x = run.padded(ops.convert_to_tensor(run.x, dtype="float32"))
    goal = run.padded(ops.convert_to_tensor(run.goal, dtype="int64"))
    rows = int(x.shape[0])
    low, span = float(run.clip_min), float(run.clip_max) - float(run.clip_min)

    # The same op order as CleverHans, so its results can be matched.
    scaled = ops.clip((x - low) / span, 0.0, 1.0)
    w_clean = ops.arctanh((scaled * 2.0 - 1.0) * _TANH_SHRINK)
    x_ref = _from_tanh(w_clean, low, span)

    step_fn = run.kernel(f"cw-{attack.norm}", _build_step)

    def scalar(value):
        return ops.convert_to_tensor(value, "float32")

    constants = (scalar(attack.confidence), scalar(attack.learning_rate), scalar(low), scalar(span))

    const = ops.full((rows,), attack.initial_const, dtype="float32")
    lower = ops.zeros((rows,), "float32")
    upper = ops.full((rows,), _NO_BOUND, dtype="float32")
    best_l2 = ops.full((rows,), _NO_BOUND, dtype="float32")
    best_x = x
    rounds, steps = attack.binary_search_steps, attack.steps
    for round_ in range(rounds):
        if rounds >= _REPEAT_FROM and round_ == rounds - 1:
            const = upper
        modifier = ops.zeros_like(x)
        m = ops.zeros_like(x)
        v = ops.zeros_like(x)
        met_in_round = ops.zeros((rows,), "bool")
        for step in range(steps):
            run.step(round_ * steps + step, of=rounds * steps)
            # A tensor, so a compiled step is traced once, not once per step.
            local_step = scalar(step + 1)
            modifier, m, v, best_l2, best_x, met_in_round = step_fn(
                w_clean, x_ref, goal, modifier, m, v, local_step, const, best_l2, best_x, met_in_round, *constants
            )
            run.on_passes(1)
        const, lower, upper = _next_const(const, lower, upper, met_in_round)
    return best_x[:n]


def _from_tanh(w, low, span):
    from keras import ops

    return ((ops.tanh(w) + 1) / 2) * span + low


def _build_step(logits_fn, norm, targeted: bool, shape):
    """One Adam step of one round, compiled once per model, goal and batch
    shape (compiled.Kernels keeps it; every per-batch value is an argument,
    so the next batch reuses the trace). Tracing once makes the steps
    several times faster than eager.

    (w_clean, x_ref, goal, modifier, m, v, local_step, const, best_l2,
    best_x, met_in_round, confidence, learning_rate, low, span) ->
    (modifier, m, v, best_l2, best_x, met_in_round) after the step.
    """
    from keras import ops

    from advex.attack import backend
    from advex.attack.backend import Spec

    axes = list(range(1, len(shape)))
    sample_shape = (-1,) + (1,) * len(axes)
    images = Spec(shape, "float32")
    per_sample = Spec(shape[:1], "float32")
    scalar = Spec((), "float32")

    def step(w_clean, x_ref, goal, modifier, m, v, local_step, const, best_l2, best_x, met_in_round, confidence,
             learning_rate, low, span):
        def loss_of(modifier):
            x_new = _from_tanh(w_clean + modifier, low, span)
            logits = logits_fn(x_new)
            l2 = ops.sum(ops.square(x_new - x_ref), axis=axes)
            is_goal = ops.equal(ops.expand_dims(goal, 1), ops.arange(int(logits.shape[1]), dtype="int64"))
            real = ops.sum(ops.where(is_goal, logits, ops.zeros_like(logits)), axis=1)
            other = ops.max(ops.where(is_goal, -float("inf"), logits), axis=1)
            margin = other - real if targeted else real - other
            # 0.0 first, as CleverHans: at margin == -confidence the gradient
            # goes to the constant, not through the model.
            f = ops.maximum(0.0, margin + confidence)
            return ops.sum(l2) + ops.sum(const * f), (x_new, logits, l2)

        grad, (x_new, logits, l2) = backend.gradient(loss_of, modifier)
        # The iterate judged is the one the gradient is taken at, before the
        # update (as in both references): one model pass per step.
        met = _meets_goal(logits, goal, confidence, targeted)
        better = ops.logical_and(met, ops.less(l2, best_l2))
        best_l2 = ops.where(better, l2, best_l2)
        best_x = ops.where(ops.reshape(better, sample_shape), x_new, best_x)
        met_in_round = ops.logical_or(met_in_round, met)
        modifier, m, v = _adam(modifier, m, v, grad, local_step, learning_rate)
        return modifier, m, v, best_l2, best_x, met_in_round

    return backend.compile_function(step, [
        images, images, Spec(shape[:1], "int64"), images, images, images, scalar, per_sample, per_sample,
        images, Spec(shape[:1], "bool"), scalar, scalar, scalar, scalar,
    ])


def _meets_goal(logits, goal, confidence, targeted: bool):
    """The original's success test with the confidence margin (see the
    module docstring for CleverHans' untargeted variant)."""
    from keras import ops

    shift = ops.one_hot(goal, int(logits.shape[1]), dtype=logits.dtype) * confidence
    if targeted:
        return ops.equal(ops.cast(ops.argmax(logits - shift, axis=1), "int64"), goal)
    return ops.not_equal(ops.cast(ops.argmax(logits + shift, axis=1), "int64"), goal)


def _adam(variable, m, v, grad, local_step, learning_rate):
    """One step of Keras 3 Adam's update_step, op for op, on tensors instead
    of optimizer slots; local_step counts from 1 each round."""
    from keras import ops

    beta_1_power = ops.power(_BETA_1, local_step)
    beta_2_power = ops.power(_BETA_2, local_step)
    alpha = learning_rate * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    m = m + (grad - m) * (1 - _BETA_1)
    v = v + (ops.square(grad) - v) * (1 - _BETA_2)
    return variable - (m * alpha) / (ops.sqrt(v) + _EPSILON), m, v


def _next_const(const, lower, upper, met):
    """The original's binary search over c, per sample: (const, lower, upper)
    for the next round given whether this round met the goal."""
    from keras import ops

    upper = ops.where(met, ops.minimum(upper, const), upper)
    lower = ops.where(met, lower, ops.maximum(lower, const))
    known = ops.less(upper, _BOUND_KNOWN_BELOW)
    halfway = (lower + upper) / 2
    # A failure with no upper bound yet grows c tenfold; a success leaves
    # one, except in the repeat round at c = upper = 1e10, where the
    # original keeps c as it is.
    const = ops.where(known, halfway, ops.where(met, const, const * 10))
    return const, lower, upper
