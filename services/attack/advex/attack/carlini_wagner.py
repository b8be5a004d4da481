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
- Adam is written out in TF ops, with Keras 3 `keras.optimizers.Adam`'s
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
    """The adversarial batch (tf.Tensor float32, the shape of run.x)."""
    import tensorflow as tf

    attack = run.attack
    n = run.n
    x = run.padded(tf.convert_to_tensor(run.x, dtype=tf.float32))
    goal = run.padded(tf.convert_to_tensor(run.goal, dtype=tf.int64))
    rows = int(x.shape[0])
    low, span = float(run.clip_min), float(run.clip_max) - float(run.clip_min)

    # The same op order as CleverHans, so its results can be matched.
    scaled = tf.clip_by_value((x - low) / span, 0.0, 1.0)
    w_clean = tf.atanh((scaled * 2.0 - 1.0) * _TANH_SHRINK)
    x_ref = _from_tanh(w_clean, low, span)

    step_fn = run.kernel(f"cw-{attack.norm}", _build_step)
    constants = (
        tf.constant(attack.confidence, tf.float32), tf.constant(attack.learning_rate, tf.float32),
        tf.constant(low, tf.float32), tf.constant(span, tf.float32),
    )

    const = tf.fill((rows,), tf.constant(attack.initial_const, tf.float32))
    lower = tf.zeros((rows,), tf.float32)
    upper = tf.fill((rows,), tf.constant(_NO_BOUND, tf.float32))
    best_l2 = tf.fill((rows,), tf.constant(_NO_BOUND, tf.float32))
    best_x = x
    rounds, steps = attack.binary_search_steps, attack.steps
    for round_ in range(rounds):
        if rounds >= _REPEAT_FROM and round_ == rounds - 1:
            const = upper
        modifier = tf.zeros_like(x)
        m = tf.zeros_like(x)
        v = tf.zeros_like(x)
        met_in_round = tf.zeros((rows,), tf.bool)
        for step in range(steps):
            run.step(round_ * steps + step, of=rounds * steps)
            # A tensor, so the tf.function is traced once, not once per step.
            local_step = tf.constant(step + 1, tf.float32)
            modifier, m, v, best_l2, best_x, met_in_round = step_fn(
                w_clean, x_ref, goal, modifier, m, v, local_step, const, best_l2, best_x, met_in_round, *constants
            )
            run.on_passes(1)
        const, lower, upper = _next_const(const, lower, upper, met_in_round)
    return best_x[:n]


def _from_tanh(w, low: float, span: float):
    import tensorflow as tf

    return ((tf.tanh(w) + 1) / 2) * span + low


def _build_step(logits_fn, norm, targeted: bool, shape):
    """One Adam step of one round, compiled once per model, goal and batch
    shape (compiled.Kernels keeps it; every per-batch value is an argument,
    so the next batch reuses the trace). Tracing once makes the steps
    several times faster than eager.

    (w_clean, x_ref, goal, modifier, m, v, local_step, const, best_l2,
    best_x, met_in_round, confidence, learning_rate, low, span) ->
    (modifier, m, v, best_l2, best_x, met_in_round) after the step.
    """
    import tensorflow as tf

    axes = list(range(1, len(shape)))
    sample_shape = (-1,) + (1,) * len(axes)
    images = tf.TensorSpec(shape, tf.float32)
    per_sample = tf.TensorSpec(shape[:1], tf.float32)
    scalar = tf.TensorSpec((), tf.float32)

    @tf.function(input_signature=[
        images, images, tf.TensorSpec(shape[:1], tf.int64), images, images, images, scalar, per_sample, per_sample,
        images, tf.TensorSpec(shape[:1], tf.bool), scalar, scalar, scalar, scalar,
    ])
    def step(w_clean, x_ref, goal, modifier, m, v, local_step, const, best_l2, best_x, met_in_round, confidence,
             learning_rate, low, span):
        with tf.GradientTape() as tape:
            tape.watch(modifier)
            x_new = _from_tanh(w_clean + modifier, low, span)
            logits = logits_fn(x_new)
            l2 = tf.reduce_sum(tf.square(x_new - x_ref), axes)
            is_goal = tf.one_hot(goal, tf.shape(logits)[1], on_value=True, off_value=False)
            real = tf.reduce_sum(tf.where(is_goal, logits, tf.zeros_like(logits)), 1)
            other = tf.reduce_max(tf.where(is_goal, tf.fill(tf.shape(logits), -float("inf")), logits), 1)
            margin = other - real if targeted else real - other
            # 0.0 first, as CleverHans: at margin == -confidence the gradient
            # goes to the constant, not through the model.
            f = tf.maximum(0.0, margin + confidence)
            loss = tf.reduce_sum(l2) + tf.reduce_sum(const * f)
        grad = tape.gradient(loss, modifier)
        # The iterate judged is the one the gradient is taken at, before the
        # update (as in both references): one model pass per step.
        met = _meets_goal(logits, goal, confidence, targeted)
        better = tf.logical_and(met, l2 < best_l2)
        best_l2 = tf.where(better, l2, best_l2)
        best_x = tf.where(tf.reshape(better, sample_shape), x_new, best_x)
        met_in_round = tf.logical_or(met_in_round, met)
        modifier, m, v = _adam(modifier, m, v, grad, local_step, learning_rate)
        return modifier, m, v, best_l2, best_x, met_in_round

    return step


def _meets_goal(logits, goal, confidence: float, targeted: bool):
    """The original's success test with the confidence margin (see the
    module docstring for CleverHans' untargeted variant)."""
    import tensorflow as tf

    shift = tf.one_hot(goal, tf.shape(logits)[1], dtype=logits.dtype) * confidence
    if targeted:
        return tf.argmax(logits - shift, axis=1, output_type=tf.int64) == goal
    return tf.argmax(logits + shift, axis=1, output_type=tf.int64) != goal


def _adam(variable, m, v, grad, local_step, learning_rate: float):
    """One step of Keras 3 Adam's update_step, op for op, on tensors instead
    of optimizer slots; local_step counts from 1 each round."""
    import tensorflow as tf

    dtype = variable.dtype
    lr = tf.cast(learning_rate, dtype)
    step = tf.cast(local_step, dtype)
    beta_1_power = tf.pow(tf.cast(_BETA_1, dtype), step)
    beta_2_power = tf.pow(tf.cast(_BETA_2, dtype), step)
    alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    m = m + (grad - m) * (1 - _BETA_1)
    v = v + (tf.square(grad) - v) * (1 - _BETA_2)
    return variable - (m * alpha) / (tf.sqrt(v) + _EPSILON), m, v


def _next_const(const, lower, upper, met):
    """The original's binary search over c, per sample: (const, lower, upper)
    for the next round given whether this round met the goal."""
    import tensorflow as tf

    upper = tf.where(met, tf.minimum(upper, const), upper)
    lower = tf.where(met, lower, tf.maximum(lower, const))
    known = upper < _BOUND_KNOWN_BELOW
    halfway = (lower + upper) / 2
    # A failure with no upper bound yet grows c tenfold; a success leaves
    # one, except in the repeat round at c = upper = 1e10, where the
    # original keeps c as it is.
    const = tf.where(known, halfway, tf.where(met, const, const * 10))
    return const, lower, upper
