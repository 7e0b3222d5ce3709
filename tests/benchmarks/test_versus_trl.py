"""benchmarks.versus_trl: the quick CPU comparison (tiny model, 2 timed steps a side, when TRL is installed)
and the pieces it is built from."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from benchmarks import versus_trl
from benchmarks.versus_trl import SIDES, common_config, spread, step_counts, trl_row
from fcloop.config import load_config
from fcloop.data.packing import supervised_targets
from fcloop.data.tokenization import IGNORE_INDEX, Encoded
from fcloop.model.flex_attention import refuse_unfused_flex_under_checkpointing
from fcloop.model.load import model_parts
from tests.tiny_data import write_tiny_data

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
needs_trl = pytest.mark.skipif(
    importlib.util.find_spec("trl") is None, reason='TRL is not installed (pip install -e ".[bench]")'
)


def doc(ids: list[int], supervised_from: int) -> Encoded:
    labels = [IGNORE_INDEX] * supervised_from + ids[supervised_from:]
    return Encoded(tuple(ids), tuple(labels), "test", 0)


def test_trl_row_is_the_packed_format_with_our_labels():
    docs = [doc([11, 12, 13, 14], 2), doc([21, 22, 23], 1)]
    assert trl_row(docs, completion_only=False) == {"input_ids": [11, 12, 13, 14, 21, 22, 23], "seq_lengths": [4, 3]}
    assert trl_row(docs, completion_only=True) == {
        "input_ids": [11, 12, 13, 14, 21, 22, 23],
        "seq_lengths": [4, 3],
        "labels": [-100, -100, 13, 14, -100, 22, 23],
    }


def test_step_counts_targets_never_cross_documents():
    # Supervised targets: 13, 14 of the first document and 22, 23 of the second; a loss on every token has a
    # target at every position but each document's first.
    step = [[doc([11, 12, 13, 14], 2), doc([21, 22, 23], 1)], [doc([31, 32], 0)]]
    assert step_counts(step) == (9, 2 + 2 + 1, 9 - 3)


def test_common_config_trains_only_what_trl_accepts():
    config = common_config(load_config(CONFIGS / "gemma.toml"))
    assert config.lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert not config.lora.train_new_token_rows and config.lora.train_token_rows == ()
    assert config.lora.r == 16 and config.train == load_config(CONFIGS / "gemma.toml").train


def test_spread_hand_example():
    assert spread([4.0, 1.0, 3.0, 2.0]) == {"median": 2.5, "min": 1.0, "max": 4.0, "q1": 1.75, "q3": 3.25}
    assert spread([2.0]) == {"median": 2.0, "min": 2.0, "max": 2.0, "q1": 2.0, "q3": 2.0}


def test_rates_and_ratio_from_hand_runs():
    # Two steps of 100 tokens (30 supervised, 98 all-token targets), one of warm-up; two rounds.
    counts = [(100, 30, 98)] * 2
    ours = [{"step_times": [9.0, 1.0], "losses": [2.0, 1.5], "peak_memory_gib": 1.0, "process_peak_gib": 2.0,
             "memory_source": "m", "threads": 1}, {"step_times": [9.0, 3.0], "losses": [2.0, 1.5],
             "peak_memory_gib": 3.0, "process_peak_gib": 4.0, "memory_source": "m", "threads": 1}]  # fmt: skip
    theirs = [{**run, "step_times": [9.0, 4.0]} for run in ours]
    fcloop = versus_trl.summarize_side("fcloop", ours, counts, warmup=1)
    assert fcloop["tokens_per_sec"] == 200 / 4 and fcloop["supervised_tokens_per_sec"] == 60 / 4
    assert fcloop["round_tokens_per_sec"] == [100.0, 100 / 3]
    assert fcloop["peak_memory_gib"] == 2.0 and fcloop["process_peak_gib"] == 3.0
    assert fcloop["final_loss"] == 1.5 and fcloop["final_loss_spread_across_rounds"] == 0.0
    assert fcloop["loss_tokens_per_step"] == 30
    packing = versus_trl.summarize_side("trl_packing", theirs, counts, warmup=1)
    assert packing["tokens_per_sec"] == 200 / 8 and packing["loss_tokens_per_step"] == 98
    sides = {"fcloop": fcloop, "trl_packing": packing, "trl_completion_only": packing}
    assert versus_trl.ratios(sides)["trl_packing"] == {"overall": 2.0, "per_round": pytest.approx([4.0, 4 / 3])}


def test_a_failed_side_is_reported_not_hidden():
    entry = versus_trl.summarize_side("trl_packing", [{"side": "trl_packing", "error": "exit status 1:\nboom"}], [], 1)
    assert entry == {"side": "trl_packing", "rounds": 0, "errors": ["exit status 1:\nboom"]}


def test_missing_trl_says_how_to_install_it(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real_find_spec(name))
    with pytest.raises(SystemExit, match=re.escape('trl not installed): pip install -e ".[bench]"')):
        versus_trl.main(["--config", str(CONFIGS / "tiny.toml"), "--json", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_fcloop_itself_never_uses_trl_or_the_hf_trainer():
    for path in (ROOT / "fcloop").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import trl|from trl)", text, re.MULTILINE), path
        assert not re.search(r"\b(Trainer|TrainingArguments)\b", text), path


def quick_argv(tmp_path: Path) -> list[str]:
    train, _ = write_tiny_data(tmp_path / "data", train_count=32, eval_count=1)
    return [
        "--config", str(CONFIGS / "tiny.toml"), f"--data.train={train}", "--data.eval_fraction=0.0",
        "--data.max_seq_len=512",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path, list[str]]:
    folder = tmp_path_factory.mktemp("versus_trl")
    base = quick_argv(folder)
    out = folder / "versus_trl.json"
    argv = [*base, "--device", "cpu", "--steps", "2", "--warmup", "1", "--rounds", "1", "--threads", "1"]
    versus_trl.main([*argv, "--json", str(out)])
    return json.loads(out.read_text()), out, base


@needs_trl
def test_quick_comparison_runs_every_side(quick):
    report, out, _ = quick
    assert report["command"].startswith("python -m benchmarks.versus_trl --config")
    assert report["versions"]["trl"] and report["settings"]["lora_targets"][-1] == "down_proj"
    for side in SIDES:
        entry = report["sides"][side]
        assert entry["errors"] == [] and entry["rounds"] == 1, entry["errors"]
        assert len(entry["losses"]) == 3 and entry["tokens_per_sec"] > 0 and entry["peak_memory_gib"] > 0
    ratio = report["ratios"]["trl_packing"]["overall"]
    assert ratio == pytest.approx(
        report["sides"]["fcloop"]["tokens_per_sec"] / report["sides"]["trl_packing"]["tokens_per_sec"]
    )
    table = out.with_suffix(".md").read_text()
    assert all(f"| {side} |" in table for side in SIDES) and "fcloop / trl_completion_only" in table


@needs_trl
def test_every_side_trains_on_the_same_rows(quick):
    report, _, base = quick
    config = common_config(load_config(base[1], base[2:]))
    steps = versus_trl.training_steps(config, 3)
    assert all(len(step) == 4 for step in steps)  # tiny.toml: micro-batch 2 x accumulation 2
    expected = [
        {
            "tokens": sum(len(d) for row in step for d in row),
            "supervised": sum(supervised_targets(d) for row in step for d in row),
            "all_token_targets": sum(len(d) - 1 for row in step for d in row),
        }
        for step in steps
    ]
    assert report["step_tokens"] == expected
    sides = report["sides"]
    assert sides["fcloop"]["loss_tokens_per_step"] == sides["trl_completion_only"]["loss_tokens_per_step"]
    assert sides["fcloop"]["loss_tokens_per_step"] == sum(s["supervised"] for s in expected[1:]) / 2
    assert sides["trl_packing"]["loss_tokens_per_step"] == sum(s["all_token_targets"] for s in expected[1:]) / 2


@needs_trl
def test_trl_completion_only_loss_matches_fcloop(quick):
    report, _, _ = quick
    ours, theirs = report["sides"]["fcloop"]["losses"], report["sides"]["trl_completion_only"]["losses"]
    # Step 1 runs before any update, on the same weights: the same loss up to summation order. Later steps
    # follow the same updates (same optimizer, same gradients up to rounding).
    assert theirs[0] == pytest.approx(ours[0], rel=1e-6)
    assert theirs == pytest.approx(ours, rel=1e-4)
    # A loss on every token is another objective: a different number.
    assert report["sides"]["trl_packing"]["losses"][0] != pytest.approx(ours[0], rel=1e-3)


@needs_trl
def test_trl_own_packing_makes_the_rows_we_hand_it(quick):
    """trl.pack_dataset (best-fit-decreasing) on the documents of one of our rows gives exactly that row."""
    from datasets import Dataset
    from trl import pack_dataset

    _, _, base = quick
    config = common_config(load_config(base[1], base[2:]))
    for row in versus_trl.training_steps(config, 1)[0]:
        documents = Dataset.from_list([{"input_ids": list(d.input_ids), "labels": list(d.labels)} for d in row])
        packed = pack_dataset(documents, config.data.max_seq_len, "bfd").to_list()
        assert packed == [trl_row(row, completion_only=True)]


def test_fcloop_side_runs_flex_under_checkpointing_as_the_loop_does(tmp_path, monkeypatch):
    """The fcloop side with flex attention and activation checkpointing, as it runs on CUDA (flex compiled by
    transformers, layers not): the loop's refusal of a silent fallback to unfused flex must not fire, because
    the side makes that fallback an error as the loop does (the H200 window of 2026-12-04 failed here)."""
    argv = quick_argv(tmp_path)
    config = common_config(
        load_config(argv[1], [*argv[2:], "--model.attn_implementation=flex_attention", "--train.precision=fp32"])
    )
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, activation_checkpointing=True))
    steps = versus_trl.training_steps(config, 2)
    checked = []

    def refusal_only(model, *args, **kwargs):  # the check forward_loss makes first; the CPU cannot run flex's backward
        with torch.enable_grad():
            refuse_unfused_flex_under_checkpointing(model_parts(model).decoder)
        checked.append(torch._dynamo.config.fail_on_recompile_limit_hit)
        return 0.0, None

    monkeypatch.setattr(versus_trl.loop, "train_step", refusal_only)
    before = torch._dynamo.config.fail_on_recompile_limit_hit
    result = versus_trl.run_fcloop(config, steps, 1, torch.device("cpu"))
    assert checked == [True, True] and result["losses"] == [0.0, 0.0]
    assert torch._dynamo.config.fail_on_recompile_limit_hit == before  # a patch, not a change for the process


def test_the_report_is_written_after_every_round(tmp_path, monkeypatch):
    """A comparison cut off by a timeout keeps the rounds it finished: main writes the report after each."""
    written = []

    def fake_side(side, round_index, args, config_path, work):
        if round_index == 1 and side == "trl_packing":
            raise KeyboardInterrupt  # as the window's timeout ends the run in round 2
        steps = args.warmup + args.steps
        return {"step_times": [0.5] * steps, "losses": [1.0] * steps, "memory_source": "rss",
                "peak_memory_gib": 1.0, "setup_peak_gib": 1.0, "process_peak_gib": 1.0, "threads": 1}  # fmt: skip

    monkeypatch.setattr(versus_trl, "run_side", fake_side)
    monkeypatch.setattr(versus_trl, "missing_packages", lambda: [])  # no side runs TRL here: it need not be installed
    monkeypatch.setattr(versus_trl, "write_report", lambda report, *paths: written.append(report["rounds"]))
    out = tmp_path / "versus_trl.json"
    argv = [*quick_argv(tmp_path), "--device", "cpu", "--steps", "1", "--warmup", "1", "--rounds", "2"]
    with pytest.raises(KeyboardInterrupt):
        versus_trl.main([*argv, "--json", str(out)])
    assert written == [1]
