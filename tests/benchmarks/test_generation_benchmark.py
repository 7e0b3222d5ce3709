"""benchmarks.generation on the tiny model: the variants run on the same prompts, dropping the contiguous
head input changes no text, and the report is written whole."""

from __future__ import annotations

import json

import torch

from benchmarks import generation
from tests.tiny_data import write_tiny_data

CONFIGS = generation.RESULTS.parents[1] / "configs"


def test_generation_benchmark_compares_the_variants_on_the_same_prompts(tmp_path):
    train_file, eval_file = write_tiny_data(tmp_path / "data", train_count=1, eval_count=3)
    out = tmp_path / "generation.json"
    threads = torch.get_num_threads()
    report = generation.main(
        [
            "--config", str(CONFIGS / "tiny.toml"), "--cases", "3", "--batch-size", "3", "--new-tokens", "4",
            "--rounds", "1", "--json", str(out), f"--data.train={train_file}", f"--data.eval={eval_file}",
            "--train.precision=fp32",
        ]
    )  # fmt: skip
    assert torch.get_num_threads() == threads
    assert set(report["variants"]) == {"fcloop", "strided_head_input"}  # no adapter: no fp32_adapter variant
    assert report["cases"] == 3 and report["dtype"] == "float32"
    strided = report["variants"]["strided_head_input"]
    assert strided["same_texts_as_fcloop"] and strided["texts_differing"] == 0
    assert json.loads(out.read_text()) == report
    assert "| strided_head_input |" in out.with_suffix(".md").read_text()
    # the hook that the variant takes out is back in place for everyone else
    assert generation.generation.contiguous_head_input.__name__ == "contiguous_head_input"
