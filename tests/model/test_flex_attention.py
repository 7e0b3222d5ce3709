"""Flex attention document masks: the same visibility as the eager masks, and the same logits as running
each document alone (forward only: flex attention has no backward on CPU)."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask, create_mask

from fcloop.config import ModelConfig
from fcloop.data.packing import collate
from fcloop.data.tokenization import Encoded
from fcloop.model.attention_masks import document_attention_masks
from fcloop.model.flex_attention import attention_masks_for, document_block_masks
from fcloop.model.load import load_model
from fcloop.model.tiny import TINY_PATH

CPU = torch.device("cpu")
VOCAB = 300
SMALL_SOFTCAP = 1.0  # far below the attention scores of the model below, so a forgotten softcap shows
QUERY_SCALE = 30.0  # random-init scores are near 0, where tanh is the identity: scale them up


def random_documents(lengths: list[int]) -> list[Encoded]:
    generator = torch.Generator().manual_seed(0)
    docs = []
    for index, length in enumerate(lengths):
        ids = tuple(torch.randint(5, VOCAB, (length,), generator=generator).tolist())
        docs.append(Encoded(ids, ids, "random", index))
    return docs


def visible(block_mask: BlockMask) -> torch.Tensor:
    """The block mask's element-wise visibility, [rows, tokens, tokens]."""
    rows, _, q_len, kv_len = block_mask.shape
    return create_mask(block_mask.mask_mod, rows, None, q_len, kv_len, device="cpu")[:, 0]


def assert_same_visibility(document_ids: torch.Tensor, position_ids: torch.Tensor, config) -> None:
    eager = document_attention_masks(document_ids, position_ids, config, torch.float32)
    flex = document_block_masks(document_ids, position_ids, config)
    assert flex.keys() == eager.keys()
    for kind, additive in eager.items():
        assert torch.equal(visible(flex[kind]), additive[:, 0] == 0), kind


def test_block_masks_exact_small_case():
    document_ids = torch.tensor([[0, 0, 0, 1, 1, -1]])
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0]])
    config = type("Config", (), {"sliding_window": 2})()
    masks = document_block_masks(document_ids, position_ids, config)
    assert visible(masks["sliding_attention"])[0].int().tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding sees itself only: no empty softmax row
    ]
    assert_same_visibility(document_ids, position_ids, config)


def test_block_masks_equal_eager_masks_on_packed_rows():
    # Rows longer than one 128-token block, documents longer than the window, padding in the shorter row.
    docs = random_documents([150, 9, 57, 130, 60])
    batch = collate([docs[:3], docs[3:]], pad_token_id=0)
    assert_same_visibility(batch.document_ids, batch.position_ids, type("Config", (), {"sliding_window": 24})())


def test_without_sliding_window_only_full_masks():
    batch = collate([random_documents([20, 10])], pad_token_id=0)
    masks = document_block_masks(batch.document_ids, batch.position_ids, type("Config", (), {"sliding_window": None})())
    assert list(masks) == ["full_attention"]


def test_attention_masks_for_dispatches_by_implementation():
    batch = collate([random_documents([30, 20])], pad_token_id=0)
    config = type("Config", (), {"sliding_window": 24})()
    eager = attention_masks_for(batch, config, "eager", torch.float32)
    reference = document_attention_masks(batch.document_ids, batch.position_ids, config, torch.float32)
    assert all(torch.equal(eager[kind], reference[kind]) for kind in reference)
    flex = attention_masks_for(batch, config, "flex_attention", torch.float32)
    assert all(isinstance(mask, BlockMask) for mask in flex.values())
    with pytest.raises(ValueError, match="sdpa"):
        attention_masks_for(batch, config, "sdpa", torch.float32)


def tiny_model(attn_implementation: str, softcap: float | None) -> torch.nn.Module:
    model = load_model(
        ModelConfig(path=TINY_PATH, attn_implementation=attn_implementation), VOCAB, torch.float32, CPU, 0
    )
    for layer in model.model.layers:
        # Set on the modules (read once at init); both models get the same weights from the seed.
        layer.self_attn.attn_logit_softcapping = softcap
        with torch.no_grad():
            layer.self_attn.q_proj.weight.mul_(QUERY_SCALE)
    return model.eval()


def logits(model, batch, masks=None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=masks).logits


def flex_cpu_unsupported_reason() -> str | None:
    # transformers runs flex attention through torch.compile; inductor's CPU backend builds C++ kernels.
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "flex attention forward on CPU needs inductor's C++ compiler (no g++ / c++ on PATH)"
    return None


def test_packed_flex_logits_equal_separate_eager_runs():
    reason = flex_cpu_unsupported_reason()
    if reason:
        pytest.skip(reason)
    flex_model = tiny_model("flex_attention", SMALL_SOFTCAP)
    eager_model = tiny_model("eager", SMALL_SOFTCAP)
    # Longer than the tiny model's sliding window (24), so the sliding layers' mask matters; padding in row 0.
    rows = [random_documents([40, 9]), random_documents([57, 30])]
    packed = collate(rows, pad_token_id=0)
    masks = attention_masks_for(packed, flex_model.config, "flex_attention", torch.float32)
    packed_logits = logits(flex_model, packed, masks)
    for row, row_docs in enumerate(rows):
        offset = 0
        for doc in row_docs:
            alone = logits(eager_model, collate([[doc]], pad_token_id=0))[0]
            torch.testing.assert_close(packed_logits[row, offset : offset + len(doc)], alone, rtol=0, atol=2e-5)
            offset += len(doc)


def test_small_softcap_changes_the_logits():
    # Guards the test above: with this softcap the capped and uncapped logits differ, so flex matching the
    # capped eager run shows that transformers' flex path applies Gemma-2's attention softcap.
    batch = collate([random_documents([40])], pad_token_id=0)
    capped = logits(tiny_model("eager", SMALL_SOFTCAP), batch)
    uncapped = logits(tiny_model("eager", None), batch)
    assert (capped - uncapped).abs().max() > 0.05
