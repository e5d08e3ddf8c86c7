#!/usr/bin/env python
"""Does llama.cpp run what `scratchlm export --to gguf` writes as transformers runs the run's own folder?

    npm install --prefix /tmp/nlc node-llama-cpp@3        # llama.cpp, prebuilt, with its Node bindings
    python benchmarks/llama_cpp_parity.py --node_modules /tmp/nlc/node_modules

For each causal family (gpt2, llama, qwen3, scratch_decoder) it trains a small model (the debug recipe at
4x128) on the built-in `zh_demo` corpus, exports it with `scratchlm export --to gguf` at each `--dtypes`, and
asks llama.cpp (node-llama-cpp's prebuilt build: llama-cpp-python only builds from source) for each prompt's
token ids, the raw logits after it and 20 greedy tokens, against the run's folder in transformers. Prints a
table and writes JSON. Needs `node` and the npm package; nothing here runs in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
FAMILIES = ["gpt2", "llama", "qwen3", "scratch_decoder"]
PROMPTS = ["中国经济发展", "今天，天气很好！我们", "the cats   sleep 😀 on"]
NEW_TOKENS = 20
# Prompt and greedy tokens fit in it: a GPT-2 GGUF run past its learned positions aborts llama.cpp.
CONTEXT = 64

# llama.cpp's side: token ids of each prompt, the logits after it, and greedy tokens, as JSON on stdout.
NODE_SCRIPT = r"""
const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
const [modelPath, promptsJson, newTokens, contextSize] = process.argv.slice(2);
const llama = await getLlama({gpu: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const out = {llama_cpp: llama.llamaCppRelease ? `${llama.llamaCppRelease.release}` : "unknown", prompts: []};
for (const prompt of JSON.parse(promptsJson)) {
  const context = await model.createContext({contextSize: Number(contextSize), batchSize: Number(contextSize)});
  const sequence = context.getSequence();
  const ids = Array.from(model.tokenize(prompt));
  const greedyNext = {token: true, options: {temperature: 0}};
  const items = ids.map((t, i) => (i === ids.length - 1 ? [t, {generateNext: {logits: true, ...greedyNext}}] : t));
  const results = await sequence.controlledEvaluate(items, {});
  const last = results[ids.length - 1];
  const logits = Array.from(last.next.logits.entries()).sort((a, b) => a[0] - b[0]).map(e => e[1]);
  const greedy = [last.next.token];
  let input = [last.next.token];
  while (greedy.length < Number(newTokens)) {
    const step = await sequence.controlledEvaluate([[input[0], {generateNext: greedyNext}]], {});
    greedy.push(step[0].next.token);
    input = [step[0].next.token];
  }
  out.prompts.push({prompt, ids, logits, greedy});
  await context.dispose();
}
console.log(JSON.stringify(out));
"""


def train(family: str, work: Path, steps: int) -> Path:
    """The debug recipe widened to 4x128, so that its greedy continuations are not one token repeated."""
    out = work / family
    recipe = [sys.executable, str(ROOT / "recipes/pretrain_gpt2_zh.py"), "--config", str(DEBUG)]
    recipe += ["--corpus", "zh_demo", "--max_train_samples", "4000", "--tokenizer_name_or_path", str(work / "tok")]
    recipe += ["--model_type", family, "--output_dir", str(out), "--max_steps", str(steps), "--vocab_size", "2000"]
    recipe += ["--eval_steps", str(steps), "--save_steps", str(steps), "--warmup_steps", str(steps // 10)]
    recipe += ["--block_size", str(CONTEXT), "--n_layer", "4", "--n_head", "4", "--n_embd", "128"]
    recipe += ["--per_device_train_batch_size", "16", "--sample_max_new_tokens", "0"]
    run(recipe, family, work)
    return out


def run(command: list[str], family: str, work: Path) -> None:
    env = {**os.environ, "SCRATCHLM_CACHE": str(work / "cache")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{family}: {' '.join(map(str, command[:5]))} failed:\n{done.stderr[-3000:]}")


def transformers_side(folder: Path) -> list[dict]:
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    rows = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
            greedy = model.generate(
                torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS
            )[0, len(ids) :]
        rows.append({"prompt": prompt, "ids": ids, "logits": logits.tolist(), "greedy": greedy.tolist()})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node_modules", type=Path, required=True, help="The folder npm installed node-llama-cpp in.")
    parser.add_argument("--steps", type=int, default=600, help="Training steps per family.")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--dtypes", default="f32,f16", help="GGUF weight types to export and compare.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/llama_cpp_parity.json")
    args = parser.parse_args(argv)
    if shutil.which("node") is None or not (args.node_modules / "node-llama-cpp").is_dir():
        sys.exit(f"needs node and node-llama-cpp in {args.node_modules}: npm install --prefix DIR node-llama-cpp@3")
    binding = json.loads((args.node_modules / "node-llama-cpp/package.json").read_text(encoding="utf-8"))["version"]
    rows, release = [], "?"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = args.node_modules.parent / "scratchlm_parity.mjs"  # beside node_modules, so the import resolves
        script.write_text(NODE_SCRIPT, encoding="utf-8")
        for family in args.families.split(","):
            folder = train(family, work, args.steps)
            ours = transformers_side(folder)
            for dtype in args.dtypes.split(","):
                gguf = folder / f"{family}-{dtype}.gguf"
                export = [sys.executable, "-m", "scratchlm.cli", "export", str(folder), "--to", "gguf"]
                run([*export, "--dtype", dtype, "--out", str(gguf)], family, work)
                command = ["node", str(script), str(gguf), json.dumps(PROMPTS), str(NEW_TOKENS), str(CONTEXT)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{family} {dtype}: llama.cpp failed:\n{done.stderr[-3000:]}")
                theirs = json.loads(done.stdout.strip().splitlines()[-1])
                release = theirs["llama_cpp"]
                for mine, other in zip(ours, theirs["prompts"]):
                    n = min(len(mine["logits"]), len(other["logits"]))  # llama.cpp may leave padded rows out
                    rows.append(
                        {
                            "family": family,
                            "dtype": dtype,
                            "gguf_bytes": gguf.stat().st_size,
                            "prompt": mine["prompt"],
                            "same_ids": mine["ids"] == other["ids"],
                            "max_logit_diff": max(abs(a - b) for a, b in zip(mine["logits"][:n], other["logits"][:n])),
                            "greedy_equal": sum(a == b for a, b in zip(mine["greedy"], other["greedy"])),
                            "greedy_distinct": len(set(mine["greedy"])),
                            "ids": [mine["ids"], other["ids"]],
                            "greedy": [mine["greedy"], other["greedy"]],
                        }
                    )
    import transformers

    result = {
        "transformers": transformers.__version__,
        "llama_cpp": release,
        "node_llama_cpp": binding,
        "steps": args.steps,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"llama.cpp {release} (node-llama-cpp {binding}, CPU) against transformers {transformers.__version__}")
    print(f"{'family':>16} {'dtype':>5} {'prompt':>26} {'same ids':>8} {'max |dlogit|':>12} {'greedy equal':>12}")
    for r in rows:
        print(
            f"{r['family']:>16} {r['dtype']:>5} {r['prompt']!r:>26} {str(r['same_ids']):>8} "
            f"{r['max_logit_diff']:>12.2e} {r['greedy_equal']:>9}/{NEW_TOKENS} ({r['greedy_distinct']} distinct)"
        )
    return result


if __name__ == "__main__":
    main()
