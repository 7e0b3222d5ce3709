"""Model-side exactness: document isolation, the memory-lean loss, and what one optimizer step may change."""

from __future__ import annotations

import pytest
import torch
from tiny_data import conversation

from fcloop.config import RECIPE_THINK_INSTRUCTION, LoraConfig, ModelConfig
from fcloop.data.gemma_format import SPECIAL_TOKENS, render
from fcloop.data.packing import collate
from fcloop.data.readers import read_row
from fcloop.data.tokenization import IGNORE_INDEX, Encoded, encode, existing_token_ids
from fcloop.model.attention_masks import document_attention_masks
from fcloop.model.load import base_config, load_model, model_parts
from fcloop.model.lora import (
    add_token_rows,
    apply_lora,
    parameter_groups,
    select_trainable,
    token_rows_merged,
    trainable_table,
)
from fcloop.model.loss import supervised_cross_entropy
from fcloop.model.tiny import TINY_PATH
from fcloop.training.loop import forward_loss

CPU = torch.device("cpu")


def tiny_model(tokenizer, new_token_ids=(), softcap: float | None = 30.0):
    model = load_model(ModelConfig(path=TINY_PATH), len(tokenizer), torch.float32, CPU, seed=0)
    model.config.final_logit_softcapping = softcap
    add_token_rows(model, len(tokenizer), list(new_token_ids))
    return model


def new_token_ids(tokenizer) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))


def encoded_conversations(tokenizer, count: int) -> list[Encoded]:
    examples = []
    for index in range(count):
        conv = read_row(conversation(index), "hermes", "tiny", index)
        examples.append(encode(render(conv, RECIPE_THINK_INSTRUCTION), tokenizer, 4096, truncate=False))
    return examples


def random_documents(lengths: list[int], vocab: int) -> list[Encoded]:
    generator = torch.Generator().manual_seed(0)
    docs = []
    for index, length in enumerate(lengths):
        ids = tuple(torch.randint(5, vocab, (length,), generator=generator).tolist())
        docs.append(Encoded(ids, ids, "random", index))
    return docs


def logits(model, batch, masks=None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=masks).logits


def test_packed_logits_equal_separate_runs(tiny_tok):
    model = tiny_model(tiny_tok).eval()
    # Longer than the tiny model's sliding window (24), so the sliding layers' mask matters too.
    docs = random_documents([40, 9, 57, 30], len(tiny_tok))
    packed = collate([docs[:2], docs[2:]], tiny_tok.pad_token_id)
    masks = document_attention_masks(packed.document_ids, packed.position_ids, model.config, torch.float32)
    packed_logits = logits(model, packed, masks)
    for row, row_docs in enumerate([docs[:2], docs[2:]]):
        offset = 0
        for doc in row_docs:
            alone = logits(model, collate([[doc]], tiny_tok.pad_token_id))[0]
            torch.testing.assert_close(packed_logits[row, offset : offset + len(doc)], alone, rtol=0, atol=2e-5)
            offset += len(doc)


def test_without_document_mask_the_second_document_is_contaminated(tiny_tok):
    # Guards the test above: a plain all-ones padding mask lets the second document see the first.
    model = tiny_model(tiny_tok).eval()
    docs = random_documents([30, 20], len(tiny_tok))
    packed = collate([docs], tiny_tok.pad_token_id)
    naive = logits(model, packed, torch.ones_like(packed.input_ids))
    alone = logits(model, collate([[docs[1]]], tiny_tok.pad_token_id))[0]
    assert (naive[0, 30:50] - alone).abs().max() > 1e-3


def test_attention_masks_exact_small_case():
    document_ids = torch.tensor([[0, 0, 0, 1, 1, -1]])
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0]])
    config = type("Config", (), {"sliding_window": 2})()
    masks = document_attention_masks(document_ids, position_ids, config, torch.float32)
    allowed_full = (masks["full_attention"][0, 0] == 0).int().tolist()
    allowed_sliding = (masks["sliding_attention"][0, 0] == 0).int().tolist()
    assert allowed_full == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]
    assert allowed_sliding == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]


def hf_loss_and_ours(model, example: Encoded, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids = torch.tensor([example.input_ids])
    reference = model(input_ids=input_ids, labels=torch.tensor([example.labels])).loss
    parts = model_parts(model)
    batch = collate([[example]], 0)
    hidden = parts.decoder(input_ids=batch.input_ids, position_ids=batch.position_ids).last_hidden_state
    total, count = supervised_cross_entropy(
        hidden, batch.target_ids, parts.lm_head, parts.final_logit_softcap, chunk_size=chunk_size
    )
    assert count == sum(label != IGNORE_INDEX for label in example.labels[1:])
    return reference, total / count


@pytest.mark.parametrize("softcap", [30.0, None])
def test_chunked_loss_equals_model_loss(tiny_tok, softcap):
    model = tiny_model(tiny_tok, softcap=softcap)
    example = encoded_conversations(tiny_tok, 1)[0]
    reference, ours = hf_loss_and_ours(model, example, chunk_size=7)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0)


def test_softcap_changes_the_loss(tiny_tok):
    # Guards the test above: the softcap is not a no-op on these logits, so forgetting it would be caught.
    example = encoded_conversations(tiny_tok, 1)[0]
    model = tiny_model(tiny_tok, softcap=30.0)
    parts = model_parts(model)
    batch = collate([[example]], 0)
    hidden = parts.decoder(input_ids=batch.input_ids, position_ids=batch.position_ids).last_hidden_state * 40
    capped, _ = supervised_cross_entropy(hidden, batch.target_ids, parts.lm_head, 30.0)
    uncapped, _ = supervised_cross_entropy(hidden, batch.target_ids, parts.lm_head, None)
    assert abs(float(capped) - float(uncapped)) > 1.0


def lora_model(tokenizer, lora: LoraConfig):
    new_ids = new_token_ids(tokenizer)
    torch.manual_seed(0)
    model = apply_lora(tiny_model(tokenizer, new_ids), lora, new_ids)
    selected = select_trainable(model)
    with torch.no_grad():  # LoRA B starts at zero; make every adapter contribute so the tests see it
        for name, parameter in selected:
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    return model, selected


def test_chunked_loss_and_gradients_with_lora_on_lm_head(tiny_tok):
    model, selected = lora_model(tiny_tok, LoraConfig(r=4, alpha=8, dropout=0.0))
    assert any("lm_head.lora_A" in name for name, _ in selected)
    example = encoded_conversations(tiny_tok, 1)[0]
    reference, ours = hf_loss_and_ours(model, example, chunk_size=5)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0)
    reference_grads = torch.autograd.grad(reference, [p for _, p in selected])
    our_grads = torch.autograd.grad(ours, [p for _, p in selected])
    for (name, _), theirs, mine in zip(selected, reference_grads, our_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-7, msg=name)


def test_keeping_the_logits_gives_the_same_loss_and_gradients_with_one_lm_head_pass_less(tiny_tok):
    model, selected = lora_model(tiny_tok, LoraConfig(r=4, alpha=8, dropout=0.0))
    parts = model_parts(model)
    batch = collate([encoded_conversations(tiny_tok, 2)], tiny_tok.pad_token_id)
    lm_head_calls = []
    parts.lm_head.register_forward_hook(lambda *_: lm_head_calls.append(1))
    results = {}
    for recompute in (True, False):
        lm_head_calls.clear()
        hidden = parts.decoder(input_ids=batch.input_ids, position_ids=batch.position_ids).last_hidden_state
        total, count = supervised_cross_entropy(
            hidden, batch.target_ids, parts.lm_head, None, chunk_size=16, recompute=recompute
        )
        gradients = torch.autograd.grad(total / count, [p for _, p in selected])
        results[recompute] = (total, gradients, len(lm_head_calls))
    chunks = -(-count // 16)
    assert chunks > 1
    assert results[True][2] == 2 * chunks  # forward, then again in backward
    assert results[False][2] == chunks
    torch.testing.assert_close(results[False][0], results[True][0], rtol=0, atol=0)
    for (name, _), kept, recomputed in zip(selected, results[False][1], results[True][1], strict=True):
        torch.testing.assert_close(kept, recomputed, rtol=1e-6, atol=1e-9, msg=name)


def test_loss_chunk_size_changes_neither_loss_nor_gradients_and_bounds_the_logits(tiny_tok):
    model, selected = lora_model(tiny_tok, LoraConfig(r=4, alpha=8, dropout=0.0))
    batch = collate([encoded_conversations(tiny_tok, 2)], tiny_tok.pad_token_id)
    parts = model_parts(model)
    vocab = base_config(model).vocab_size
    logits_rows = []
    parts.lm_head.register_forward_hook(lambda module, args, output: logits_rows.append(output.shape[0]))
    results = {}
    saved_shapes = []

    def keep_shape(tensor):
        saved_shapes.append(tuple(tensor.shape))
        return tensor

    for chunk in (5, 64, 1_000_000):
        logits_rows.clear()
        saved_shapes.clear()
        # Outside the checkpointed chunks, nothing of vocabulary width may be kept for backward.
        with torch.autograd.graph.saved_tensors_hooks(keep_shape, lambda tensor: tensor):
            total, count = forward_loss(model, batch, "fp32", CPU, loss_chunk_tokens=chunk)
        gradients = torch.autograd.grad(total / count, [p for _, p in selected])
        results[chunk] = (total, gradients)
        chunks = -(-count // chunk)
        assert len(logits_rows) == 2 * chunks  # each chunk's logits: once forward, once recomputed in backward
        assert max(logits_rows) == min(chunk, count)
        assert not [shape for shape in saved_shapes if vocab in shape]
    assert count > 64
    reference_total, reference_gradients = results[1_000_000]
    for chunk, (total, gradients) in results.items():
        torch.testing.assert_close(total, reference_total, rtol=1e-6, atol=0)
        for (name, _), mine, theirs in zip(selected, gradients, reference_gradients, strict=True):
            # Chunks change only the fp32 summation order of the gradients (entries up to about 1 here).
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=f"{name} at chunk {chunk}")


def test_one_step_changes_only_the_selected_parameters(tiny_tok):
    model, selected = lora_model(tiny_tok, LoraConfig(r=4, alpha=8, dropout=0.0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(selected, 0.1), lr=1e-2)
    batch = collate([encoded_conversations(tiny_tok, 3)], tiny_tok.pad_token_id)
    loss_sum, count = forward_loss(model, batch, "fp32", CPU)
    (loss_sum / count).backward()
    optimizer.step()
    selected_names = {name for name, _ in selected}
    for name, parameter in model.named_parameters():
        if name in selected_names:
            assert not torch.equal(parameter, before[name]), f"{name} did not move"
        else:
            assert torch.equal(parameter, before[name]), f"frozen {name} changed"
    for marker in ("lora_A", "lora_B", "trainable_tokens_delta"):
        assert any(marker in name for name in selected_names), marker


def test_new_token_rows_start_at_the_mean_and_train_only_those_rows(tiny_tok):
    new_ids = new_token_ids(tiny_tok)
    model = tiny_model(tiny_tok, new_ids)
    weight = model.get_input_embeddings().weight
    old_mean = weight[: min(new_ids)].mean(dim=0)
    for token in new_ids:
        torch.testing.assert_close(weight[token], old_mean)
    peft_model = apply_lora(model, LoraConfig(r=2, alpha=4, dropout=0.0), new_ids)
    selected = dict(select_trainable(peft_model))
    (rows_name,) = [name for name in selected if "trainable_tokens_delta" in name]
    assert selected[rows_name].shape == (len(new_ids), model.config.hidden_size)


def test_selection_refuses_other_trainable_parameters(tiny_tok):
    model, _ = lora_model(tiny_tok, LoraConfig(r=2, alpha=4, dropout=0.0))
    table = trainable_table(model)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert f"{total:,}" in table.splitlines()[-1]
    norm = next(p for n, p in model.named_parameters() if n.endswith("model.norm.weight"))
    # select_trainable decides from names, so a stray requires_grad is reset rather than trained.
    norm.requires_grad_(True)
    names = [name for name, _ in select_trainable(model)]
    assert not norm.requires_grad and not any(name.endswith("norm.weight") for name in names)


def test_weight_decay_skips_token_rows(tiny_tok):
    _, selected = lora_model(tiny_tok, LoraConfig(r=2, alpha=4, dropout=0.0))
    groups = parameter_groups(selected, 0.1)
    token_rows = [p for n, p in selected if "trainable_tokens_delta" in n]
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["params"] == token_rows
    assert groups[0]["weight_decay"] == 0.1 and len(groups[0]["params"]) == len(selected) - len(token_rows)


def test_model_config_is_gemma2_shaped(tiny_tok):
    config = base_config(tiny_model(tiny_tok))
    assert config.layer_types == ["sliding_attention", "full_attention"] * 2
    assert (config.attn_logit_softcapping, config.sliding_window) == (50.0, 24)


def test_token_rows_merged_gives_the_same_logits_and_restores_the_embedding_bitwise(tiny_tok):
    model, selected = lora_model(tiny_tok, LoraConfig(r=2, alpha=4, dropout=0.0))
    rows = next(p for n, p in selected if "trainable_tokens_delta" in n)
    with torch.no_grad():
        rows.normal_(std=0.5)  # trained rows, unlike the initial copies of the mean row
    model.eval()
    ids = torch.tensor([tiny_tok.encode("<bos><think>hi</think><tool_call>{}</tool_call>", add_special_tokens=False)])
    embedding_before = model.get_input_embeddings().weight.detach().clone()
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with token_rows_merged(model):
            merged = model(input_ids=ids).logits
    # Merged rows change the order of the lm_head's fp32 sums, not the values: a few ulps of logits near 5
    # (torch's fp32 tolerance; measured 3.8e-6 on an AVX2 CPU, under 1e-6 on an AVX-512 one). Unmerged rows
    # would differ by the rows themselves (std 0.5).
    torch.testing.assert_close(merged, unmerged, rtol=1.3e-6, atol=1e-5)
    assert torch.equal(model.get_input_embeddings().weight, embedding_before)


@pytest.mark.parametrize("with_new_tokens", [True, False])
def test_saved_adapter_holds_only_the_trained_weights(tiny_tok, tmp_path, with_new_tokens):
    # With a LoRA on the tied lm_head and no new-token rows, peft's default would also save the frozen
    # embedding (pitfall: the adapter bloats to the size of the vocabulary matrix).
    from safetensors.torch import load_file

    from fcloop.model.lora import save_adapter

    ids = new_token_ids(tiny_tok) if with_new_tokens else []
    model = apply_lora(tiny_model(tiny_tok, ids), LoraConfig(r=4, alpha=8, dropout=0.0), ids)
    trained = {name.replace(".default", "") for name, _ in select_trainable(model)}
    save_adapter(model, tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert set(saved) == trained
    assert any("lm_head.lora_B" in name for name in saved)
    assert any("trainable_tokens_delta" in name for name in saved) == with_new_tokens


def test_packed_logits_equal_separate_runs_on_real_gemma3(gemma_tok):
    # The real Gemma-3-270M (5 sliding layers of window 512 to 1 global, its own RoPE per layer type): a
    # document longer than the window, packed after two others, sees exactly what it sees alone.
    model = load_model(ModelConfig(path="pypi:gemma3-270m"), len(gemma_tok), torch.float32, CPU, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    docs = []
    for index, length in enumerate([300, 250, 700]):
        ids = (gemma_tok.bos_token_id, *torch.randint(1000, 200_000, (length - 1,), generator=generator).tolist())
        docs.append(Encoded(ids, ids, "random", index))
    packed = collate([docs], gemma_tok.pad_token_id)
    config = base_config(model)
    assert config.sliding_window == 512 and len(docs[2]) > config.sliding_window
    masks = document_attention_masks(packed.document_ids, packed.position_ids, config, torch.float32)
    packed_logits = logits(model, packed, masks)[0]
    start = 0
    for doc in docs:
        alone = logits(model, collate([[doc]], gemma_tok.pad_token_id))[0]
        # fp32 summation order differs with the longer masked rows; a leak across documents would be O(1).
        torch.testing.assert_close(packed_logits[start : start + len(doc)], alone, rtol=1e-4, atol=1e-3)
        start += len(doc)


def test_existing_token_rows_train_when_named(tiny_tok):
    (end_of_turn,) = existing_token_ids(tiny_tok, ["<end_of_turn>"])
    assert end_of_turn == tiny_tok.convert_tokens_to_ids("<end_of_turn>")
    with pytest.raises(ValueError, match=r"lora.train_token_rows: \['<nope>'\]"):
        existing_token_ids(tiny_tok, ["<end_of_turn>", "<nope>"])
    config = LoraConfig(r=2, alpha=4, dropout=0.0, train_new_token_rows=False)
    model = apply_lora(tiny_model(tiny_tok), config, [], [end_of_turn])
    selected = dict(select_trainable(model))
    (rows_name,) = [name for name in selected if "trainable_tokens_delta" in name]
    assert selected[rows_name].shape == (1, base_config(model).hidden_size)
    # <end_of_turn> is both an input and a supervised target here: its row gets a gradient.
    batch = collate([encoded_conversations(tiny_tok, 2)], tiny_tok.pad_token_id)
    assert end_of_turn in batch.target_ids.tolist()[0]
    loss_sum, _ = forward_loss(model, batch, "fp32", CPU)
    loss_sum.backward()
    assert selected[rows_name].grad.abs().sum() > 0
