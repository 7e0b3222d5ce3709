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
    assert report["ok"] is True and list(report["precisions"]) == ["fp32", "bf16"]
    assert report["softcap_binding"]["share_beyond_half_cap"] > 0.3  # the softcap is exercised
    assert max(sum(row) for row in report["rows"]) > report["sliding_window"]  # and the window
    # 4 layers x 7 projections x (A, B), and lm_head's A and B.
    tensors = 4 * 7 * 2 + 2
    fp32, bf16 = report["precisions"]["fp32"], report["precisions"]["bf16"]
    assert fp32["tolerances"] == gpu_check.TOLERANCES["fp32"] and "eager" not in fp32
    (variant,) = fp32["variants"]
    assert "compiled layers" in variant["name"] and variant["name"].endswith("fp32")
    assert variant["gradients"]["tensors"] == len(variant["gradients"]["relative_errors"]) == tensors
    assert variant["loss"]["truth"] == report["truth_loss"]
    assert variant["gradients"]["worst_relative_error"] <= 1e-3 and variant["hidden"]["relative_error"] <= 1e-4
    # bf16: eager in bf16 is measurably off the fp32 truth (the yardstick is not zero), and flex is judged by it.
    eager = bf16["eager"]
    assert 1e-4 < eager["hidden"]["relative_error"] < 0.1 and eager["gradients"]["tensors"] == tensors
    (variant,) = bf16["variants"]
    assert variant["name"].endswith("bf16") and variant["gradients"]["ok"] and variant["hidden"]["ok"]
    assert variant["hidden"]["limit"] == max(
        gpu_check.TOLERANCES["bf16"]["hidden"], gpu_check.BF16_MARGIN * eager["hidden"]["relative_error"]
    )


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


def test_a_bf16_run_is_judged_by_eager_bf16s_own_error():
    """Past the tolerance, a bf16 flex gradient passes while within BF16_MARGIN of eager bf16's error on the
    same tensor, and fails beyond it; eager's error on another tensor does not lend it room."""
    tolerances = gpu_check.TOLERANCES["bf16"]
    eager = gpu_check.compare(fake_run(gradient_scale=1.2), fake_run(), tolerances)  # b off by 20%
    assert eager["gradients"]["relative_errors"]["a"] == 0.0
    within = gpu_check.compare(fake_run(gradient_scale=1.24), fake_run(), tolerances, yardstick=eager)
    assert gpu_check.passed(within) and abs(within["gradients"]["worst_limit"] - 0.25) < 1e-6
    beyond = gpu_check.compare(fake_run(gradient_scale=1.26), fake_run(), tolerances, yardstick=eager)
    assert not gpu_check.passed(beyond) and beyond["gradients"]["worst"] == "b"
    wrong_elsewhere = fake_run()
    wrong_elsewhere["gradients"]["a"] = wrong_elsewhere["gradients"]["a"] * 1.1  # a: 10% off, eager's a: exact
    assert not gpu_check.passed(gpu_check.compare(wrong_elsewhere, fake_run(), tolerances, yardstick=eager))
