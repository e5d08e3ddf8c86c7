"""Run under `accelerate launch`: iterate Trainer's own train dataloader for two passes over a stream and
write, per process, the decoded blocks each pass gave it (tests/test_streaming.py reads them)."""
import json
import sys
from pathlib import Path

import pretrain_gpt2_zh
from transformers import DataCollatorForLanguageModeling

from scratchlm.config import parse_config
from scratchlm.data import PackingSpec, prepare_lm_data
from scratchlm.models import build_causal_lm
from scratchlm.tokenizer import load_tokenizer
from scratchlm.training import build_trainer

settings = parse_config(pretrain_gpt2_zh.SETTINGS, sys.argv[1:])
model_args, tokenizer_args, data_args, training_args = settings
tokenizer = load_tokenizer(tokenizer_args.tokenizer_name_or_path, required=())
data = prepare_lm_data(data_args, tokenizer, PackingSpec.causal(tokenizer, data_args.block_size))
model = build_causal_lm(model_args, tokenizer, data_args.block_size)
trainer = build_trainer(model, tokenizer, data, settings, DataCollatorForLanguageModeling(tokenizer, mlm=False))
passes = []
for epoch in range(2):
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    passes.append([tokenizer.decode(ids, skip_special_tokens=True) for batch in loader for ids in batch["input_ids"]])
out = Path(training_args.output_dir) / f"seen-{training_args.process_index}.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(passes))
