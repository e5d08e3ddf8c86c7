"""Each bad input: one `error:` line naming the thing and the fix, exit status 2, nothing overwritten."""

import json
import subprocess
import sys

import pytest

from scratchlm.errors import run_cli

import pretrain_gpt2_zh
from conftest import ROOT

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")


def fails_with(capsys, tmp_path, *flags, recipe=pretrain_gpt2_zh, config=DEBUG):
    argv = [
        "--config",
        config,
        "--output_dir",
        str(tmp_path / "out"),
        "--tokenizer_name_or_path",
        str(tmp_path / "tok"),
        *map(str, flags),
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(recipe.cli, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def corpus(train_file, tokenizer) -> list:
    return ["--train_files", train_file, "--tokenizer_name_or_path", tokenizer]


def test_missing_corpus_path(capsys, tmp_path):
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "nope.txt")
    assert "nope.txt matches no file" in err


def test_empty_corpus_file(capsys, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert "empty.txt is empty" in fails_with(capsys, tmp_path, "--train_files", tmp_path / "empty.txt")


def test_whitespace_only_corpus(capsys, tmp_path):
    (tmp_path / "blank.txt").write_text(" \n\t\n   \n\n")
    assert "has no text" in fails_with(capsys, tmp_path, "--train_files", tmp_path / "blank.txt")


def test_invalid_utf8_names_file_and_offset_and_replace_works(capsys, tmp_path, zh_docs):
    good = "\n".join(zh_docs[:100]).encode("utf-8")
    (tmp_path / "latin.txt").write_bytes(good + b"\ncaf\xe9 au lait\n")
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "latin.txt")
    assert f"latin.txt is not valid UTF-8 at byte offset {len(good) + 4}" in err and "--encoding_errors replace" in err
    from scratchlm.arguments import DataArguments
    from scratchlm.data.sources import load_corpus

    corpus = load_corpus(DataArguments(train_files=[str(tmp_path / "latin.txt")], encoding_errors="replace"))
    texts = list(corpus.train["text"]) + list(corpus.validation["text"])
    assert "caf\ufffd au lait" in texts


@pytest.mark.parametrize("encoding", ["GB18030", "BIG5", "UTF-16"])
def test_a_chinese_corpus_in_a_legacy_encoding_is_named_with_the_command_that_converts_it(
    capsys, tmp_path, zh_docs, encoding
):
    path = tmp_path / "novel.txt"
    path.write_bytes("\n".join(zh_docs[:200]).encode(encoding, errors="ignore"))
    err = fails_with(capsys, tmp_path, "--train_files", path)
    assert f"it reads as {encoding}: convert it to UTF-8, e.g. `iconv -f {encoding} -t UTF-8 {path} >" in err
    assert "--encoding_errors replace" not in err  # it would turn the whole text into replacement characters


def test_compressed_corpus_files_that_are_not_utf8_cut_short_or_parquet(capsys, tmp_path, zh_docs):
    import gzip

    good = "\n".join(zh_docs[:100]).encode("utf-8")
    (tmp_path / "latin.txt.gz").write_bytes(gzip.compress(good + b"\ncaf\xe9 au lait\n"))
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "latin.txt.gz")
    assert f"not valid UTF-8 at byte offset {len(good) + 4} of its decompressed text" in err
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "latin.txt.gz", "--encoding_errors", "replace")
    assert "decompress it and pass the result with --encoding_errors replace" in err  # datasets would fail later
    whole = gzip.compress(good)
    (tmp_path / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "cut.txt.gz")
    assert "cut.txt.gz cannot be decompressed" in err and "whole gz file" in err
    (tmp_path / "blocks.parquet.gz").write_bytes(whole)
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "blocks.parquet.gz")
    assert "blocks.parquet.gz has an unsupported extension" in err and ".jsonl.gz" in err
    lines = [json.dumps({"text": f"第{i}行"}, ensure_ascii=False) for i in range(20)]
    lines[6] = '{"text": "broken'
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode("utf-8")))
    assert "c.jsonl.gz line 7 is not valid JSON" in fails_with(
        capsys, tmp_path, "--train_files", tmp_path / "c.jsonl.gz"
    )


def test_jsonl_line_that_is_not_json(capsys, tmp_path):
    lines = [json.dumps({"text": f"第{i}行"}, ensure_ascii=False) for i in range(20)]
    lines[6] = '{"text": "broken'
    (tmp_path / "c.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert "c.jsonl line 7 is not valid JSON" in fails_with(capsys, tmp_path, "--train_files", tmp_path / "c.jsonl")


def test_json_without_text_field(capsys, tmp_path):
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"body": f"第{i}行"}) for i in range(20)))
    err = fails_with(capsys, tmp_path, "--train_files", tmp_path / "c.jsonl")
    assert "no 'text' field (it has: body)" in err and "--text_column" in err


def test_tokenizer_path_missing(capsys, tmp_path, zh_file):
    err = fails_with(capsys, tmp_path, "--train_files", zh_file, "--train_tokenizer_if_missing", "false")
    assert "tok does not exist locally" in err and "train_tokenizer.py" in err


def test_block_size_larger_than_positions(capsys, tmp_path, zh_file):
    err = fails_with(capsys, tmp_path, "--train_files", zh_file, "--block_size", 64, "--n_positions", 32)
    assert "--block_size 64 is larger than the model's positions" in err


def test_unknown_builtin_corpus(capsys, tmp_path):
    assert "zh_demo" in fails_with(capsys, tmp_path, "--corpus", "wikipedia_zh")


def test_no_corpus_is_named_before_a_tokenizer_is_trained(capsys, tmp_path, caplog):
    caplog.set_level("INFO", logger="scratchlm")
    assert "no corpus given" in fails_with(capsys, tmp_path)
    assert "training a bytelevel_bpe tokenizer" not in caplog.text


def test_hub_dataset_while_offline_fails_fast(capsys, tmp_path):
    err = fails_with(capsys, tmp_path, "--dataset_name", "wikitext")
    assert "cannot be reached" in err


@pytest.mark.slow
def test_the_script_exits_non_zero_without_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes/pretrain_gpt2_zh.py"),
            "--config",
            DEBUG,
            "--train_files",
            str(tmp_path / "missing.txt"),
            "--output_dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --train_files")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--traceback", "--debug"])
def test_traceback_on_request(tmp_path, flag):
    argv = [
        "--config",
        DEBUG,
        "--train_files",
        str(tmp_path / "missing.txt"),
        "--output_dir",
        str(tmp_path / "o"),
        flag,
    ]
    from scratchlm.errors import ScratchError

    with pytest.raises(ScratchError, match="missing.txt matches no file"):
        run_cli(pretrain_gpt2_zh.cli, argv)


# ---------------------------------------------------------------------------------------------
# Round two: files that change or break under the run, configs of another recipe, absurd numbers, Ctrl-C
# ---------------------------------------------------------------------------------------------
def test_a_corpus_file_that_changes_while_it_is_read(capsys, tmp_path, zh_file, monkeypatch):
    import datasets

    real_load = datasets.load_dataset

    def load_while_another_program_appends(*args, **kwargs):
        with open(zh_file, "a", encoding="utf-8") as handle:
            handle.write("还在写的一行。\n")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_while_another_program_appends)
    err = fails_with(capsys, tmp_path, "--train_files", zh_file)
    assert err == (
        f"error: corpus file {zh_file} changed while it was being read (its size or modification time "
        "moved): wait until whatever writes it has finished, or train on a copy that nothing writes to"
    )
    assert not (tmp_path / "tok").exists() and not (tmp_path / "out").exists()


def test_a_truncated_tokenizer_json(capsys, tmp_path, zh_file, gpt_tokenizer_dir):
    import shutil

    tok = tmp_path / "tok"
    shutil.copytree(gpt_tokenizer_dir, tok)
    content = (tok / "tokenizer.json").read_bytes()
    (tok / "tokenizer.json").write_bytes(content[: len(content) // 2])
    err = fails_with(capsys, tmp_path, "--train_files", zh_file)
    assert err.startswith(f"error: tokenizer file {tok / 'tokenizer.json'} is not valid JSON (cut short")
    assert (tok / "tokenizer.json").read_bytes() == content[: len(content) // 2]  # left as it was


def test_a_run_config_of_the_other_recipe(capsys, tmp_path, zh_file):
    import yaml

    from scratchlm.objectives import parse_run_settings
    from scratchlm.training import resolved_config

    bert = parse_run_settings(["--config", str(ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml")])
    run_config = tmp_path / "run_config.yaml"  # as a BERT run writes it into its output folder
    run_config.write_text(yaml.safe_dump(resolved_config(*bert.parsed), sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(pretrain_gpt2_zh.cli, ["--config", str(run_config), "--train_files", str(zh_file)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: config file {run_config} names objective masked, but recipes/pretrain_gpt2_zh.py "
        "pretrains a causal LM: run it with the masked recipe, or fix the config"
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max_steps", "-5"], "--max_steps must be a positive number of optimizer steps (or -1"),
        (["--max_steps", "0"], "--max_steps must be a positive number of optimizer steps"),
        (["--max_steps", "20000000000"], "--max_steps 20,000,000,000 is more than 1,000,000,000 optimizer steps"),
        (["--block_size", "0"], "--block_size must be at least 2, got 0"),
        (["--preprocessing_num_workers", "0"], "--preprocessing_num_workers must be a positive integer, got 0"),
        (["--seed", "-1"], "--seed must be 0 or a positive integer, got -1"),
        (["--eval_steps", "0"], "--eval_steps must be positive"),
        (["--fp16", "true"], "--fp16 true needs a CUDA device"),
        (["--eval_minimal_pairs_per_paradigm", "0"], "--eval_minimal_pairs_per_paradigm must be a positive integer"),
    ],
)
def test_absurd_numbers(capsys, tmp_path, zh_file, flags, message):
    assert message in fails_with(capsys, tmp_path, "--train_files", zh_file, *flags)


def test_prepare_with_no_processes(capsys, tmp_path):
    from scratchlm.cli import main as scratchlm

    with pytest.raises(SystemExit) as exit_info:
        scratchlm(["prepare", DEBUG, "--out", str(tmp_path / "p"), "--num_proc", "0"])
    assert exit_info.value.code == 2
    assert "argument --num_proc: must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_ctrl_c_during_tokenizer_training_leaves_no_tokenizer(capsys, tmp_path, zh_file, monkeypatch):
    from scratchlm import tokenizer

    import train_tokenizer

    real = tokenizer._Tally.__iter__

    def interrupted_half_way(self):
        for i, text in enumerate(real(self)):
            if i == 100:
                raise KeyboardInterrupt  # what SIGINT raises in the Python code the Rust trainer calls back
            yield text

    monkeypatch.setattr(tokenizer._Tally, "__iter__", interrupted_half_way)
    out = tmp_path / "tok"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_tokenizer.cli, ["--train_files", str(zh_file), "--vocab_size", "500", "--output_dir", str(out)])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("stopped: interrupted (Ctrl-C); nothing finished was overwritten") and "\n" not in err
    assert not out.exists()


def test_a_warmup_longer_than_the_run_is_named(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    import logging

    argv = ["--config", DEBUG, "--train_files", str(zh_file), "--tokenizer_name_or_path", str(gpt_tokenizer_dir)]
    argv += ["--output_dir", str(tmp_path / "out"), "--max_steps", "4", "--warmup_steps", "10", "--eval_steps", "4"]
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        pretrain_gpt2_zh.cli(argv)
    assert any("--warmup_steps 10 is longer than the run's 4 steps" in r.getMessage() for r in caplog.records)


def test_a_config_folder_names_the_yaml_files_in_it(capsys, tmp_path):
    with pytest.raises(SystemExit):
        run_cli(pretrain_gpt2_zh.cli, ["--config", str(ROOT / "recipes/pretrain_gpt2_zh")])
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --config {ROOT / 'recipes/pretrain_gpt2_zh'} is a folder: pass one of its YAML")
    assert "config_debug.yaml" in err


@pytest.mark.parametrize(
    "family",
    [
        ["--model_type", "llama"],
        ["--model_type", "qwen3"],
        ["--model_type", "scratch_decoder", "--position_embedding", "rotary"],
    ],
)
def test_an_odd_head_dimension_with_rotary_positions(capsys, tmp_path, zh_file, family):
    err = fails_with(capsys, tmp_path, "--train_files", zh_file, "--n_embd", 36, "--n_head", 4, *family)
    assert "--n_embd 36 / --n_head 4 gives heads of 9 dimensions; rotary positions" in err and "--n_embd 40" in err
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_path_to_its_json_file_names_the_folder(capsys, tmp_path, zh_file, gpt_tokenizer_dir):
    err = fails_with(
        capsys, tmp_path, "--train_files", zh_file, "--tokenizer_name_or_path", gpt_tokenizer_dir / "tokenizer.json"
    )
    assert f"is a file: pass the folder that holds it ({gpt_tokenizer_dir})" in err


def test_a_gpt_style_tokenizer_for_the_masked_lm_names_the_flag_that_adds_its_tokens(
    capsys, tmp_path, zh_file, gpt_tokenizer_dir
):
    import pretrain_bert_mlm

    bert_debug = str(ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml")
    err = fails_with(capsys, tmp_path, *corpus(zh_file, gpt_tokenizer_dir), recipe=pretrain_bert_mlm, config=bert_debug)
    assert "has no cls_token, sep_token, mask_token" in err and "train_tokenizer.py --special_tokens_style bert" in err
    assert not (tmp_path / "out").exists()


def test_a_data_cache_dir_that_is_a_file(capsys, tmp_path, zh_file, gpt_tokenizer_dir):
    cache = tmp_path / "cache"
    cache.write_text("mine")
    err = fails_with(
        capsys,
        tmp_path,
        *corpus(zh_file, gpt_tokenizer_dir),
        "--data_cache_dir",
        cache,
    )
    assert err == f"error: --data_cache_dir {cache} is a file, not a folder: choose another --data_cache_dir"
    assert cache.read_text() == "mine" and not (tmp_path / "out").exists()


def test_resume_from_a_runs_output_folder_says_to_pass_a_checkpoint(capsys, tmp_path, zh_file, gpt_tokenizer_dir):
    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    err = fails_with(
        capsys,
        tmp_path,
        *corpus(zh_file, gpt_tokenizer_dir),
        "--resume_from_checkpoint",
        run,
    )
    assert err == (
        f"error: --resume_from_checkpoint {run} is a run's output folder, not a checkpoint: pass one of its "
        f"checkpoint-N folders, or --output_dir {run} --resume_from_checkpoint true for the newest one"
    )


def test_train_tokenizer_into_a_file_is_one_line(capsys, tmp_path, zh_file):
    import train_tokenizer

    mine = tmp_path / "tok"
    mine.write_text("mine")
    with pytest.raises(SystemExit):
        run_cli(train_tokenizer.cli, ["--train_files", str(zh_file), "--vocab_size", "300", "--output_dir", str(mine)])
    assert (
        capsys.readouterr().err.strip()
        == f"error: tokenizer directory {mine} is a file: choose a new path for the tokenizer"
    )
    assert mine.read_text() == "mine"


def test_finetune_cola_on_a_tokenizer_folder_or_too_short_a_sequence(capsys, tmp_path, gpt_tokenizer_dir, shared_data):
    import finetune_cola

    cola = ["--train_file", str(shared_data / "cola/train.tsv"), "--validation_file", str(shared_data / "cola/dev.tsv")]
    base = [
        "--config",
        str(ROOT / "recipes/finetune_cola/config_debug.yaml"),
        *cola,
        "--output_dir",
        str(tmp_path / "c"),
    ]
    for flags, said in [
        (
            ["--model_name_or_path", str(gpt_tokenizer_dir)],
            f"--model_name_or_path {gpt_tokenizer_dir} is not a model folder",
        ),
        (
            ["--model_name_or_path", str(gpt_tokenizer_dir), "--max_seq_length", "1"],
            "--max_seq_length must be at least 3",
        ),
    ]:
        with pytest.raises(SystemExit) as refused:
            run_cli(finetune_cola.cli, [*base, *flags])
        err = capsys.readouterr().err.strip()
        assert refused.value.code == 2 and err.startswith(f"error: {said}") and "\n" not in err, err
    assert not (tmp_path / "c").exists()


def test_resume_from_a_final_model_says_it_is_not_a_checkpoint(capsys, tmp_path, zh_file, gpt_tokenizer_dir):
    final = tmp_path / "final"
    final.mkdir()
    (final / "run_manifest.json").write_text(json.dumps({"config": {}, "global_step": 8}))  # as finish_run writes it
    err = fails_with(
        capsys,
        tmp_path,
        *corpus(zh_file, gpt_tokenizer_dir),
        "--resume_from_checkpoint",
        final,
    )
    assert "it is a run's final model, not a checkpoint-N: it holds no optimizer state to resume from" in err


def test_a_folder_on_a_read_only_filesystem_is_one_line(capsys, tmp_path, zh_file, gpt_tokenizer_dir, monkeypatch):
    """Root ignores permission bits, so the filesystem's refusal is injected where each folder is first written."""
    import builtins
    import errno
    from pathlib import Path

    from scratchlm.runlock import LOCK_NAME

    real_open, real_touch = builtins.open, Path.touch

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    def open_(file, *args, **kwargs):
        return refuse(file) if str(file).endswith(LOCK_NAME) else real_open(file, *args, **kwargs)

    def touch(self, *args, **kwargs):
        return refuse(self) if ".scratchlm-write-test-" in self.name else real_touch(self, *args, **kwargs)

    base = corpus(zh_file, gpt_tokenizer_dir)
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", open_)
        err = fails_with(capsys, tmp_path, *base)
    assert err == (
        f"error: --output_dir {tmp_path / 'out'} cannot be written (Read-only file system): choose another --output_dir"
    )
    with monkeypatch.context() as patch:
        patch.setattr(Path, "touch", touch)
        err = fails_with(capsys, tmp_path, *base, "--data_cache_dir", tmp_path / "cache")
    assert err == (
        f"error: --data_cache_dir {tmp_path / 'cache'} cannot be written (Read-only file system): choose another "
        "--data_cache_dir"
    )


# ---------------------------------------------------------------------------------------------
# Trackers (--report_to): Trainer starts them at the first step, after the corpus is tokenized
# ---------------------------------------------------------------------------------------------
def test_a_misspelt_or_missing_tracker_stops_the_run_before_any_work(capsys, tmp_path, monkeypatch):
    err = fails_with(capsys, tmp_path, "--report_to", "wnadb")
    assert err.startswith("error: --report_to: wnadb is not supported") and "wandb" in err
    assert not (tmp_path / "tok").exists()

    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a)
    )
    err = fails_with(capsys, tmp_path, "--report_to", "tensorboard")
    assert "--report_to tensorboard needs the tensorboard package" in err and 'pip install -e ".[tensorboard]"' in err


def test_wandb_without_a_login_in_a_job_without_a_terminal_is_one_line(tmp_path, zh_file, gpt_tokenizer_dir):
    home = tmp_path / "home"  # no ~/.netrc, no wandb settings: the state of a machine where nobody ran `wandb login`
    home.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
    }
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes/pretrain_gpt2_zh.py"),
            "--config",
            DEBUG,
            *corpus(zh_file, gpt_tokenizer_dir),
            "--output_dir",
            str(tmp_path / "out"),
            "--report_to",
            "wandb",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --report_to wandb could not log this run (") and "WANDB_MODE=offline" in last
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # the same command runs once the login is fixed
