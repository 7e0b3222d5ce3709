"""Sparse trained token rows (fcloop/model/token_rows.py): the same numbers as peft's trainable-token layer, no
[vocab x hidden] tensor in forward or backward, and an adapter that peft itself loads."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from tiny_data import conversation
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from fcloop.config import RECIPE_THINK_INSTRUCTION, LoraConfig, ModelConfig
from fcloop.data.gemma_format import SPECIAL_TOKENS, render
from fcloop.data.packing import collate
from fcloop.data.readers import read_row
from fcloop.data.tokenization import encode, existing_token_ids
from fcloop.model.load import load_model
from fcloop.model.lora import add_token_rows, apply_lora, parameter_groups, save_adapter, select_trainable
from fcloop.model.tiny import TINY_PATH
from fcloop.model.token_rows import SparseTokenRowsLayer
from fcloop.training.loop import forward_loss, train_step

CPU = torch.device("cpu")
LORA = LoraConfig(r=4, alpha=8, dropout=0.0, train_token_rows=("<end_of_turn>",))


def as_peft_layers(model) -> None:
    """Back to peft's own layer (the path fcloop used before), for comparison."""
    for module in model.modules():
        if isinstance(module, SparseTokenRowsLayer):
            module.__class__ = TrainableTokensLayer


def trainable_model(tokenizer, sparse: bool = True):
    new_ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    model = load_model(ModelConfig(path=TINY_PATH), len(tokenizer), torch.float32, CPU, seed=0)
    add_token_rows(model, len(tokenizer), new_ids)
    torch.manual_seed(0)
    model = apply_lora(model, LORA, new_ids, existing_token_ids(tokenizer, LORA.train_token_rows))
    if not sparse:
        as_peft_layers(model)
    selected = select_trainable(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero and the rows at their init: make every trainable tensor matter
        for name, parameter in selected:
            if "lora_B" in name or "trainable_tokens_delta" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model, selected


def batches(tokenizer, count: int):
    examples = [
        encode(render(read_row(conversation(i), "hermes", "tiny", i), RECIPE_THINK_INSTRUCTION), tokenizer, 4096, False)
        for i in range(2 * count)
    ]
    return [collate([examples[2 * i : 2 * i + 2]], tokenizer.pad_token_id) for i in range(count)]


def trained_ids(tokenizer) -> list[int]:
    return [*tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)), tokenizer.convert_tokens_to_ids("<end_of_turn>")]


def test_the_batches_use_the_trained_tokens_as_inputs_and_targets(tiny_tok):
    # Guards the comparisons below: trained rows are looked up and predicted, so a wrong row would show (every
    # row's lm_head column also gets a gradient through the softmax; <tools> tags are not in these chats).
    used = set(trained_ids(tiny_tok)) - set(tiny_tok.convert_tokens_to_ids(["<tools>", "</tools>"]))
    (batch,) = batches(tiny_tok, 1)
    assert len(used) == 7
    assert used <= set(batch.input_ids.flatten().tolist())
    # Tool responses are not supervised: their tags are inputs only.
    response_tags = set(tiny_tok.convert_tokens_to_ids(["<tool_response>", "</tool_response>"]))
    assert used - response_tags <= set(batch.target_ids.flatten().tolist())


def test_the_model_holds_sparse_layers_on_the_embedding_and_the_tied_lm_head(tiny_tok):
    model, _ = trainable_model(tiny_tok)
    sparse = [m for m in model.modules() if isinstance(m, TrainableTokensLayer)]
    assert len(sparse) == 2 and all(type(m) is SparseTokenRowsLayer for m in sparse)
    assert sorted(type(m.base_layer).__name__ for m in sparse) == ["Gemma2TextScaledWordEmbedding", "Linear"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_logits_as_peft_layers(tiny_tok, precision):
    model, _ = trainable_model(tiny_tok)
    (batch,) = batches(tiny_tok, 1)
    results = {}
    for sparse in (True, False):
        if not sparse:
            as_peft_layers(model)
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            results[sparse] = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    # fp32: the new columns come from their own small matmul, so only matmul rounding differs; in bf16 the
    # inputs are the same bf16 values, the outputs rounded to bf16 (one step of 2^-8 relative).
    tolerance = {"fp32": dict(rtol=1e-5, atol=1e-5), "bf16": dict(rtol=1e-2, atol=2e-2)}[precision]
    torch.testing.assert_close(results[True], results[False], **tolerance)


class NewTensorShapes(TorchDispatchMode):
    """Records the shape of every tensor an operator allocates (views of its inputs, like a transpose, are
    not new memory and are left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        input_storages = {t.untyped_storage().data_ptr() for t in inputs}
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() not in input_storages:
                self.shapes.append((str(func), tuple(value.shape)))
        return out


@pytest.mark.parametrize("sparse", [True, False])
def test_no_vocab_by_hidden_tensor_in_forward_or_backward(tiny_tok, sparse):
    model, _ = trainable_model(tiny_tok, sparse=sparse)
    (batch,) = batches(tiny_tok, 1)
    full_matrix = tuple(model.get_base_model().model.embed_tokens.token_adapter.base_layer.weight.shape)
    with NewTensorShapes() as recorder:
        loss_sum, count = forward_loss(model, batch, "fp32", CPU)
        (loss_sum / count).backward()
    made = sorted({func for func, shape in recorder.shapes if shape == full_matrix})
    if sparse:
        assert made == []
    else:  # peft's own layer rebuilds the weight (index_copy) and takes its full gradient: the check can fail
        assert "aten.index_copy.default" in made


def three_steps(tokenizer, sparse: bool) -> tuple[list, list, dict]:
    """(loss and gradient norm per step, each step's clipped gradients as the optimizer gets them, final weights)."""
    model, selected = trainable_model(tokenizer, sparse=sparse)
    parameters = [p for _, p in selected]
    optimizer = torch.optim.AdamW(parameter_groups(selected, 0.1), lr=1e-3)
    gradients = []
    optimizer.register_step_pre_hook(lambda *_: gradients.append([p.grad.clone() for p in parameters]))
    losses = [train_step(model, optimizer, parameters, [batch], "fp32", 1.0, CPU) for batch in batches(tokenizer, 3)]
    return losses, gradients, {name: p.detach().clone() for name, p in selected}


def test_training_steps_equal_the_peft_path(tiny_tok):
    runs = {sparse: three_steps(tiny_tok, sparse) for sparse in (True, False)}
    (sparse_losses, sparse_grads, sparse_final), (peft_losses, peft_grads, peft_final) = runs[True], runs[False]
    assert sparse_final.keys() == peft_final.keys()
    assert any("trainable_tokens_delta" in name for name in sparse_final)
    assert len(sparse_grads) == len(peft_grads) == 3
    # Only fp32 rounding differs (the new columns' own matmul, no full-weight gradient); Adam's normalized
    # update turns a rounding-level gradient difference on near-zero entries into up to ~1% of one step.
    torch.testing.assert_close(sparse_losses, peft_losses, rtol=1e-6, atol=0)
    names = list(sparse_final)
    for step, (mine, theirs) in enumerate(zip(sparse_grads, peft_grads, strict=True)):
        for name, a, b in zip(names, mine, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-6, msg=f"gradient of {name} at step {step}")
    for name in names:
        torch.testing.assert_close(sparse_final[name], peft_final[name], rtol=0, atol=1e-5, msg=name)


def test_saved_adapter_is_peft_format_and_loads_with_the_same_logits(tiny_tok, tmp_path):
    model, _ = trainable_model(tiny_tok)
    save_adapter(model, tmp_path / "sparse")
    as_peft_layers(model)
    save_adapter(model, tmp_path / "peft")
    from safetensors.torch import load_file

    sparse_file = load_file(tmp_path / "sparse" / "adapter_model.safetensors")
    peft_file = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    assert sparse_file.keys() == peft_file.keys()
    assert any("trainable_tokens_delta" in key for key in sparse_file)
    assert all(torch.equal(sparse_file[key], peft_file[key]) for key in sparse_file)
    assert (tmp_path / "sparse" / "adapter_config.json").read_text() == (
        tmp_path / "peft" / "adapter_config.json"
    ).read_text()

    (batch,) = batches(tiny_tok, 1)
    with torch.no_grad():
        expected = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    base = load_model(ModelConfig(path=TINY_PATH), len(tiny_tok), torch.float32, CPU, seed=0)
    add_token_rows(base, len(tiny_tok), tiny_tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    loaded = PeftModel.from_pretrained(base, tmp_path / "sparse").eval()
    with torch.no_grad():
        logits = loaded(input_ids=batch.input_ids, position_ids=batch.position_ids).logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
