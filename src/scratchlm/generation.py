"""Samples from fixed prompts, and the numbers that show degeneration (loops, repeated punctuation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import ScratchError

DEFAULT_SAMPLING = {"do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1}


def distinct_n(tokens: Sequence, n: int) -> float:
    """Share of n-grams that are distinct (1.0: no repeats; near 0: a loop)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_share(tokens: Sequence, n: int = 4) -> float:
    """Share of positions covered by an n-gram that occurs more than once in the sequence."""
    if len(tokens) < n:
        return 0.0
    seen: dict[tuple, int] = {}
    for i in range(len(tokens) - n + 1):
        seen[tuple(tokens[i : i + n])] = seen.get(tuple(tokens[i : i + n]), 0) + 1
    covered = set()
    for i in range(len(tokens) - n + 1):
        if seen[tuple(tokens[i : i + n])] > 1:
            covered.update(range(i, i + n))
    return len(covered) / len(tokens)


def longest_repeat_share(tokens: Sequence) -> float:
    """Length of the longest run of tokens that occurs twice (overlaps allowed), over the sequence length."""
    longest = 0
    for shift in range(1, len(tokens)):  # compare the sequence with itself shifted: O(n^2), n is short
        run = 0
        for i in range(len(tokens) - shift):
            run = run + 1 if tokens[i] == tokens[i + shift] else 0
            longest = max(longest, run)
    return longest / len(tokens) if tokens else 0.0


def sample_metrics(tokens: Sequence[int]) -> dict[str, float]:
    return {
        "distinct_1": distinct_n(tokens, 1),
        "distinct_2": distinct_n(tokens, 2),
        "repeated_4gram_share": repeated_ngram_share(tokens, 4),
        "longest_repeat_share": longest_repeat_share(tokens),
    }


def repetition_metrics(token_lists: Sequence[Sequence[int]]) -> dict[str, float]:
    """`sample_metrics` averaged over samples."""
    if not token_lists:
        return {}
    per_sample = [sample_metrics(t) for t in token_lists]
    return {key: sum(m[key] for m in per_sample) / len(per_sample) for key in per_sample[0]}


@dataclass
class Samples:
    prompts: list[str]
    texts: list[str]  # prompt + continuation
    tokens: list[list[int]]  # the continuations' token ids

    @property
    def metrics(self) -> dict[str, float]:
        return repetition_metrics(self.tokens)

    def rows(self) -> list[dict]:
        """One row per sample: prompt, text and its repetition metrics (for tracker tables)."""
        return [
            {"prompt": p, "text": t, **sample_metrics(ids)} for p, t, ids in zip(self.prompts, self.texts, self.tokens)
        ]


def position_limit(model) -> int | None:
    """How many positions a model with learned position embeddings has; None for rotary models."""
    config = model.config
    if config.model_type == "scratch_decoder":
        return config.max_position_embeddings if config.position_embedding == "learned" else None
    return getattr(config, "n_positions", None)  # GPT-2's table; the rotary families (Llama, Qwen3) have none


def generate_within_positions(model, prompt: list[int], max_new_tokens: int, eos_token_id, **options) -> list[int]:
    """A continuation of `prompt` from a learned-position model that slides its context past its last position.

    Generation goes on in pieces, each conditioned on the last half of the positions, as nanoGPT crops its
    context (one piece while the sequence fits).
    """
    limit = position_limit(model)
    device = next(model.parameters()).device
    sequence, produced, keep = torch.tensor(prompt, device=device), 0, max(1, limit // 2)
    while produced < max_new_tokens:
        context = sequence if len(sequence) < limit else sequence[-keep:]
        step = min(max_new_tokens - produced, limit - len(context))
        output = model.generate(
            input_ids=context[None],
            attention_mask=torch.ones_like(context)[None],
            max_new_tokens=step,
            eos_token_id=eos_token_id,
            **options,
        )[0]
        new = output[len(context) :]
        sequence = torch.cat([sequence, new])
        produced += len(new)
        if len(new) < step or (eos_token_id is not None and eos_token_id in new.tolist()):
            break  # the model ended the text
    return sequence[len(prompt) :].tolist()


# A 124M model's KV cache for this many samples of a few hundred tokens stays under a gigabyte.
PROMPTS_PER_CALL = 32


def prompt_token_ids(tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if ids:
        return list(ids)
    # an empty prompt: sample from the start of a document
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise ScratchError("an empty prompt needs a bos or eos token to start from; give some text")
    return [start]


def continue_together(model, prompts: list[list[int]], max_new_tokens: int, eos_token_id, **options) -> list[list[int]]:
    """Continuations of several prompts from one `generate` call, left-padded to the longest.

    A small model's sampling waits on the per-token work of `generate`, not on arithmetic, so the prompts
    share it. Each row is padded with its own first token: transformers 5.17 counts padding toward the
    repetition penalty (newer releases skip it), and a token the prompt already has changes nothing.
    """
    device = next(model.parameters()).device
    width = max(len(ids) for ids in prompts)
    input_ids = torch.tensor([[ids[0]] * (width - len(ids)) + ids for ids in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
    output = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        **options,
    )
    stops = set() if eos_token_id is None else set(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id])
    continuations = []
    for row in output[:, width:].tolist():
        # a row that ended before the others is filled with padding: keep it up to its end token, as alone
        end = next((i + 1 for i, token in enumerate(row) if token in stops), len(row))
        continuations.append(row[:end])
    return continuations


@torch.no_grad()
def generate_samples(
    model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, seed: int = 0, **sampling
) -> Samples:
    """Sample one continuation per prompt, leaving the caller's RNG state untouched.

    The prompts are continued together, unless a learned-position model must slide its context to reach
    `max_new_tokens`; then one at a time.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    options = {**DEFAULT_SAMPLING, **sampling}
    eos = options.pop("eos_token_id", tokenizer.eos_token_id)  # None: never stop early
    options.setdefault("pad_token_id", tokenizer.pad_token_id)
    token_ids = [prompt_token_ids(tokenizer, prompt) for prompt in prompts]
    limit = position_limit(model)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if limit is not None and max(map(len, token_ids), default=0) + max_new_tokens > limit:
            continuations = [generate_within_positions(model, ids, max_new_tokens, eos, **options) for ids in token_ids]
        else:
            continuations = [
                continuation
                for start in range(0, len(token_ids), PROMPTS_PER_CALL)
                for continuation in continue_together(
                    model, token_ids[start : start + PROMPTS_PER_CALL], max_new_tokens, eos, **options
                )
            ]
    model.train(was_training)
    texts = [prompt + tokenizer.decode(ids, skip_special_tokens=True) for prompt, ids in zip(prompts, continuations)]
    return Samples(list(prompts), texts, continuations)


# ---------------------------------------------------------------------------------------------
# Prompts from the run's own held-out text
# ---------------------------------------------------------------------------------------------
PROMPT_WORDS = 3
PROMPT_TOKENS = 8
HELDOUT_BLOCKS_READ = 256


def heldout_token_rows(blocks, limit: int = HELDOUT_BLOCKS_READ):
    """The token ids of the first `limit` held-out blocks, as lists."""
    for row in range(min(len(blocks), limit)):
        yield [int(t) for t in blocks[row]["input_ids"]]


def document_start_prompts(blocks, tokenizer, separator_id: int, count: int) -> list[str]:
    """The first words (at most PROMPT_WORDS, from PROMPT_TOKENS tokens, on the first line) of the first
    `count` documents that start in the held-out `blocks`, where documents are joined by `separator_id` and
    the first block starts with one: how the run's own corpus begins a text."""
    prompts: list[str] = []
    for row, ids in enumerate(heldout_token_rows(blocks)):
        starts = ([0] if row == 0 else []) + [i + 1 for i, t in enumerate(ids) if t == separator_id]
        for start in starts:
            head = ids[start : start + PROMPT_TOKENS]
            if separator_id in head:
                head, cut_off = head[: head.index(separator_id)], False
            elif len(head) < PROMPT_TOKENS:
                continue  # the block ends inside the document's first words
            else:
                cut_off = True
            text = tokenizer.decode(head, skip_special_tokens=True).rstrip("\ufffd")  # a byte cut mid-character
            lines = text.strip().splitlines()
            words = lines[0].split() if lines else []
            if cut_off and len(lines) == 1 and len(words) > 1 and not text[-1].isspace():
                words = words[:-1]  # a word cut short
            prompt = " ".join(words[:PROMPT_WORDS])
            if prompt and prompt not in prompts:
                prompts.append(prompt)
            if len(prompts) == count:
                return prompts
    return prompts


def prompts_foreign_to(prompts: Sequence[str], blocks, tokenizer) -> list[str]:
    """The prompts most of whose characters never occur in the held-out `blocks`' text: a model trained on
    that corpus has never seen them, so its continuation says little."""
    seen: set[str] = set()
    for ids in heldout_token_rows(blocks):
        seen.update(tokenizer.decode(ids, skip_special_tokens=True))
    foreign = []
    for prompt in prompts:
        chars = [c for c in prompt if not c.isspace()]
        if chars and sum(c in seen for c in chars) * 2 < len(chars):
            foreign.append(prompt)
    return foreign
