"""Shifted windows: each epoch after the first cuts the packed stream at a new seeded offset."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset

from scratchlm.data.packing import Packer, PackingSpec
from scratchlm.data.windows import ShiftedWindows, training_windows

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")


def packed(spec: PackingSpec, documents: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    docs = [rng.integers(10, 100, size=rng.integers(1, 30)).tolist() for _ in range(documents)]
    blocks = Packer(spec).add_documents(docs)
    return Dataset.from_dict({"input_ids": blocks.tolist()}), blocks


@pytest.mark.parametrize(
    "spec",
    [PackingSpec(16, 0), PackingSpec(16, 2, block_prefix=(1,), block_suffix=(2,))],
    ids=["causal", "masked"],
)
def test_every_epoch_covers_the_stream_once_from_a_new_offset(spec):
    dataset, blocks = packed(spec)
    content = blocks[:, len(spec.block_prefix) : spec.block_size - len(spec.block_suffix)].ravel()
    windows = ShiftedWindows(dataset, spec, seed=3)
    offsets = set()
    for epoch in range(6):
        windows.set_epoch(epoch)
        rows = torch.stack([windows[i]["input_ids"] for i in range(len(windows))]).numpy()
        assert rows.shape == blocks.shape
        assert (rows[:, : len(spec.block_prefix)] == blocks[:, : len(spec.block_prefix)]).all()
        assert (
            rows[:, spec.block_size - len(spec.block_suffix) :] == blocks[:, spec.block_size - len(spec.block_suffix) :]
        ).all()
        got = rows[:, len(spec.block_prefix) : spec.block_size - len(spec.block_suffix)].ravel()
        # the stream read from the epoch's offset, the last window wrapping around to its start
        assert (got == np.roll(content, -windows.offset)).all()
        if epoch == 0:
            assert windows.offset == 0 and (rows == blocks).all()
        else:
            assert 0 < windows.offset < spec.content_size
        offsets.add(windows.offset)
        batch = windows.__getitems__([3, len(windows) - 1, 0])
        assert [b["input_ids"].tolist() for b in batch] == [rows[3].tolist(), rows[-1].tolist(), rows[0].tolist()]
    assert len(offsets) >= 4
    again = ShiftedWindows(dataset, spec, seed=3)
    other = ShiftedWindows(dataset, spec, seed=4)
    assert [again.offset_of(e) for e in range(1, 6)] == [windows.offset_of(e) for e in range(1, 6)]
    assert [other.offset_of(e) for e in range(1, 6)] != [windows.offset_of(e) for e in range(1, 6)]


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield from ()


def test_fixed_order_and_streams_are_left_as_they_are():
    spec = PackingSpec(16, 0)
    dataset, _ = packed(spec)
    assert training_windows(dataset, spec, "fixed", 0) is dataset
    stream = Stream()
    assert training_windows(stream, spec, "shifted", 0) is stream


def losses(out):
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def run(tmp_path, zh_file, tok, name, *extra):
    out = tmp_path / name
    # 16 blocks, 4 a step: 4 steps an epoch, 3 epochs
    epochs = ["--max_train_samples", 16, "--max_steps", 12, "--logging_steps", 1, "--eval_steps", 12]
    pretrain_gpt2_zh.cli(recipe_argv(DEBUG, zh_file, tok, out, *epochs, "--save_steps", 12, *extra))
    return losses(out)


@pytest.mark.slow
def test_windows_move_after_the_first_epoch_also_in_dataloader_workers(tmp_path, zh_file, gpt_tokenizer_dir):
    fixed = run(tmp_path, zh_file, gpt_tokenizer_dir, "fixed", "--window_order", "fixed")
    shifted = run(tmp_path, zh_file, gpt_tokenizer_dir, "shifted")
    in_workers = run(tmp_path, zh_file, gpt_tokenizer_dir, "workers", "--dataloader_num_workers", "2")
    assert len(fixed) == len(shifted) == 12
    assert shifted[:4] == pytest.approx(fixed[:4], abs=1e-6)  # the first epoch reads the packed blocks
    assert all(abs(a - b) > 1e-4 for a, b in zip(shifted[4:], fixed[4:]))
    assert in_workers == pytest.approx(shifted, abs=1e-6)


def test_persistent_workers_are_refused_with_shifted_windows(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    from scratchlm.errors import run_cli

    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "o", "--dataloader_num_workers", 1)
    with pytest.raises(SystemExit):
        run_cli(pretrain_gpt2_zh.cli, [*argv, "--dataloader_persistent_workers", "true"])
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: --dataloader_persistent_workers keeps each worker's copy")
        and "--window_order fixed" in err
    )


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
def test_a_compiled_run_trains_on_full_batches_and_still_evaluates_every_block(
    tmp_path, zh_file, gpt_tokenizer_dir, compiled
):
    from scratchlm.objectives import parse_run_settings
    from scratchlm.recipe import build_run

    def trainer_with_batch(batch: int):
        extra = ["--torch_compile", str(compiled).lower(), "--per_device_train_batch_size", batch]
        extra += ["--per_device_eval_batch_size", batch, "--max_eval_samples", 40]
        argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / f"out{batch}", *extra)
        return build_run(parse_run_settings(argv, objective="causal")).trainer

    trainer = trainer_with_batch(7)
    train_blocks, eval_blocks = len(trainer.train_dataset), len(trainer.eval_dataset)
    assert train_blocks % 7 and eval_blocks % 7, "the sizes must leave a shorter last batch for this test to bite"
    train_batches = [len(batch["input_ids"]) for batch in trainer.get_train_dataloader()]
    eval_batches = [len(batch["input_ids"]) for batch in trainer.get_eval_dataloader()]
    assert sum(eval_batches) == eval_blocks  # evaluation sees every held-out block either way
    if compiled:  # a shorter batch would compile the model again
        assert train_batches == [7] * (train_blocks // 7)
    else:
        assert sum(train_batches) == train_blocks and train_batches[-1] == train_blocks % 7
    assert trainer.args.dataloader_drop_last is False
