"""YAML config + command-line flags -> HfArgumentParser dataclasses.

`--config FILE.yaml` loads a flat YAML whose keys are the dataclasses' field names; flags given on
the command line override it. YAML values are turned back into flags so that argparse does all type
checking, and YAML and command line can never disagree on how a value is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from .errors import ScratchError

CONFIG_FLAG = "--config"


def split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    config, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == CONFIG_FLAG:
            if i + 1 >= len(argv):
                raise ScratchError("--config needs a path to a YAML file")
            config, i = argv[i + 1], i + 2
            continue
        if arg.startswith(CONFIG_FLAG + "="):
            config = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return config, rest


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.yaml"))
        raise ScratchError(
            f"--config {path} is a folder: pass one of its YAML files"
            + (f" ({', '.join(found)})" if found else "; it holds none")
        )
    if not path.is_file():
        raise ScratchError(f"config file {path} does not exist: pass --config with the path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ScratchError(f"config file {path} is not valid YAML: {err}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScratchError(f"config file {path} must be a flat mapping of setting: value")
    return data


def _yaml_to_flags(config: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            flags += [f"--{key}", *(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value)]
        elif isinstance(value, dict):
            flags += [f"--{key}", json.dumps(value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


# Names other tools use for a setting these recipes call otherwise.
OTHER_NAMES = {
    "model_name_or_path": "init_from",  # run_clm's; a pretraining run builds a fresh model unless --init_from
    "evaluation_strategy": "eval_strategy",  # transformers 4.x's
    "init_from": "model_name_or_path",  # the pretraining recipes' name, given to the CoLA recipe
}


def did_you_mean(names: list[str], known: set[str], prefix: str = "") -> str:
    """' (NAME: did you mean SETTING?)' for names that are another tool's name for a setting or a near-miss of one."""
    guesses = []
    for name in names:
        key = name.lstrip("-").split("=", 1)[0].replace("-", "_")
        candidates = [OTHER_NAMES[key]] if OTHER_NAMES.get(key) in known else []
        guess = next(iter(candidates or difflib.get_close_matches(key, known, n=1, cutoff=0.8)), None)
        if guess:
            guesses.append(f"{name}: did you mean {prefix}{guess}?")
    return f" ({'; '.join(guesses)})" if guesses else ""


def field_names(dataclass_types) -> set[str]:
    return {f.name for dc in dataclass_types for f in dataclasses.fields(dc) if f.init}


def read_config_file(argv: list[str], default_config: str | Path | None = None):
    """`argv`'s config file (`default_config` without `--config`), its settings, and the other arguments."""
    config_path, cli_flags = split_config_flag(argv)
    config_path = config_path or default_config
    return config_path, load_yaml_config(config_path) if config_path else {}, cli_flags


def flag_names(cli_flags: list[str]) -> set[str]:
    """The settings that flags give, as field names."""
    return {a[2:].split("=", 1)[0].replace("-", "_") for a in cli_flags if a.startswith("--")}


def parse_config(dataclass_types: tuple[type, ...], argv: list[str], default_config: str | Path | None = None):
    """Parse `argv` (flags and an optional `--config`) into one instance of each dataclass.

    With no `--config`, `default_config` is loaded (a recipe's demo config). Unknown YAML keys and
    unknown flags are errors.
    """
    config_path, config, cli_flags = read_config_file(argv, default_config)
    known = field_names(dataclass_types)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ScratchError(
            f"config file {config_path}: unknown key(s) {', '.join(unknown)}{did_you_mean(unknown, known)}; "
            "check the spelling against the recipe's --help"
        )
    overridden = flag_names(cli_flags)
    config = {k: v for k, v in config.items() if k not in overridden}
    parser = HfArgumentParser(
        dataclass_types,
        exit_on_error=False,
        epilog=(
            "--config FILE.yaml loads settings from a flat YAML file (keys as above); flags given here override it. "
            "--traceback (or --debug with no value) shows the full traceback of an error instead of its one-line "
            "message."
        ),
    )
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(
            args=_yaml_to_flags(config) + cli_flags, return_remaining_strings=True
        )
    except argparse.ArgumentError as err:
        key = (err.argument_name or "").split("/")[0].lstrip("-")
        from_yaml = key.replace("-", "_") in config
        source = f"config file {config_path}, key {key}" if from_yaml else f"command line, --{key}"
        raise ScratchError(f"{source}: {err.message}") from None
    except (ValueError, TypeError) as err:
        source = f"config file {config_path} or the command line" if config_path else "the command line"
        raise ScratchError(f"bad setting in {source}: {err}") from None
    if remaining:
        flags = [a for a in remaining if a.startswith("--")]
        raise ScratchError(
            f"unknown command-line argument(s) {' '.join(remaining)}{did_you_mean(flags, known, '--')}; see --help"
        )
    return tuple(parsed)
