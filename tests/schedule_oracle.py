"""The learning-rate schedules in closed form, written out independently of torch and transformers: the oracle
the tests hold the schedulers (and the health check's shadow scheduler) to."""

import math

from scratchlm.training.schedules import ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV


def schedule_factor(kind: str, step: int, total: int, warmup: int, options: dict) -> float | None:
    """The multiple of the peak learning rate after `step` scheduler steps, in closed form; None when unknown."""
    if kind == "one_cycle":
        return one_cycle_factor(step, total, warmup)
    if kind == "warmup_stable_decay":
        return warmup_stable_decay_factor(step, total, warmup, options)
    if step < warmup:
        return step / max(1, warmup) if kind != "constant" else 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "constant" or kind == "constant_with_warmup":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if kind == "cosine":
        return max(0.0, 0.5 * (1 + math.cos(math.pi * 2 * options.get("num_cycles", 0.5) * progress)))
    if kind == "cosine_with_min_lr" and "min_lr_rate" in options:
        floor = options["min_lr_rate"]
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 2 * options.get("num_cycles", 0.5) * progress))
    return None


def warmup_stable_decay_factor(step: int, total: int, warmup: int, options: dict) -> float | None:
    """transformers' warmup-stable-decay: up, flat at the peak, then down over num_decay_steps to min_lr_ratio."""
    decay, floor = options.get("num_decay_steps"), options.get("min_lr_ratio", 0.0)
    if decay is None or options.get("warmup_type", "linear") != "linear":
        return None
    if step < warmup:
        return step / max(1, warmup) * (1 - floor) + floor
    stable = total - warmup - decay
    if step < warmup + stable:
        return 1.0
    if step >= warmup + stable + decay:
        return floor
    progress = (step - warmup - stable) / max(1, decay)
    shapes = {
        "linear": 1 - progress,
        "cosine": 0.5 * (1 + math.cos(math.pi * 2 * options.get("num_cycles", 0.5) * progress)),
        "1-sqrt": 1 - math.sqrt(progress),
    }
    shape = shapes.get(options.get("decay_type", "cosine"))
    return None if shape is None else max(0.0, shape * (1 - floor) + floor)


def one_cycle_factor(step: int, total: int, warmup: int) -> float:
    """torch's OneCycleLR (cosine, two phases) as a multiple of the peak: up for `warmup` steps, then down."""
    start, end = 1 / ONE_CYCLE_DIV, 1 / ONE_CYCLE_DIV / ONE_CYCLE_FINAL_DIV
    rise = max(1, warmup) - 1
    if step <= rise:
        a, b, pct = start, 1.0, step / max(1, rise)
    else:
        a, b, pct = 1.0, end, (step - rise) / max(1, total - 1 - rise)
    return b + (a - b) * (math.cos(math.pi * pct) + 1) / 2
