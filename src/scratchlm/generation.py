"""Samples from fixed prompts, and the numbers that show degeneration (loops, repeated punctuation)."""
from __future__ import annotations

from typing import Sequence

import torch

DEFAULT_SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1}


def distinct_n(tokens: Sequence, n: int) -> float:
    """Share of n-grams that are distinct (1.0: no repeats; near 0: a loop)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_share(tokens: Sequence, n: int = 4) -> float:
    """Share of positions covered by an n-gram that occurs more than once in the sequence."""
    if len(tokens) < n:
        return 0.0
    seen: dict[tuple, int] = {}
    for i in range(len(tokens) - n + 1):
        seen[tuple(tokens[i:i + n])] = seen.get(tuple(tokens[i:i + n]), 0) + 1
    covered = set()
    for i in range(len(tokens) - n + 1):
        if seen[tuple(tokens[i:i + n])] > 1:
            covered.update(range(i, i + n))
    return len(covered) / len(tokens)


def repetition_metrics(token_lists: Sequence[Sequence[int]]) -> dict[str, float]:
    if not token_lists:
        return {}
    count = len(token_lists)
    return {
        "distinct_1": sum(distinct_n(t, 1) for t in token_lists) / count,
        "distinct_2": sum(distinct_n(t, 2) for t in token_lists) / count,
        "repeated_4gram_share": sum(repeated_ngram_share(t, 4) for t in token_lists) / count,
    }


@torch.no_grad()
def generate_samples(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, seed: int = 0,
                     **sampling) -> tuple[list[str], dict[str, float]]:
    """Sample one continuation per prompt, leaving the caller's RNG state untouched."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    options = {**DEFAULT_SAMPLING, **sampling}
    texts, new_tokens = [], []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for prompt in prompts:
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=tokenizer.eos_token_id, **options)[0]
            continuation = output[inputs["input_ids"].shape[1]:].tolist()
            new_tokens.append(continuation)
            texts.append(prompt + tokenizer.decode(continuation, skip_special_tokens=True))
    model.train(was_training)
    return texts, repetition_metrics(new_tokens)
