"""configs/gpu_smoke.toml's model: google/gemma-2-2b's architecture with random weights, built without a download."""

from __future__ import annotations

import torch

from benchmarks.models import gemma2_2b_config as benchmark_gemma2_2b_config
from fcloop.config import ModelConfig
from fcloop.model.load import load_model, load_tokenizer
from fcloop.model.tiny import RANDOM_GEMMA2_2B_PATH, gemma2_2b_config

GEMMA2_2B_PARAMETERS = 2_614_341_888  # google/gemma-2-2b as published (embedding tied to the lm_head)


def test_random_gemma2_2b_has_the_published_size_and_the_tiny_tokenizer():
    config = ModelConfig(path=RANDOM_GEMMA2_2B_PATH)
    tokenizer = load_tokenizer(config)
    assert len(tokenizer) < 1000  # the tiny tokenizer: its ids are rows of the 256000-row embedding
    # On the meta device: the shapes without allocating 10 GB.
    model = load_model(config, len(tokenizer), torch.bfloat16, torch.device("meta"), seed=0)
    assert sum(p.numel() for p in model.parameters()) == GEMMA2_2B_PARAMETERS
    assert model.get_input_embeddings().weight.shape == (256000, 2304)
    assert model.config.layer_types[:2] == ["sliding_attention", "full_attention"]


def test_the_benchmark_builds_the_same_architecture():
    ours, benchmark = gemma2_2b_config(600).to_dict(), benchmark_gemma2_2b_config("eager").to_dict()
    ignored = {"_attn_implementation_autoset", "attn_implementation", "use_cache", "_attn_implementation"}
    assert {k: v for k, v in ours.items() if k not in ignored} == {
        k: v for k, v in benchmark.items() if k not in ignored
    }
