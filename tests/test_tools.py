"""Tools around a run: trackers, plots, the LR finder, the planner, sampling, the model card and publishing."""

import json
import logging
import math
import os
import time
from pathlib import Path

import pytest
import transformers

from scratchlm.cli import build_parser, config_flag_first
from scratchlm.cli import main as scratchlm
from scratchlm.errors import ScratchError, run_cli

import pretrain_gpt2_zh
from conftest import ROOT

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
PNG = b"\x89PNG\r\n\x1a\n"


def run_recipe(*flags):
    return pretrain_gpt2_zh.cli(["--config", DEBUG, *map(str, flags)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, zh_docs):
    path = tmp_path_factory.mktemp("corpus") / "zh.txt"
    path.write_text("\n".join(zh_docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory, corpus, gpt_tokenizer_dir):
    tmp = tmp_path_factory.mktemp("tb")
    metrics = run_recipe(
        "--train_files",
        corpus,
        "--tokenizer_name_or_path",
        gpt_tokenizer_dir,
        "--output_dir",
        tmp / "run",
        "--report_to",
        "tensorboard",
    )
    # Trainer's default: output_dir/runs/<run>/, one events file per writer (training, final evaluation)
    (logs,) = {events.parent for events in (tmp / "run" / "runs").glob("*/events.out.tfevents.*")}
    return tmp / "run", logs, metrics


def _wait_for_flush(path, keys, seconds=60):
    """On a busy machine wandb's writer may still be closing the file after teardown returns."""
    deadline = time.monotonic() + seconds
    while not all(key.encode() in (data := path.read_bytes()) for key in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    return data


def test_wandb_offline_run_has_the_keys_and_sample_tables(tmp_path, zh_file, gpt_tokenizer_dir, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_recipe(
        "--train_files",
        zh_file,
        "--tokenizer_name_or_path",
        gpt_tokenizer_dir,
        "--output_dir",
        tmp_path / "run",
        "--report_to",
        "wandb",
    )
    # teardown stops wandb's writer process, which is what closes (and so flushes) the offline record file
    wandb.teardown()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (records,) = run_dir.glob("run-*.wandb")
    keys = (
        "train/loss",
        "train/learning_rate",
        "train/grad_norm",
        "train/tokens_seen",
        "train/tokens_per_second",
        "eval/loss",
        "eval/unigram_loss",
        "eval/bits_per_char",
        "eval/perplexity",
        "eval/samples",
        "eval/samples_distinct_2",
        "eval/samples_longest_repeat_share",
    )
    logged = _wait_for_flush(records, keys)
    for key in keys:
        assert key.encode() in logged, key
    tables = sorted((run_dir / "files" / "media" / "table" / "eval").glob("samples_*.table.json"))
    assert len(tables) == 2  # evaluations at steps 4 and 8; the final one is step 8's, not repeated
    table = json.loads(tables[0].read_text())
    assert table["columns"] == [
        "step",
        "prompt",
        "text",
        "distinct_1",
        "distinct_2",
        "repeated_4gram_share",
        "longest_repeat_share",
    ]
    # the debug config's "the" gives way to a held-out document's first words on this Chinese corpus
    assert [row[1] for row in table["data"]][0] == "中国" and len(table["data"]) == 2
    assert all(text.startswith(prompt) for _, prompt, text, *_ in table["data"])


def test_tensorboard_has_the_scalars_and_sample_text(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, tb, _ = tensorboard_run
    events = EventAccumulator(str(tb)).Reload()
    scalars = set(events.Tags()["scalars"])
    for key in (
        "train/loss",
        "train/learning_rate",
        "train/grad_norm",
        "train/tokens_seen",
        "train/tokens_per_second",
        "eval/loss",
        "eval/unigram_loss",
        "eval/samples_distinct_2",
    ):
        assert key in scalars, key
    seen = [e.value for e in events.Scalars("train/tokens_seen")]
    assert seen[:2] == [2 * 4 * 32, 4 * 4 * 32]  # logged every 2 steps, 4 blocks of 32 tokens per step
    assert all(e.value > 0 for e in events.Scalars("train/tokens_per_second"))
    text = events.Tensors("eval/samples/text_summary")
    assert len(text) == 2 and "中国" in text[0].tensor_proto.string_val[0].decode()


def test_plot_writes_pngs(tensorboard_run, capsys):
    run, _, _ = tensorboard_run
    scratchlm(["plot", str(run)])
    written = capsys.readouterr().out.split()
    assert sorted(os.path.basename(p) for p in written) == ["learning_rate.png", "loss.png", "throughput.png"]
    for path in written:
        assert Path(path).read_bytes()[:8] == PNG


def test_plot_compares_runs_by_tokens_and_draws_a_matching_reference(
    tensorboard_run, tmp_path, corpus, gpt_tokenizer_dir, capsys, monkeypatch
):
    from scratchlm import plotting

    run, _, _ = tensorboard_run
    # The same config as the run: its curve becomes the reference. "wide": twice the batch, half the steps.
    other = tmp_path / "batch8"
    run_recipe("--train_files", corpus, "--tokenizer_name_or_path", gpt_tokenizer_dir, "--output_dir", other)
    wide = tmp_path / "wide"
    flags = ["--per_device_train_batch_size", 8, "--max_steps", 4, "--eval_steps", 2]
    run_recipe("--train_files", corpus, "--tokenizer_name_or_path", gpt_tokenizer_dir, "--output_dir", wide, *flags)
    monkeypatch.setattr(plotting, "REFERENCE_DIR", tmp_path / "references")
    reference = plotting.write_reference(other, tmp_path / "references" / "debug.json", "config_debug")
    assert json.loads(reference.read_text())["settings"]["n_embd"] == 32

    drawn = plotting.loss_curves(run, compare=[wide])
    assert [(role, curve["name"]) for role, curve in drawn] == [
        ("reference", "config_debug"),  # same settings as the run
        ("compare", "wide"),
        ("run", "run"),
    ]
    ran, wider = drawn[-1][1], drawn[1][1]
    assert ran["train"][0] == [0, json.loads((run / "all_results.json").read_text())["initial_loss"]]
    assert ran["x"] == "tokens" and ran["eval"][-1][0] == wider["eval"][-1][0] == 8 * 4 * 32  # by tokens, not steps
    assert [role for role, _ in plotting.loss_curves(wide)] == ["run"]  # its batch differs: no reference
    out = tmp_path / "plots"
    scratchlm(
        ["plot", str(run), "--compare", str(wide), "--out", str(out), "--write_reference", str(tmp_path / "c.json")]
    )
    printed = capsys.readouterr().out
    assert "reference curve of config_debug" in printed
    assert (out / "loss.png").read_bytes()[:8] == PNG
    assert plotting.load_curve(tmp_path / "c.json")["train"] == ran["train"]


def test_shipped_reference_curves_match_their_configs():
    from scratchlm import plotting
    from scratchlm.objectives import parse_run_settings
    from scratchlm.training import resolve_decay_length, resolved_config

    shipped = sorted(plotting.REFERENCE_DIR.glob("*.json"))
    assert shipped, "the demo configs ship their reference curves"
    for path in shipped:
        curve = json.loads(path.read_text())
        recipe, config = curve["name"].split(":")
        settings = parse_run_settings(["--config", str(ROOT / "recipes" / recipe / f"{config}.yaml")])
        # A run resolves an auto decay once its data is packed: the demo configs see their corpus 1.15 to 1.7 times.
        resolve_decay_length(settings.training, settings.training.max_steps, epochs=1.7)
        resolved = resolved_config(*settings.parsed)
        assert plotting.matching_reference(resolved) == curve, path
        assert (
            plotting.matching_reference({**resolved, "init_from": "outputs/gpt2-zh-demo"}) is None
        )  # not from scratch
        assert curve["x"] == "tokens" and len(curve["eval"]) >= 2 and curve["unigram"] > curve["eval"][-1][1]


def test_write_reference_never_replaces_a_file_that_is_not_a_curve(tmp_path, capsys):
    from scratchlm import plotting

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    for path, message in ((weights, "give a path ending in .json"), (other, "is not a curve JSON")):
        with pytest.raises(SystemExit) as exit_info:
            scratchlm(["plot", str(tmp_path), "--write_reference", str(path)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
        with pytest.raises(ScratchError):
            plotting.write_reference(tmp_path, path, "x")
    assert weights.read_bytes() == b"weights" and other.read_text() == '{"mine": 1}'


def test_plot_of_a_folder_without_a_run_is_one_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        scratchlm(["plot", str(tmp_path)])
    assert exit_info.value.code == 2 and "has no trainer_state.json" in capsys.readouterr().err


def test_model_card_and_the_upload_set(tensorboard_run):
    run, _, metrics = tensorboard_run
    card = (run / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "library_name: transformers" in front and "pipeline_tag: text-generation" in front and "gpt2" in front
    for needle in (
        "## Model",
        "## Tokenizer",
        "## Training data",
        "## Training",
        "## Results (held-out)",
        "## Samples",
        "## How to load",
        "## Limitations",
        "AutoModelForCausalLM",
        "tokens trained",
        f"| eval_loss | {metrics['eval_loss']:.4f} |",
        "characters per token",
        "a unigram model fitted on the training tokens",
    ):
        assert needle in body, needle
    assert "trust_remote_code" not in body  # stock GPT-2 needs no remote code
    assert f'AutoModelForCausalLM.from_pretrained("{run}")' in body  # not pushed: the local folder


class RecordingHub:
    """Stands in for the Hub client (Trainer's, which creates the repo, and ours, which uploads), and records
    what a push would upload."""

    pushes: list[dict] = []

    def __init__(self, **kwargs):
        pass

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, **kwargs):
        RecordingHub.pushes.append(kwargs)


@pytest.mark.parametrize("private_files", [False, True])
def test_the_push_uploads_the_model_but_no_checkpoint_nor_local_paths(
    tmp_path, zh_file, gpt_tokenizer_dir, monkeypatch, private_files
):
    import transformers.trainer
    from huggingface_hub.utils import filter_repo_objects

    from scratchlm import hub, training

    monkeypatch.setattr(training.run, "check_push_possible", lambda args: None)
    monkeypatch.setattr(transformers.trainer, "hf_api", RecordingHub)
    monkeypatch.setattr(hub, "HfApi", RecordingHub)
    RecordingHub.pushes.clear()
    out = tmp_path / "run"
    run_recipe(
        "--train_files",
        zh_file,
        "--tokenizer_name_or_path",
        gpt_tokenizer_dir,
        "--output_dir",
        out,
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "me/m",
        "--hub_private_files",
        str(private_files).lower(),
    )
    (push,) = RecordingHub.pushes  # one push, at the end, after the card and results were written
    assert push["repo_id"] == "me/m" and push["folder_path"] == str(out)
    files = [str(p.relative_to(out)) for p in sorted(out.rglob("*")) if p.is_file()]
    uploaded = set(filter_repo_objects(files, ignore_patterns=push["ignore_patterns"]))
    assert {
        "README.md",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "all_results.json",
        "samples.json",
    } <= uploaded
    assert not any(f.startswith(("checkpoint-", "_")) for f in uploaded)
    assert any(p.name.startswith("checkpoint-") for p in out.iterdir())
    private = {"training_args.bin", "run_config.yaml", "run_manifest.json"}
    assert private <= set(files)
    assert (private <= uploaded) if private_files else not (private & uploaded)
    if not private_files:  # what is uploaded names no local path
        assert not [
            f for f in uploaded if f.endswith((".json", ".md", ".yaml")) and str(tmp_path) in (out / f).read_text()
        ]


def test_uploading_while_training_needs_the_private_files_flag(capsys, tmp_path):
    with pytest.raises(SystemExit):
        run_cli(
            pretrain_gpt2_zh.cli,
            [
                "--config",
                DEBUG,
                "--output_dir",
                str(tmp_path / "o"),
                "--push_to_hub",
                "true",
                "--hub_strategy",
                "every_save",
            ],
        )
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("error: --hub_strategy every_save uploads while training") and "--hub_private_files true" in err
    )


def test_card_of_our_family_says_how_to_load_it(tmp_path, zh_file, gpt_tokenizer_dir):
    out = tmp_path / "run"
    run_recipe(
        "--train_files",
        zh_file,
        "--tokenizer_name_or_path",
        gpt_tokenizer_dir,
        "--output_dir",
        out,
        "--model_type",
        "scratch_decoder",
        "--max_steps",
        2,
        "--eval_steps",
        2,
        "--save_steps",
        2,
    )
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and "scratch_decoder" in card and "pre-norm, learned positions" in card


def test_push_offline_fails_before_training(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    with pytest.raises(SystemExit):
        run_cli(
            pretrain_gpt2_zh.cli,
            [
                "--config",
                DEBUG,
                "--train_files",
                str(zh_file),
                "--tokenizer_name_or_path",
                str(gpt_tokenizer_dir),
                "--output_dir",
                str(tmp_path / "run"),
                "--push_to_hub",
                "true",
                "--hub_model_id",
                "me/model",
            ],
        )
    err = capsys.readouterr().err.strip()
    assert "--push_to_hub needs the Hugging Face Hub" in err and "hf upload" in err
    assert not (tmp_path / "run").exists()


def test_failed_push_at_the_end_keeps_the_output(tmp_path, zh_file, gpt_tokenizer_dir, monkeypatch):
    """The Hub went away during training: one error naming the local copy, which is complete."""
    from scratchlm import hub, training

    monkeypatch.setattr(training.run, "check_push_possible", lambda args: None)
    monkeypatch.setattr(
        training.PretrainingTrainer, "init_hf_repo", lambda self, **kw: setattr(self, "hub_model_id", "me/m")
    )

    class HubGoneAway(RecordingHub):
        def upload_folder(self, **kwargs):
            raise ConnectionError("Max retries exceeded with url: /api/repos/create\nmore")

    monkeypatch.setattr(hub, "HfApi", HubGoneAway)
    out = tmp_path / "run"
    with pytest.raises(ScratchError) as info:
        run_recipe(
            "--train_files",
            zh_file,
            "--tokenizer_name_or_path",
            gpt_tokenizer_dir,
            "--output_dir",
            out,
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "me/m",
            "--hub_strategy",
            "end",
        )
    message = str(info.value)
    assert "ConnectionError: Max retries exceeded" in message and f"saved locally in {out}" in message
    assert f'hf upload me/m {out} --exclude "checkpoint-*" "_*" "training_args.bin"' in message
    assert "\n" not in message
    assert all((out / name).is_file() for name in ("model.safetensors", "README.md", "all_results.json"))


def test_find_lr_suggests_a_rate_and_leaves_the_run_alone(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    run_dir = tmp_path / "the-run"
    out = tmp_path / "lr"
    scratchlm(
        [
            "find-lr",
            "--steps",
            "40",
            "--out",
            str(out),
            "--train_files",
            str(zh_file),
            "--config",  # as the recipes take it, after a setting flag with a value
            DEBUG,
            "--tokenizer_name_or_path",
            str(gpt_tokenizer_dir),
            "--output_dir",
            str(run_dir),
        ]
    )
    result = json.loads((out / "lr_find.json").read_text())
    assert (out / "lr_find.png").read_bytes()[:8] == PNG
    assert result["objective"] == "causal" and 10 <= result["steps_run"] <= 40
    lrs = [p["lr"] for p in result["curve"]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-6) and lrs[-1] <= 0.1 + 1e-9
    assert result["suggested_lr"] == pytest.approx(result["min_loss_lr"] / 10)
    assert result["one_cycle_lr"] == result["min_loss_lr"]
    assert 1e-7 < result["suggested_lr"] < 1e-1
    assert "suggested learning_rate" in capsys.readouterr().out
    assert not run_dir.exists()


def test_find_lr_into_a_used_folder_names_its_own_flags(tmp_path, zh_file, capsys):
    out = tmp_path / "lr"
    out.mkdir()
    (out / "lr_find.json").write_text("{}")
    with pytest.raises(SystemExit):
        scratchlm(["find-lr", DEBUG, "--out", str(out), "--train_files", str(zh_file)])
    assert capsys.readouterr().err.strip() == (
        f"error: --out {out} already exists and is not empty: pass --overwrite to write over it, "
        "or choose another --out"
    )
    assert (out / "lr_find.json").read_text() == "{}"


@pytest.mark.parametrize(
    "argv",
    [
        ["overfit", "c.yaml", "--text", "t.txt", "--train_files", "x.txt"],
        ["overfit", "--text", "t.txt", "--train_files", "x.txt", "--config", "c.yaml"],
        ["overfit", "--train_files", "x.txt", "--config=c.yaml", "--text", "t.txt"],
    ],
)
def test_a_config_comes_first_or_as_the_flag_the_recipes_take(argv):
    args, settings = build_parser().parse_known_args(config_flag_first(argv))
    assert str(args.config) == "c.yaml" and str(args.text) == "t.txt" and settings == ["--train_files", "x.txt"]


def test_find_lr_sweeps_adamw_for_a_muon_config_and_says_so(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    argv = ["find-lr", DEBUG, "--steps", "12", "--out", str(tmp_path / "lr"), "--optim", "muon"]
    argv += ["--train_files", str(zh_file), "--tokenizer_name_or_path", str(gpt_tokenizer_dir)]
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        scratchlm([*argv, "--output_dir", str(tmp_path / "run")])
    assert any("replaced by AdamW" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "lr" / "lr_find.json").read_text())["steps_run"] >= 5


def test_lr_suggestion_on_a_known_curve():
    from scratchlm.lr_finder import suggest

    lrs = [10 ** (-6 + i * 0.1) for i in range(50)]
    losses = [5.0 - 3.0 / (1 + math.exp(-(i - 20) / 3)) if i < 35 else 2.0 + (i - 35) ** 2 for i in range(50)]
    result = suggest(lrs, losses)
    assert lrs[30] <= result["min_loss_lr"] <= lrs[36]
    assert lrs[15] <= result["steepest_lr"] <= lrs[25]


def test_plan_for_gpt2_small_budget():
    from scratchlm.planner import make_plan

    # GPT-2 124M trained compute-optimally: 6 x 124M x 2.48B tokens.
    plan = make_plan(gpu=None, hours=None, flops=6 * 124e6 * 2.48e9)
    assert 100e6 < plan.shape.parameters < 150e6 and plan.shape.n_embd % 64 == 0
    assert 1.8e9 < plan.tokens < 2.6e9
    assert plan.micro_batch * plan.gradient_accumulation_steps == plan.global_batch_sequences == 512
    assert math.isnan(plan.hours)
    h100 = make_plan(gpu="H100", hours=1, flops=None, corpus_tokens=1e8)
    assert h100.hours == pytest.approx(1.0, rel=1e-6)  # the budget is spent in the hours given
    assert h100.epochs > 1 and "repeats it" in h100.warnings[0]
    # On a 24 GB card GPT-2's logits are what limits the micro-batch; without them it doubles.
    l4 = make_plan(gpu="L4", hours=10, flops=None)
    l4_fused = make_plan(gpu="L4", hours=10, flops=None, fused_loss=True)
    assert l4_fused.micro_batch >= 2 * l4.micro_batch


def test_plan_for_a_gpu_named_in_short_or_without_bf16(capsys):
    from scratchlm.planner import format_plan, make_plan

    rtx = make_plan(gpu="4090", hours=1, flops=None)  # the only table entry with 4090 in its name
    assert rtx.throughput_source.startswith("RTX 4090: 165 TFLOP/s bf16 peak")
    assert rtx.micro_batch < make_plan(gpu="H100", hours=1, flops=None).micro_batch  # 24 GB, not 80
    t4 = make_plan(gpu="T4", hours=1, flops=None)
    assert t4.fp16 and "fp16 peak" in t4.throughput_source
    assert format_plan(t4).endswith("--fp16 true")
    assert "--fp16" not in format_plan(rtx)
    assert (
        make_plan(gpu="A100 40GB", hours=1, flops=None).micro_batch
        < make_plan(gpu="A100", hours=1, flops=None).micro_batch
    )
    with pytest.raises(ScratchError, match="--gpu RTX: unknown GPU"):  # two RTX cards fit it
        make_plan(gpu="RTX", hours=1, flops=None)


def test_plan_command_measures_and_writes_json(tmp_path, capsys):
    scratchlm(
        [
            "plan",
            "--flops",
            "1e13",
            "--context",
            "64",
            "--vocab",
            "512",
            "--global_batch_tokens",
            "512",
            "--measure",
            "--json",
            str(tmp_path / "plan.json"),
        ]
    )
    out = capsys.readouterr().out
    assert "measured on this machine" in out and "as flags: --n_layer" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["tokens_per_second"] > 0 and plan["shape"]["n_layer"] >= 2


def test_plan_rejects_unknown_gpu(capsys):
    with pytest.raises(SystemExit):
        scratchlm(["plan", "--gpu", "Voodoo5", "--hours", "2"])
    assert "unknown GPU" in capsys.readouterr().err


@pytest.mark.parametrize("greedy", [False, True])
def test_generate_from_a_checkpoint(tensorboard_run, capsys, greedy):
    run, _, _ = tensorboard_run
    scratchlm(
        [
            "generate",
            str(run),
            "--prompt",
            "中国",
            "--prompt",
            "经济",
            "--max_new_tokens",
            "6",
            *(["--greedy"] if greedy else ["--temperature", "1.0", "--top_k", "20"]),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    texts = [line for line in lines if not line.startswith("  [")]
    assert len(texts) == 2 and texts[0].startswith("中国") and texts[1].startswith("经济")


def test_generate_from_an_empty_prompt_starts_a_document(tensorboard_run, capsys):
    run, _, _ = tensorboard_run
    transformers.utils.logging.enable_progress_bar()  # as in a fresh process; stderr here is not a terminal
    scratchlm(["generate", str(run), "--prompt", "", "--max_new_tokens", "5", "--greedy"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and lines[0] and lines[1].startswith("  [distinct-2")
    assert "Loading weights" not in captured.err  # no progress bars in output that goes to a file or pipe


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--temperature", "-1"], "argument --temperature: must be above 0, got -1"),
        (["--max_new_tokens", "0"], "argument --max_new_tokens: must be a positive integer, got 0"),
        (["--top_p", "1.5"], "argument --top_p: must be in (0, 1], got 1.5"),
        (["--num_samples", "0"], "argument --num_samples: must be a positive integer, got 0"),
    ],
)
def test_generate_refuses_sampling_settings_that_cannot_work(tensorboard_run, capsys, flags, said):
    run, _, _ = tensorboard_run
    with pytest.raises(SystemExit) as refused:
        scratchlm(["generate", str(run), "--prompt", "中国", *flags])
    assert refused.value.code == 2 and said in capsys.readouterr().err


def test_generate_on_a_folder_that_is_not_a_causal_model_is_one_line(gpt_tokenizer_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        scratchlm(["generate", str(gpt_tokenizer_dir), "--prompt", "中国"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {gpt_tokenizer_dir} is not a model folder (no config.json): give a run's output_dir or one of its "
        "checkpoint-N"
    )
    from transformers import BertConfig, BertForMaskedLM

    masked = tmp_path / "bert"
    BertForMaskedLM(
        BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(masked)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (masked / name).write_bytes((gpt_tokenizer_dir / name).read_bytes())
    with pytest.raises(SystemExit):
        scratchlm(["generate", str(masked), "--prompt", "中国"])
    assert capsys.readouterr().err.strip() == (
        f"error: {masked} is a masked LM (BertForMaskedLM): scratchlm generate samples from causal LMs; score a "
        "masked LM with scratchlm eval"
    )


def test_plan_names_a_bad_gpu_count(capsys):
    with pytest.raises(SystemExit) as refused:
        scratchlm(["plan", "--gpu", "H100", "--hours", "1", "--num_gpus", "-2"])
    assert (
        refused.value.code == 2 and "argument --num_gpus: must be a positive integer, got -2" in capsys.readouterr().err
    )


def test_inspect_tokenizer_names_its_own_argument(gpt_tokenizer_dir, tmp_path, capsys):
    for path, said in [
        (gpt_tokenizer_dir / "tokenizer.json", f"is a file: pass the folder that holds it ({gpt_tokenizer_dir})"),
        (tmp_path / "nothing", "does not exist locally and the Hub cannot be reached: check the path, or go online"),
    ]:
        with pytest.raises(SystemExit):
            scratchlm(["inspect-tokenizer", str(path)])
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: tokenizer folder {path} ") and said in err and "--train_tokenizer" not in err


def test_plot_out_that_is_a_file_is_one_line(tensorboard_run, tmp_path, capsys):
    run, _, _ = tensorboard_run
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(SystemExit):
        scratchlm(["plot", str(run), "--out", str(mine)])
    assert capsys.readouterr().err.strip() == f"error: --out {mine} is a file, not a folder: choose another --out"
    assert mine.read_text() == "mine"


def test_inspect_tokenizer(gpt_tokenizer_dir, capsys):
    scratchlm(["inspect-tokenizer", str(gpt_tokenizer_dir), "--text", "中国经济"])
    out = capsys.readouterr().out
    assert "model BPE" in out and "eos_token='<|endoftext|>'" in out and "chars_per_token" in out
    assert "'中国经济':" in out and "ids:" in out


@pytest.mark.parametrize("command", ["plot", "find-lr", "plan", "generate", "inspect-tokenizer", "stop", "eval"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        scratchlm([command, "--help"])
    assert exit_info.value.code == 0 and "usage: scratchlm " + command in capsys.readouterr().out
