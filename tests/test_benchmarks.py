"""The GPU benchmarks' code paths, run on CPU with tiny shapes (what they print is not checked: no timing here)."""

import json
import math
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput  # noqa: E402
import time_to_quality  # noqa: E402


@pytest.mark.slow
def test_throughput_runs_the_recipe_and_the_stock_baseline_on_the_same_blocks(tmp_path):
    out = tmp_path / "throughput.json"
    result = throughput.main(["--model", "bert", "--tiny", "--steps", "20", "--warmup", "10", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    recipe, syncing, stock = result["rows"]
    assert (recipe["run"], syncing["run"], stock["run"]) == ("recipe", "recipe+sync", "stock")
    assert result["speedup"] > 0 and result["speedup_over_sync"] > 0
    assert recipe["parameters"] == syncing["parameters"] != stock["parameters"]  # the recipe pads the vocabulary
    assert recipe["losses"] == syncing["losses"]  # the same run; only where the loss is checked differs
    for row in (recipe, syncing, stock):
        assert len(row["losses"]) == 2 and abs(row["losses"][0] - math.log(30522)) < 0.5
        assert row["tokens_per_second"] > 0 and row["flops_per_token"] > 0


def test_throughput_times_the_levers_beside_the_recipe(tmp_path):
    argv = ["--model", "baby", "--tiny", "--steps", "10", "--warmup", "5", "--out", str(tmp_path / "t.json")]
    result = throughput.main([*argv, "--levers", "fused_loss,half_batch,vocab_unpadded"])
    rows = {row["run"]: row for row in result["rows"]}
    assert list(rows) == ["recipe", "recipe+sync", "fused_loss", "half_batch", "vocab_unpadded", "stock"]
    assert set(result["levers"]) == {"fused_loss", "half_batch", "vocab_unpadded"}
    assert rows["half_batch"]["micro_batch"] * 2 == rows["recipe"]["micro_batch"]
    assert rows["vocab_unpadded"]["parameters"] < rows["recipe"]["parameters"]
    assert rows["fused_loss"]["losses"] == pytest.approx(rows["recipe"]["losses"], rel=1e-4)
    with pytest.raises(SystemExit):
        throughput.main([*argv, "--levers", "warp_drive"])


def test_throughput_accumulates_as_the_config_does_and_counts_micro_batches(tmp_path):
    argv = ["--model", "baby", "--tiny", "--out", str(tmp_path / "t.json")]
    result = throughput.main([*argv, "--steps", "16", "--warmup", "4", "--gradient_accumulation_steps", "4"])
    rows = {row["run"]: row for row in result["rows"]}
    assert rows["recipe"]["accumulation"] == rows["recipe+sync"]["accumulation"] == 4
    assert rows["stock"]["accumulation"] == 1
    # 4 optimizer steps of 4 micro-batches, logged every 2 (8 micro-batches); the stock run every 10 micro-batches
    assert len(rows["recipe"]["losses"]) == 2 and len(rows["stock"]["losses"]) == 1
    with pytest.raises(SystemExit):
        throughput.main([*argv, "--steps", "12", "--warmup", "2", "--gradient_accumulation_steps", "4"])


def test_muon_step_benchmark_times_both_orthogonalisations_of_the_demo_models(tmp_path):
    import muon_step

    report = muon_step.main(["--tiny", "--repeats", "1", "--out", str(tmp_path / "m.json")])
    assert [r["model_type"] for r in report["results"]] == ["gpt2", "llama"]
    for result in report["results"]:
        assert result["muon_matrices"] == (4 if result["model_type"] == "gpt2" else 7)  # one block's matrices
        assert all(seconds > 0 for seconds in result["seconds"].values())
        assert 0 < result["update_difference"] < 0.1  # bf16 and float32 agree up to bf16's precision
    assert json.loads((tmp_path / "m.json").read_text())["results"] == report["results"]


@pytest.mark.slow
def test_fused_loss_benchmark_arms_agree(tmp_path):
    import fused_loss

    shape = ["--batch", "2", "--block", "64", "--width", "32", "--vocab", "512", "--repeats", "1"]
    result = fused_loss.main([*shape, "--out", str(tmp_path / "f.json")])
    losses = [row["loss"] for row in result["rows"]]
    assert [row["arm"] for row in result["rows"]][:2] == ["full", "chunked"]
    assert losses == pytest.approx([losses[0]] * len(losses), rel=1e-5)
    assert abs(losses[0] - math.log(512)) < 0.5
    assert all(row["peak_extra_gb"] >= 0 and row["seconds"] > 0 for row in result["rows"])


def test_generation_benchmark_times_both_ways_and_checks_they_agree(tmp_path):
    import generation

    result = generation.main(
        ["--n_layer", "1", "--n_embd", "32", "--n_head", "2", "--vocab", "97", "--new_tokens", "24", "--repeats", "1"]
        + ["--out", str(tmp_path / "g.json")]
    )
    assert result["identical"] and [r["kv_cache"] for r in result["rows"]] == [False, True]
    assert all(r["tokens_per_second"] > 0 for r in result["rows"])


def test_samples_benchmark_times_both_ways_and_checks_they_agree(tmp_path):
    import samples

    result = samples.main(["--shape", "tiny", "--repeats", "1", "--out", str(tmp_path / "s.json")])
    (row,) = result["rows"]
    assert row["identical"] and row["prompts"] == 3
    assert set(row["seconds"]) == {"one at a time", "together"} and all(s > 0 for s in row["seconds"].values())
    assert json.loads((tmp_path / "s.json").read_text())["rows"][0]["speedup"] == row["speedup"]


def test_eval_speed_benchmark_times_both_ways_and_they_agree(tmp_path):
    import eval_speed

    result = eval_speed.main(
        ["--shape", "tiny", "--repeats", "1", "--sentences", "200", "--text_characters", "5000"]
        + ["--out", str(tmp_path / "e.json")]
    )
    (row,) = result["rows"]
    assert row["text_bits_per_char_difference"] < 1e-5 and row["pairs_log_prob_max_difference"] < 1e-3
    assert len(row["seconds"]) == 4 and all(s > 0 for s in row["seconds"].values())
    assert json.loads((tmp_path / "e.json").read_text())["rows"][0]["pairs_speedup"] == row["pairs_speedup"]


def test_throughput_refuses_to_time_a_cpu_as_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        throughput.main(["--out", str(tmp_path / "t.json")])
    assert exit_info.value.code == 2 and "pass --tiny" in capsys.readouterr().err


@pytest.mark.slow
def test_time_to_quality_stops_at_the_first_evaluation_that_reaches_the_target(tmp_path, zh_docs):
    from scratchlm.data.builtin import BUILTIN_CORPORA

    text = tmp_path / "text.txt"
    text.write_text("\n".join(d for _, d in zip(range(300), BUILTIN_CORPORA["python_docs"].documents())))
    result = time_to_quality.main(["--data", str(text), "--tiny", "--target", "50", "--out", str(tmp_path / "q.json")])
    result = result["arms"][0]
    # Reached at step 10 of 20: that evaluation is the run's last (the final one is not repeated), none at 20.
    assert len(result["evaluations"]) == 1 and result["seconds_to_target"] == result["evaluations"][0]["seconds"]
    # Two arms on 3,000 characters: about 6 steps an epoch, so the windows move twice in 20 steps.
    arms = time_to_quality.main(
        ["--data", str(text), "--tiny", "--target", "0.01", "--out", str(tmp_path / "m.json")]
        + ["--train_chars", "3000", "--window_order", "fixed,shifted"]
    )["arms"]
    assert [a["window_order"] for a in arms] == ["fixed", "shifted"]
    for missed in arms:
        assert len(missed["evaluations"]) == 2 and missed["seconds_to_target"] is None
        assert missed["rise_after_best"] >= 0 and missed["best_eval_loss"] <= missed["final_eval_loss"]
    assert arms[0]["evaluations"][1]["eval_loss"] != arms[1]["evaluations"][1]["eval_loss"]


def test_gpu_suite_refuses_a_step_it_does_not_have_and_a_resume_without_its_run(tmp_path, capsys):
    import gpu_suite

    for only, message in (("recipe,nope", "unknown steps nope"), ("resume", "resume continues the recipe step's run")):
        with pytest.raises(SystemExit) as exit_info:
            gpu_suite.main(["--data", "x.txt", "--tiny", "--only", only, "--out_dir", str(tmp_path / "s")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_gpu_suite_runs_every_step_and_checks_the_resume(tmp_path, shared_data):
    import gpu_suite

    text = tmp_path / "input.txt"
    text.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:100_000])
    result = gpu_suite.main(["--data", str(text), "--tiny", "--out_dir", str(tmp_path / "suite")])
    assert json.loads((tmp_path / "suite" / "gpu_suite.json").read_text()) == json.loads(json.dumps(result))
    steps = {s["step"]: s for s in result["steps"]}
    names = ("throughput_baby", "fused_loss", "samples", "time_to_quality", "recipe", "resume")
    assert [steps[n]["status"] for n in names] == ["ok"] * 6
    assert steps["samples"]["figures"]["tiny"]["greedy_same"]
    assert set(steps["throughput_baby"]["figures"]) == {
        "recipe",
        "recipe+sync",
        "blocking_copies",
        "adamw_not_muon",
        "stock",
    }
    recipe = steps["recipe"]["figures"]
    assert recipe["weights"] and recipe["card"] and recipe["samples"]
    assert recipe["sealed_checkpoints"] == ["checkpoint-10", "checkpoint-20"]
    assert steps["resume"]["figures"] == {"steps_compared": 5, "max_loss_difference": 0.0}  # CPU: exactly equal
    skipped = {steps[n]["status"] for n in ("ddp_1_process", "fsdp_1_process", "fp16_muon")}
    assert skipped == {"skipped (needs a GPU)"}
    assert [s["step"] for s in result["steps"]] == list(gpu_suite.STEPS)


@pytest.mark.slow
def test_init_from_benchmark_starts_its_arms_from_the_source_model_and_all_from_its_tokenizer(tmp_path):
    import init_from

    out, work = tmp_path / "i.json", tmp_path / "work"
    argv = ["--tiny", "--source_steps", "20", "--steps", "10", "--lr_scales", "1", "0.5", "--target_blocks", "64"]
    result = init_from.main([*argv, "--work_dir", str(work), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    curves = result["seeds"]["42"]
    assert list(curves) == ["scratch", "init_from", "init_from_lr_x0.5"]
    for arm in curves:
        assert [step for step, _ in curves[arm]] == [0, 2, 4, 6, 8, 10]
        run = work / "runs" / f"{arm}-42"
        settings = (run / "run_config.yaml").read_text()
        assert "corpus: zh_book_reviews" in settings and "max_train_samples: 64" in settings
        assert (f"init_from: {work / 'runs' / 'source'}" in settings) == (arm != "scratch")
        assert (run / "tokenizer.json").read_text() == (work / "runs" / "source" / "tokenizer.json").read_text()
    scaled = (work / "runs" / "init_from_lr_x0.5-42" / "run_config.yaml").read_text()
    assert "learning_rate: 0.005" in scaled and "muon_learning_rate: 0.005" in scaled  # the demo's 1e-2 and 0.01
    # at step 0 a model from random weights is near uniform; the source's weights know the characters
    assert curves["init_from"][0][1] < curves["scratch"][0][1] - 0.1
    assert curves["init_from"][0] == curves["init_from_lr_x0.5"][0]  # the same source model, before any step
    assert "final init_from_lr_x0.5 - scratch: mean" in init_from.table(result)


@pytest.mark.slow
def test_quality_per_minute_gives_every_arm_the_same_minutes_and_stacks_the_winners(tmp_path):
    import quality_per_minute as qpm

    out = tmp_path / "q.json"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"sentence_good": good, "sentence_bad": bad}) + "\n"
            for good, bad in [("def f(x):", "def f x):"), ("import os", "os import"), ("return x", "x return")]
        )
    )
    argv = ["--corpus", "python_docs", "--tiny", "--minutes", "0.02", "--arms", "wsd,vocab_4k"]
    result = qpm.main(
        [*argv, "--work_dir", str(tmp_path / "work"), "--out", str(out), "--eval_minimal_pairs", str(pairs)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result)) and out.with_suffix(".png").is_file()
    arms = result["arms"]
    assert list(arms)[:3] == ["baseline", "wsd", "vocab_4k"]
    for arm in arms.values():
        curve = arm["curve"]
        assert [p["step"] for p in curve] == [arm["max_steps"] // 6 * k for k in range(1, 7)]
        minutes = [p["minutes"] for p in curve]
        assert minutes == sorted(minutes) and minutes[0] > 0
        assert 0 < arm["final_bits_per_char"] < 20 and arm["distinct_2"] is not None
        assert all(0 <= p["minimal_pairs_accuracy"] <= 1 for p in curve)
        assert arm["minimal_pairs_unigram_accuracy"] is not None
    assert "minimal pairs (unigram bar)" in qpm.table(arms, "t")
    # wsd's schedule differs, not its cost: one throughput measurement serves both
    assert arms["wsd"]["tokens_per_second"] == arms["baseline"]["tokens_per_second"]
    assert arms["vocab_4k"]["flags"] == {"--vocab_size": "4000"}
    assert not (tmp_path / "work" / "runs" / "wsd").exists()  # curves are kept, weights are not
    assert not any((tmp_path / "work" / "probe").iterdir())  # a rerun in the same work dir can probe again
    with pytest.raises(SystemExit):
        qpm.main([*argv[:-1], "warp_drive"])


def test_quality_per_minute_stacks_each_groups_best_winner():
    import quality_per_minute as qpm

    def arm(name, group, flags, final):
        return {"name": name, "group": group, "flags": flags, "final_bits_per_char": final}

    results = {
        "baseline": arm("baseline", "baseline", {}, 6.0),
        "llama": arm("llama", "family", {"--model_type": "llama"}, 5.8),
        "qwen3": arm("qwen3", "family", {"--model_type": "qwen3"}, 5.7),
        "muon": arm("muon", "optimizer", {"--optim": "muon"}, 5.9),
        "wsd": arm("wsd", "schedule", {"--lr_scheduler_type": "warmup_stable_decay"}, 5.95),
        "linear": arm("linear", "schedule", {"--lr_scheduler_type": "linear"}, 5.97),
        "batch_16": arm("batch_16", "lr_batch", {"--per_device_train_batch_size": "16"}, 6.1),
    }
    gpt2 = {"--optim": "muon", "--lr_scheduler_type": "warmup_stable_decay"}
    assert qpm.combinations(results) == {"best_gpt2": gpt2, "best": {"--model_type": "qwen3", **gpt2}}
    stacked_on_llama = qpm.combinations(results, config_family="llama")  # named by the config's family
    assert list(stacked_on_llama) == ["best_llama", "best"]
    del results["wsd"], results["linear"]
    assert qpm.combinations(results) == {"best": {"--model_type": "qwen3", "--optim": "muon"}}
    curve = [{"minutes": 1.0, "bits_per_char": 7.0}, {"minutes": 2.0, "bits_per_char": 6.0}]
    assert qpm.minutes_to_reach(curve, 6.5) == 1.5 and qpm.minutes_to_reach(curve, 5.0) is None


def test_quality_per_minute_tuning_round_starts_from_the_config_it_is_given():
    import quality_per_minute as qpm

    from scratchlm.objectives import parse_run_settings

    demo = ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml"
    base = qpm.Base(demo)
    assert (base.vocab, base.batch, base.block) == (8000, 8, 128)
    assert qpm.tokens_per_step(base, {"--per_device_train_batch_size": "4"}) == 4 * 128
    assert qpm.tokens_per_step(qpm.Base(qpm.BASELINE_CONFIG), {}) == 8 * 128
    for arm_set in qpm.ARM_SETS.values():
        assert arm_set[0] == "baseline" and set(arm_set) <= set(qpm.ARMS)
    for name in qpm.ARM_SETS["tuning"][1:]:
        flags = [part for pair in qpm.ARMS[name][1].items() for part in pair]
        settings = parse_run_settings(["--config", str(demo), *flags])
        assert settings.training.optim == "muon"  # every tuning arm keeps the config's optimizer
    moved = parse_run_settings(["--config", str(demo), "--muon_learning_rate", "0.04", "--learning_rate", "3e-3"])
    assert (moved.training.muon_learning_rate, moved.training.learning_rate) == (0.04, 3e-3)
    with pytest.raises(SystemExit, match="--config"):
        qpm.main(["--config", str(ROOT / "no-such.yaml"), "--arms", "tuning"])


def test_every_quality_per_minute_arm_is_a_command_line_the_recipe_takes():
    import quality_per_minute as qpm

    from scratchlm.objectives import parse_run_settings

    demo = ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml"
    resolved = {}
    for name, (_, arm_flags) in qpm.ARMS.items():
        flags = [part for pair in arm_flags.items() for part in pair]
        resolved[name] = parse_run_settings(["--config", str(demo), *flags, "--max_steps", "100"]).training
    # the decay arms reach transformers' schedule as steps, the fraction resolved against max_steps
    assert resolved["decay_40"].lr_scheduler_kwargs == {"num_decay_steps": 40}
    assert resolved["decay_40_1-sqrt"].lr_scheduler_kwargs == {"num_decay_steps": 40, "decay_type": "1-sqrt"}
    assert resolved["decay_1-sqrt"].lr_scheduler_kwargs == {"decay_type": "1-sqrt", "num_decay_steps": 20}


@pytest.mark.slow
def test_minimal_pairs_benchmark_draws_the_curve_and_reads_a_finished_arm_back(tmp_path, shared_data):
    import minimal_pairs

    argv = ["--arm", "gpt2_wikitext", "--tiny", "--work_dir", str(tmp_path), "--final_per_paradigm", "2"]
    first = minimal_pairs.main(argv)["gpt2_wikitext"]
    assert [p["step"] for p in first["curve"]] == [20, 40]
    assert len(first["final"]["paradigms"]) == 67 and all(r["pairs"] == 2 for r in first["final"]["paradigms"])
    assert 0 <= first["final"]["overall"]["unigram_accuracy"] <= 1
    assert (tmp_path / "minimal_pairs.png").is_file()
    assert minimal_pairs.main(argv)["gpt2_wikitext"] == first  # read back, not trained again


@pytest.mark.slow
def test_minimal_pairs_chinese_llama_arm_trains_the_llama_demo_config(tmp_path):
    import minimal_pairs

    result = minimal_pairs.main(["--arm", "llama_zh_demo", "--tiny", "--work_dir", str(tmp_path)])["llama_zh_demo"]
    config = json.loads((tmp_path / "llama_zh_demo" / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert [p["step"] for p in result["curve"]] == [20, 40]
    assert sum(p["pairs"] for p in result["final"]["paradigms"]) == 30  # every Chinese pair, scored at the end
    assert result["pairs"].endswith("zh_minimal_pairs")
