"""Every YAML config in the repo parses into its script's settings, and flags override YAML."""

from pathlib import Path

import pytest

from scratchlm.config import parse_config
from scratchlm.errors import ScratchError
from scratchlm.objectives import OBJECTIVES

import finetune_cola
import pretrain_bert_mlm
import pretrain_gpt2_zh
import train_tokenizer
from conftest import ROOT

SETTINGS = {
    "recipes/pretrain_gpt2_zh": OBJECTIVES[pretrain_gpt2_zh.OBJECTIVE].settings,
    "recipes/pretrain_bert_mlm": OBJECTIVES[pretrain_bert_mlm.OBJECTIVE].settings,
    "recipes/finetune_cola": (finetune_cola.ColaArguments, finetune_cola.FinetuneArguments),
    "tokenizer_training": (
        train_tokenizer.TokenizerArguments,
        train_tokenizer.DataArguments,
        train_tokenizer.OutputArguments,
    ),
}


def _settings_for(config: Path):
    return SETTINGS[config.parent.relative_to(ROOT).as_posix()]


def all_configs():
    return sorted(
        p
        for p in ROOT.glob("**/config_*.yaml")
        if "outputs" not in p.parts and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    )


def test_every_config_folder_is_known():
    assert {p.parent.relative_to(ROOT).as_posix() for p in all_configs()} == set(SETTINGS)


@pytest.mark.parametrize("config", all_configs(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_parses(config):
    parsed = parse_config(_settings_for(config), ["--config", str(config)])
    import yaml

    raw = yaml.safe_load(config.read_text())
    values = {k: v for obj in parsed for k, v in vars(obj).items()}
    for key, value in raw.items():
        got = values[key]
        got = got.value if hasattr(got, "value") else got
        fraction = value.get("num_decay_steps", 1) if key == "lr_scheduler_kwargs" else 1
        if fraction != "auto" and 0 < fraction < 1:  # a fraction becomes steps; auto waits for the data
            value = {**value, "num_decay_steps": round(value["num_decay_steps"] * values["max_steps"])}
        assert got == value or (isinstance(value, float) and abs(got - value) < 1e-12), key


@pytest.mark.parametrize("demo", ["config_demo.yaml", "config_demo_llama.yaml"])
def test_the_tokenizer_config_trains_the_tokenizer_the_demo_loads(demo):
    import yaml

    tokenizer = yaml.safe_load((ROOT / "tokenizer_training/config_zh_demo.yaml").read_text())
    recipe = yaml.safe_load((ROOT / "recipes/pretrain_gpt2_zh" / demo).read_text())
    # train_tokenizer.py then the demo: the demo must find that tokenizer, not train another beside it
    assert tokenizer["output_dir"] == recipe["tokenizer_name_or_path"]
    for key in ("corpus", "vocab_size", "normalization"):
        assert tokenizer[key] == recipe[key], key


def test_flags_override_yaml():
    model, tok, data, train = parse_config(
        SETTINGS["recipes/pretrain_gpt2_zh"],
        [
            "--config",
            str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"),
            "--n_layer",
            "3",
            "--learning_rate",
            "5e-4",
            "--sample_prompts",
            "a",
            "b",
        ],
    )
    assert model.n_layer == 3 and train.learning_rate == 5e-4 and train.sample_prompts == ["a", "b"]
    assert model.n_embd == 32  # untouched YAML value


def test_pretraining_defaults_suit_pretraining():
    _, _, _, train = parse_config(SETTINGS["recipes/pretrain_gpt2_zh"], ["--output_dir", "x"])
    assert train.weight_decay == 0.1 and train.adam_beta2 == 0.95 and train.max_grad_norm == 1.0
    assert train.lr_scheduler_type == "cosine_with_min_lr" and train.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert train.warmup_steps > 0 and train.bf16 is False  # no CUDA here


def test_other_schedules_drop_the_cosine_floor():
    _, _, _, train = parse_config(
        SETTINGS["recipes/pretrain_gpt2_zh"], ["--output_dir", "x", "--lr_scheduler_type", "linear"]
    )
    assert train.lr_scheduler_kwargs == {}


def test_unknown_yaml_key_is_an_error(tmp_path):
    bad = tmp_path / "config_bad.yaml"
    bad.write_text("n_layer: 2\nn_layers: 3\n")
    with pytest.raises(ScratchError, match=r"unknown key\(s\) n_layers \(n_layers: did you mean n_layer\?\)"):
        parse_config(SETTINGS["recipes/pretrain_gpt2_zh"], ["--config", str(bad)])


def test_wrong_type_in_yaml_is_an_error(tmp_path):
    bad = tmp_path / "config_bad.yaml"
    bad.write_text("n_layer: two\n")
    with pytest.raises(ScratchError, match=r"config_bad.yaml, key n_layer: invalid int value: 'two'"):
        parse_config(SETTINGS["recipes/pretrain_gpt2_zh"], ["--config", str(bad)])
    with pytest.raises(ScratchError, match=r"command line, --n_head: invalid int value: 'x'"):
        parse_config(SETTINGS["recipes/pretrain_gpt2_zh"], ["--config", str(bad), "--n_layer", "2", "--n_head", "x"])


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--learning_rate", "0", "learning_rate must be a positive"),
        ("--per_device_train_batch_size", "0", "per_device_train_batch_size must be a positive"),
        ("--n_head", "3", "divisible"),
        ("--bf16", "true", "bf16"),
    ],
)
def test_bad_values_are_errors(flag, value, message):
    with pytest.raises(ScratchError, match=message):
        parse_config(SETTINGS["recipes/pretrain_gpt2_zh"], ["--output_dir", "x", flag, value])


def test_finetuning_gets_the_same_input_checks():
    with pytest.raises(ScratchError, match="per_device_train_batch_size must be a positive"):
        parse_config(
            (finetune_cola.ColaArguments, finetune_cola.FinetuneArguments),
            ["--output_dir", "x", "--per_device_train_batch_size", "0"],
        )
    _, train = parse_config((finetune_cola.ColaArguments, finetune_cola.FinetuneArguments), ["--output_dir", "x"])
    assert train.bf16 is False and train.report_to == [] and train.learning_rate == 5e-5


def test_unknown_flag_is_an_error_with_the_setting_it_may_mean():
    pretraining = SETTINGS["recipes/pretrain_gpt2_zh"]
    with pytest.raises(ScratchError, match=r"unknown command-line argument\(s\) --no_such_flag 1; see --help"):
        parse_config(pretraining, ["--output_dir", "x", "--no_such_flag", "1"])
    with pytest.raises(ScratchError, match=r"\(--lerning_rate: did you mean --learning_rate\?\)"):
        parse_config(pretraining, ["--output_dir", "x", "--lerning_rate", "1e-3"])
    # Another tool's name for a setting: run_clm's model to start from, transformers 4.x's evaluation schedule.
    with pytest.raises(ScratchError, match=r"--model_name_or_path: did you mean --init_from\?"):
        parse_config(pretraining, ["--output_dir", "x", "--model_name_or_path", "out"])
    with pytest.raises(ScratchError, match=r"--evaluation_strategy: did you mean --eval_strategy\?"):
        parse_config(pretraining, ["--output_dir", "x", "--evaluation_strategy", "steps"])
    cola = (finetune_cola.ColaArguments, finetune_cola.FinetuneArguments)
    with pytest.raises(ScratchError, match=r"--init_from: did you mean --model_name_or_path\?"):
        parse_config(cola, ["--output_dir", "x", "--init_from", "outputs/bert"])


@pytest.mark.parametrize(
    "script",
    [
        "recipes/pretrain_gpt2_zh.py",
        "recipes/pretrain_bert_mlm.py",
        "recipes/finetune_cola.py",
        "tokenizer_training/train_tokenizer.py",
    ],
)
def test_help_lists_settings_and_config(script, capsys):
    module = {
        "recipes/pretrain_gpt2_zh.py": pretrain_gpt2_zh,
        "recipes/pretrain_bert_mlm.py": pretrain_bert_mlm,
        "recipes/finetune_cola.py": finetune_cola,
        "tokenizer_training/train_tokenizer.py": train_tokenizer,
    }[script]
    with pytest.raises(SystemExit) as exit_info:
        module.cli(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--config FILE.yaml" in text and "--output_dir" in text and "--traceback" in text


@pytest.mark.parametrize("path", sorted((ROOT / "recipes" / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load_and_show_their_launch_command(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))  # raises on unknown keys
    assert config.num_processes >= 1
    assert f"accelerate launch --config_file recipes/accelerate_configs/{path.name}" in path.read_text()
    assert f"recipes/accelerate_configs/{path.name}" in (ROOT / "README.md").read_text()


def test_an_explicit_floor_is_kept_whatever_the_schedule_and_names_stay_plain():
    _, _, _, train = parse_config(
        SETTINGS["recipes/pretrain_gpt2_zh"],
        ["--output_dir", "x", "--lr_scheduler_type", "cosine", "--lr_scheduler_kwargs", '{"min_lr_rate": 0.1}'],
    )
    assert train.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert type(train.lr_scheduler_type) is str and type(train.optim) is str
    _, _, _, ours = parse_config(
        SETTINGS["recipes/pretrain_gpt2_zh"],
        ["--output_dir", "x", "--lr_scheduler_type", "one_cycle", "--optim", "muon"],
    )
    assert (ours.lr_scheduler_type, ours.optim, ours.lr_scheduler_kwargs) == ("one_cycle", "muon", {})


def test_a_limit_of_one_checkpoint_with_a_best_model_keeps_the_newest_too():
    _, _, _, train = parse_config(
        SETTINGS["recipes/pretrain_gpt2_zh"],
        ["--output_dir", "x", "--save_total_limit", "1", "--metric_for_best_model", "eval_loss"],
    )
    assert train.save_total_limit == 2
    _, _, _, plain = parse_config(
        SETTINGS["recipes/pretrain_gpt2_zh"], ["--output_dir", "x", "--save_total_limit", "1"]
    )
    assert plain.save_total_limit == 1
