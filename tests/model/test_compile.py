"""The compiled loop (train.compile) on CPU: flex attention inside compiled decoder layers, fixed shapes, no
recompilation, and the same numbers as the eager loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tiny_data import write_tiny_data

from fcloop.config import ModelConfig, load_config
from fcloop.data.load import load_datasets
from fcloop.data.packing import plan_rows
from fcloop.data.tokenization import IGNORE_INDEX, Encoded, prepare_tokenizer
from fcloop.hardware import find_cpp_compiler
from fcloop.model.compile import compile_decoder_layers, set_recompile_limit
from fcloop.model.load import load_model, load_tokenizer, model_parts
from fcloop.model.tiny import TINY_GEMMA3_PATH
from fcloop.training.loop import fixed_batch, train
from fcloop.training.metrics import read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def tiny_run_config(out_dir: Path, data: tuple[Path, Path], *overrides: str):
    train_file, eval_file = data
    return load_config(
        CONFIGS / "tiny.toml",
        [
            f"--run.out_dir={out_dir}",
            f"--data.train={train_file}",
            f"--data.eval={eval_file}",
            "--data.eval_fraction=0.0",
            "--data.max_seq_len=256",
            "--train.precision=fp32",
            "--train.max_steps=3",
            "--eval.every_steps=3",  # evaluations at steps 0 and 3
            "--eval.max_cases=1",
            "--eval.max_new_tokens=2",
            "--checkpoint.every_steps=2",
            "--checkpoint.resume=auto",
            *overrides,
        ],
    )


def losses(records: list[dict]) -> dict[tuple[int, str], float]:
    return {(r["step"], key): r[key] for r in records for key in ("train/loss", "eval/loss") if key in r}


def test_compiled_flex_loop_equals_the_eager_loop_without_recompiling(tmp_path, dynamo_settings_restored):
    data = write_tiny_data(tmp_path / "data")
    eager = tiny_run_config(tmp_path / "eager", data, "--model.attn_implementation=eager", "--train.compile=false")
    # aot_eager traces each layer (flex attention included) into a graph and runs it without generating code.
    # That is also what lets flex attention train on CPU at all: uncompiled, its CPU backward is refused, and
    # the compiled operator's backward is its dense reference implementation (fcloop.model.compile explains).
    compiled = tiny_run_config(
        tmp_path / "compiled",
        data,
        "--model.attn_implementation=flex_attention",
        "--train.compile=true",
        "--train.compile_backend=aot_eager",
    )
    # The steps' rows have different lengths, so only the padding to max_seq_len keeps the shapes fixed.
    tokenizer = load_tokenizer(compiled.model)
    prepare_tokenizer(tokenizer, compiled.data.think_instruction, compiled.data.tags_as_tokens)
    examples = load_datasets(compiled.data, tokenizer, compiled.run.seed).train
    rows = plan_rows([len(e) for e in examples], compiled.data.max_seq_len, True, compiled.run.seed, 0)
    assert len({sum(len(examples[i]) for i in row) for row in rows}) > 1

    train(eager)
    train(compiled, stop_after_steps=2)  # interrupted after the step-2 checkpoint ...
    train(compiled)  # ... and resumed from it, in a fresh compile (the graphs are built again)
    eager_records, compiled_records = read_metrics(eager.run.out_dir), read_metrics(compiled.run.out_dir)

    expected, got = losses(eager_records), losses(compiled_records)
    assert sorted(expected) == sorted(got)
    assert {key for _, key in got} == {"train/loss", "eval/loss"} and {step for step, _ in got} == {0, 1, 2, 3}
    assert expected[(3, "eval/loss")] < expected[(0, "eval/loss")]  # it trained, so equality means something
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    assert [r["eval/n"] for r in compiled_records if "eval/n" in r] == [1, 1]  # generation ran at both evals

    compile_records = [r for r in compiled_records if "compile/graphs" in r]
    assert [r["step"] for r in compile_records] == [0, 1, 2, 3, 3]
    assert all(r["compile/recompiles"] == 0 for r in compile_records)
    # Training compiles 2 graphs, evaluation 2 more: the block-mask builder and the decoder layer (both layer
    # types share it: in transformers 5.24 a layer takes its mask as an argument). Generation compiles none.
    assert [r["compile/graphs"] for r in compile_records] == [2, 4, 4, 2, 4]
    assert "compile/graphs" not in {key for r in eager_records for key in r}


def bf16_gradients(model, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=input_ids, labels=input_ids).loss.backward()
    return {name: p.grad.float().clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.skipif(find_cpp_compiler() is None, reason="inductor needs a C++ compiler for CPU code")
def test_inductor_compiled_layers_give_eagers_bf16_gradients_on_this_cpu(dynamo_settings_restored):
    """The demo's compiled path (bf16, eager attention, inductor) on the CPU the suite runs on, through a Gemma-3
    attention block (q/k norms, one KV head, head_dim 256). With inductor's 512-bit code, the default on an
    AVX-512 CPU, every gradient here was NaN on an Intel Xeon with AMX (fcloop.model.compile)."""
    torch._dynamo.reset()
    model = load_model(
        ModelConfig(path=TINY_GEMMA3_PATH, attn_implementation="eager"), 512, torch.bfloat16, torch.device("cpu"), 0
    )
    model.train()
    input_ids = torch.randint(0, 512, (1, 64), generator=torch.Generator().manual_seed(0))
    eager = bf16_gradients(model, input_ids)
    compile_decoder_layers(model_parts(model).decoder, "inductor")
    compiled = bf16_gradients(model, input_ids)

    assert sorted(compiled) == sorted(eager) and len(eager) > 50
    assert [name for name, grad in compiled.items() if not grad.isfinite().all()] == []
    # bf16 rounds every matmul input to 8 mantissa bits and inductor fuses in another order: a few percent apart
    # (measured at most 3.4% with 256-bit code); a wrong kernel is far outside this.
    errors = {name: float((compiled[name] - grad).norm() / grad.norm()) for name, grad in eager.items()}
    assert max(errors.values()) < 0.1, sorted(errors.items(), key=lambda item: -item[1])[:3]


def test_a_graph_past_the_recompile_limit_is_an_error_not_a_fallback(dynamo_settings_restored):
    torch._dynamo.reset()
    set_recompile_limit(2)
    double = torch.compile(lambda x: x * 2, backend="eager", dynamic=False)
    double(torch.ones(1))
    double(torch.ones(2))  # a second graph: within the limit
    with pytest.raises(Exception, match="recompile_limit"):
        double(torch.ones(3))


def test_compile_accepts_only_auto_true_false():
    message = """key 'train.compile': expected one of "auto" | true | false, got 1"""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, ["--train.compile=1"])


def test_fixed_batch_pads_rows_and_width_with_padding_that_adds_no_loss():
    doc = Encoded(input_ids=(5, 6, 7), labels=(IGNORE_INDEX, 6, 7), source="test", index=0)
    batch = fixed_batch([[doc]], 0, (3, 8))
    assert batch.input_ids.shape == (3, 8)
    assert batch.input_ids[:, 3:].eq(0).all() and batch.target_ids[1:].eq(IGNORE_INDEX).all()
    assert batch.tokens == 3 and batch.supervised_tokens == 2  # padding rows and columns carry no targets
    assert batch.document_ids.tolist() == [[0, 0, 0, -1, -1, -1, -1, -1]] + [[-1] * 8] * 2
    assert fixed_batch([[doc]], 0, None).input_ids.shape == (1, 3)


def test_uncompiled_flex_attention_still_refuses_a_cpu_backward():
    from torch.nn.attention.flex_attention import flex_attention

    from fcloop.model.compile import permit_compiled_cpu_flex_backward

    permit_compiled_cpu_flex_backward()  # what a compiled run does; it must not open the uncompiled path
    query = torch.randn(1, 1, 8, 4, requires_grad=True)
    with pytest.raises(NotImplementedError, match="does not support backward on CPU"):
        flex_attention(query, query, query)
