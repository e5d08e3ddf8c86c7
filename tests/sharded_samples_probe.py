"""Run under torchrun with two CPU processes: FSDP2-shard a tiny GPT-2, draw an evaluation's samples through
`SampleCallback` as Trainer would on each process, then train a step on both. Writes, per process, what it
sampled (tests/test_training.py reads them); a process left waiting fails on the gloo timeout."""

import datetime
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from char_tokenizer import CharTokenizer  # beside this file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import GPT2Config, GPT2LMHeadModel, TrainerState

from scratchlm.training.callbacks import SampleCallback, shards_its_weights

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
rank = dist.get_rank()
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=64, n_embd=32, n_layer=2, n_head=2))
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for block in model.transformer.h:
    fully_shard(block, mesh=mesh)
fully_shard(model, mesh=mesh)
state = TrainerState(is_world_process_zero=rank == 0, global_step=4)
callback = SampleCallback(["ROMEO:", "a"], max_new_tokens=12, seed=0)
callback.on_evaluate(None, state, None, model=model, processing_class=CharTokenizer())
batch = torch.randint(0, 64, (2, 16))
model(batch, labels=batch).loss.backward()  # the next training step, on both processes
sampled = callback.samples.tokens if callback.samples is not None else None
result = {"sharded": shards_its_weights(model), "samples": sampled}
Path(sys.argv[1], f"rank-{rank}.json").write_text(json.dumps(result))
dist.destroy_process_group()
