"""Run under torchrun with two CPU processes: shard a tiny GPT-2 with FSDP (`argv[2]`: 1 or 2 as accelerate
wraps it by default, or 1-bf16 with a mixed-precision policy of FSDP 1's own), draw an evaluation's samples
through `SampleCallback` as Trainer would on each process, then train a step on both. Writes, per process,
what it sampled and what the unsharded model samples (tests/test_training.py reads them); a process left
waiting fails on the gloo timeout."""

import copy
import datetime
import functools
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from char_tokenizer import CharTokenizer  # beside this file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FullyShardedDataParallel, MixedPrecision, fully_shard
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
from transformers import GPT2Config, GPT2LMHeadModel, TrainerState
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from scratchlm.training.callbacks import SampleCallback, shards_its_weights

out_dir, fsdp = Path(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
rank = dist.get_rank()
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=64, n_embd=32, n_layer=2, n_head=2))
state = TrainerState(is_world_process_zero=rank == 0, global_step=4)
unsharded = SampleCallback(["ROMEO:", "a"], max_new_tokens=12, seed=0)
unsharded.on_evaluate(None, state, None, model=copy.deepcopy(model), processing_class=CharTokenizer())
if fsdp == "2":
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    wrapped = fully_shard(model, mesh=mesh)
else:  # version 1 wraps the model: callbacks are handed the model inside, the trainer keeps the wrapper
    blocks = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={GPT2Block})
    bf16 = torch.bfloat16
    precision = MixedPrecision(param_dtype=bf16, reduce_dtype=bf16, buffer_dtype=bf16) if fsdp == "1-bf16" else None
    wrapped = FullyShardedDataParallel(
        model, auto_wrap_policy=blocks, device_id=torch.device("cpu"), mixed_precision=precision
    )
callback = SampleCallback(["ROMEO:", "a"], max_new_tokens=12, seed=0)
callback.wrapped_model = wrapped
callback.on_evaluate(None, state, None, model=model, processing_class=CharTokenizer())
batch = torch.randint(0, 64, (2, 16))
wrapped(batch, labels=batch).loss.backward()  # the next training step, on both processes
sampled = callback.samples.tokens if callback.samples is not None else None
unsharded_tokens = unsharded.samples.tokens if unsharded.samples is not None else None
result = {"sharded": shards_its_weights(model), "samples": sampled, "unsharded": unsharded_tokens}
Path(out_dir, f"rank-{rank}.json").write_text(json.dumps(result))
dist.destroy_process_group()
