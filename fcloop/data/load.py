"""The data path, one way: sources -> conversations -> rendered text -> encoded examples, with counts.

Nothing is lost silently: every row read is either kept, skipped for a named reason (only when
data.on_bad_row = "skip"), dropped as too long, or kept truncated on request; `DataStats` counts each.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field

from fcloop.config import ConfigError, DataConfig
from fcloop.data.bfcl_cases import BfclCase, load_sources, split_sources
from fcloop.data.conversation import BadRow, Conversation, RowProblem
from fcloop.data.gemma_format import render
from fcloop.data.readers import detect_file_format, iter_rows, read_row
from fcloop.data.tokenization import Encoded, encode
from fcloop.errors import FcloopError


class NothingToTrain(FcloopError, ValueError):
    """No training example is left after reading: every row was skipped or dropped (the stats say why)."""


@dataclass
class DataStats:
    rows_read: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Bad rows skipped (data.on_bad_row = "skip"), by reason."""
    not_used: int = 0
    """Conversations left out by an explicit limit (data.max_eval_conversations)."""
    dropped_too_long: int = 0
    truncated: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    emphasized_tokens: int = 0
    """Supervised tokens weighted by data.emphasis_pattern (training data only)."""

    def lines(self) -> list[str]:
        lines = [
            f"rows read: {self.rows_read}",
            f"kept: {self.kept}",
            f"dropped, too long: {self.dropped_too_long}",
            f"kept truncated (at a turn boundary): {self.truncated}",
            f"skipped bad rows: {sum(self.skipped.values())}",
        ]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        if self.not_used:
            lines.append(f"left out by data.max_eval_conversations: {self.not_used}")
        share = self.supervised_tokens / self.tokens if self.tokens else 0.0
        lines += [f"tokens: {self.tokens}", f"supervised tokens: {self.supervised_tokens} ({share:.1%})"]
        if self.emphasized_tokens:
            share = self.emphasized_tokens / self.supervised_tokens
            lines.append(f"  of them emphasized (data.emphasis_pattern): {self.emphasized_tokens} ({share:.1%})")
        return lines

    def as_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "skipped": dict(self.skipped)}


def too_long_hint(stats: DataStats, max_seq_len: int) -> str | None:
    """What to do about conversations dropped as longer than data.max_seq_len; None when there were none."""
    if not stats.dropped_too_long:
        return None
    count = stats.dropped_too_long
    return (
        f"{count} conversation{'s are' if count > 1 else ' is'} longer than data.max_seq_len = {max_seq_len} tokens "
        'and dropped: raise data.max_seq_len to keep them, or set data.on_too_long = "truncate" to keep their '
        "turns that fit"
    )


def _handle_bad_row(error: BadRow, on_bad_row: str, stats: DataStats) -> None:
    if on_bad_row == "error":
        raise error
    stats.skipped[error.reason] += 1


def read_conversations(sources: tuple[str, ...], config: DataConfig, stats: DataStats) -> list[Conversation]:
    """All rows of all sources as conversations; bad rows raise or are counted, per data.on_bad_row."""
    conversations = []
    for source in sources:
        rows = list(iter_rows(source))
        fmt = config.format if config.format != "auto" else detect_file_format(rows, source)
        for index, row in rows:
            stats.rows_read += 1
            try:
                conversation = read_row(row, fmt, source, index, config.canonicalize_tool_calls)
            except BadRow as error:
                _handle_bad_row(error, config.on_bad_row, stats)
                continue
            conversations.append(conversation)
    return conversations


def training_emphasis(config: DataConfig) -> tuple[str, float] | None:
    """(pattern, weight) for the training examples' loss weights, or None without data.emphasis_pattern."""
    return (config.emphasis_pattern, config.emphasis_weight) if config.emphasis_pattern else None


def encode_conversations(
    conversations: list[Conversation],
    tokenizer,
    config: DataConfig,
    stats: DataStats,
    emphasis: tuple[str, float] | None = None,
) -> list[Encoded]:
    """Render and tokenize each conversation; too long ones are dropped (or truncated) and counted.
    `emphasis`: (pattern, weight) for the loss weights (training data only; see `training_emphasis`)."""
    examples = []
    for conversation in conversations:
        rendered = render(conversation, config.think_instruction)
        try:
            example = encode(
                rendered,
                tokenizer,
                config.max_seq_len,
                truncate=config.on_too_long == "truncate",
                source=conversation.source,
                index=conversation.index,
                emphasis=emphasis,
            )
        except RowProblem as problem:
            if problem.reason == "too long":
                stats.dropped_too_long += 1
                continue
            _handle_bad_row(
                BadRow(conversation.source, conversation.index, problem.reason, problem.detail),
                config.on_bad_row,
                stats,
            )
            continue
        stats.kept += 1
        stats.truncated += example.truncated
        stats.tokens += len(example)
        stats.supervised_tokens += example.supervised_tokens
        stats.emphasized_tokens += example.emphasized_tokens
        examples.append(example)
    return examples


def split_held_out(
    conversations: list[Conversation], fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """(train, eval): a seeded random `fraction` held out; both keep source order."""
    count = round(len(conversations) * fraction)
    if fraction > 0 and count == 0 and conversations:
        count = 1  # a requested eval split is never silently empty
    chosen = set(random.Random(f"{seed}:eval-split").sample(range(len(conversations)), count))
    train = [c for i, c in enumerate(conversations) if i not in chosen]
    held_out = [c for i, c in enumerate(conversations) if i in chosen]
    return train, held_out


@dataclass
class Datasets:
    train: list[Encoded]
    eval: list[Encoded]
    train_stats: DataStats
    eval_stats: DataStats
    eval_conversations: list[Conversation]
    """Kept for generation-based evaluation (the tool-call scorer)."""
    bfcl_cases: list[BfclCase] = field(default_factory=list)
    """The cases of the `bfcl:` sources in data.eval, scored by BFCL's rules (`fcloop.evaluation.bfcl`)."""


def _finish_eval(
    conversations: list[Conversation], tokenizer, config: DataConfig, stats: DataStats
) -> tuple[list[Encoded], list[Conversation]]:
    """Apply data.max_eval_conversations, encode, and keep the conversations whose encoding was kept (the
    generation-based evaluation needs them)."""
    if config.max_eval_conversations and len(conversations) > config.max_eval_conversations:
        stats.not_used = len(conversations) - config.max_eval_conversations
        conversations = conversations[: config.max_eval_conversations]
    examples = encode_conversations(conversations, tokenizer, config, stats)
    kept_ids = {(e.source, e.index) for e in examples}
    return examples, [c for c in conversations if (c.source, c.index) in kept_ids]


def load_datasets(config: DataConfig, tokenizer, seed: int) -> Datasets:
    if not config.train:
        raise ConfigError("data.train is empty: name at least one training source")
    train_stats, eval_stats = DataStats(), DataStats()
    train_conversations = read_conversations(config.train, config, train_stats)
    # `bfcl:` sources are not conversations to compute a loss on, but cases for fcloop.evaluation.bfcl; with only those
    # in data.eval, data.eval_fraction still holds out training rows.
    conversation_sources, bfcl_sources = split_sources(config.eval)
    if conversation_sources:
        eval_conversations = read_conversations(conversation_sources, config, eval_stats)
    elif config.eval_fraction > 0:
        train_conversations, eval_conversations = split_held_out(train_conversations, config.eval_fraction, seed)
        eval_stats.rows_read = len(eval_conversations)
        train_stats.rows_read -= len(eval_conversations)
    else:
        eval_conversations = []
    train = encode_conversations(train_conversations, tokenizer, config, train_stats, training_emphasis(config))
    eval_examples, kept_eval_conversations = _finish_eval(eval_conversations, tokenizer, config, eval_stats)
    if not train:
        lines = "\n  ".join(train_stats.lines())
        hint = too_long_hint(train_stats, config.max_seq_len)
        raise NothingToTrain(
            f"no training example is left after reading the data:\n  {lines}" + (f"\n{hint}" if hint else "")
        )
    if config.emphasis_pattern and not train_stats.emphasized_tokens:
        raise ConfigError(
            f"data.emphasis_pattern {config.emphasis_pattern!r} matches no supervised token of the training data "
            f"({', '.join(config.train)}): it would change nothing; fix the pattern or remove it"
        )
    bfcl_cases = load_sources(bfcl_sources)
    return Datasets(train, eval_examples, train_stats, eval_stats, kept_eval_conversations, bfcl_cases)


def load_eval_data(config: DataConfig, tokenizer, seed: int) -> tuple[list[Conversation], DataStats]:
    """The kept eval conversations and their stats, exactly as training evaluates on them. With eval sources
    of its own, the training sources are not read; a held-out fraction needs them. `bfcl:` sources are left
    to `fcloop.data.bfcl_cases.load_sources`."""
    conversation_sources, _ = split_sources(config.eval)
    if not conversation_sources:
        if config.eval_fraction <= 0:
            raise ConfigError("no eval data: set data.eval or data.eval_fraction")
        data = load_datasets(config, tokenizer, seed)
        return data.eval_conversations, data.eval_stats
    stats = DataStats()
    conversations = read_conversations(conversation_sources, config, stats)
    return _finish_eval(conversations, tokenizer, config, stats)[1], stats
