"""Readers: every format -> the exact Conversation; detection; sources; bad rows named by file, row and reason."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from format_examples import EXAMPLES, GLAIVE, HERMES, WEATHER_TOOL

import fcloop.hub
from fcloop.data.conversation import BadRow, Conversation, Message, ToolCall
from fcloop.data.readers import (
    DEMO_DIR,
    FORMATS,
    SourceError,
    detect_file_format,
    detect_format,
    iter_rows,
    parse_hub_id,
    read_row,
)
from fcloop.data.toolcalls import canonicalize_tool_calls, parse_tool_calls


def turns(*pairs, role_key="from", content_key="value"):
    return [{role_key: role, content_key: content} for role, content in pairs]


def hermes(*pairs, **extra):
    return {"conversations": turns(*pairs), **extra}


def openai(*messages, **extra):
    return {"messages": list(messages), **extra}


def read(row, fmt, source="data.jsonl", index=0) -> Conversation:
    return read_row(row, fmt, source, index)


def messages(*items) -> tuple[Message, ...]:
    return tuple(Message(*item) for item in items)


# ---------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_as_the_exact_conversation(fmt):
    raw, expected = EXAMPLES[fmt]
    conversation = read(raw, fmt, "x/data.jsonl", 7)
    assert conversation == dataclasses.replace(expected, source="x/data.jsonl", index=7)
    assert (conversation.source, conversation.index) == ("x/data.jsonl", 7)


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_format(fmt):
    assert detect_format(EXAMPLES[fmt][0], "data.jsonl") == fmt


def test_hermes_tools_column_is_not_repeated_when_the_system_text_has_them():
    row = hermes(("system", "Use <tools> [] </tools>."), ("human", "hi"), ("gpt", "yo"), tools=[WEATHER_TOOL])
    assert read(row, "hermes").tools == ()
    assert read(hermes(("human", "hi"), ("gpt", "yo"), tools=json.dumps([WEATHER_TOOL])), "hermes").tools == (
        WEATHER_TOOL,
    )


@pytest.mark.parametrize(("user", "assistant"), [("human", "model"), ("user", "assistant"), ("human", "gpt")])
def test_hermes_thinking_role_names(user, assistant):
    row = {"conversations": turns((user, "hi"), (assistant, "yo"), role_key="role", content_key="content")}
    assert read(row, "hermes_thinking").messages == messages(("user", "hi"), ("assistant", "yo"))


@pytest.mark.parametrize(
    ("call", "arguments"),
    [
        ({"function": {"name": "f", "arguments": '{"a": [1, 2]}'}}, {"a": [1, 2]}),
        ({"function": {"name": "f", "arguments": {"a": True}}}, {"a": True}),
        ({"function": {"name": "f", "arguments": ""}}, {}),
        ({"function": {"name": "f"}}, {}),
        ({"name": "f", "arguments": {"b": None}}, {"b": None}),
    ],
)
def test_openai_structured_tool_call_arguments(call, arguments):
    row = openai({"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]})
    assert read(row, "openai").messages[1] == Message("assistant", "", (ToolCall("f", arguments),))


def test_openai_content_beside_tool_calls_is_kept():
    call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    row = openai({"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure.", "tool_calls": [call]})
    assert read(row, "openai").messages[1] == Message("assistant", "Sure.", (ToolCall("f", {}),))


def test_glaive_function_call_merges_only_into_a_directly_preceding_assistant_turn():
    conversation = read(GLAIVE, "glaive")
    assert [(m.role, m.content, len(m.tool_calls)) for m in conversation.messages] == [
        ("user", "Weather in Paris?", 0),
        ("assistant", "Let me check.", 1),
        ("tool", '{"temp": 18}', 0),
        ("assistant", "It is 18 °C in Paris.", 0),
        ("user", "And Lyon?", 0),
        ("assistant", "", 1),
        ("tool", '{"temp": 21}', 0),
        ("assistant", "21 °C in Lyon.", 0),
    ]


@pytest.mark.parametrize(
    ("extra", "content", "calls"),
    [
        ({"tool_call": [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]}, "",
         (ToolCall("a", {}), ToolCall("b", {"x": 1}))),
        ({"tool_call": '{"name": "a", "arguments": "{\\"x\\": 2}"}', "thoughts": "t"}, "<think>t</think>",
         (ToolCall("a", {"x": 2}),)),
    ],
)  # fmt: skip
def test_flat_variants(extra, content, calls):
    conversation = read({"query": "q", **extra}, "flat")
    assert conversation.messages == (Message("user", "q"), Message("assistant", content, calls))
    assert conversation.tools == ()


def test_python_dict_tool_calls_parse_and_stay_as_written():
    call = "<tool_call>\n{'name': 'weather', 'arguments': {'city': 'Paris', 'metric': True, 'at': None}}\n</tool_call>"
    conversation = read(hermes(("human", "hi"), ("gpt", call)), "hermes")
    assert conversation.messages[1] == Message("assistant", call)
    assert parse_tool_calls(call) == [{"name": "weather", "arguments": {"city": "Paris", "metric": True, "at": None}}]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (
            "I'll <b>call</b> & see.\n<tool_call>\n {'name': 'f', 'arguments': {'ok': True, 's': 'a&<b>'}} \n"
            "</tool_call>!",
            'I\'ll <b>call</b> & see.\n<tool_call>\n {"name": "f", "arguments": {"ok": true, "s": "a&<b>"}} \n'
            "</tool_call>!",
        ),
        (
            "<tool_call>{'name': 'f', 'arguments': '{\"n\": 1}'}</tool_call>x<tool_call>{\"name\":  \"g\"}</tool_call>",
            '<tool_call>{"name": "f", "arguments": {"n": 1}}</tool_call>x<tool_call>{"name":  "g"}</tool_call>',
        ),
        # JSON bodies and text without calls stay byte-identical.
        ('<think>a < b & c > d</think>\n<tool_call>\n{"name":"g" , "arguments":{ }}\n</tool_call>', None),
        ("no calls at all, just <think>&amp;</think>", None),
    ],
)
def test_canonicalize_tool_calls_rewrites_only_python_bodies(text, canonical):
    assert canonicalize_tool_calls(text) == (text if canonical is None else canonical)


def test_glaive_sample_reads_whole(glaive_sample):
    rows = list(iter_rows(str(glaive_sample)))
    assert detect_file_format(rows, str(glaive_sample)) == "glaive"
    conversations = [read(row, "glaive", str(glaive_sample), index) for index, row in rows]
    all_messages = [m for c in conversations for m in c.messages]
    assert len(conversations) == 300
    assert sum(len(m.tool_calls) for m in all_messages) == 211
    assert sum(m.role == "assistant" for m in all_messages) == 957
    assert sum(m.role == "tool" for m in all_messages) == 211
    assert sum(any(m.tool_calls for m in c.messages) for c in conversations) == 153
    assert sum(bool(c.tools) for c in conversations) == 191
    assert [c.index for c in conversations] == list(range(300))


# ---------------------------------------------------------------------------------------------------------
# Detection per file
# ---------------------------------------------------------------------------------------------------------

PLAIN_HERMES = hermes(("human", "hi"), ("gpt", "yo"))


@pytest.mark.parametrize(
    ("rows", "fmt"),
    [
        ([PLAIN_HERMES, PLAIN_HERMES], "hermes"),
        ([PLAIN_HERMES, GLAIVE], "glaive"),  # a later glaive row decides
        ([BadRow("f", 0, "invalid JSON"), EXAMPLES["openai"][0]], "openai"),
        ([EXAMPLES["flat"][0], GLAIVE], "flat"),
    ],
)
def test_detect_file_format(rows, fmt):
    assert detect_file_format(list(enumerate(rows)), "f.jsonl") == fmt


@pytest.mark.parametrize(
    ("row", "described"),
    [({"text": "x", "id": 1}, "['id', 'text']"), ([1], "list"), ({"conversations": []}, "['conversations']")],
)
def test_undetectable_format(row, described):
    with pytest.raises(SourceError) as info:
        detect_file_format([(0, row)], "f.jsonl")
    assert str(info.value) == (
        f"f.jsonl: cannot detect the format from the first row (keys: {described}); set data.format to one of "
        "hermes, hermes_thinking, openai, glaive, flat"
    )


def test_no_decodable_row():
    with pytest.raises(SourceError, match=r"^f\.jsonl: no row could be decoded$"):
        detect_file_format([(0, BadRow("f.jsonl", 0, "invalid JSON"))], "f.jsonl")


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------


def test_json_list_source(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([HERMES, GLAIVE], indent=2))
    assert list(iter_rows(str(path))) == [(0, HERMES), (1, GLAIVE)]


def test_jsonl_source_ignores_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(f"\n{json.dumps(HERMES)}\n  \n\n{json.dumps(GLAIVE)}\n\n")
    assert list(iter_rows(str(path))) == [(0, HERMES), (1, GLAIVE)]


def test_json_file_with_one_object_per_line(tmp_path):
    path = write_jsonl(tmp_path / "rows.json", [HERMES, GLAIVE])
    assert list(iter_rows(str(path))) == [(0, HERMES), (1, GLAIVE)]


def test_parquet_source(tmp_path):
    path = tmp_path / "rows.parquet"
    second = {**GLAIVE, "conversations": GLAIVE["conversations"][:2]}
    pq.write_table(pa.Table.from_pylist([GLAIVE, second]), path)
    rows = list(iter_rows(str(path)))
    assert rows == [(0, GLAIVE), (1, second)]
    assert read(rows[0][1], detect_file_format(rows, str(path)), str(path)) == dataclasses.replace(
        EXAMPLES["glaive"][1], source=str(path)
    )


@pytest.mark.parametrize("split", ["train", "eval"])
def test_demo_sources(split):
    lines = [line for line in (DEMO_DIR / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    rows = list(iter_rows(f"demo:{split}"))
    assert rows == [(index, json.loads(line)) for index, line in enumerate(lines)]
    assert rows[0][1]["id"] == f"demo-{split}-0000"
    assert detect_file_format(rows, f"demo:{split}") == "hermes"
    assert all(isinstance(read(row, "hermes", f"demo:{split}", i), Conversation) for i, row in rows)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.jsonl", "{path}: file not found"),
        (lambda p: _write(p / "empty.jsonl", b" \n\n"), "{path}: the file is empty"),
        (lambda p: _write(p / "empty.json", b"[]"), "{path}: the JSON list is empty"),
        (lambda p: _write(p / "bad.json", b'[{"a": 1},'),
         "{path}: not valid JSON: Expecting value: line 1 column 11 (char 10)"),
        (lambda p: _write(p / "bad.json", b'[{"a": "\xff"}]'), "{path}: not valid UTF-8 at byte 8"),
        (lambda p: _parquet(p / "empty.parquet", []), "{path}: the file has no rows"),
    ],
)  # fmt: skip
def test_unreadable_sources(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(SourceError) as info:
        list(iter_rows(str(path)))
    assert str(info.value) == message.format(path=path)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _parquet(path, rows):
    pq.write_table(pa.table({"conversations": pa.array(rows, type=pa.list_(pa.string()))}), path)
    return path


def test_unknown_demo_split():
    with pytest.raises(SourceError) as info:
        list(iter_rows("demo:test"))
    assert str(info.value) == "demo:test: no packaged demo split test.jsonl (have: train, eval)"


@pytest.mark.parametrize(
    ("source", "parsed"),
    [
        ("owner/name", ("owner/name", None, "train")),
        ("owner/name@validation", ("owner/name", None, "validation")),
        ("owner/name:cfg", ("owner/name", "cfg", "train")),
        ("owner/name:cfg@test", ("owner/name", "cfg", "test")),
    ],
)
def test_parse_hub_id(source, parsed):
    assert parse_hub_id(source) == parsed


@pytest.fixture
def hub_reachable(monkeypatch):
    """As if the hub answered: no real connection is tried (load_dataset is faked in these tests)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fcloop.hub, "connection_problem", lambda: None)


def test_hub_source_goes_through_load_dataset(monkeypatch, hub_reachable):
    import datasets

    calls = []

    def fake_load_dataset(dataset_id, config_name, split):
        calls.append((dataset_id, config_name, split))
        return [HERMES, GLAIVE]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(iter_rows("owner/name:cfg@test")) == [(0, HERMES), (1, GLAIVE)]
    assert calls == [("owner/name", "cfg", "test")]


def test_nonexistent_hub_id_is_a_source_error_naming_it(monkeypatch, hub_reachable):
    import datasets

    def fake_load_dataset(dataset_id, config_name, split):
        raise FileNotFoundError(f"Dataset '{dataset_id}' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(SourceError) as info:
        list(iter_rows("nobody/nothing@dev"))
    assert str(info.value) == (
        "nobody/nothing@dev: could not load hub data set 'nobody/nothing' (config None, split dev): "
        "Dataset 'nobody/nothing' doesn't exist on the Hub"
    )


# ---------------------------------------------------------------------------------------------------------
# Bad rows
# ---------------------------------------------------------------------------------------------------------

CALL_JSON = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
USER = {"role": "user", "content": "hi"}

BAD_ROWS = {
    "unknown role": (
        "hermes", hermes(("human", "hi"), ("bot", "x")),
        "unknown role", "turn 1 has from='bot'; valid: system, human, gpt, tool"),
    "unknown openai role": (
        "openai", openai(USER, {"role": "model", "content": "x"}),
        "unknown role", "turn 1 has role='model'; valid: system, user, assistant, tool"),
    "missing content": (
        "hermes", {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt"}]},
        "missing content", "turn 1 has no 'value'"),
    "non-string content": (
        "openai", openai(USER, {"role": "assistant", "content": 5}),
        "non-string content", "turn 1 'content' is int"),
    "null content without calls": (
        "openai", openai(USER, {"role": "assistant", "content": None}),
        "non-string content", "turn 1 'content' is NoneType"),
    "turn not an object": (
        "hermes", {"conversations": [{"from": "human", "value": "hi"}, "gpt: yo"]},
        "turn is not an object", "turn 1 is str"),
    "unparseable inline call": (
        "hermes", hermes(("human", "hi"), ("gpt", "<tool_call>\n{name: f}\n</tool_call>")),
        "unparseable tool call", "neither JSON nor a Python literal: '{name: f}'"),
    "call without a name": (
        "hermes", hermes(("human", "hi"), ("gpt", '<tool_call>{"arguments": {}}</tool_call>')),
        "unparseable tool call", """not an object with a string 'name': '{"arguments": {}}'"""),
    "unclosed tag": (
        "hermes", hermes(("human", "hi"), ("gpt", '<tool_call>{"name": "f"}')),
        "unbalanced tool_call tags", "'<tool_call>' without '</tool_call>'"),
    "stray closing tag": (
        "hermes_thinking", {"conversations": [USER, {"role": "model", "content": "x</tool_call>" + CALL_JSON}]},
        "unbalanced tool_call tags", "'</tool_call>' without '<tool_call>'"),
    "nested tags": (
        "hermes", hermes(("human", "hi"), ("gpt", "<tool_call><tool_call></tool_call></tool_call>")),
        "unbalanced tool_call tags", "nested '<tool_call>'"),
    "empty assistant turn": (
        "hermes", hermes(("human", "hi"), ("gpt", " \n")),
        "nothing to supervise", "assistant turn 1 is empty"),
    "no assistant turn": (
        "hermes", hermes(("system", "s"), ("human", "hi")),
        "nothing to supervise", "the conversation has no assistant turn"),
    "system not first": (
        "hermes", hermes(("human", "hi"), ("system", "s"), ("gpt", "yo")),
        "misplaced system turn", "a system turn is only allowed first"),
    "assistant first": (
        "hermes", hermes(("gpt", "yo"), ("human", "hi")),
        "bad turn order", "the conversation must start with a user turn (after any system turn)"),
    "row not an object": ("hermes", ["human", "hi"], "row is not an object", "got list"),
    "missing key": (
        "hermes", {"messages": []},
        "missing key", "'conversations' (row keys: ['messages'])"),
    "wrong type": ("openai", {"messages": "hi"}, "wrong type", "'messages' must be list, got str"),
    "glaive call not JSON": (
        "glaive", {"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "f()"}]},
        "unparseable tool call", "turn 1: function_call value is not JSON"),
    "openai arguments not JSON": (
        "openai", openai(USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}),
        "unparseable tool call", "turn 1: arguments are not JSON"),
    "openai call on a user turn": (
        "openai", openai({**USER, "tool_calls": [{"function": {"name": "f"}}]}),
        "misplaced tool call", "turn 0: only assistant turns carry tool_calls"),
    "tools not JSON": (
        "glaive", hermes(("human", "hi"), ("gpt", "yo"), tools="[{"),
        "invalid tools",
        "tools string is not JSON: Expecting property name enclosed in double quotes: line 1 column 3 (char 2)"),
    "flat call not JSON": (
        "flat", {"query": "q", "tool_call": "f(x)"},
        "unparseable tool call", "'tool_call' string is not JSON"),
    "deep nesting": (
        "hermes", hermes(("human", "hi"), ("gpt", "<tool_call>" + "[" * 65 + "]" * 65 + "</tool_call>")),
        "unparseable tool call", "nested deeper than 64 levels"),
}  # fmt: skip


@pytest.mark.parametrize(("fmt", "row", "reason", "detail"), BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_bad_row_names_source_row_and_reason(fmt, row, reason, detail):
    with pytest.raises(BadRow) as info:
        read(row, fmt, "data/train.jsonl", 4)
    error = info.value
    assert (error.source, error.row, error.reason, error.detail) == ("data/train.jsonl", 4, reason, detail)
    assert str(error) == f"data/train.jsonl: row 4: {reason}: {detail}"


def test_undecodable_lines_are_bad_rows_with_file_row_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = json.dumps(PLAIN_HERMES).encode()
    path.write_bytes(b"\n".join([good, b"", b"{oops", b'{"a": "\xff\xfe"}', b"[1, 2", good]) + b"\n")
    rows = list(iter_rows(str(path)))
    assert [index for index, _ in rows] == [0, 1, 2, 3, 4]
    assert (rows[0][1], rows[4][1]) == (PLAIN_HERMES, PLAIN_HERMES)
    messages_by_row = {}
    for index, row in rows[1:4]:
        with pytest.raises(BadRow) as info:
            read(row, "hermes", str(path), index)
        messages_by_row[index] = str(info.value)
    assert messages_by_row == {
        1: f"{path}: row 1: invalid JSON: line 3: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        2: f"{path}: row 2: invalid UTF-8: line 4, byte 7",
        3: f"{path}: row 3: invalid JSON: line 5: Expecting ',' delimiter: line 1 column 6 (char 5)",
    }
