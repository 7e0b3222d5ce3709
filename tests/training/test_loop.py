"""The loop's exactness: packing, accumulation and resume do not change the math; the adapter round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bfcl_data import write_bfcl_folder
from tiny_data import write_tiny_data

import fcloop.model.loss
import fcloop.training.loop
from fcloop.config import load_config
from fcloop.data.load import load_datasets
from fcloop.hardware import Hardware
from fcloop.model.load import load_model
from fcloop.model.lora import add_token_rows
from fcloop.training.loop import evaluate_loss, learning_rate, train
from fcloop.training.metrics import read_metrics, read_run_file

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUN_KEYS = {
    "train/loss",
    "train/lr",
    "train/grad_norm",
    "train/tokens",
    "train/supervised_tokens",
    "train/tokens_per_sec",
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("data"))


def tiny_config(tmp_path: Path, data: tuple[Path, Path], *overrides: str):
    train_file, eval_file = data
    return load_config(
        CONFIGS / "tiny.toml",
        [
            f"--run.out_dir={tmp_path / 'run'}",
            f"--data.train={train_file}",
            f"--data.eval={eval_file}",
            "--data.eval_fraction=0.0",
            "--data.max_seq_len=512",
            "--train.precision=fp32",
            *overrides,
        ],
    )


def eval_losses(out_dir: Path) -> list[float]:
    return [record["eval/loss"] for record in read_metrics(out_dir) if "eval/loss" in record]


def test_tiny_config_trains_end_to_end(tmp_path, tiny_data):
    config = tiny_config(tmp_path, tiny_data, "--checkpoint.every_steps=2", "--train.max_steps=4")
    state = train(config)
    out = Path(config.run.out_dir)
    assert state.step == 4
    records = read_metrics(out)
    train_records = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4]
    assert all(set(r) >= RUN_KEYS for r in train_records)
    assert [r["step"] for r in records if "eval/loss" in r] == [0, 2, 4]
    assert eval_losses(out)[-1] < eval_losses(out)[0]
    assert train_records[-1]["train/tokens"] > train_records[0]["train/tokens"] > 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step_")) == ["step_000002", "step_000004"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "config.toml"):
        assert (out / "final" / name).exists(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(out / "config.toml") == config


def test_train_prints_and_records_the_precision_and_compile_it_chose(tmp_path, tiny_data, monkeypatch, capsys):
    # Stand-in hardware, so that the test means the same on any machine: a CPU with AMX but no C++ compiler.
    amx = Hardware("cpu", "Xeon", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
    monkeypatch.setattr(fcloop.training.loop, "detect_hardware", lambda device: amx)
    loaded_dtypes = []
    real_load_model = fcloop.training.loop.load_model

    def recording_load_model(config, vocab_size, dtype, device, seed):
        loaded_dtypes.append(dtype)
        return real_load_model(config, vocab_size, dtype, device, seed)

    monkeypatch.setattr(fcloop.training.loop, "load_model", recording_load_model)
    config = tiny_config(
        tmp_path,
        tiny_data,
        "--train.precision=auto",
        "--train.max_steps=1",
        "--eval.every_steps=0",
        "--checkpoint.every_steps=1",
    )
    train(config)
    precision = "precision bf16: CPU has AMX-BF16 (native bf16 matmuls)"
    no_compile = "compile off: no C++ compiler for inductor's CPU code (install g++, or set CXX)"
    assert capsys.readouterr().out.splitlines()[:2] == [precision, no_compile]  # first, before the data's stats
    assert loaded_dtypes == [torch.bfloat16]
    out = Path(config.run.out_dir)
    assert read_run_file(out) == {
        "precision": "bf16",
        "precision_reason": precision,
        "compile": False,
        "compile_reason": no_compile,
        "device_type": "cpu",
        "device_name": "Xeon",
        "cuda_bf16": False,
        "cpu_flags": ["amx_bf16", "amx_tile", "avx2", "avx512_bf16", "avx512f"],
        "cpp_compiler": None,
    }
    assert load_config(out / "config.toml").train.precision == "auto"  # the config as given; run.json the choice
    # What a resume checks (tests/training/test_resume_safety.py): the precision the run computed with.
    fingerprint = json.loads((out / "step_000001" / "fingerprint.json").read_text())
    assert fingerprint["fixed"]["train.precision"] == "bf16" and fingerprint["settings"]["train.precision"] == "auto"


def test_packed_and_unpacked_runs_give_the_same_eval_loss(tmp_path, tiny_data):
    # Every step is one whole epoch in both runs (4 packed rows, or 8 rows of one conversation each), so both
    # runs see the same conversations per step; only the layout differs.
    steps = ["--train.max_steps=3", "--eval.every_steps=1", "--lora.dropout=0.0"]
    packed = tiny_config(tmp_path / "packed", tiny_data, *steps, "--train.micro_batch_size=2", "--data.packing=true")
    unpacked = tiny_config(
        tmp_path / "unpacked", tiny_data, *steps, "--train.micro_batch_size=4", "--data.packing=false"
    )
    train(packed)
    train(unpacked)
    packed_losses, unpacked_losses = (
        eval_losses(tmp_path / "packed" / "run"),
        eval_losses(tmp_path / "unpacked" / "run"),
    )
    assert len(packed_losses) == 4
    assert packed_losses[-1] < packed_losses[0] - 0.05  # it trained, so equality below means something
    torch.testing.assert_close(packed_losses, unpacked_losses, rtol=1e-5, atol=0)


@pytest.mark.parametrize(("micro_batch", "accumulation"), [(2, 2), (1, 4)])
def test_gradient_accumulation_invariance(tmp_path, tiny_data, micro_batch, accumulation):
    steps = ["--train.max_steps=2", "--eval.every_steps=1", "--lora.dropout=0.0", "--data.max_seq_len=256"]
    reference = tiny_config(
        tmp_path / "ref", tiny_data, *steps, "--train.micro_batch_size=4", "--train.grad_accum_steps=1"
    )
    split = tiny_config(
        tmp_path / "split",
        tiny_data,
        *steps,
        f"--train.micro_batch_size={micro_batch}",
        f"--train.grad_accum_steps={accumulation}",
    )
    train(reference)
    train(split)
    reference_losses = eval_losses(tmp_path / "ref" / "run")
    assert reference_losses[-1] < reference_losses[0]
    torch.testing.assert_close(eval_losses(tmp_path / "split" / "run"), reference_losses, rtol=1e-5, atol=0)


EMPHASIS = [r"--data.emphasis_pattern=get_weather for \w+", "--data.emphasis_weight=4.0"]
RUNS = ("whole", "split", "plain")


def test_emphasis_is_invariant_to_accumulation_and_changes_what_is_learnt(tmp_path, tiny_data):
    steps = ["--train.max_steps=2", "--eval.every_steps=1", "--lora.dropout=0.0", "--data.max_seq_len=256"]
    whole = tiny_config(
        tmp_path / "whole", tiny_data, *steps, *EMPHASIS, "--train.micro_batch_size=4", "--train.grad_accum_steps=1"
    )
    split = tiny_config(
        tmp_path / "split", tiny_data, *steps, *EMPHASIS, "--train.micro_batch_size=1", "--train.grad_accum_steps=4"
    )
    plain = tiny_config(
        tmp_path / "plain", tiny_data, *steps, "--train.micro_batch_size=4", "--train.grad_accum_steps=1"
    )
    for config in (whole, split, plain):
        train(config)
    whole_losses, split_losses, plain_losses = (eval_losses(tmp_path / name / "run") for name in RUNS)
    assert whole_losses[-1] < whole_losses[0]
    torch.testing.assert_close(split_losses, whole_losses, rtol=1e-5, atol=0)
    # The weights reach the gradient: the same data and seed without them learn something else. The eval loss
    # itself is never weighted, so at step 0 all three agree.
    assert plain_losses[0] == whole_losses[0]
    assert abs(plain_losses[-1] - whole_losses[-1]) > 1e-4
    train_losses = [r["train/loss"] for r in read_metrics(tmp_path / "whole" / "run") if "train/loss" in r]
    plain_train_losses = [r["train/loss"] for r in read_metrics(tmp_path / "plain" / "run") if "train/loss" in r]
    # train/loss is the weighted objective, divided by the supervised count as without emphasis: the emphasized
    # tokens count 4 times, so the first step's loss (same model, same batch) is larger.
    assert train_losses[0] > plain_train_losses[0]


def comparable(records: list[dict]) -> list[dict]:
    # Wall-clock speed and the process's peak memory describe the machine, not the training math.
    return [{k: v for k, v in r.items() if k not in ("train/tokens_per_sec", "memory/peak_gib")} for r in records]


def test_keeping_the_logits_trains_exactly_like_recomputing_them(tmp_path, tiny_data, monkeypatch):
    recomputed_chunks = []
    real_checkpoint = fcloop.model.loss.checkpoint

    def counting_checkpoint(*args, **kwargs):
        recomputed_chunks.append(1)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(fcloop.model.loss, "checkpoint", counting_checkpoint)
    steps = ["--train.max_steps=2", "--eval.every_steps=1", "--lora.dropout=0.0", "--checkpoint.every_steps=0"]
    records, chunk_counts = {}, {}
    for recompute in (True, False):
        recomputed_chunks.clear()
        folder = tmp_path / str(recompute)
        train(tiny_config(folder, tiny_data, *steps, f"--train.recompute_logits={str(recompute).lower()}"))
        records[recompute], chunk_counts[recompute] = comparable(read_metrics(folder / "run")), len(recomputed_chunks)
    assert chunk_counts[True] > 0 and chunk_counts[False] == 0
    assert len(records[False]) == 5 and records[False][-1]["eval/loss"] < records[False][0]["eval/loss"]
    assert records[False] == records[True]


def test_resume_equals_an_uninterrupted_run(tmp_path, tiny_data):
    # Dropout on, so the restored RNG state matters; the data is 2 steps per epoch, so resume crosses an epoch.
    common = [
        "--train.max_steps=5",
        "--train.micro_batch_size=1",
        "--train.grad_accum_steps=2",
        "--data.max_seq_len=256",
        "--lora.dropout=0.1",
        "--eval.every_steps=2",
        "--checkpoint.every_steps=2",
        "--checkpoint.resume=auto",
    ]
    uninterrupted = tiny_config(tmp_path / "whole", tiny_data, *common)
    interrupted = tiny_config(tmp_path / "parts", tiny_data, *common)
    train(uninterrupted)
    train(interrupted, stop_after_steps=3)  # dies after step 3; the last checkpoint is step 2
    assert max(r["step"] for r in read_metrics(interrupted.run.out_dir)) == 3
    train(interrupted)
    whole, parts = read_metrics(uninterrupted.run.out_dir), read_metrics(interrupted.run.out_dir)
    assert comparable(parts) == comparable(whole)  # bitwise: exact float equality
    assert [r["step"] for r in whole if "train/loss" in r] == [1, 2, 3, 4, 5]


def test_saved_adapter_loads_with_peft_and_reproduces_eval_loss(tmp_path, tiny_data):
    from peft import PeftModel

    config = tiny_config(tmp_path, tiny_data, "--train.max_steps=2", "--eval.every_steps=2")
    train(config)
    final = Path(config.run.out_dir) / "final"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    # A fresh base model: same random init (the tiny model's weights come from the seed), vocab grown to fit.
    base = load_model(config.model, len(tokenizer), torch.float32, torch.device("cpu"), config.run.seed)
    add_token_rows(base, len(tokenizer), [])
    model = PeftModel.from_pretrained(base, final)
    data = load_datasets(config.data, tokenizer, config.run.seed)
    loss = evaluate_loss(model, data.eval, config.data.max_seq_len, True, 4, "fp32", torch.device("cpu"), 0)
    assert loss == pytest.approx(eval_losses(Path(config.run.out_dir))[-1], rel=1e-6)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("cosine", [0.5, 1.0, 1.0, 0.75, 0.25]),
        ("linear", [0.5, 1.0, 1.0, 2 / 3, 1 / 3]),
        ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_learning_rate_schedule(schedule, expected):
    config = load_config(None, ["--train.lr=1.0", "--train.warmup_steps=2", f"--train.schedule={schedule}"]).train
    assert [learning_rate(step, config, total_steps=5) for step in range(5)] == pytest.approx(expected)


def test_the_run_ends_with_the_first_evaluation_beside_the_last(tmp_path, tiny_data, capsys):
    config = tiny_config(tmp_path, tiny_data, "--train.max_steps=2", "--eval.max_cases=3", "--eval.max_new_tokens=4")
    train(config)
    first, last = [r for r in read_metrics(config.run.out_dir) if "eval/loss" in r]
    out = capsys.readouterr().out
    table = out[out.index("before and after training, on the eval cases (3 held-out conversations):") :]
    lines = table.splitlines()
    assert lines[1].split() == ["step", "0", "step", "2"]
    assert lines[2].split()[-2:] == [f"{first['eval/loss']:.3f}", f"{last['eval/loss']:.3f}"]
    right = f"{first['eval/call_exact_match']:.3f}", f"{last['eval/call_exact_match']:.3f}"
    assert lines[3].startswith("  cases right, all kinds") and tuple(lines[3].split()[-2:]) == right


def test_tool_call_metrics_are_logged_at_each_evaluation(tmp_path, tiny_data):
    config = tiny_config(tmp_path, tiny_data, "--train.max_steps=2", "--eval.max_cases=3", "--eval.max_new_tokens=4")
    train(config)
    names = (
        "decision_accuracy",
        "call_exact_match",
        "name_accuracy",
        "argument_accuracy",
        "parse_failure_rate",
        "schema_valid_rate",
        "think_before_call_rate",
    )
    evaluations = [r for r in read_metrics(config.run.out_dir) if "eval/loss" in r]
    assert [r["step"] for r in evaluations] == [0, 2]
    for record in evaluations:
        assert record["eval/n"] == 3
        assert set(record) >= {f"eval/{name}" for name in names}
        assert all(record[f"eval/{name}"] is None or 0.0 <= record[f"eval/{name}"] <= 1.0 for name in names)
    # Every case's generation is kept per evaluation, and scoring the file again gives the logged metrics.
    from fcloop.evaluation.scoring import aggregate, score_case

    for record in evaluations:
        path = Path(config.run.out_dir) / "eval" / f"predictions_step_{record['step']:06d}.jsonl"
        predictions = [json.loads(line) for line in path.read_text().splitlines()]
        assert [set(p) for p in predictions] == [{"id", "tools", "expected", "generated"}] * 3
        rescored = aggregate([score_case(p["expected"], p["generated"], p["tools"]) for p in predictions])
        # What eval.constrain_calls (on by default) did is logged beside the scores.
        constraint = {key for key in record if key.startswith("eval/constraint_")}
        assert constraint == {"eval/constraint_steps", "eval/constraint_replaced", "eval/constraint_unresolved"}
        assert all(isinstance(record[key], int) and record[key] >= 0 for key in constraint)
        assert {f"eval/{name}": value for name, value in rescored.items()} == {
            key: value
            for key, value in record.items()
            if key.startswith("eval/") and key != "eval/loss" and key not in constraint
        }


@pytest.mark.parametrize("eval_fraction", [0.25, 0.0])
def test_bfcl_metrics_are_logged_at_each_evaluation(tmp_path, tiny_data, eval_fraction):
    folder = write_bfcl_folder(tmp_path / "bfcl")
    sources = [f"bfcl:{folder / 'BFCL_v4_simple_python.json'}", f"bfcl:{folder / 'BFCL_v4_parallel.json'}"]
    config = tiny_config(
        tmp_path, tiny_data, "--train.max_steps=2", "--eval.max_new_tokens=4", f"--data.eval_fraction={eval_fraction}",
        f"--data.eval={json.dumps(sources)}",
    )  # fmt: skip
    train(config)
    evaluations = [r for r in read_metrics(config.run.out_dir) if "bfcl/accuracy" in r]
    assert [r["step"] for r in evaluations] == [0, 2]
    for record in evaluations:
        path = Path(config.run.out_dir) / "eval" / f"bfcl_predictions_step_{record['step']:06d}.jsonl"
        predictions = [json.loads(line) for line in path.read_text().splitlines()]
        assert [p["id"] for p in predictions] == ["simple_python_0", "simple_python_1", "simple_python_2", "parallel_0"]
        assert record["bfcl/accuracy"] == sum(p["correct"] for p in predictions) / 4
        counts = [record[f"bfcl/{name}"] for name in ("n", "simple_python/n", "parallel/n", "too_long")]
        assert counts == [4, 3, 1, 0]
        # With only bfcl: sources in data.eval, a held-out fraction still gives the eval loss; without one there
        # is no loss to measure (null), and BFCL is evaluated all the same.
        assert (record["eval/loss"] is not None) == (eval_fraction > 0)
