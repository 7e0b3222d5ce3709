"""The throughput benchmark: the CPU smoke run (as in CI), and the cost model it divides by."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
import torch

from benchmarks import models, throughput
from benchmarks.kernels import kind_of
from benchmarks.mfu import MatmulCounts, document_lengths, flops_per_token, matmul_counts, step_flops, t_eff
from benchmarks.throughput import Setting
from fcloop.config import load_config
from fcloop.data.packing import collate
from fcloop.data.tokenization import IGNORE_INDEX
from fcloop.model.lora import apply_lora

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOP_LEVEL_KEYS = {
    "device",
    "torch",
    "transformers",
    "command",
    "recompute_logits",
    "datasheet_peak_tflops",
    "measured_matmul_peak",
    "configurations",
}
CONFIGURATION_KEYS = {
    "name",
    "seq_len",
    "micro_batch_size",
    "tokens_per_sec",
    "supervised_tokens_per_sec",
    "mfu",
    "mfu_vs_measured_peak",
    "peak_allocated_gib",
    "peak_reserved_gib",
    "speedup_vs_baseline",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path, float]:
    out = tmp_path_factory.mktemp("benchmark") / "throughput.json"
    # One thread: when another process holds the second core, two OpenMP threads wait on each other (a tiny
    # step took 7 s instead of 0.3 s on the shared development machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        throughput.main(["--config", str(CONFIGS / "tiny.toml"), "--device", "cpu", "--steps", "3", "--json", str(out)])
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return json.loads(out.read_text()), out, seconds


def test_cpu_smoke_finishes_within_a_minute(smoke):
    _, _, seconds = smoke
    assert seconds < 60


def test_cpu_smoke_writes_the_required_keys(smoke):
    report, out, _ = smoke
    assert set(report) == TOP_LEVEL_KEYS
    assert report["command"].startswith("python -m benchmarks.throughput --config")
    assert report["torch"] == torch.__version__
    assert report["recompute_logits"] is load_config(CONFIGS / "tiny.toml").train.recompute_logits
    names = [entry["name"] for entry in report["configurations"]]
    assert len(names) == 2 and report["configurations"][0]["baseline"]
    for entry in report["configurations"]:
        assert CONFIGURATION_KEYS.issubset(entry)
        assert entry["skipped"] is None, entry["skipped"]
    table = out.with_suffix(".md").read_text()
    assert all(name in table for name in names)


def test_cpu_smoke_values_are_sane(smoke):
    report, _, _ = smoke
    baseline, ours = report["configurations"]
    assert baseline["speedup_vs_baseline"] == 1.0
    peak = report["measured_matmul_peak"]
    assert peak["size"] == 512 and peak["dtype"] == "float32" and len(peak["tflops"]) == 5
    assert peak["best_tflops"] == max(peak["tflops"]) > 0
    assert report["datasheet_peak_tflops"] == 989.0
    for entry in (baseline, ours):
        assert entry["tokens_per_sec"] > 0
        assert 0 < entry["mfu"] < 1
        assert entry["peak_tflops"] == 989.0 and entry["measured_peak_tflops"] == peak["best_tflops"]
        assert entry["mfu_vs_measured_peak"] == pytest.approx(entry["mfu"] * 989.0 / peak["best_tflops"])
        assert entry["peak_allocated_gib"] > 0 and entry["step_time_s"] > 0
        # About a third of the tokens are supervised, counted the same way for the baseline.
        assert 0.28 < entry["supervised_tokens_per_sec"] / entry["tokens_per_sec"] < 0.36
    assert ours["speedup_vs_baseline"] == pytest.approx(
        ours["supervised_tokens_per_sec"] / baseline["supervised_tokens_per_sec"]
    )
    assert ours["attention"] == "eager" and ours["loss"] == "chunked" and not ours["compile"]


@pytest.fixture(scope="module")
def gemma_counts() -> MatmulCounts:
    """gemma-2-2b with the LoRA of configs/gemma.toml, on the meta device (shapes only, no memory)."""
    lora = load_config(CONFIGS / "gemma.toml").lora
    with torch.device("meta"):
        model = apply_lora(models.gemma2_2b_model("eager", torch.bfloat16, "meta"), lora, [])
    return matmul_counts(model)


def test_gemma_parameter_counts_match_anchors(gemma_counts):
    norms = 26 * 4 * 2304 + 2304  # four RMSNorms per layer and the final one: not matmuls
    assert gemma_counts.body + norms == 2_024_517_888  # ANCHORS: non-embedding parameters
    assert gemma_counts.lm_head == 589_824_000
    assert gemma_counts.attention_width == 2048 and gemma_counts.layers == 26
    lm_head_share = gemma_counts.lm_head / (gemma_counts.body + gemma_counts.lm_head)
    assert lm_head_share == pytest.approx(0.226, abs=0.001)


@pytest.mark.parametrize(("seq_len", "gflop"), [(2048, 11.2), (4096, 11.9)])
def test_flops_per_token_reproduce_anchors(gemma_counts, seq_len, gflop):
    # ANCHORS counts the lm_head at every position and one document per row (T_eff = T).
    assert flops_per_token(gemma_counts, seq_len) / 1e9 == pytest.approx(gflop, rel=0.01)


def test_full_mfu_rate_matches_anchors(gemma_counts):
    assert 800e12 / flops_per_token(gemma_counts, 2048) == pytest.approx(71_000, rel=0.01)


def test_t_eff_hand_example():
    assert t_eff([1000, 500, 500]) == (1000**2 + 2 * 500**2) / 2000 == 750
    assert t_eff([2048]) == 2048


def test_step_flops_count_lm_head_at_supervised_positions_only():
    counts = MatmulCounts(body=100, lm_head=1000, lora_body=10, lora_lm_head=20, layers=2, attention_width=3)
    # 10 tokens in documents of 6 and 4, 3 of them supervised.
    expected = 10 * (4 * 100 + 6 * 10) + 3 * (4 * 1000 + 6 * 20) + 6 * 2 * 3 * (6**2 + 4**2)
    assert step_flops(counts, tokens=10, lm_head_tokens=3, sum_squared_lengths=6**2 + 4**2) == expected


def test_document_lengths_skip_padding():
    docs = throughput.synthetic_documents(3, vocab_size=50, max_len=40, seed=0)
    batch = collate([docs[:2], docs[2:]], pad_token_id=0, pad_to=100)
    assert sorted(document_lengths(batch)) == sorted(len(doc) for doc in docs)


def test_synthetic_documents_supervise_the_trailing_third():
    for doc in throughput.synthetic_documents(5, vocab_size=50, max_len=1500, seed=1):
        supervised = [label != IGNORE_INDEX for label in doc.labels]
        start = supervised.index(True)
        assert all(supervised[start:]) and start == len(doc) - len(doc) // 3
        assert 200 <= len(doc) <= 1500


def test_baseline_rows_are_plain_concatenations():
    docs = throughput.synthetic_documents(6, vocab_size=50, max_len=300, seed=0)
    batches = throughput.concatenated_batches(docs, seq_len=256, count=3)
    stream = [token for doc in docs for token in doc.input_ids]
    for index, batch in enumerate(batches):
        assert batch.input_ids[0].tolist() == stream[index * 256 : (index + 1) * 256]
        assert batch.position_ids[0].tolist() == list(range(256))


def sweep_args(argv=("--sweep",), **overrides) -> argparse.Namespace:
    args = throughput.parse_args(list(argv))
    config = load_config(CONFIGS / "gemma.toml")
    throughput.fill_defaults(args, config, torch.device("cuda"))
    vars(args).update(overrides)
    return args


def test_default_cuda_sweep_is_pruned_as_documented():
    settings = throughput.settings(sweep_args())
    assert not any(s.attention == "eager" and s.compile for s in settings)
    assert all(s.attention == "flex_attention" and not s.compile for s in settings if s.loss == "full_logits")
    assert {s.seq_len for s in settings} == {2048, 4096, 8192} and {s.micro_batch_size for s in settings} == {1, 2, 4}
    # Per seq len and micro-batch: eager x2 checkpointing, flex chunked x2 x2 compile, flex full logits x2.
    assert len(settings) == 9 * 8
    assert len(throughput.settings(sweep_args(no_prune=True))) == 9 * 16


def test_out_of_memory_at_a_smaller_setting_skips_bigger_ones():
    small = Setting(4096, 1, True, "flex_attention", "chunked", False)
    assert small.at_most(Setting(8192, 2, True, "flex_attention", "chunked", False))
    assert not small.at_most(Setting(8192, 2, True, "flex_attention", "chunked", True))
    assert not small.at_most(Setting(2048, 4, True, "flex_attention", "chunked", False))


def test_default_cuda_set_is_the_gpu_window_set():
    args = sweep_args(argv=())
    assert args.window and args.steps == 5 and args.warmup == 2
    settings = throughput.settings(args)
    assert {(s.seq_len, s.micro_batch_size, s.attention) for s in settings} == {(4096, 1, "flex_attention")}
    choices = {(s.checkpointing, s.loss, s.compile, s.loss_chunk_tokens) for s in settings}
    assert choices == {
        (True, "chunked", False, 1024),
        (False, "chunked", False, 1024),
        (True, "full_logits", False, 1024),
        (True, "chunked", True, 1024),
        (True, "chunked", True, 256),  # the lean one
        (False, "chunked", True, 1024),
    }
    assert not sweep_args(argv=("--seq-lens", "2048")).window and not sweep_args(argv=("--quick",)).window


def test_baseline_trains_the_recipes_own_lora_and_no_token_rows():
    config = load_config(CONFIGS / "tiny.toml")
    baseline = throughput.baseline_setting(64)
    model, _, baseline_parameters = throughput.trainable_model(config, baseline, torch.device("cpu"))
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("embed_tokens.lora_embedding_A" in name for name in trained)  # the notebook's embed_tokens target
    assert any("lm_head.lora_A" in name for name in trained)
    assert not any("trainable_tokens" in name for name in trained)
    assert {name.split(".")[-4] for name in trained if "layers." in name} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    }  # fmt: skip
    assert len(baseline_parameters) == len(trained)


def test_each_configuration_is_written_as_soon_as_it_is_measured(tmp_path, monkeypatch):
    real_measure = throughput.measure
    calls = []

    def measure_then_time_out(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a timeout would end the run in the second configuration
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(throughput, "measure", measure_then_time_out)
    out = tmp_path / "throughput.json"
    argv = ["--config", str(CONFIGS / "tiny.toml"), "--device", "cpu", "--steps", "1", "--json", str(out)]
    with pytest.raises(KeyboardInterrupt):
        throughput.main([*argv, "--seq-lens", "64", "--baseline-seq-len", "64"])
    report = json.loads(out.read_text())
    assert [entry["baseline"] for entry in report["configurations"]] == [True]
    assert report["configurations"][0]["tokens_per_sec"] > 0
    assert out.with_suffix(".md").exists() and not list(tmp_path.glob("*.partial"))


def test_profile_says_where_a_steps_time_goes(tmp_path):
    """--profile: one extra, untimed step per configuration under the profiler; its kernels by kind in the JSON and
    the markdown, the timed steps' token counts unchanged."""
    out = tmp_path / "throughput.json"
    argv = ["--config", str(CONFIGS / "tiny.toml"), "--device", "cpu", "--steps", "1", "--seq-lens", "64"]
    argv += ["--baseline-seq-len", "64", "--attention", "eager", "--checkpointing", "off", "--loss", "chunked"]
    plain = throughput.main([*argv, "--json", str(tmp_path / "plain.json")])
    report = throughput.main([*argv, "--json", str(out), "--profile"])
    for entry, without in zip(report["configurations"], plain["configurations"], strict=True):
        assert "profile" not in without
        assert entry["timed_steps"] == without["timed_steps"] == 1
        assert entry["packing_fill"] == without["packing_fill"]  # the same timed batches
        profile = entry["profile"]
        assert profile["kernel_ms"] > 0 and profile["launches"] >= profile["kernels"] > 0
        assert sum(kind["share"] for kind in profile["by_kind"].values()) == pytest.approx(1.0)
        assert profile["by_kind"]["matmul"]["ms"] > 0
        assert [row["ms"] for row in profile["top"]] == sorted((row["ms"] for row in profile["top"]), reverse=True)
    table = out.with_suffix(".md").read_text()
    assert "## Where the time goes" in table and table.count("### Profile: ") == len(report["configurations"])


@pytest.mark.parametrize(
    ("kernel", "kind"),
    [
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1", "matmul"),
        ("nvjet_tst_192x128_64x4_2x1_v_bz_coopB_TNT", "matmul"),
        ("triton_tem_fused_flex_attention_backward_0", "attention"),
        ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_1", "fused elementwise (inductor)"),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::AddFunctor<float> >", "elementwise (eager)"),
        ("Memcpy DtoD (Device -> Device)", "copies and memory"),
        ("ncclKernel_AllReduce_RING_LL_Sum_float", "communication"),
        ("Optimizer.step#AdamW.step", "other"),
    ],
)  # fmt: skip
def test_kernel_kinds_by_name(kernel, kind):
    assert kind_of(kernel) == kind


def test_a_failed_profile_keeps_the_configurations_numbers(tmp_path, monkeypatch):
    def broken_profiler(*args, **kwargs):
        raise RuntimeError("CUPTI unavailable")

    monkeypatch.setattr(throughput, "profile_step", broken_profiler)
    out = tmp_path / "throughput.json"
    argv = ["--config", str(CONFIGS / "tiny.toml"), "--device", "cpu", "--steps", "1", "--seq-lens", "64"]
    argv += ["--baseline-seq-len", "64", "--attention", "eager", "--checkpointing", "off", "--loss", "chunked"]
    report = throughput.main([*argv, "--json", str(out), "--profile"])
    for entry in report["configurations"]:
        assert entry["skipped"] is None and entry["tokens_per_sec"] > 0
        assert entry["profile"] == {"error": "RuntimeError: CUPTI unavailable"}
    assert "The profiled step failed: RuntimeError: CUPTI unavailable" in out.with_suffix(".md").read_text()
