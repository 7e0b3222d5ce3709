"""Every shipped config loads, round-trips, and names data sources and a model in a form the loader knows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fcloop.config import config_to_toml, load_config
from fcloop.data.readers import LOCAL_SUFFIXES, parse_hub_id, resolve_source

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
MODEL_SCHEMES = ("tiny:gemma2", "pypi:gemma3-270m", "random:gemma2-2b")


def test_the_known_configs_are_found():
    assert {"demo.toml", "gemma.toml", "tiny.toml", "gpu_smoke.toml"} <= {path.name for path in CONFIGS}


def source_problem(source: str) -> str | None:
    """None when `source` is a form the readers accept and, if local, exists; else what is wrong."""
    if source.startswith("demo:"):
        return None if Path(resolve_source(source)).is_file() else "missing demo split"
    if source.endswith(LOCAL_SUFFIXES):
        return None if (CONFIG_DIR.parent / source).is_file() else "missing local file"
    dataset_id, _, _ = parse_hub_id(source)
    return None if HUB_ID.fullmatch(dataset_id) else "not owner/name"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_loads_and_names_valid_sources(path, tmp_path):
    config = load_config(path)
    sources = config.data.train + config.data.eval
    assert config.data.train, "a config must name training data"
    assert {source: source_problem(source) for source in sources} == dict.fromkeys(sources)
    assert config.model.path in MODEL_SCHEMES or HUB_ID.fullmatch(config.model.path)
    copy = tmp_path / path.name
    copy.write_text(config_to_toml(config))
    assert load_config(copy) == config


@pytest.mark.parametrize(
    ("name", "train", "eval", "model"),
    [
        ("demo.toml", ("demo:train",), ("demo:eval",), "pypi:gemma3-270m"),
        ("tiny.toml", ("demo:eval",), (), "tiny:gemma2"),
        ("gemma.toml", ("Jofthomas/hermes-function-calling-thinking-V1",), (), "google/gemma-2-2b-it"),
        ("gpu_smoke.toml", ("demo:train",), ("demo:eval",), "random:gemma2-2b"),
    ],
)
def test_known_config_sources(name, train, eval, model):
    config = load_config(CONFIG_DIR / name)
    assert (config.data.train, config.data.eval, config.model.path) == (train, eval, model)
