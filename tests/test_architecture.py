"""The package's shape: imports point one way, and the objective is named, never guessed."""

import ast
from pathlib import Path

import pytest

from scratchlm.errors import ScratchError
from scratchlm.objectives import parse_run_settings

from conftest import ROOT

PACKAGE = ROOT / "src" / "scratchlm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the scratchlm modules it imports (at any depth in the file, relative imports resolved)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # `from . import x` imports the module x when there is one
                    candidate = f"{base}.{alias.name}"
                    targets.add(candidate if candidate in modules else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_the_graph_sees_relative_imports():
    graph = import_graph()
    assert "scratchlm.data.packing" in graph["scratchlm.data.cached"]
    assert "scratchlm.arguments" in graph["scratchlm.data.cached"]
    assert "scratchlm.models.scratch" in graph["scratchlm.models.registry"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_data_layers_import_one_way():
    graph = import_graph()
    backends = {"scratchlm.data.cached", "scratchlm.data.prepared", "scratchlm.data.streamed"}
    assert not graph["scratchlm.data.sources"] & (backends | {"scratchlm.data.packing", "scratchlm.data"})
    assert not graph["scratchlm.data.packing"] & (backends | {"scratchlm.data.sources", "scratchlm.data"})
    for backend in backends:
        assert "scratchlm.data" not in graph[backend]


DEBUG_GPT = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
DEBUG_BERT = ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml"


def test_tools_take_the_objective_from_the_config():
    assert parse_run_settings(["--config", str(DEBUG_GPT)]).objective.name == "causal"
    settings = parse_run_settings(["--config", str(DEBUG_BERT)])
    assert settings.objective.name == "masked" and settings.masking.mlm_probability == 0.15
    assert settings.training.objective == "masked"


def test_a_config_of_the_other_objective_is_refused_by_a_recipe():
    with pytest.raises(
        ScratchError, match="names objective masked, but recipes/pretrain_gpt2_zh.py pretrains a causal"
    ):
        parse_run_settings(["--config", str(DEBUG_BERT)], objective="causal", script="recipes/pretrain_gpt2_zh.py")


def test_a_config_without_an_objective_names_the_fix(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text("n_layer: 2\n")
    with pytest.raises(ScratchError, match="does not name its objective: add `objective: causal`"):
        parse_run_settings(["--config", str(config)])
    named = parse_run_settings(["--config", str(config), "--objective", "masked", "--special_tokens_style", "bert"])
    assert named.objective.name == "masked"
    assert parse_run_settings(["--config", str(config)], objective="causal").model.n_layer == 2
    with pytest.raises(ScratchError, match="objective 'mlm' is not one of causal, masked"):
        parse_run_settings(["--config", str(config), "--objective", "mlm"])


def test_a_masked_objective_refuses_a_gpt_style_tokenizer(tmp_path):
    with pytest.raises(ScratchError, match=r"a masked LM needs \[CLS\]/\[SEP\]/\[MASK\]"):
        parse_run_settings(["--config", str(DEBUG_BERT), "--special_tokens_style", "gpt"])
