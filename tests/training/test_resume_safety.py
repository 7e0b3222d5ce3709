"""Resume only into the same run (fingerprint), and never from a damaged checkpoint (manifest)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_data import write_tiny_data

import fcloop.training.loop
from fcloop.config import load_config
from fcloop.errors import run_cli
from fcloop.eval import main as eval_main
from fcloop.export import main as export_main
from fcloop.hardware import Hardware
from fcloop.train import main as train_main
from fcloop.training.checkpoint import MANIFEST_FILE, START_OVER, list_checkpoints, manifest_problem
from fcloop.training.fingerprint import resume_report
from fcloop.training.loop import train
from fcloop.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.toml")
DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("data")
    train_file, eval_file = write_tiny_data(folder, train_count=8, eval_count=2)
    other, _ = write_tiny_data(folder / "other", train_count=6, eval_count=1)
    return train_file, eval_file, other


def argv(out_dir: Path, data, *extra: str) -> list[str]:
    train_file, eval_file, _ = data
    return [
        TINY,
        f"--run.out_dir={out_dir}",
        f"--data.train={train_file}",
        f"--data.eval={eval_file}",
        "--data.max_seq_len=256",
        "--train.micro_batch_size=1",
        "--train.grad_accum_steps=1",
        "--train.max_steps=2",
        "--eval.every_steps=0",
        "--checkpoint.every_steps=1",
        "--checkpoint.resume=auto",
        *extra,
    ]


@pytest.fixture(scope="module")
def base_run(data, tmp_path_factory) -> Path:
    """Two steps with a checkpoint after each: step_000001, step_000002 and final/."""
    out = tmp_path_factory.mktemp("base") / "run"
    args = argv(out, data)
    train(load_config(args[0], args[1:]))
    assert [p.name for p in list_checkpoints(out)] == ["step_000001", "step_000002"]
    return out


@pytest.fixture
def run_copy(base_run, tmp_path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def resume(run: Path, data, capsys, *extra: str) -> tuple[int, str, str]:
    code = run_cli(train_main, argv(run, data, *extra))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------------------
# Fingerprint: refused and allowed changes

TARGETS = '["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]'
SHA = "sha256 [0-9a-f]{16}"


@pytest.mark.parametrize(
    ("override", "expected_lines"),
    [
        ("--lora.r=8", [r"lora\.r: 4 -> 8"]),
        ("--lora.alpha=16", [r"lora\.alpha: 8 -> 16"]),
        ('--lora.target_modules=["q_proj"]', [re.escape(f'lora.target_modules: {TARGETS} -> ["q_proj"]')]),
        ('--lora.train_token_rows=["<end_of_turn>"]', [re.escape('lora.train_token_rows: [] -> ["<end_of_turn>"]')]),
        ("--data.max_seq_len=512", [r"data\.max_seq_len: 256 -> 512"]),
        ("--data.packing=false", [r"data\.packing: true -> false"]),
        ("--run.seed=1", [r"run\.seed: 0 -> 1"]),
        ("--train.precision=bf16", [r"train\.precision: fp32 -> bf16"]),
        ("OTHER_DATA", [rf"training examples: 8 examples, {SHA} -> 6 examples, {SHA}"]),
        (
            "--data.tags_as_tokens=false",
            [
                rf"tokenizer: 520 tokens, {SHA} -> 512 tokens, {SHA}",
                rf"training examples: 8 examples, {SHA} -> \d+ examples, {SHA}",
            ],
        ),
    ],
)
def test_a_changed_key_that_fixes_data_or_shapes_refuses_the_resume(run_copy, data, capsys, override, expected_lines):
    if override == "OTHER_DATA":
        override = f"--data.train={data[2]}"
    code, _, err = resume(run_copy, data, capsys, override, "--train.max_steps=3")
    assert code == 1
    first, *lines = err.splitlines()
    data_changed = any("training examples" in line for line in expected_lines)
    hint = " (training examples: data.train, or a setting of how it is read, rendered or tokenized, changed)"
    refused = f"error: cannot resume from {run_copy}/step_000002: it belongs to a run with other data or shapes"
    assert first == refused + (hint if data_changed else "") + ":"
    assert len(lines) == len(expected_lines) + 2
    for line, pattern in zip(lines, expected_lines, strict=False):
        assert re.fullmatch("  " + pattern, line), line
    assert lines[-2:] == [f"{START_OVER}; or set these back to the checkpoint's values to resume it", DEBUG_HINT]
    assert [p.name for p in list_checkpoints(run_copy)] == ["step_000001", "step_000002"]  # nothing trained


def test_another_world_size_is_refused(base_run):
    folder = base_run / "step_000002"
    saved = json.loads((folder / "fingerprint.json").read_text())
    with pytest.raises(RuntimeError, match=r"^cannot resume from .*:\n  world size: 1 -> 2\n"):
        resume_report(folder, {**saved, "fixed": {**saved["fixed"], "world size": 2}})
    assert resume_report(folder, saved) == []  # the same run: nothing to say


@pytest.mark.parametrize(
    ("cpu_flags", "precision_line", "refused"),
    [
        ({"avx2"}, "precision fp32: CPU has AVX2 only, no native bf16 (emulated bf16 is slower than fp32)", False),
        ({"avx2", "avx512f", "avx512_bf16"}, "precision bf16: CPU has AVX512-BF16 (native bf16 matmuls)", True),
    ],
)
def test_auto_precision_resumes_where_it_chooses_the_checkpoints_precision(
    run_copy, data, capsys, monkeypatch, cpu_flags, precision_line, refused
):
    """The base run trained in fp32: "auto" resumes it on a machine where auto means fp32, and is refused on one
    where it means bf16 (stand-in hardware, so the test means the same on any machine)."""
    machine = Hardware("cpu", "stand-in", cpu_flags=frozenset(cpu_flags))
    monkeypatch.setattr(fcloop.training.loop, "detect_hardware", lambda device: machine)
    code, out, err = resume(run_copy, data, capsys, "--train.precision=auto", "--train.max_steps=3")
    assert out.splitlines()[0] == precision_line
    if not refused:
        assert code == 0 and "error" not in err
        assert [line for line in out.splitlines() if line.startswith("changed on resume: ")] == [
            "changed on resume: train.max_steps: 2 -> 3"
        ]
        assert f"resumed from {run_copy}/step_000002 at step 2" in out
        return
    assert code == 1
    assert err.splitlines() == [
        f"error: cannot resume from {run_copy}/step_000002: it belongs to a run with other data or shapes "
        '(train.precision = "auto" chose another precision on this machine):',
        "  train.precision: fp32 -> bf16",
        f"{START_OVER}; or set these back to the checkpoint's values to resume it",
        DEBUG_HINT,
    ]
    assert [p.name for p in list_checkpoints(run_copy)] == ["step_000001", "step_000002"]  # nothing trained


def test_a_new_learning_rate_and_length_are_allowed_and_reported(run_copy, data, capsys):
    code, out, err = resume(run_copy, data, capsys, "--train.lr=0.5", "--train.max_steps=3")
    assert code == 0 and "error" not in err
    changes = [line for line in out.splitlines() if line.startswith("changed on resume: ")]
    assert changes == ["changed on resume: train.max_steps: 2 -> 3", "changed on resume: train.lr: 0.001 -> 0.5"]
    assert f"resumed from {run_copy}/step_000002 at step 2" in out
    steps = {r["step"]: r for r in read_metrics(run_copy) if "train/lr" in r}
    # Step 3 of 3 at the new peak: warmup 1, then cosine halfway down (progress 1/2) -> 0.5 * 0.5.
    assert steps[3]["train/lr"] == 0.25


def test_an_old_checkpoint_without_fingerprint_or_manifest_resumes_with_a_warning(run_copy, data, capsys):
    for folder in list_checkpoints(run_copy):
        (folder / "fingerprint.json").unlink()
        (folder / MANIFEST_FILE).unlink()
    code, out, _ = resume(run_copy, data, capsys, "--train.max_steps=3")
    assert code == 0
    step = run_copy / "step_000002"
    assert f"note: {step} has no manifest.json (written by an older fcloop); its files are not verified" in out
    assert f"warning: {step} has no fingerprint.json (written by an older fcloop): resuming without checking" in out
    assert f"resumed from {step} at step 2" in out


def test_an_old_checkpoint_of_another_shape_is_refused_without_a_traceback(run_copy, data, capsys):
    for folder in list_checkpoints(run_copy):
        (folder / "fingerprint.json").unlink()
        (folder / MANIFEST_FILE).unlink()
    code, _, err = resume(run_copy, data, capsys, "--lora.r=8", "--train.max_steps=3")
    assert code == 1
    message, hint = err.splitlines()
    assert message.startswith(f"error: {run_copy}/step_000002: its adapter does not fit this config's model and LoRA")
    assert "size mismatch" in message and message.endswith(START_OVER)
    assert hint == DEBUG_HINT


# ---------------------------------------------------------------------------------------------------------
# Manifest: a damaged checkpoint is skipped for the newest intact one, never loaded


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_truncated_latest_checkpoint_is_skipped_and_the_run_equals_the_uninterrupted_one(
    run_copy, base_run, data, capsys
):
    damaged = run_copy / "step_000002"
    size = (damaged / "adapter_model.safetensors").stat().st_size
    shutil.rmtree(run_copy / "final")
    truncate(damaged / "adapter_model.safetensors")
    code, out, err = resume(run_copy, data, capsys)
    assert code == 0 and "error" not in err
    assert (
        f"warning: checkpoint {damaged} is damaged: adapter_model.safetensors has {size // 2} bytes, the manifest says "
        f"{size} (truncated or overwritten); skipping it" in out
    )
    assert f"warning: resuming from {run_copy}/step_000001, the newest intact checkpoint" in out
    assert f"resumed from {run_copy}/step_000001 at step 1" in out
    # Step 2 trained again from step 1: the same adapter, bitwise, and an intact step_000002 in place.
    resumed, whole = (
        load_file(run_copy / "final" / "adapter_model.safetensors"),
        load_file(base_run / "final" / "adapter_model.safetensors"),
    )
    assert resumed.keys() == whole.keys()
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
    assert manifest_problem(damaged) is None


def test_a_bit_flip_in_the_train_state_is_skipped(run_copy, data, capsys):
    flip_a_bit(run_copy / "step_000002" / "train_state.pt")
    code, out, _ = resume(run_copy, data, capsys, "--train.max_steps=3")
    assert code == 0
    assert (
        f"warning: checkpoint {run_copy}/step_000002 is damaged: train_state.pt does not match its sha256 in the "
        "manifest (its bytes changed); skipping it" in out
    )
    assert f"resumed from {run_copy}/step_000001 at step 1" in out


def test_no_intact_checkpoint_is_a_clear_error(run_copy, data, capsys):
    truncate(run_copy / "step_000002" / "adapter_model.safetensors")
    flip_a_bit(run_copy / "step_000001" / "adapter_model.safetensors")
    code, out, err = resume(run_copy, data, capsys, "--train.max_steps=3")
    assert code == 1
    assert err == (
        f"error: no intact checkpoint to resume from in {run_copy}: step_000002, step_000001 are damaged; "
        f"{START_OVER}\n{DEBUG_HINT}\n"
    )
    assert out.count("is damaged: adapter_model.safetensors") == 2


def test_a_damaged_checkpoint_named_by_path_is_an_error(run_copy, data, capsys):
    folder = run_copy / "step_000001"
    flip_a_bit(folder / "adapter_config.json")
    code, _, err = resume(run_copy, data, capsys, f"--checkpoint.resume={folder}", "--train.max_steps=3")
    assert code == 1
    assert err == (
        f"error: {folder} is damaged: adapter_config.json does not match its sha256 in the manifest (its bytes "
        f"changed); it cannot be used\n{DEBUG_HINT}\n"
    )


def test_the_final_adapter_has_a_manifest_of_every_file(base_run):
    final = base_run / "final"
    listed = set(json.loads((final / MANIFEST_FILE).read_text())["files"])
    assert listed == {p.name for p in final.iterdir()} - {MANIFEST_FILE}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.toml", "tokenizer.json"} <= listed
    assert manifest_problem(final) is None


def test_eval_and_export_refuse_a_damaged_adapter(run_copy, tmp_path, capsys):
    final = run_copy / "final"
    flip_a_bit(final / "adapter_model.safetensors")
    expected = (
        f"error: {final} is damaged: adapter_model.safetensors does not match its sha256 in the manifest (its bytes "
        f"changed); it cannot be used\n{DEBUG_HINT}\n"
    )
    assert run_cli(eval_main, [str(final / "config.toml"), "--adapter", str(final), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == expected
    assert run_cli(export_main, [str(final), "--merge", str(tmp_path / "merged")]) == 1
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "merged").exists()


def test_eval_of_a_folder_without_an_adapter(run_copy, tmp_path, capsys):
    missing = run_copy / "nothing"
    assert run_cli(eval_main, [str(run_copy / "config.toml"), "--adapter", str(missing), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: --adapter {missing}: no adapter_config.json there; expected a final/ or step_NNNNNN/ folder "
        f"written by fcloop.train\n{DEBUG_HINT}\n"
    )
