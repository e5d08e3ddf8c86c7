"""Run under `accelerate launch`: iterate Trainer's own train dataloader for two passes over a stream and
write, per process, the decoded blocks each pass gave it (tests/test_streaming.py reads them)."""

import json
import sys
from pathlib import Path

from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run

import pretrain_gpt2_zh

settings = parse_run_settings(sys.argv[1:], objective=pretrain_gpt2_zh.OBJECTIVE)
training_args = settings.training
run = build_run(settings)
tokenizer, trainer = run.tokenizer, run.trainer
passes = []
for epoch in range(2):
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    passes.append([tokenizer.decode(ids, skip_special_tokens=True) for batch in loader for ids in batch["input_ids"]])
out = Path(training_args.output_dir) / f"seen-{training_args.process_index}.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(passes))
