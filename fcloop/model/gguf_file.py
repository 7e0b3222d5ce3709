"""A merged Gemma-2 / Gemma-3 text model and its tokenizer -> one GGUF file that llama.cpp runs.

Written with the `gguf` package (the format's own Python library), without a llama.cpp checkout. What llama.cpp
expects of a Gemma, read from its loader (`src/models/gemma2.cpp`, `gemma3.cpp`, `llama-vocab.cpp`; the version
pinned by the `llama` extra) and from its converter's output for Gemma-3-270M:

- RMSNorm: transformers multiplies by `1 + weight`, llama.cpp by `weight`, so every norm weight is written + 1.
- gemma2 always reads its output matrix from `token_embd` (tied); gemma3 reads `output.weight` when present.
  So a model whose lm_head differs from its embedding (a LoRA on lm_head) is written untied as gemma3 and
  refused as gemma2, where llama.cpp would silently use the embedding.
- The attention scale is 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the 27B layer counts): a config whose
  `query_pre_attn_scalar` says otherwise is refused rather than run wrong. Head dimensions are written
  (`key_length`), never derived from hidden/heads (gemma-2-2b: 256 vs 288).
- The sliding window and which layers use it are written per layer (`sliding_window_pattern`), from the
  config's `layer_types`; the softcaps as configured; gemma3's local rope base as `rope.freq_base_swa`.
- The vocabulary is llama.cpp's "llama" (SentencePiece) kind: pieces with `▁` for spaces, `<0xNN>` byte pieces,
  and a score per piece that orders its merges. A transformers tokenizer of Gemma keeps its merges as a BPE
  list instead of scores; the list's order is the scores' order, so a piece's score is minus the rank of the
  first merge that makes it. Added tokens are CONTROL when special (`<end_of_turn>`, the tags as tokens with
  `data.tags_as_tokens`), USER_DEFINED otherwise, as llama.cpp's converter marks them.
- `<end_of_turn>` is written as the end-of-turn token, so generation stops there; the chat template saved with
  the adapter (tools included) goes in `tokenizer.chat_template`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcloop.data.gemma_format import END_OF_TURN
from fcloop.errors import FcloopError

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")
ARCHITECTURES = {"gemma2": "gemma2", "gemma3_text": "gemma3"}
"""transformers `model_type` -> llama.cpp architecture."""
# llama.cpp scales the attention of these layer counts (the 27B models) by 1/sqrt(hidden/heads).
LAYERS_OF_27B = {"gemma2": 46, "gemma3": 62}
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


class GGUFExportError(FcloopError, ValueError):
    """The model or its tokenizer cannot be written as a GGUF that llama.cpp would run the same way."""


# ---------------------------------------------------------------------------------------------------------
# Hyperparameters


@dataclass(frozen=True)
class GemmaShape:
    architecture: str
    """llama.cpp's name: gemma2 or gemma3."""
    context_length: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_base: float
    rope_base_sliding: float
    sliding_window: int
    sliding_layers: tuple[bool, ...]
    attn_softcap: float | None
    final_softcap: float | None


def _rope(config: Any, layer_type: str) -> dict[str, Any]:
    """The rope parameters of one layer type: transformers 5 keeps them per layer type (Gemma-3) or flat
    (Gemma-2) in `rope_parameters`; older versions in `rope_theta` / `rope_local_base_freq` / `rope_scaling`."""
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, dict) and layer_type in parameters:
        return dict(parameters[layer_type])
    if isinstance(parameters, dict) and "rope_theta" in parameters:
        return dict(parameters)
    theta = getattr(config, "rope_local_base_freq", None) if layer_type == "sliding_attention" else None
    return {"rope_theta": theta or config.rope_theta, **(getattr(config, "rope_scaling", None) or {})}


def _sliding_layers(config: Any, architecture: str) -> tuple[bool, ...]:
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return tuple(kind == "sliding_attention" for kind in layer_types)
    if architecture == "gemma2":  # before `layer_types`: Gemma-2 alternates, starting with a sliding layer
        return tuple(index % 2 == 0 for index in range(config.num_hidden_layers))
    raise GGUFExportError("the model config has no layer_types: which layers use the sliding window is unknown")


def gemma_shape(config: Any) -> GemmaShape:
    """Read and check a transformers Gemma-2 / Gemma-3 text config; GGUFExportError for what llama.cpp would
    compute differently."""
    model_type = getattr(config, "model_type", "")
    if model_type not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise GGUFExportError(
            f"GGUF export knows the text models {known} (Gemma-2, Gemma-3); this model is {model_type!r}"
        )
    architecture = ARCHITECTURES[model_type]
    problems = []
    activation = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
    if activation not in ("gelu_pytorch_tanh", "gelu_new"):
        problems.append(f"hidden_activation is {activation!r}; llama.cpp's Gemma computes the tanh GELU")
    expected_scalar = (
        config.hidden_size // config.num_attention_heads
        if config.num_hidden_layers == LAYERS_OF_27B[architecture]
        else config.head_dim
    )
    if config.query_pre_attn_scalar != expected_scalar:
        problems.append(
            f"query_pre_attn_scalar is {config.query_pre_attn_scalar}; llama.cpp scales attention by "
            f"1/sqrt({expected_scalar}) for {config.num_hidden_layers} layers"
        )
    full, sliding = _rope(config, "full_attention"), _rope(config, "sliding_attention")
    for kind, rope in (("full", full), ("sliding", sliding)):
        if rope.get("rope_type", "default") != "default":
            problems.append(f"the {kind} layers' rope scaling {rope.get('rope_type')!r} is not written")
    attn_softcap = getattr(config, "attn_logit_softcapping", None)
    if architecture == "gemma2" and attn_softcap is None:
        problems.append("attn_logit_softcapping is None; llama.cpp's gemma2 always softcaps attention logits")
    if architecture == "gemma3" and attn_softcap is not None:
        problems.append(f"attn_logit_softcapping is {attn_softcap}; llama.cpp's gemma3 has no attention softcap")
    if architecture == "gemma2" and sliding["rope_theta"] != full["rope_theta"]:
        problems.append("Gemma-2 with a separate sliding-layer rope base")
    if problems:
        raise GGUFExportError("cannot write this model as a GGUF llama.cpp runs the same way: " + "; ".join(problems))
    return GemmaShape(
        architecture=architecture,
        context_length=config.max_position_embeddings,
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        intermediate=config.intermediate_size,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        rms_norm_eps=config.rms_norm_eps,
        rope_base=float(full["rope_theta"]),
        rope_base_sliding=float(sliding["rope_theta"]),
        sliding_window=config.sliding_window,
        sliding_layers=_sliding_layers(config, architecture),
        attn_softcap=attn_softcap,
        final_softcap=getattr(config, "final_logit_softcapping", None),
    )


# ---------------------------------------------------------------------------------------------------------
# Tensors

_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")


def gguf_tensor_name(name: str) -> str:
    """transformers' tensor name -> llama.cpp's; GGUFExportError for a tensor llama.cpp has no place for."""
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    match = _LAYER_NAME.fullmatch(name)
    if match and match.group(2) in _LAYER_TENSORS:
        return f"blk.{match.group(1)}.{_LAYER_TENSORS[match.group(2)]}.weight"
    raise GGUFExportError(f"tensor {name!r} has no place in llama.cpp's Gemma")


def is_norm(name: str) -> bool:
    return "norm" in name.rsplit(".", 2)[-2]


def model_tensors(model: torch.nn.Module, architecture: str) -> tuple[dict[str, np.ndarray], bool]:
    """({gguf name: fp32 array}, tied) of a plain (merged) transformers model. The output matrix is written
    only when it differs from the embedding, which gemma2 cannot take."""
    state = {name: tensor.detach().float().cpu() for name, tensor in model.state_dict().items()}
    head = state.pop("lm_head.weight", None)
    embedding = state["model.embed_tokens.weight"]
    tied = head is None or torch.equal(head, embedding)
    if not tied and architecture == "gemma2":
        raise GGUFExportError(
            "the model's lm_head differs from its embedding (a LoRA on lm_head, or trained new-token rows of "
            "lm_head), and llama.cpp's gemma2 always computes its output with the embedding: it would run "
            "another model. Train without lm_head in lora.target_modules to export Gemma-2 to GGUF, or serve the "
            "merged folder (--merge)"
        )
    if not tied:
        state["lm_head.weight"] = head
    tensors = {}
    for name, tensor in state.items():
        # transformers' Gemma RMSNorm multiplies by (1 + weight); llama.cpp's by weight.
        values = tensor + 1.0 if is_norm(name) else tensor
        tensors[gguf_tensor_name(name)] = values.numpy()
    return tensors, tied


# ---------------------------------------------------------------------------------------------------------
# Vocabulary


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos: int
    eos: int
    end_of_turn: int
    unknown: int | None
    padding: int | None


def _merge_scores(tokenizer) -> dict[str, float]:
    """Piece -> minus the rank of the first merge that makes it (llama.cpp merges the highest score first)."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        kind = f"{model.get('type')} model" + ("" if model.get("byte_fallback") else " without byte fallback")
        raise GGUFExportError(
            f"the tokenizer is a {kind}; GGUF export writes Gemma's SentencePiece-style vocabulary (BPE pieces "
            "with '▁' and <0xNN> byte pieces)"
        )
    scores: dict[str, float] = {}
    for rank, merge in enumerate(model["merges"]):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(left + right, -float(rank))
    return scores


def vocabulary(tokenizer, rows: int) -> Vocabulary:
    """Gemma's tokenizer as llama.cpp's SentencePiece vocabulary of `rows` entries (the embedding's rows)."""
    from gguf import TokenType

    pieces = {index: piece for piece, index in tokenizer.get_vocab().items()}
    if sorted(pieces) != list(range(len(pieces))):
        raise GGUFExportError("the tokenizer's ids are not contiguous from 0")
    if len(pieces) > rows:
        raise GGUFExportError(f"the tokenizer has {len(pieces)} tokens but the embedding only {rows} rows")
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end_of_turn is None or end_of_turn == tokenizer.unk_token_id:
        raise GGUFExportError(f"the tokenizer has no {END_OF_TURN} token")
    merge_scores = _merge_scores(tokenizer)
    added = tokenizer.added_tokens_decoder
    tokens, scores, types = [], [], []
    for index in range(rows):
        if index >= len(pieces):  # embedding rows beyond the tokenizer: never produced, never read
            tokens.append(f"<unused_row_{index}>")
            scores.append(-1000.0)
            types.append(TokenType.UNUSED)
            continue
        piece = pieces[index]
        tokens.append(piece)
        if index in added:
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
            scores.append(-1000.0)
        elif BYTE_PIECE.fullmatch(piece):
            types.append(TokenType.BYTE)
            scores.append(0.0)
        else:
            types.append(TokenType.NORMAL)
            scores.append(merge_scores.get(piece, 0.0))
    return Vocabulary(
        tokens=tokens,
        scores=scores,
        types=[int(kind) for kind in types],
        bos=tokenizer.bos_token_id,
        eos=tokenizer.eos_token_id,
        end_of_turn=end_of_turn,
        unknown=tokenizer.unk_token_id,
        padding=tokenizer.pad_token_id,
    )


# ---------------------------------------------------------------------------------------------------------
# The file


def _stored(name: str, values: np.ndarray, gguf_type: str) -> tuple[np.ndarray, Any, str | None]:
    """(data, raw dtype or None, a note when the tensor is kept wider than asked). Norms and other 1-D tensors
    stay fp32, as llama.cpp's converter keeps them; q8_0 needs rows that are a multiple of its 32-value block."""
    from gguf import GGMLQuantizationType, quants

    if gguf_type == "f32" or values.ndim == 1:
        return values.astype(np.float32), None, None
    if gguf_type == "f16":
        return values.astype(np.float16), None, None
    if gguf_type == "bf16":
        return quants.quantize(values, GGMLQuantizationType.BF16), GGMLQuantizationType.BF16, None
    if values.shape[-1] % 32:
        note = f"{name}: rows of {values.shape[-1]} values are no multiple of q8_0's 32, written f16"
        return values.astype(np.float16), None, note
    return quants.quantize(values, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0, None


@dataclass(frozen=True)
class WrittenGGUF:
    architecture: str
    tensor_types: dict[str, int]
    """How many tensors were written in each type (norms stay F32)."""
    vocabulary_size: int
    notes: list[str]
    """Tensors kept wider than asked, and an output matrix written apart from the embedding."""

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.tensor_types.items()))
        summary = f"{self.architecture}, {sum(self.tensor_types.values())} tensors ({kinds})"
        return [f"note: {note}" for note in self.notes] + [f"{summary}, {self.vocabulary_size} tokens"]


def write_gguf(model: torch.nn.Module, tokenizer, path: Path, gguf_type: str = "f16", name: str = "") -> WrittenGGUF:
    """Write `model` (a plain, merged transformers Gemma) and `tokenizer` to the GGUF file `path` (the caller
    makes it atomic)."""
    import gguf

    if gguf_type not in GGUF_TYPES:
        raise GGUFExportError(f"unknown GGUF type {gguf_type!r}; choose one of {', '.join(GGUF_TYPES)}")
    shape = gemma_shape(model.config.get_text_config())
    tensors, tied = model_tensors(model, shape.architecture)
    rows = tensors["token_embd.weight"].shape[0]
    vocab = vocabulary(tokenizer, rows)
    template = tokenizer.chat_template
    if not template:
        raise GGUFExportError("the tokenizer has no chat template; export the adapter folder training saved")

    writer = gguf.GGUFWriter(path, shape.architecture)
    writer.add_name(name or path.stem)
    writer.add_file_type(
        {
            "f32": gguf.LlamaFileType.ALL_F32,
            "f16": gguf.LlamaFileType.MOSTLY_F16,
            "bf16": gguf.LlamaFileType.MOSTLY_BF16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        }[gguf_type]
    )
    if gguf_type == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_layer_norm_rms_eps(shape.rms_norm_eps)
    writer.add_rope_freq_base(shape.rope_base)
    writer.add_rope_freq_base_swa(shape.rope_base_sliding)
    writer.add_sliding_window(shape.sliding_window)
    writer.add_sliding_window_pattern(list(shape.sliding_layers))
    if shape.attn_softcap is not None:
        writer.add_attn_logit_softcapping(shape.attn_softcap)
    if shape.final_softcap is not None:
        writer.add_final_logit_softcapping(shape.final_softcap)

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_bos_token_id(vocab.bos)
    writer.add_eos_token_id(vocab.eos)
    writer.add_eot_token_id(vocab.end_of_turn)
    if vocab.unknown is not None:
        writer.add_unk_token_id(vocab.unknown)
    if vocab.padding is not None:
        writer.add_pad_token_id(vocab.padding)
    writer.add_add_bos_token(True)  # Gemma's prompts start with <bos>, as fcloop's template writes it
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(template)

    notes = [] if tied else ["lm_head differs from the embedding: written as a separate output.weight"]
    tensor_types: dict[str, int] = {}
    for tensor_name, values in tensors.items():
        data, raw_dtype, note = _stored(tensor_name, values, gguf_type)
        writer.add_tensor(tensor_name, data, raw_dtype=raw_dtype)
        kind = raw_dtype.name if raw_dtype is not None else {np.float32: "F32", np.float16: "F16"}[data.dtype.type]
        tensor_types[kind] = tensor_types.get(kind, 0) + 1
        if note:
            notes.append(note)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return WrittenGGUF(shape.architecture, tensor_types, len(vocab.tokens), notes)
