"""`python -m fcloop.eval`: scoring a predictions file alone, and generating on a tiny trained run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bfcl_data import write_bfcl_folder
from tiny_data import write_tiny_data

from fcloop.config import load_config
from fcloop.errors import run_cli
from fcloop.eval import inference_dtype, load_inference_model
from fcloop.eval import main as eval_main
from fcloop.hardware import Hardware
from fcloop.training.loop import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECORD_KEYS = ["id", "tools", "expected", "generated"]
SCORE_KEYS = {
    "decision_accuracy",
    "call_exact_match",
    "name_accuracy",
    "argument_accuracy",
    "parse_failure_rate",
    "schema_valid_rate",
    "think_before_call_rate",
    "right_no_call",
    "right_one_call",
    "right_several_calls",
    "n",
}
# What eval.constrain_calls (on by default) did: fcloop.evaluation.constrained.
CONSTRAINT_KEYS = {"constraint_steps", "constraint_replaced", "constraint_unresolved"}
METRIC_KEYS = SCORE_KEYS | CONSTRAINT_KEYS
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def call(city: str) -> str:
    return "<tool_call>\n" + json.dumps({"name": "get_weather", "arguments": {"city": city}}) + "\n</tool_call>"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------
# --score


def test_score_round_trip_gives_the_exact_metrics(tmp_path, capsys):
    records = [
        # Right call, thought first: correct on everything.
        {
            "id": "a",
            "tools": [WEATHER],
            "expected": call("Paris"),
            "generated": "<think>Weather.</think>" + call("Paris"),
        },
        # Right tool, wrong argument, no thought: the decision and the name are right, the arguments are not.
        {"id": "b", "tools": [WEATHER], "expected": call("Paris"), "generated": call("Lyon")},
        # A text answer was expected; the output tries a call that does not parse.
        {"id": "c", "tools": [WEATHER], "expected": "It is sunny.", "generated": "<tool_call>\n{bad\n</tool_call>"},
    ]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "scored"
    assert eval_main(["--score", str(predictions), "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text()) == {
        "decision_accuracy": 2 / 3,  # a, b
        "call_exact_match": 1 / 3,  # a
        "name_accuracy": 1.0,  # both expected calls met a get_weather call
        "argument_accuracy": 0.5,  # of those two, a's arguments are equal
        "parse_failure_rate": 1 / 3,  # c
        "schema_valid_rate": 1.0,  # both parsed calls fit the schema
        "think_before_call_rate": 0.5,  # of the two outputs that call, a thought first
        "right_no_call": 0.0,  # c
        "right_one_call": 1 / 2,  # a of a and b
        "right_several_calls": None,
        "n": 3,
    }
    assert "call_exact_match" in capsys.readouterr().out


def test_score_names_a_bad_line(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"id": "a", "tools": [], "expected": "x", "generated": "y"}) + "\n{not json\n")
    assert eval_main(["--score", str(predictions), "--out", str(tmp_path / "out")]) == 2
    assert "line 2" in capsys.readouterr().err


def test_arguments_that_cannot_work_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit):
        eval_main(["--score", str(tmp_path / "predictions.jsonl")])  # no --out
    with pytest.raises(SystemExit):
        eval_main(["--out", str(tmp_path)])  # no config to generate with


AMX_CPU = Hardware("cpu", cpu_flags=frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
AVX2_CPU = Hardware("cpu", cpu_flags=frozenset({"avx2"}))
CUDA_BF16 = Hardware("cuda", cuda_bf16=True)


@pytest.mark.parametrize(
    ("precision", "hardware", "expected"),
    [
        ("auto", AMX_CPU, (torch.bfloat16, "precision bf16: CPU has AMX-BF16 (native bf16 matmuls)")),
        ("auto", CUDA_BF16, (torch.bfloat16, "precision bf16: the CUDA device computes bf16 natively")),
        (
            "auto",
            AVX2_CPU,
            (torch.float32, "precision fp32: CPU has AVX2 only, no native bf16 (emulated bf16 is slower than fp32)"),
        ),
        ("bf16", CUDA_BF16, (torch.bfloat16, "precision bf16: set by train.precision")),
        # A run trained in bf16 elsewhere is evaluated in fp32 where bf16 would be emulated.
        (
            "bf16",
            AVX2_CPU,
            (torch.float32, "precision fp32: bf16 is not native here (evaluation uses it only where it is)"),
        ),
        ("fp32", AMX_CPU, (torch.float32, "precision fp32: set by train.precision")),
    ],
)
def test_evaluation_computes_in_the_precision_training_chooses_where_bf16_is_native(precision, hardware, expected):
    assert inference_dtype(precision, hardware) == expected


# ---------------------------------------------------------------------------------------------------------
# Generation on a tiny trained run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny run trained for one step (checkpoint included); returns its out_dir."""
    folder = tmp_path_factory.mktemp("eval_run")
    train_file, eval_file = write_tiny_data(folder / "data", train_count=4, eval_count=3)
    config = load_config(
        CONFIGS / "tiny.toml",
        [
            f"--run.out_dir={folder / 'run'}",
            f"--data.train={train_file}",
            f"--data.eval={eval_file}",
            "--data.eval_fraction=0.0",
            "--data.max_seq_len=512",
            "--train.precision=fp32",
            "--train.max_steps=1",
            "--eval.every_steps=0",
            "--checkpoint.every_steps=1",
        ],
    )
    train(config)
    return Path(config.run.out_dir)


def test_a_bf16_evaluation_computes_the_adapter_in_bf16_like_trainings_autocast(trained_run):
    config = load_config(trained_run / "config.toml")
    model, _ = load_inference_model(config, trained_run / "final", torch.bfloat16, torch.device("cpu"))
    adapter = {name: parameter.dtype for name, parameter in model.named_parameters() if "lora_" in name}
    assert adapter and set(adapter.values()) == {torch.bfloat16}  # peft alone loads them in fp32
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}


def test_eval_cli_writes_predictions_and_metrics_for_a_trained_adapter(trained_run, tmp_path):
    out = tmp_path / "eval"
    argv = [str(trained_run / "config.toml"), "--adapter", str(trained_run / "final"), "--out", str(out)]
    assert eval_main([*argv, "--eval.max_cases=3", "--eval.max_new_tokens=8"]) == 0
    records = read_jsonl(out / "predictions.jsonl")
    config = load_config(trained_run / "config.toml")
    eval_file = config.data.eval[0]
    # The first eval conversation has two assistant turns (a call, then text): cases 0:0, 0:1, then 1:0.
    assert [record["id"] for record in records] == [f"{eval_file}:0:0", f"{eval_file}:0:1", f"{eval_file}:1:0"]
    assert all(list(record) == RECORD_KEYS for record in records)
    assert records[0]["expected"].startswith("<think>I will call get_weather")
    assert records[1]["expected"].startswith("It is ") and records[1]["tools"] == []
    assert all(
        isinstance(record["generated"], str) and "<end_of_turn>" not in record["generated"] for record in records
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS and metrics["n"] == 3

    # A step checkpoint holds the same weights but no tokenizer: the config's, prepared as in training, is used.
    step_out = tmp_path / "eval_step"
    step_argv = [
        str(trained_run / "config.toml"),
        "--adapter",
        str(trained_run / "step_000001"),
        "--out",
        str(step_out),
    ]
    assert eval_main([*step_argv, "--eval.max_cases=3", "--eval.max_new_tokens=8"]) == 0
    assert read_jsonl(step_out / "predictions.jsonl") == records

    # Unconstrained: the tiny model writes no call, so the same answers, scored without the constraint's counts.
    free_out = tmp_path / "eval_free"
    free_argv = [str(trained_run / "config.toml"), "--adapter", str(trained_run / "final"), "--out", str(free_out)]
    assert eval_main([*free_argv, "--eval.max_cases=3", "--eval.max_new_tokens=8", "--eval.constrain_calls=false"]) == 0
    assert read_jsonl(free_out / "predictions.jsonl") == records
    free_metrics = json.loads((free_out / "metrics.json").read_text())
    assert set(free_metrics) == SCORE_KEYS and free_metrics == {key: metrics[key] for key in SCORE_KEYS}


def test_eval_cli_without_adapter_evaluates_the_base_model_on_data_given(trained_run, tmp_path):
    other = write_tiny_data(tmp_path / "other", train_count=1, eval_count=2)[1]
    config_path = str(trained_run / "config.toml")
    assert eval_main([config_path, "--data", str(other), "--eval.max_cases=0", "--eval.max_new_tokens=4"]) == 0
    records = read_jsonl(trained_run / "eval" / "predictions.jsonl")  # the default folder: run.out_dir/eval
    # Both conversations have two assistant turns; max_cases=0 means all.
    assert [record["id"] for record in records] == [f"{other}:{row}:{turn}" for row in (0, 1) for turn in (0, 1)]


BFCL_KEYS = {
    "bfcl/accuracy",
    "bfcl/n",
    "bfcl/too_long",
    "bfcl/simple_python",
    "bfcl/simple_python/n",
    "bfcl/irrelevance",
    "bfcl/irrelevance/n",
} | {f"bfcl/{key}" for key in CONSTRAINT_KEYS}


def test_eval_cli_scores_bfcl_sources_by_bfcls_rules_beside_the_conversations(trained_run, tmp_path):
    from fcloop.data.bfcl_cases import load_sources
    from fcloop.evaluation.bfcl import check_generated

    folder = write_bfcl_folder(tmp_path / "bfcl")
    sources = [f"bfcl:{folder / 'BFCL_v4_simple_python.json'}@2", f"bfcl:{folder / 'BFCL_v4_irrelevance.json'}"]
    config = load_config(trained_run / "config.toml")
    out = tmp_path / "eval"
    argv = [str(trained_run / "config.toml"), "--adapter", str(trained_run / "final"), "--out", str(out)]
    data = ["--data", config.data.eval[0], "--data", sources[0], "--data", sources[1]]
    assert eval_main([*argv, *data, "--eval.max_cases=1", "--eval.max_new_tokens=8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS | BFCL_KEYS
    assert (metrics["n"], metrics["bfcl/n"], metrics["bfcl/simple_python/n"], metrics["bfcl/irrelevance/n"]) == (
        1,
        3,
        2,
        1,
    )
    assert metrics["bfcl/too_long"] == 0
    cases = load_sources(sources)
    records = read_jsonl(out / "bfcl_predictions.jsonl")
    assert [record["id"] for record in records] == [case.id for case in cases]
    # Each verdict is the rules' verdict on the text generated, and the metrics count exactly those.
    for record, case in zip(records, cases, strict=True):
        assert isinstance(record["generated"], str) and record["too_long"] is False
        assert record["error"] == check_generated(case, record["generated"])
        assert record["correct"] == (record["error"] is None)
    assert metrics["bfcl/accuracy"] == sum(record["correct"] for record in records) / 3
    assert metrics["bfcl/irrelevance"] == float(records[2]["correct"])
    assert len(read_jsonl(out / "predictions.jsonl")) == 1

    # With a limit shorter than every prompt, no case is generated and each counts as wrong: none dropped.
    short = tmp_path / "short"
    argv = [str(trained_run / "config.toml"), "--out", str(short), "--data", sources[0], "--data", sources[1]]
    assert eval_main([*argv, "--data.max_seq_len=16", "--eval.max_new_tokens=4"]) == 0
    metrics = json.loads((short / "metrics.json").read_text())
    assert set(metrics) == BFCL_KEYS  # --data with only bfcl: sources scores only those
    assert (metrics["bfcl/accuracy"], metrics["bfcl/n"], metrics["bfcl/too_long"]) == (0.0, 3, 3)
    records = read_jsonl(short / "bfcl_predictions.jsonl")
    assert [(r["generated"], r["correct"], r["too_long"]) for r in records] == [(None, False, True)] * 3
    assert not (short / "predictions.jsonl").exists()

    # bfcl: sources in the config's data.eval (no --data): with data.eval_fraction, the held-out training rows
    # are evaluated too, as in training.
    held = tmp_path / "held"
    argv = [str(trained_run / "config.toml"), "--out", str(held), f"--data.eval={json.dumps(sources[1:])}"]
    assert eval_main([*argv, "--data.eval_fraction=0.5", "--eval.max_cases=1", "--eval.max_new_tokens=4"]) == 0
    metrics = json.loads((held / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS | {
        "bfcl/accuracy",
        "bfcl/n",
        "bfcl/too_long",
        "bfcl/irrelevance",
        "bfcl/irrelevance/n",
    } | {f"bfcl/{key}" for key in CONSTRAINT_KEYS}
    assert (metrics["n"], metrics["bfcl/n"]) == (1, 1)


def test_eval_cli_names_a_missing_bfcl_file_before_loading_the_model(trained_run, tmp_path):
    from fcloop.data.readers import SourceError

    argv = [
        str(trained_run / "config.toml"),
        "--out",
        str(tmp_path),
        "--data",
        f"bfcl:{tmp_path / 'BFCL_v4_multiple.json'}",
    ]
    with pytest.raises(SourceError, match="file not found"):
        eval_main(argv)


# ---------------------------------------------------------------------------------------------------------
# Eval never overwrites what it did not write, and never writes into the adapter it reads

DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"


def test_eval_refuses_an_out_folder_holding_its_files_unless_told(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "predictions.jsonl").write_text("mine\n")
    (out / "notes.txt").write_text("kept\n")
    argv = [str(trained_run / "config.toml"), "--adapter", str(trained_run / "final"), "--out", str(out)]
    argv += ["--eval.max_cases=1", "--eval.max_new_tokens=2"]
    assert run_cli(eval_main, argv) == 2
    assert capsys.readouterr().err == (
        f"error: {out} is not empty (predictions.jsonl); choose a new output path, or pass --overwrite to replace "
        f"those files\n{DEBUG_HINT}\n"
    )
    assert (out / "predictions.jsonl").read_text() == "mine\n"
    assert run_cli(eval_main, [*argv, "--overwrite"]) == 0
    assert len(read_jsonl(out / "predictions.jsonl")) == 1
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "notes.txt", "predictions.jsonl"]


def test_eval_never_writes_into_the_adapter_folder(trained_run, capsys):
    final = trained_run / "final"
    before = sorted(p.name for p in final.iterdir())
    argv = [str(trained_run / "config.toml"), "--adapter", str(final), "--out", str(final), "--overwrite"]
    assert run_cli(eval_main, argv) == 2
    assert capsys.readouterr().err == (
        f"error: {final}: the output would be written into {final}, which this command reads from; choose another "
        f"output path\n{DEBUG_HINT}\n"
    )
    assert sorted(p.name for p in final.iterdir()) == before


def test_score_refuses_to_replace_metrics(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("")
    (tmp_path / "metrics.json").write_text("{}\n")
    assert run_cli(eval_main, ["--score", str(predictions), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path} is not empty (metrics.json); choose a new output path, or pass --overwrite to replace "
        f"those files\n{DEBUG_HINT}\n"
    )
    assert (tmp_path / "metrics.json").read_text() == "{}\n"
