"""Rendered text -> token ids and labels, and the tokenizer set-up (special tokens, chat template).

Labels come from character spans and the tokenizer's offsets, never from markers searched for in token
space: a token is supervised when any of its characters lies in a supervised span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fcloop.data.conversation import RowProblem
from fcloop.data.gemma_format import SPECIAL_TOKENS, RenderedConversation, chat_template

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    """One conversation as model input, before packing. labels[i] is input_ids[i] where supervised, else -100
    (unshifted: position i's label is the token at i; the packer shifts within each document)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    source: str
    index: int
    truncated: bool = False
    weights: tuple[float, ...] | None = None
    """Each label's weight in the training loss (data.emphasis_pattern), aligned with labels; None: all 1."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def supervised_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    @property
    def emphasized_tokens(self) -> int:
        """Supervised tokens whose loss weight is not 1."""
        if self.weights is None:
            return 0
        pairs = zip(self.labels, self.weights, strict=True)
        return sum(label != IGNORE_INDEX and weight != 1.0 for label, weight in pairs)


def prepare_tokenizer(tokenizer, think_instruction: str, tags_as_tokens: bool = True) -> list[int]:
    """Install the chat template and, with `tags_as_tokens`, make the tags single tokens. Returns the ids of
    tokens that were added (their embedding rows need initializing and training); tags the vocabulary already
    has are reused. Without `tags_as_tokens` the tags stay the ordinary text pieces the model already reads,
    and nothing is added."""
    tokenizer.chat_template = chat_template(think_instruction)
    if not tags_as_tokens:
        return []
    vocab = tokenizer.get_vocab()
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer splits {token!r} into {len(ids)} tokens after adding it")
    return tokenizer.convert_tokens_to_ids(missing)


def existing_token_ids(tokenizer, tokens: Sequence[str]) -> list[int]:
    """The ids of tokens the vocabulary has as single tokens (lora.train_token_rows); anything else is an error."""
    vocab = tokenizer.get_vocab()
    unknown = [token for token in tokens if token not in vocab]
    if unknown:
        raise ValueError(f"lora.train_token_rows: {unknown} are not single tokens of the tokenizer")
    return [vocab[token] for token in tokens]


def supervised_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """For each token's [start, end) character range: does it overlap any supervised span?"""
    mask = []
    span_index = 0
    for start, end in offsets:
        # Spans and offsets are both ascending, so one forward pass suffices.
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        mask.append(end > start and span_index < len(spans) and spans[span_index][0] < end)
    return mask


def emphasis_spans(text: str, supervised_spans: Sequence[tuple[int, int]], pattern: str) -> list[tuple[int, int]]:
    """[start, end) character ranges of the pattern's non-empty matches inside the supervised spans, ascending.
    Searched span by span, so a match never reaches into a user's or a tool's text."""
    compiled = re.compile(pattern)
    return [
        match.span()
        for start, end in supervised_spans
        for match in compiled.finditer(text, start, end)
        if match.end() > match.start()
    ]


def label_weights(mask: Sequence[bool], emphasized: Sequence[bool], weight: float) -> tuple[float, ...]:
    """A supervised token inside an emphasized span weighs `weight`, any other token 1 (an unsupervised one
    has no target, so its weight is never read)."""
    return tuple(weight if supervised and inside else 1.0 for supervised, inside in zip(mask, emphasized, strict=True))


def tokenize_with_offsets(text: str, tokenizer) -> tuple[list[int], list[tuple[int, int]]]:
    # add_special_tokens=False: the rendered text already starts with <bos> (no double BOS).
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [tuple(pair) for pair in encoding["offset_mapping"]]


def encode(
    rendered: RenderedConversation,
    tokenizer,
    max_seq_len: int,
    truncate: bool,
    source: str = "",
    index: int = 0,
    emphasis: tuple[str, float] | None = None,
) -> Encoded:
    """Tokenize and label one rendered conversation.

    Longer than max_seq_len: with `truncate`, cut after the last assistant turn that fits (never inside a
    supervised span); otherwise, or if not even the first assistant turn fits, RowProblem("too long").
    `emphasis` = (pattern, weight): the supervised tokens inside the pattern's matches get that weight.
    """
    input_ids, offsets = tokenize_with_offsets(rendered.text, tokenizer)
    mask = supervised_mask(offsets, rendered.supervised_spans)
    weights = None
    if emphasis is not None:
        pattern, weight = emphasis
        inside = supervised_mask(offsets, emphasis_spans(rendered.text, rendered.supervised_spans, pattern))
        weights = label_weights(mask, inside, weight)
    truncated = False
    if len(input_ids) > max_seq_len:
        if not truncate:
            raise RowProblem("too long", f"{len(input_ids)} tokens > data.max_seq_len={max_seq_len}")
        keep = _tokens_before_last_fitting_turn_end(offsets, rendered.turn_ends, max_seq_len)
        if keep == 0:
            raise RowProblem("too long", f"even the first assistant turn exceeds data.max_seq_len={max_seq_len}")
        input_ids, mask, truncated = input_ids[:keep], mask[:keep], True
        weights = None if weights is None else weights[:keep]
    if not any(mask):
        raise RowProblem("nothing to supervise", "no token falls inside an assistant turn")
    labels = tuple(token if supervised else IGNORE_INDEX for token, supervised in zip(input_ids, mask, strict=True))
    return Encoded(tuple(input_ids), labels, source, index, truncated, weights)


def _tokens_before_last_fitting_turn_end(
    offsets: Sequence[tuple[int, int]], turn_ends: Sequence[int], max_seq_len: int
) -> int:
    """The largest token count that ends exactly at an assistant turn end and is <= max_seq_len; 0 if none."""
    best = 0
    for turn_end in turn_ends:
        count = sum(1 for start, end in offsets if end <= turn_end)
        # The token after the cut must start at or after the turn end, or the cut splits a token.
        straddles = any(start < turn_end < end for start, end in offsets)
        if count <= max_seq_len and not straddles:
            best = count
    return best
