"""load_datasets end to end on small files with the tiny tokenizer: bad rows, too long, eval split, totals."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest
from conftest import write_jsonl
from format_examples import EXAMPLES

from fcloop.config import RECIPE_THINK_INSTRUCTION, DataConfig
from fcloop.data.conversation import BadRow, Message
from fcloop.data.gemma_format import render
from fcloop.data.load import DataStats, load_datasets, split_held_out
from fcloop.data.readers import read_row
from fcloop.data.tokenization import encode


def hermes(*pairs):
    return {"conversations": [{"from": role, "value": value} for role, value in pairs]}


def good(i: int) -> dict:
    return hermes(("human", f"Question {i}?"), ("gpt", f"Answer {i}."))


UNKNOWN_ROLE = hermes(("human", "hi"), ("bot", "yo"))
NO_ASSISTANT = hermes(("human", "hi"))
LONG = hermes(("human", "Tell me a story."), ("gpt", "Once upon a time " * 40))
# The first assistant turn fits in 64 tokens, the second does not.
LONG_SECOND_TURN = hermes(("human", "Hi?"), ("gpt", "Hello."), ("human", "More?"), ("gpt", "and more " * 40))


def config(*train, **fields) -> DataConfig:
    return DataConfig(train=tuple(str(p) for p in train), **fields)


def expected_encoding(tokenizer, raw, source, index, max_seq_len=2048, truncate=False):
    conversation = read_row(raw, "hermes", str(source), index)
    rendered = render(conversation, RECIPE_THINK_INSTRUCTION)
    return encode(rendered, tokenizer, max_seq_len, truncate, source=str(source), index=index)


def test_bad_row_is_an_error_naming_file_row_and_reason(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "train.jsonl", [good(0), UNKNOWN_ROLE, good(2)])
    with pytest.raises(BadRow) as info:
        load_datasets(config(path), tiny_tok, seed=0)
    assert str(info.value) == f"{path}: row 1: unknown role: turn 1 has from='bot'; valid: system, human, gpt, tool"


def test_bad_rows_skipped_and_counted_by_reason(tmp_path, tiny_tok):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(row).encode() for row in [good(0), UNKNOWN_ROLE, good(2), NO_ASSISTANT, UNKNOWN_ROLE]]
    lines += [b"{not json", b'{"conversations": "\xff"}', json.dumps(good(7)).encode(), b"", b"[1]"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    data = load_datasets(config(path, on_bad_row="skip"), tiny_tok, seed=0)
    stats = data.train_stats
    assert stats.skipped == Counter(
        {"unknown role": 2, "nothing to supervise": 1, "invalid JSON": 1, "invalid UTF-8": 1, "row is not an object": 1}
    )
    assert (stats.rows_read, stats.kept, stats.dropped_too_long, stats.truncated) == (9, 3, 0, 0)
    assert [(e.source, e.index) for e in data.train] == [(str(path), 0), (str(path), 2), (str(path), 7)]
    assert data.train == [expected_encoding(tiny_tok, good(i), path, row) for i, row in [(0, 0), (2, 2), (7, 7)]]
    assert (data.eval, data.eval_conversations, data.eval_stats) == ([], [], DataStats())


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_too_long_conversations_are_dropped_and_counted(tmp_path, tiny_tok, on_bad_row):
    path = write_jsonl(tmp_path / "train.jsonl", [good(0), LONG, good(2), LONG_SECOND_TURN])
    assert len(expected_encoding(tiny_tok, LONG, path, 1)) > 64
    data = load_datasets(config(path, max_seq_len=64, on_bad_row=on_bad_row), tiny_tok, seed=0)
    stats = data.train_stats
    assert (stats.rows_read, stats.kept, stats.dropped_too_long, stats.truncated, stats.skipped) == (4, 2, 2, 0, {})
    assert [e.index for e in data.train] == [0, 2]


def test_too_long_conversations_truncated_at_a_turn_end(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "train.jsonl", [good(0), LONG, LONG_SECOND_TURN])
    data = load_datasets(config(path, max_seq_len=64, on_too_long="truncate"), tiny_tok, seed=0)
    stats = data.train_stats
    # LONG has one assistant turn, which does not fit: still dropped. LONG_SECOND_TURN keeps its first exchange.
    assert (stats.rows_read, stats.kept, stats.dropped_too_long, stats.truncated) == (3, 2, 1, 1)
    first_exchange = hermes(("human", "Hi?"), ("gpt", "Hello."))
    whole_first_exchange = expected_encoding(tiny_tok, first_exchange, path, 2)
    # Its tokens are the first exchange's tokens: cut exactly after "<end_of_turn>\n".
    assert data.train[1] == dataclasses.replace(whole_first_exchange, truncated=True)
    assert [e.truncated for e in data.train] == [False, True]


def test_tokens_and_supervised_tokens_are_the_sums_over_examples(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "train.jsonl", [good(i) for i in range(5)])
    data = load_datasets(config(path), tiny_tok, seed=0)
    expected = [expected_encoding(tiny_tok, good(i), path, i) for i in range(5)]
    assert data.train == expected
    assert data.train_stats.tokens == sum(len(e) for e in expected)
    assert data.train_stats.supervised_tokens == sum(e.supervised_tokens for e in expected)
    assert data.train_stats.supervised_tokens == sum(
        len(tiny_tok(f"Answer {i}.", add_special_tokens=False)["input_ids"]) + 1 for i in range(5)
    )


EVAL_ROWS = [2, 7, 8, 12, 15]  # chosen by seed 3, fixed so that a run's split is reproducible


def test_eval_fraction_split_is_seeded_disjoint_and_exact(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "train.jsonl", [good(i) for i in range(20)])
    data = load_datasets(config(path, eval_fraction=0.25), tiny_tok, seed=3)
    assert [e.index for e in data.eval] == EVAL_ROWS
    assert [e.index for e in data.train] == [i for i in range(20) if i not in EVAL_ROWS]
    assert [c.index for c in data.eval_conversations] == EVAL_ROWS
    assert data.eval_conversations[0].messages[1] == Message("assistant", "Answer 2.")
    assert (data.train_stats.rows_read, data.train_stats.kept) == (15, 15)
    assert (data.eval_stats.rows_read, data.eval_stats.kept) == (5, 5)
    assert data.eval == [expected_encoding(tiny_tok, good(i), path, i) for i in EVAL_ROWS]
    again = load_datasets(config(path, eval_fraction=0.25), tiny_tok, seed=3)
    assert (again.train, again.eval) == (data.train, data.eval)
    other = load_datasets(config(path, eval_fraction=0.25), tiny_tok, seed=4)
    assert [e.index for e in other.eval] == [6, 10, 15, 16, 17]


def test_bfcl_sources_in_eval_are_cases_not_conversations_and_leave_the_split_to_eval_fraction(tmp_path, tiny_tok):
    from bfcl_data import write_bfcl_folder

    path = write_jsonl(tmp_path / "train.jsonl", [good(i) for i in range(20)])
    other = write_jsonl(tmp_path / "eval.jsonl", [good(i) for i in range(100, 103)])
    bfcl_source = f"bfcl:{write_bfcl_folder(tmp_path / 'bfcl') / 'BFCL_v4_parallel.json'}"
    data = load_datasets(config(path, eval=(bfcl_source,), eval_fraction=0.25), tiny_tok, seed=3)
    assert [case.id for case in data.bfcl_cases] == ["parallel_0"]
    assert [e.index for e in data.eval] == EVAL_ROWS  # the held-out split, exactly as without the bfcl source
    assert (data.train_stats.rows_read, data.eval_stats.rows_read) == (15, 5)
    data = load_datasets(config(path, eval=(str(other), bfcl_source), eval_fraction=0.25), tiny_tok, seed=3)
    assert [(e.source, e.index) for e in data.eval] == [(str(other), i) for i in range(3)]
    assert len(data.train) == 20 and [case.id for case in data.bfcl_cases] == ["parallel_0"]
    data = load_datasets(config(path, eval=(bfcl_source,)), tiny_tok, seed=3)
    assert (data.eval, data.eval_conversations, len(data.train)) == ([], [], 20)


@pytest.mark.parametrize(("count", "fraction", "held_out"), [(20, 0.25, 5), (20, 0.01, 1), (7, 0.5, 4), (3, 0.0, 0)])
def test_split_held_out_sizes(count, fraction, held_out):
    items = list(range(count))
    train, evaluation = split_held_out(items, fraction, seed=0)
    assert (len(train), len(evaluation)) == (count - held_out, held_out)
    assert sorted(train + evaluation) == items
    assert train == sorted(train) and evaluation == sorted(evaluation)


def test_eval_from_its_own_file(tmp_path, tiny_tok):
    train = write_jsonl(tmp_path / "train.jsonl", [good(i) for i in range(3)])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [good(10), UNKNOWN_ROLE, good(12)])
    data = load_datasets(
        DataConfig(train=(str(train),), eval=(str(evaluation),), eval_fraction=0.5, on_bad_row="skip"), tiny_tok, 0
    )
    assert [e.index for e in data.train] == [0, 1, 2]  # eval_fraction is unused when eval sources are given
    assert data.eval == [expected_encoding(tiny_tok, good(i), evaluation, row) for i, row in [(10, 0), (12, 2)]]
    assert (data.eval_stats.rows_read, data.eval_stats.kept, data.eval_stats.skipped) == (3, 2, {"unknown role": 1})
    assert (data.train_stats.rows_read, data.train_stats.kept, data.train_stats.skipped) == (3, 3, {})


def test_every_format_in_its_own_file(tmp_path, tiny_tok):
    paths = [write_jsonl(tmp_path / f"{fmt}.jsonl", [raw, raw]) for fmt, (raw, _) in EXAMPLES.items()]
    data = load_datasets(config(*paths), tiny_tok, seed=0)
    assert [(e.source, e.index) for e in data.train] == [(str(p), i) for p in paths for i in (0, 1)]
    expected = [
        encode(render(conversation, RECIPE_THINK_INSTRUCTION), tiny_tok, 2048, False, str(p), i)
        for p, (_, conversation) in zip(paths, EXAMPLES.values(), strict=True)
        for i in (0, 1)
    ]
    assert data.train == expected
    assert (data.train_stats.rows_read, data.train_stats.kept) == (10, 10)


def test_explicit_format_is_not_detected(tmp_path, tiny_tok):
    glaive_row = EXAMPLES["glaive"][0]
    path = write_jsonl(tmp_path / "train.jsonl", [good(0), glaive_row])
    assert [e.index for e in load_datasets(config(path), tiny_tok, 0).train] == [0, 1]  # detected: glaive
    data = load_datasets(config(path, format="hermes", on_bad_row="skip"), tiny_tok, 0)
    assert data.train_stats.skipped == {"unknown role": 1}


def test_canonicalize_tool_calls(tmp_path, tiny_tok):
    call = "<tool_call>\n{'name': 'f', 'arguments': {'ok': True}}\n</tool_call>"
    path = write_jsonl(tmp_path / "train.jsonl", [hermes(("human", "hi"), ("gpt", call))])
    canonical = '<tool_call>\n{"name": "f", "arguments": {"ok": true}}\n</tool_call>'
    data = load_datasets(config(path, canonicalize_tool_calls=True), tiny_tok, 0)
    assert data.train == [expected_encoding(tiny_tok, hermes(("human", "hi"), ("gpt", canonical)), path, 0)]
    assert load_datasets(config(path), tiny_tok, 0).train == [
        expected_encoding(tiny_tok, hermes(("human", "hi"), ("gpt", call)), path, 0)
    ]


def test_a_call_that_cannot_become_json_is_a_counted_bad_row(tmp_path, tiny_tok):
    # A Python set is a valid literal but has no JSON form: canonicalizing must reject the row, not crash.
    not_json = "<tool_call>{'name': 'f', 'arguments': {'ids': {1, 2}}}</tool_call>"
    path = write_jsonl(tmp_path / "train.jsonl", [good(0), hermes(("human", "hi"), ("gpt", not_json))])
    data = load_datasets(config(path, canonicalize_tool_calls=True, on_bad_row="skip"), tiny_tok, 0)
    assert (data.train_stats.rows_read, data.train_stats.kept, sum(data.train_stats.skipped.values())) == (2, 1, 1)


def test_no_training_source():
    with pytest.raises(ValueError, match=r"^data.train is empty: name at least one training source$"):
        load_datasets(DataConfig(), None, 0)


def nothing_left(rows_read: int, dropped: int) -> str:
    return (
        "no training example is left after reading the data:\n"
        f"  rows read: {rows_read}\n  kept: 0\n  dropped, too long: {dropped}\n"
        "  kept truncated (at a turn boundary): 0\n"
        "  skipped bad rows: 2\n    nothing to supervise: 1\n    unknown role: 1\n"
        "  tokens: 0\n  supervised tokens: 0 (0.0%)"
    ) + (
        f"\n{dropped} conversation is longer than data.max_seq_len = 8 tokens and dropped: raise data.max_seq_len to "
        'keep them, or set data.on_too_long = "truncate" to keep their turns that fit'
        if dropped
        else ""
    )


def test_nothing_left_to_train_on(tmp_path, tiny_tok):
    path = write_jsonl(tmp_path / "train.jsonl", [good(0), UNKNOWN_ROLE, NO_ASSISTANT])
    with pytest.raises(ValueError) as info:
        load_datasets(config(path, on_bad_row="skip", max_seq_len=8), tiny_tok, 0)
    assert str(info.value) == nothing_left(rows_read=3, dropped=1)


def test_nothing_left_to_train_on_with_a_held_out_fraction(tmp_path, tiny_tok):
    # Every row skipped: the same clear error, not a failure of the eval split on an empty list.
    path = write_jsonl(tmp_path / "train.jsonl", [UNKNOWN_ROLE, NO_ASSISTANT])
    with pytest.raises(ValueError) as info:
        load_datasets(config(path, on_bad_row="skip", eval_fraction=0.25), tiny_tok, 0)
    assert str(info.value) == nothing_left(rows_read=2, dropped=0)


def test_data_stats_lines():
    stats = DataStats(
        rows_read=10, kept=6, skipped=Counter({"unknown role": 2, "invalid JSON": 1}), dropped_too_long=1,
        truncated=2, tokens=400, supervised_tokens=150,
    )  # fmt: skip
    assert stats.lines() == [
        "rows read: 10",
        "kept: 6",
        "dropped, too long: 1",
        "kept truncated (at a turn boundary): 2",
        "skipped bad rows: 3",
        "  invalid JSON: 1",
        "  unknown role: 2",
        "tokens: 400",
        "supervised tokens: 150 (37.5%)",
    ]
    assert stats.as_dict() == {
        "rows_read": 10,
        "kept": 6,
        "skipped": {"unknown role": 2, "invalid JSON": 1},
        "not_used": 0,
        "dropped_too_long": 1,
        "truncated": 2,
        "tokens": 400,
        "supervised_tokens": 150,
        "emphasized_tokens": 0,
    }
    emphasized = dataclasses.replace(stats, emphasized_tokens=30)
    assert emphasized.lines() == [
        *stats.lines(),
        "  of them emphasized (data.emphasis_pattern): 30 (20.0%)",
    ]
    assert emphasized.as_dict()["emphasized_tokens"] == 30
