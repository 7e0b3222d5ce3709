"""benchmarks/gpu_check.py in its CPU mode (tiny model, fp32): the report it writes, and that its comparison
catches a wrong gradient."""

from __future__ import annotations

import json

import torch

from benchmarks import gpu_check


def test_cpu_tiny_check_passes_and_reports_every_gradient(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["precision"] == "fp32"
    assert report["tolerances"] == gpu_check.TOLERANCES["fp32"]
    assert report["softcap_binding"]["share_beyond_half_cap"] > 0.3  # the softcap is exercised
    assert max(sum(row) for row in report["rows"]) > report["sliding_window"]  # and the window
    (variant,) = report["variants"]
    assert "compiled layers" in variant["name"]
    # 4 layers x 7 projections x (A, B), and lm_head's A and B.
    assert variant["gradients"]["tensors"] == len(variant["gradients"]["relative_errors"]) == 4 * 7 * 2 + 2
    assert variant["loss"]["value"] == variant["loss"]["reference"] == report["reference_loss"]
    assert variant["gradients"]["worst_relative_error"] <= 1e-3 and variant["hidden"]["relative_error"] <= 1e-4


def fake_run(gradient_scale: float = 1.0, nan: bool = False) -> dict:
    gradients = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, -1.0]) * gradient_scale}
    if nan:
        gradients["a"] = torch.tensor([float("nan"), 2.0])
    return {"loss": torch.tensor(2.0), "hidden": torch.ones(2, 3), "gradients": gradients, "seconds": 0.0}


def test_comparison_flags_a_wrong_or_non_finite_gradient():
    tolerances = gpu_check.TOLERANCES["bf16"]
    assert gpu_check.passed(gpu_check.compare(fake_run(), fake_run(), tolerances))
    wrong = gpu_check.compare(fake_run(gradient_scale=1.1), fake_run(), tolerances)
    assert not gpu_check.passed(wrong) and wrong["gradients"]["worst"] == "b"
    assert abs(wrong["gradients"]["worst_relative_error"] - 0.1) < 1e-6
    not_finite = gpu_check.compare(fake_run(nan=True), fake_run(), tolerances)
    assert not gpu_check.passed(not_finite) and not_finite["gradients"]["worst"] == "a"
    assert not gpu_check.passed({"name": "x", "error": "RuntimeError: boom"})
