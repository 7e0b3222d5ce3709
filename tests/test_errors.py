"""One error surface: expected failures print one message and exit non-zero without a traceback; quiet runs."""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from tiny_data import write_tiny_data

import fcloop.hub
from fcloop.errors import OUT_OF_MEMORY_ADVICE, expected_message, run_cli
from fcloop.eval import main as eval_main
from fcloop.inspect import main as inspect_main
from fcloop.train import main as train_main
from fcloop.training.loop import nonfinite_message

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.toml")
DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"
UNKNOWN_ROLE_ROW = {"conversations": [{"from": "alien", "value": "hi"}]}
GOOD_ROW = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    return write_tiny_data(tmp_path_factory.mktemp("data"), train_count=4, eval_count=2)


@pytest.fixture
def bad_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "bad.jsonl", [GOOD_ROW, GOOD_ROW, UNKNOWN_ROLE_ROW])


def command(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    inherited = {name: value for name, value in os.environ.items() if name != "FCLOOP_DEBUG"}
    environment = {**inherited, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def run_in_process(main, argv: list[str], capsys) -> tuple[int, str]:
    code = run_cli(main, argv)
    return code, capsys.readouterr().err


BAD_ROW_MESSAGE = "bad.jsonl: row 2: unknown role: turn 0 has from='alien'; valid: system, human, gpt, tool"


def test_a_bad_row_through_the_train_command_is_one_message_without_a_traceback(bad_file, tmp_path):
    result = command("fcloop.train", TINY, f"--data.train={bad_file}", f"--run.out_dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert result.stderr == f"error: {bad_file.parent}/{BAD_ROW_MESSAGE}\n{DEBUG_HINT}\n"


NO_ADAPTER = "--adapter /nowhere: no adapter_config.json there; expected a final/ or step_NNNNNN/ folder written by"


@pytest.mark.parametrize(
    ("module", "args", "code", "message"),
    [
        ("fcloop.eval", [TINY, "--adapter", "/nowhere", "--out", "/nowhere/out"], 2, NO_ADAPTER + " fcloop.train"),
        ("benchmarks.throughput", ["--config", "/nowhere.toml"], 2, "/nowhere.toml: config file not found"),
    ],
)
def test_the_other_commands_fail_clean_too(module, args, code, message):
    result = command(module, *args)
    assert (result.returncode, result.stderr) == (code, f"error: {message}\n{DEBUG_HINT}\n")


def test_fcloop_debug_shows_the_traceback(bad_file, tmp_path):
    result = command(
        "fcloop.train", TINY, f"--data.train={bad_file}", f"--run.out_dir={tmp_path / 'run'}", FCLOOP_DEBUG="1"
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith(f"fcloop.data.conversation.BadRow: {bad_file.parent}/{BAD_ROW_MESSAGE}")


def test_a_bad_row_through_inspect(bad_file, capsys):
    code, err = run_in_process(inspect_main, [TINY, f"--data.train={bad_file}"], capsys)
    assert (code, err) == (1, f"error: {bad_file.parent}/{BAD_ROW_MESSAGE}\n{DEBUG_HINT}\n")


def test_a_missing_data_file(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    code, err = run_in_process(train_main, [TINY, f"--data.train={missing}", f"--run.out_dir={tmp_path}"], capsys)
    assert (code, err) == (1, f"error: {missing}: file not found\n{DEBUG_HINT}\n")


def test_nothing_left_to_train_on(tiny_data, tmp_path, capsys):
    argv = [TINY, f"--data.train={tiny_data[0]}", "--data.max_seq_len=16", f"--run.out_dir={tmp_path}"]
    code, err = run_in_process(train_main, argv, capsys)
    assert code == 1
    # tiny.toml holds out a quarter of the 4 rows for eval; the other 3 are all longer than 16 tokens.
    assert err.startswith("error: no training example is left after reading the data:\n  rows read: 3\n  kept: 0\n")
    assert "\n  dropped, too long: 3\n" in err
    assert err.endswith(
        "\n3 conversations are longer than data.max_seq_len = 16 tokens and dropped: raise data.max_seq_len to keep "
        f'them, or set data.on_too_long = "truncate" to keep their turns that fit\n{DEBUG_HINT}\n'
    )
    assert err.endswith(f"\n{DEBUG_HINT}\n") and "Traceback" not in err


def test_an_unexpected_error_keeps_its_traceback():
    def broken(argv):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError, match="a bug"):
        run_cli(broken, [])


def test_debug_variable_reraises_an_expected_error(monkeypatch, bad_file):
    monkeypatch.setenv("FCLOOP_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown role"):
        run_cli(inspect_main, [TINY, f"--data.train={bad_file}"])


# ---------------------------------------------------------------------------------------------------------
# The model hub, unreachable (simulated: HF_HUB_OFFLINE, or the connection check answering no)

OFFLINE_MODEL_MESSAGE = (
    "error: model.path = 'nobody/no-such-model' is not a local folder, the model hub cannot be reached ({reason}), "
    "and the local hub cache has no copy of it. Download it where the hub is reachable "
    '(`hf download nobody/no-such-model --local-dir DIR`) and set model.path = "DIR"\n' + DEBUG_HINT + "\n"
)


@pytest.fixture
def hub_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fcloop.hub, "connection_problem", lambda: "no connection (simulated)")


def test_behind_a_proxy_no_direct_connection_is_tried(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(fcloop.hub.socket, "create_connection", lambda *a, **k: pytest.fail("no connection"))
    assert fcloop.hub.connection_problem.__wrapped__() is None


def test_a_hub_model_with_hf_hub_offline_fails_at_once_saying_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(fcloop.hub, "connection_problem", lambda: pytest.fail("no connection may be tried"))
    argv = [TINY, "--model.path=nobody/no-such-model", f"--run.out_dir={tmp_path}"]
    code, err = run_in_process(train_main, argv, capsys)
    assert (code, err) == (1, OFFLINE_MODEL_MESSAGE.format(reason="HF_HUB_OFFLINE is set"))


def test_a_hub_model_without_a_connection_fails_at_once(hub_unreachable, tmp_path, capsys):
    code, err = run_in_process(train_main, [TINY, "--model.path=nobody/no-such-model"], capsys)
    assert (code, err) == (1, OFFLINE_MODEL_MESSAGE.format(reason="no connection (simulated)"))
    code, err = run_in_process(eval_main, [TINY, "--model.path=nobody/no-such-model", "--out", str(tmp_path)], capsys)
    assert (code, err) == (1, OFFLINE_MODEL_MESSAGE.format(reason="no connection (simulated)"))


def test_a_hub_id_the_hub_does_not_know(monkeypatch, capsys):
    import transformers

    def unknown(source, **kwargs):
        assert kwargs["local_files_only"] is False  # the hub answered, so it is asked
        raise OSError(f"{source} is not a local folder and is not a valid model identifier\nmore lines")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fcloop.hub, "connection_problem", lambda: None)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unknown)
    code, err = run_in_process(inspect_main, [TINY, "--model.tokenizer=nobody/typo"], capsys)
    assert (code, err) == (
        1,
        "error: model.tokenizer = 'nobody/typo' is not a local folder and could not be loaded from the hub: "
        "nobody/typo is not a local folder and is not a valid model identifier. Check the id (and access: "
        f"`hf auth login` for a gated model), or set model.tokenizer to a local folder\n{DEBUG_HINT}\n",
    )


def test_a_model_path_that_is_no_folder(tmp_path, capsys):
    missing = tmp_path / "models" / "gemma"
    code, err = run_in_process(inspect_main, [TINY, f"--model.path={missing}"], capsys)
    assert (code, err) == (1, f"error: model.path = '{missing}': no such folder\n{DEBUG_HINT}\n")


def test_a_hub_data_set_without_a_connection_fails_at_once(hub_unreachable, monkeypatch, capsys):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("must not be called"))
    code, err = run_in_process(inspect_main, [TINY, "--data.train=nobody/nothing"], capsys)
    assert code == 1
    assert err == (
        "error: nobody/nothing: could not load hub data set 'nobody/nothing' (config None, split train): the hub "
        "cannot be reached (no connection (simulated)); download it where the hub is reachable and name the local "
        "file(s) in data.train or data.eval, or set HF_HUB_OFFLINE=1 to use a copy already in the local cache\n"
        f"{DEBUG_HINT}\n"
    )


def test_a_hub_data_set_with_hf_hub_offline_and_no_cached_copy(tmp_path):
    # A fresh process: `datasets` reads HF_HUB_OFFLINE when imported. An empty HF_HOME: nothing is cached.
    result = command("fcloop.inspect", TINY, "--data.train=nobody/nothing", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path))
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: nobody/nothing: could not load hub data set 'nobody/nothing'")
    assert first.endswith(
        "; the hub is not used (HF_HUB_OFFLINE is set), so download it where the hub is reachable and name the "
        "local file(s) in data.train or data.eval"
    )
    assert rest == [DEBUG_HINT]


# ---------------------------------------------------------------------------------------------------------
# Out of memory, a full disk, a non-finite loss: the messages


def test_cuda_out_of_memory_names_the_knobs():
    error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    message, code = expected_message(error)
    assert code == 1
    assert message == (
        "out of memory on the GPU (CUDA out of memory. Tried to allocate 2.00 GiB); to fit, " + OUT_OF_MEMORY_ADVICE
    )
    for knob in ("train.micro_batch_size", "data.max_seq_len", "train.activation_checkpointing"):
        assert knob in message
    assert "train.loss_chunk_tokens" in message


def test_out_of_memory_inside_a_command_is_one_message(capsys):
    def runs_out_of_memory(argv):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    assert run_cli(runs_out_of_memory, []) == 1
    assert capsys.readouterr().err.startswith("error: out of memory on the GPU (CUDA out of memory. Tried to")


def test_a_full_disk_and_a_non_finite_loss_are_expected():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl")
    assert expected_message(full) == (
        "no space left on the device writing /runs/x/metrics.jsonl; free some space or point run.out_dir elsewhere",
        1,
    )
    assert expected_message(FloatingPointError("non-finite loss at step 3")) == ("non-finite loss at step 3", 1)
    assert expected_message(KeyboardInterrupt()) == ("interrupted", 130)  # a second Ctrl-C
    assert expected_message(RuntimeError("size mismatch")) is None  # not known: a bug, with its traceback


def test_a_non_finite_first_step_does_not_blame_the_learning_rate():
    # At step 1 no update has been applied: the computation is at fault, not train.lr.
    head = "non-finite loss (2.08) or gradient norm (nan) at step 1; no update was applied and no checkpoint written."
    assert nonfinite_message(2.08, float("nan"), 1, compiled=True) == (
        f"{head} At the first step, with compiled layers: try train.compile = false, and report it."
    )
    assert "train.lr" not in nonfinite_message(2.08, float("nan"), 1, compiled=False)
    later = nonfinite_message(2.08, float("inf"), 7, compiled=True)
    assert later.endswith(
        "at step 7; no update was applied and no checkpoint written. Lower train.lr, or set train."
        'on_nonfinite = "skip".'
    )


# ---------------------------------------------------------------------------------------------------------
# Quiet normal runs

QUIET_RUN = """
import sys, warnings
# Any warning raised from peft's, transformers' or fcloop's own code is an error.
warnings.filterwarnings("error", module=r"(peft|transformers|fcloop)(\\.|$)")
from fcloop.errors import run_cli
from fcloop.train import main
from fcloop.eval import main as eval_main
code = run_cli(main, sys.argv[1:])
out_dir = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--run.out_dir=")][0]
code = code or run_cli(eval_main, [*sys.argv[1:], "--adapter", out_dir + "/final", "--out", out_dir + "/ev"])
sys.exit(code)
"""


def test_a_normal_tiny_run_gives_no_peft_or_transformers_warning(tiny_data, tmp_path):
    train_file, eval_file = tiny_data
    argv = [
        TINY, f"--run.out_dir={tmp_path / 'run'}", f"--data.train={train_file}", f"--data.eval={eval_file}",
        "--data.max_seq_len=256", "--train.max_steps=1", "--train.micro_batch_size=1", "--train.grad_accum_steps=1",
        "--eval.max_cases=1", "--eval.max_new_tokens=2", "--eval.every_steps=1", "--checkpoint.every_steps=1",
        "--train.activation_checkpointing=true",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", QUIET_RUN, *argv], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "run" / "ev" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------------------
# The throughput benchmark's --device


def test_throughput_with_a_device_torch_does_not_know(capsys):
    from benchmarks import throughput

    code, err = run_in_process(throughput.main, ["--config", TINY, "--device", "gpu"], capsys)
    assert (code, err) == (
        1,
        f"error: --device gpu: not a device torch knows (a GPU is cuda in torch); use --device cuda or --device cpu\n"
        f"{DEBUG_HINT}\n",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_throughput_on_cuda_without_a_gpu(capsys):
    from benchmarks import throughput

    code, err = run_in_process(throughput.main, ["--config", TINY, "--device", "cuda"], capsys)
    assert (code, err) == (
        1,
        f"error: --device cuda: torch sees no CUDA GPU on this machine; use --device cpu\n{DEBUG_HINT}\n",
    )


# ---------------------------------------------------------------------------------------------------------
# Data files of the wrong kind: what the file is and what fcloop reads

EXPECTED_FILES = "fcloop reads JSON lines (UTF-8, one JSON object per line), a .json file holding a list, or .parquet"
JSON_LINES = (json.dumps(GOOD_ROW) + "\n") * 2


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        (
            "array.jsonl",
            json.dumps([GOOD_ROW, GOOD_ROW]).encode(),
            f"one JSON array, not JSON lines; {EXPECTED_FILES}: name the file .json to read it as a list",
        ),
        (
            "utf16.jsonl",
            JSON_LINES.encode("utf-16"),
            f"UTF-16 text; {EXPECTED_FILES}: convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)",
        ),
        (
            "rows.csv",
            b"query,tool_call\nhi,none\n",
            f"comma-separated values (CSV), not JSON; {EXPECTED_FILES}: write each row as a JSON object",
        ),
        (
            "rows.jsonl.gz",
            gzip.compress(JSON_LINES.encode()),
            f"a gzip-compressed file; {EXPECTED_FILES}: decompress it (gunzip) and name the result",
        ),
    ],
)
def test_a_data_file_of_the_wrong_kind_says_what_it_is(tmp_path, capsys, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    for on_bad_row in ("error", "skip"):
        argv = [TINY, f"--data.train={path}", f"--data.on_bad_row={on_bad_row}", f"--run.out_dir={tmp_path / 'run'}"]
        code, err = run_in_process(train_main, argv, capsys)
        assert (code, err) == (1, f"error: {path}: {what}\n{DEBUG_HINT}\n")
