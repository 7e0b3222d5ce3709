"""Hostile input: seeded fuzzing of every row format and of the tool-call parser, and every bad config key.

The property everywhere: a malformed input never ends in a traceback a user cannot act on. A bad row is a
BadRow naming the file, the row and a short reason (or, with data.on_bad_row = "skip", a counted skip); a
file that cannot be read at all is a SourceError naming the file; a bad config key is a ConfigError naming
`section.key`. Every generator is seeded, so a failure reproduces exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import json
import random
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from format_examples import EXAMPLES

from fcloop.config import SECTIONS, Config, ConfigError, config_to_toml, load_config
from fcloop.data.conversation import BadRow, RowProblem
from fcloop.data.load import DataStats, encode_conversations, load_datasets, read_conversations
from fcloop.data.readers import FORMATS, SourceError, iter_rows, read_row
from fcloop.data.toolcalls import (
    MAX_NESTING,
    canonicalize_tool_calls,
    find_tool_call_blocks,
    parse_call_body,
    parse_tool_calls,
    validate_tool_calls,
)

FCLOOP_DIR = Path(__file__).resolve().parents[1] / "fcloop"


def _reasons_in_source() -> frozenset[str]:
    """Every literal reason a RowProblem or BadRow is raised with in the package."""
    pattern = re.compile(r'(?:RowProblem|BadRow)\((?:[^"\n]*?,\s*)?"([^"]+)"')
    return frozenset(match for path in FCLOOP_DIR.rglob("*.py") for match in pattern.findall(path.read_text()))


KNOWN_REASONS = _reasons_in_source()
SKIP_REASONS = KNOWN_REASONS - {"too long"}  # too long rows are dropped and counted apart, never skipped


def test_the_known_reasons_are_found_in_the_source():
    assert {"invalid JSON", "invalid UTF-8", "unknown role", "unparseable tool call", "too deeply nested"} <= (
        SKIP_REASONS
    )
    assert all(len(reason) <= 40 and reason == reason.strip() for reason in KNOWN_REASONS)


# ---------------------------------------------------------------------------------------------------------
# Hostile values
# ---------------------------------------------------------------------------------------------------------

DEEP_TEXT = "[" * 100_000
ASSISTANT_YO = {"from": "gpt", "value": "yo"}
ONE_MB = ("lorem ipsum " * 100_000)[:1_000_000]


def nested_dict(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"k": value}
    return value


def nested_list(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


SCALARS = [None, 0, -1, 2**70, 3.5, 1e308, True, False, "", " \n\t", "\ud800 lone surrogate", "nul\x00byte"]
CONTAINERS = [[], {}, [1, "a", None], {"x": 1}, [[[]]], {"": {"": ""}}]
BROKEN_CALL_BODIES = [
    '{"name": ',
    "{name: f}",
    '{"name": 3}',
    '{"arguments": {}}',
    "[1, 2]",
    '"just a string"',
    '{"name": "f", "arguments": "[1, 2]"}',
    '{"name": "f", "arguments": "3"}',
    '{"name": "f", "arguments": "null"}',
    '{"name": "f", "arguments": "{"}',
    '{"name": "f", "arguments": [1]}',
    '{"name": "f", "arguments": "' + "\\u005b" * 10_000 + '"}',  # escaped brackets: deep only once decoded
    "{'name': 'f', 'arguments': {'ids': {1, 2}}}",  # a set: no JSON form
    "{'name': 'f', 'arguments': {'b': b'x', 'c': 1+2j, 'e': ...}}",
    "{'name': 'f', 'arguments': {(1, 2): 'tuple key'}}",
    "{'name': '\\ud800', 'arguments': {'s': '\\udfff'}}",  # lone surrogates once evaluated
    "{'name': 'f', 'arguments': {'n': " + "1" * 5000 + "}}",
    "{'name': 'f'} " + "+ 1" * 5000,
    "-" * 50_000 + "1",
    DEEP_TEXT,
    "{" * 65 + "}" * 65,
    json.dumps({"name": "f", "arguments": nested_dict(63)}),
    "",
    "\x00",
]


class Fuzzer:
    """Seeded random mutations of valid rows. The 1 MB strings are rationed: each one is tokenized."""

    def __init__(self, seed: int, huge_budget: int = 1) -> None:
        self.rng = random.Random(seed)
        self.huge_budget = huge_budget

    def huge(self) -> str:
        if self.huge_budget <= 0:
            return "y" * 2000
        self.huge_budget -= 1
        return ONE_MB

    def value(self) -> Any:
        """Any wrong-typed or odd value."""
        rng = self.rng
        pick = rng.randrange(8)
        if pick == 0:
            return copy.deepcopy(rng.choice(CONTAINERS))
        if pick == 1:
            return nested_dict(200) if rng.random() < 0.5 else nested_list(200)
        if pick == 2:
            return self.text_value("")
        if pick == 3:
            return rng.choice(["bot", "model ", "GPT", "function", "observation", "\ud800", "human\x00"])
        if pick == 4 and rng.random() < 0.2:
            return self.huge()
        return copy.deepcopy(rng.choice(SCALARS))

    def text_value(self, text: str) -> str:
        """A string mutated: unbalanced or broken tool calls, deep nesting, odd characters, empty or huge."""
        rng = self.rng
        pick = rng.randrange(12)
        if pick == 0:
            return ""
        if pick == 1:
            return text + rng.choice(["<tool_call>", "</tool_call>", "<tool_call><tool_call></tool_call>"])
        if pick == 2:
            return "</tool_call>" + text
        if pick in (3, 4, 5):
            return text + "<tool_call>\n" + rng.choice(BROKEN_CALL_BODIES) + "\n</tool_call>"
        if pick == 6:
            return text + rng.choice(["\ud800", "\udfff", "\x00", "\ufeff", "\u2028"])
        if pick == 7 and rng.random() < 0.2:
            return text + self.huge()
        if pick == 8:
            return text[: rng.randrange(len(text) + 1)]
        if pick == 9:
            return text + "<tool_call>" + DEEP_TEXT + "</tool_call>"
        if pick == 10:
            return " \n "
        return text + "<think>" + rng.choice(["</think>", "", "<tool_call>"])

    def tools_value(self) -> Any:
        return self.rng.choice(
            [
                "[{",
                "3",
                '"tools"',
                "[1, 2]",
                "{}",
                DEEP_TEXT,
                "[" * 500 + "]" * 500,
                '[{"name": "\\ud800"}]',
                [1, "x"],
                {"name": "f"},
                [{"deep": nested_dict(200)}],
                [{"name": "f", "parameters": nested_list(70)}],
                [None],
                "",
                [],
                [{"\ud800": "key"}],
            ]
        )

    def structured_call(self) -> Any:
        """One OpenAI / glaive / flat tool call, wrong in some way."""
        arguments = self.rng.choice(
            [
                "[1]",
                "3",
                "null",
                '"s"',
                "{",
                "",
                DEEP_TEXT,
                "[" * 500 + "]" * 500,
                nested_dict(200),
                nested_dict(MAX_NESTING + 1),
                nested_list(10),
                {"\ud800": 1},
                {"s": "\udfff"},
                None,
                7,
                [],
                {"ok": True},
            ]
        )
        return self.rng.choice(
            [
                {"function": {"name": "f", "arguments": arguments}},
                {"name": "f", "arguments": arguments},
                {"function": None},
                {"function": {"name": 3}},
                {"function": {"name": "\ud800", "arguments": {}}},
                {"function": {"arguments": {}}},
                "f()",
                1,
                None,
                [],
            ]
        )

    def mutate(self, row: Any, fmt: str) -> Any:
        """Apply one mutation somewhere in the row; return the (possibly replaced) row."""
        rng = self.rng
        pick = rng.randrange(10)
        if pick == 0:
            return self.value()  # the whole row is not an object
        if not isinstance(row, dict):
            return row
        if pick == 1:
            row["tools"] = self.tools_value()
            return row
        if pick == 2:
            self._mutate_calls(row, fmt)
            return row
        if pick == 3:
            self._mutate_turns(row)
            return row
        slots = list(_slots(row))
        if not slots:
            return row
        container, key = rng.choice(slots)
        current = container[key]
        action = rng.randrange(4)
        if action == 0:
            del container[key]
        elif action == 1 and isinstance(current, str):
            container[key] = self.text_value(current)
        elif action == 2 and isinstance(current, dict) and current:
            old = rng.choice(sorted(current))
            current[rng.choice(["role", "from", "content", "value", "speaker", "Role", ""])] = current.pop(old)
        else:
            container[key] = self.value()
        return row

    def _mutate_turns(self, row: dict) -> None:
        rng = self.rng
        turns_key = next((key for key in ("conversations", "messages") if isinstance(row.get(key), list)), None)
        if turns_key is None:
            row[rng.choice(["conversations", "messages", "query"])] = self.value()
            return
        turns = row[turns_key]
        pick = rng.randrange(5)
        if pick == 0:
            turns.insert(rng.randrange(len(turns) + 1), rng.choice(["gpt: hi", 3, None, [], ["human", "x"]]))
        elif pick == 1:
            turns.insert(rng.randrange(len(turns) + 1), {"from": self.value(), "role": self.value()})
        elif pick == 2:
            rng.shuffle(turns)
        elif pick == 3:
            del turns[rng.randrange(len(turns) + 1) :]
        else:
            turns.append(copy.deepcopy(rng.choice(turns)) if turns else {})

    def _mutate_calls(self, row: dict, fmt: str) -> None:
        rng = self.rng
        if fmt == "flat":
            call = self.structured_call()
            row["tool_call"] = rng.choice([call, [call], [call, "x"], json.dumps(call), "{" + json.dumps(call)])
        elif fmt == "openai" and isinstance(row.get("messages"), list):
            turns = [t for t in row["messages"] if isinstance(t, dict)]
            if turns:
                turn = rng.choice(turns)
                calls = turn.get("tool_calls") if isinstance(turn.get("tool_calls"), list) else []
                turn["tool_calls"] = rng.choice([[*calls, self.structured_call()], self.value(), {"a": 1}, "[]"])
        elif fmt == "glaive" and isinstance(row.get("conversations"), list):
            call = self.structured_call()
            value = rng.choice([json.dumps(call), json.dumps(call)[:-1], DEEP_TEXT, "[1]", "null", ""])
            row["conversations"].insert(1, {"from": "function_call", "value": value})
        elif isinstance(row.get("conversations"), list):
            body = rng.choice(BROKEN_CALL_BODIES)
            text = rng.choice(
                [
                    f"<tool_call>{body}</tool_call>",
                    f"<tool_call>{body}",
                    f"{body}</tool_call>",
                    f"<tool_call><tool_call>{body}</tool_call></tool_call>",
                    self.text_value("Sure."),
                ]
            )
            row["conversations"].append({"from": "gpt", "role": "assistant", "value": text, "content": text})


def _slots(value: Any, depth: int = 0):
    """(container, key) of every value in a row, shallow enough to be a row's own structure."""
    if depth > 6:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in list(items):
        yield value, key
        yield from _slots(item, depth + 1)


# ---------------------------------------------------------------------------------------------------------
# Hostile files
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FuzzFile:
    path: Path
    fmt: str
    rows: int | None
    """Rows the file holds, each of which must be accounted for; None when the file is unreadable as a whole."""
    canonicalize: bool = False


BAD_LINES = [
    b'{"conversations": "\xff\xfe"}',
    b"\xc3\x28",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: not valid UTF-8
    b'{"messages": [',
    b"{oops}",
    b"[" * 100_000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
    b"1" * 5_000,
    b"NaN",
    b"null",
    b"3",
    b'"row"',
    b"[]",
    b"\xef\xbb\xbf{}",
    b"\x00",
]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _dumps(row: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \\ud800 escapes, which JSON allows and the reader decodes back.
    return json.dumps(row).encode()


def write_fuzz_files(folder: Path, seed: int, files_per_format: int) -> list[FuzzFile]:
    fuzzer = Fuzzer(seed)
    rng = fuzzer.rng
    files = []
    for fmt in FORMATS:
        base = EXAMPLES[fmt][0]
        for number in range(files_per_format):
            rows = []
            for _ in range(rng.randint(1, 6)):
                row = copy.deepcopy(base)
                if rng.random() < 0.75:
                    for _ in range(rng.randint(1, 3)):
                        row = fuzzer.mutate(row, fmt)
                rows.append(row)
            canonicalize = rng.random() < 0.5
            kind = rng.choice(["jsonl", "jsonl", "jsonl", "json", "json lines in .json"])
            path = folder / f"{fmt}-{number}.{'jsonl' if kind == 'jsonl' else 'json'}"
            if kind == "json":
                one_object = len(rows) == 1 and isinstance(rows[0], dict) and rng.random() < 0.5
                path.write_bytes(json.dumps(rows[0] if one_object else rows, indent=rng.choice([None, 2])).encode())
                files.append(FuzzFile(path, fmt, len(rows), canonicalize))
                continue
            lines = [_dumps(row) for row in rows]
            # A .json file is first read as one document: only lines after a whole object make it JSON lines,
            # and the whole file must decode as UTF-8.
            bad_lines = BAD_LINES if kind == "jsonl" else [line for line in BAD_LINES if _is_utf8(line)]
            for _ in range(rng.randint(0, 2)):
                lines.insert(rng.randrange(len(lines) + 1), rng.choice(bad_lines))
            if kind != "jsonl":
                lines.insert(0, _dumps(base))
            written = []
            for line in lines:
                written += [b""] * (rng.random() < 0.2) + [line]
            ending = rng.choice([b"\n", b"\r\n", b"\n\n  \n"])
            path.write_bytes(ending.join(written) + rng.choice([b"", b"\n"]))
            files.append(FuzzFile(path, fmt, len(lines), canonicalize))
    return files


def _odd_parquet_tables() -> dict[str, pa.Table]:
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    return {
        "binary_tools": pa.table(
            {
                "conversations": pa.array([[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]]),
                "tools": pa.array([b"\xff[{"], type=pa.binary()),
            }
        ),
        "int_values": pa.table(
            {"conversations": pa.array([[{"from": "human", "value": 1}, {"from": "gpt", "value": 2}]])}
        ),
        "null_turns": pa.table({"conversations": pa.array([None, [None], [{"from": None, "value": None}]])}),
        "map_turns": pa.table(
            {
                "conversations": pa.array(
                    [[[("from", "human"), ("value", "hi")]]], type=pa.list_(pa.map_(pa.string(), pa.string()))
                )
            }
        ),
        "string_messages": pa.table({"messages": ["hi", "", None]}),
        "timestamp_query": pa.table(
            {"query": pa.array([0], type=pa.timestamp("s")), "tool_call": pa.array([{"name": "f"}])}
        ),
        "decimal_arguments": pa.table(
            {
                "query": ["q"],
                "tool_call": pa.array([{"name": "f", "arguments": {"n": decimal.Decimal("1.5")}}]),
            }
        ),
        "binary_arguments": pa.table(
            {
                "messages": pa.array(
                    [
                        [
                            {"role": "user", "content": "hi", "tool_calls": None},
                            {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [{"function": {"name": "f", "arguments": {"b": b"\x00\xff"}}}],
                            },
                        ]
                    ]
                )
            }
        ),
        "no_known_columns": pa.table({"a": [1, 2], "b": [[1.5], None]}),
        "typed_empty_turns": pa.table({"conversations": pa.array([[]], type=pa.list_(turn))}),
    }


def write_file_level_cases(folder: Path) -> list[FuzzFile]:
    """Files that are odd as a whole: empty, whitespace, scalars, not JSON, not parquet, a folder."""
    cases: dict[str, tuple[bytes, int | None]] = {  # name: (content, rows; None: unreadable as a whole)
        "empty.jsonl": (b"", None),
        "empty.json": (b"", None),
        "blank.jsonl": (b" \n\t\r\n  \n", None),
        "blank.json": (b"\n\n", None),
        "empty-list.json": (b"[]", None),
        "scalar.json": (b"3", 1),
        "string.json": (b'"rows"', 1),
        "null.json": (b"null", 1),
        "false.json": (b"false", 1),
        "nested-empty.json": (b"[[]]", 1),
        "list-of-scalars.json": (b'[1, "a", null, 2.5, true]', 5),
        "broken-list.json": (b'[{"a": 1},', None),
        "deep-list.json": (b"[" * 100_000 + b"]" * 100_000, None),
        "deep-object.json": (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, 1),
        "deep-unclosed.json": (b"[" * 100_000, None),
        "latin1.json": (b'[{"a": "\xe9"}]', None),
        "latin1-object.json": (b'{"a": "\xe9"}', None),
        "only-bad-lines.jsonl": (b"{\n\xff\n[[\n", 3),
        "nul-bytes.jsonl": (b"\x00\x00\n", 1),
        # One well-formed row with a 1 MB user turn: read, tokenized, and dropped as too long.
        "huge.jsonl": (_dumps({"conversations": [{"from": "human", "value": ONE_MB}, ASSISTANT_YO]}), 1),
        "not-parquet.parquet": (b"PAR1 not really", None),
        "empty-bytes.parquet": (b"", None),
        "text.parquet": (b'{"conversations": []}\n', None),
    }
    files = []
    for name, (data, rows) in cases.items():
        path = folder / name
        path.write_bytes(data)
        files.append(FuzzFile(path, "hermes", rows))
    folder_named_like_a_file = folder / "folder.jsonl"
    folder_named_like_a_file.mkdir()
    files.append(FuzzFile(folder_named_like_a_file, "hermes", None))
    files.append(FuzzFile(folder / "missing.jsonl", "hermes", None))
    # pyarrow writes this, but will not read back a schema nested deeper than 100 levels.
    too_deep = folder / "too-deep-schema.parquet"
    pq.write_table(pa.Table.from_pylist([{"conversations": [], "tools": [nested_dict(120)]}]), too_deep)
    files.append(FuzzFile(too_deep, "hermes", None))
    for name, table in _odd_parquet_tables().items():
        path = folder / f"{name}.parquet"
        pq.write_table(table, path)
        fmt = "openai" if "messages" in table.column_names else "flat" if "query" in table.column_names else "hermes"
        files.append(FuzzFile(path, fmt, table.num_rows))
    return files


def write_fuzzed_parquet(folder: Path, seed: int) -> list[FuzzFile]:
    """Mutated rows that pyarrow can hold in one table (it needs one type per column)."""
    fuzzer = Fuzzer(seed, huge_budget=0)
    files = []
    for fmt in FORMATS:
        for number in range(6):
            rows = []
            for _ in range(3):
                row = fuzzer.mutate(copy.deepcopy(EXAMPLES[fmt][0]), fmt)
                if not isinstance(row, dict):
                    continue
                try:
                    buffer = pa.BufferOutputStream()
                    pq.write_table(pa.Table.from_pylist([*rows, row]), buffer)
                    pq.read_table(pa.BufferReader(buffer.getvalue()))
                except Exception:  # one type per column, bounded nesting: what pyarrow refuses is left out
                    continue
                rows.append(row)
            if not rows:
                continue
            path = folder / f"{fmt}-{number}.parquet"
            pq.write_table(pa.Table.from_pylist(rows), path)
            files.append(FuzzFile(path, fmt, len(rows), canonicalize=number % 2 == 1))
    return files


# ---------------------------------------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------------------------------------


def assert_clear_bad_row(error: BadRow, file: FuzzFile) -> None:
    assert error.source == str(file.path)
    assert error.reason in SKIP_REASONS, f"{error.reason!r} is not a known reason"
    assert str(error).startswith(f"{file.path}: row {error.row}: {error.reason}")
    assert file.rows is None or 0 <= error.row < file.rows
    assert len(str(error)) < 1000 + len(str(file.path)), "the message must stay readable"


def assert_names_the_file(error: Exception, file: FuzzFile) -> None:
    assert str(file.path) in str(error), f"{type(error).__name__} does not name the file: {error}"
    assert len(str(error)) < 1000 + len(str(file.path)), "the message must stay readable"


def check_error_mode(file: FuzzFile, tokenizer) -> None:
    """Auto-detected format, on_bad_row = "error", end to end: succeed or one clear error."""
    config = _config(file, on_bad_row="error", fmt="auto")
    try:
        load_datasets(config, tokenizer, seed=0)
    except BadRow as error:
        assert_clear_bad_row(error, file)
    except SourceError as error:
        assert_names_the_file(error, file)
    except ValueError as error:
        # Every row read but none left to train on (all too long): the message lists the counts.
        assert str(error).startswith("no training example is left after reading the data:"), repr(error)


def check_skip_mode(file: FuzzFile, tokenizer) -> DataStats:
    """Format given, on_bad_row = "skip": row problems never raise, and every row is accounted for."""
    config = _config(file, on_bad_row="skip", fmt=file.fmt)
    stats = DataStats()
    try:
        conversations = read_conversations(config.train, config, stats)
    except SourceError as error:
        assert file.rows is None, f"a readable file raised: {error}"
        assert_names_the_file(error, file)
        return stats
    assert file.rows is not None, f"{file.path} should not be readable"
    skipped_while_reading = dict(stats.skipped)
    examples = encode_conversations(conversations, tokenizer, config, stats)
    assert stats.rows_read == file.rows, "a row was lost or invented while reading"
    assert stats.rows_read == stats.kept + sum(stats.skipped.values()) + stats.dropped_too_long
    assert stats.kept == len(examples)
    assert set(stats.skipped) <= SKIP_REASONS

    # Read with on_bad_row = "error", the same file stops exactly when a row would have been skipped.
    strict = _config(file, on_bad_row="error", fmt=file.fmt)
    try:
        read_conversations(strict.train, strict, DataStats())
    except BadRow as error:
        assert_clear_bad_row(error, file)
        assert error.reason in skipped_while_reading
    else:
        assert not skipped_while_reading, f"skipped {skipped_while_reading} but the strict read raised nothing"
    return stats


def _config(file: FuzzFile, on_bad_row: str, fmt: str):
    from fcloop.config import DataConfig

    return DataConfig(
        train=(str(file.path),),
        format=fmt,
        on_bad_row=on_bad_row,
        max_seq_len=512,
        canonicalize_tool_calls=file.canonicalize,
    )


def test_fuzzed_files_are_read_or_rejected_clearly(tmp_path, tiny_tok):
    files = (
        write_fuzz_files(tmp_path, seed=20240606, files_per_format=12)
        + write_file_level_cases(tmp_path)
        + write_fuzzed_parquet(tmp_path, seed=7)
    )
    assert len(files) > 90
    total, failures = DataStats(), []
    for file in files:
        try:
            check_error_mode(file, tiny_tok)
            stats = check_skip_mode(file, tiny_tok)
        except Exception as error:  # name the input, so a failure can be reproduced by hand
            failures.append(f"{file.path.name} ({file.fmt}): {type(error).__name__}: {error!s:.500}")
            continue
        total.kept += stats.kept
        total.dropped_too_long += stats.dropped_too_long
        total.skipped.update(stats.skipped)
    assert not failures, f"{len(failures)} of {len(files)} files failed:\n" + "\n".join(failures[:20])
    # The generator is only worth something if it yields good rows, bad rows of many kinds, and drops.
    assert total.kept > 20 and total.dropped_too_long >= 1
    assert len(total.skipped) >= 15, dict(total.skipped)
    assert {"unbalanced tool_call tags", "unparseable tool call", "too deeply nested", "invalid UTF-8"} <= set(
        total.skipped
    )


# ---------------------------------------------------------------------------------------------------------
# Regression cases: each of these crashed before the fix that made it a clear error
# ---------------------------------------------------------------------------------------------------------

USER_TURN = {"from": "human", "value": "hi"}


def hermes(*turns):
    return {"conversations": [USER_TURN, *turns]}


USER_MESSAGE = {"role": "user", "content": "hi"}


def openai_call(arguments):
    return {
        "messages": [
            USER_MESSAGE,
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]},
        ]
    }


REGRESSION_ROWS = {
    # A role that is a list or an object: `name in roles` raised TypeError (unhashable).
    "list as role": (
        "hermes", hermes({"from": ["gpt"], "value": "x"}),
        "unknown role", "turn 1 has from=['gpt']; valid: system, human, gpt, tool"),
    "object as role": (
        "openai", {"messages": [{"role": {"a": 1}, "content": "x"}]},
        "unknown role", "turn 0 has role={'a': 1}; valid: system, user, assistant, tool"),
    # A 1 MB role name is shortened in the message.
    "1 MB role name": (
        "hermes", hermes({"from": ONE_MB, "value": "x"}),
        "unknown role",
        f"turn 1 has from={repr(ONE_MB)[:100]}... (1000002 characters); valid: system, human, gpt, tool"),
    # Lone surrogates (valid JSON escapes) crashed the tokenizer with a TypeError.
    "surrogate in content": (
        "hermes", hermes({"from": "gpt", "value": "yo \ud800"}),
        "invalid UTF-8", "message 1 (assistant): lone surrogate '\\ud800' at character 3"),
    "surrogate in arguments": (
        "openai", openai_call({"s": "\udfff"}),
        "invalid UTF-8", "message 1 (assistant), arguments of tool call 'f': lone surrogate '\\udfff' at character 7"),
    "surrogate in call name": (
        "openai", {"messages": [USER_MESSAGE, {"role": "assistant", "tool_calls": [{"name": "\ud800"}]}]},
        "invalid UTF-8", "message 1 (assistant), tool call name: lone surrogate '\\ud800' at character 0"),
    "surrogate in tools": (
        "hermes", {**hermes(ASSISTANT_YO), "tools": [{"\ud800": 1}]},
        "invalid UTF-8", "tool 0: lone surrogate '\\ud800' at character 2"),
    # Values with no JSON form (parquet / hub rows) crashed rendering with a TypeError.
    "decimal arguments": (
        "flat", {"query": "q", "tool_call": {"name": "f", "arguments": {"n": decimal.Decimal(1)}}},
        "unparseable tool call",
        "message 1 (assistant), arguments of tool call 'f': no JSON form: "
        "Object of type Decimal is not JSON serializable"),
    "bytes in tools": (
        "hermes", {**hermes(ASSISTANT_YO), "tools": [{"b": b"x"}]},
        "invalid tools", "tool 0: no JSON form: Object of type bytes is not JSON serializable"),
    # Structured arguments nested about as deep as the recursion limit crashed rendering with RecursionError.
    "deep structured arguments": (
        "openai", openai_call(nested_dict(MAX_NESTING)),
        "too deeply nested", "message 1 (assistant), arguments of tool call 'f': nested deeper than 64 levels"),
    "deep tools": (
        "hermes", {**hermes(ASSISTANT_YO), "tools": [{"p": nested_list(MAX_NESTING)}]},
        "too deeply nested", "tool 0: nested deeper than 64 levels"),
}  # fmt: skip


@pytest.mark.parametrize(("fmt", "row", "reason", "detail"), REGRESSION_ROWS.values(), ids=REGRESSION_ROWS.keys())
def test_regression_bad_rows(fmt, row, reason, detail):
    with pytest.raises(BadRow) as info:
        read_row(row, fmt, "data/train.jsonl", 4)
    assert (info.value.reason, info.value.detail) == (reason, detail)
    assert str(info.value) == f"data/train.jsonl: row 4: {reason}: {detail}"


def test_regression_canonicalized_surrogates_are_a_bad_row():
    row = hermes({"from": "gpt", "value": "<tool_call>{'name': 'f', 'arguments': {'s': '\\ud800'}}</tool_call>"})
    assert read_row(row, "hermes", "f.jsonl", 0).messages[1].content == row["conversations"][1]["value"]
    with pytest.raises(BadRow, match=r"^f\.jsonl: row 0: invalid UTF-8: message 1 \(assistant\): lone surrogate"):
        read_row(row, "hermes", "f.jsonl", 0, canonicalize=True)


def test_regression_structured_arguments_within_the_limit_are_kept():
    conversation = read_row(openai_call(nested_dict(MAX_NESTING - 1)), "openai", "f.jsonl", 0)
    assert conversation.messages[1].tool_calls[0].arguments == nested_dict(MAX_NESTING - 1)


def test_regression_format_detection_with_unhashable_roles():
    # Detection collected the role names in a set: an object as a role name raised TypeError.
    rows = [(0, {"conversations": [USER_TURN, {"from": {"a": 1}, "value": "x"}]})]
    from fcloop.data.readers import detect_file_format

    assert detect_file_format(rows, "f.jsonl") == "hermes"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        # json.loads raised RecursionError on a deeply nested whole-file JSON document.
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "{path}: not valid JSON: maximum recursion depth exceeded"),
        # pyarrow raised its own ArrowInvalid / OSError for a file that is not parquet.
        ("fake.parquet", b"not parquet", "{path}: not a readable parquet file: "),
        ("empty.parquet", b"", "{path}: not a readable parquet file: "),
    ],
    ids=["deep list", "not parquet", "empty parquet"],
)
def test_regression_unreadable_files_are_source_errors(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(SourceError) as info:
        list(iter_rows(str(path)))
    assert str(info.value).startswith(message.format(path=path))


def test_regression_a_deep_json_object_is_read_as_a_bad_json_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"a": ' * 100_000 + b"1" + b"}" * 100_000)
    ((index, row),) = list(iter_rows(str(path)))
    assert (index, type(row), row.reason) == (0, BadRow, "invalid JSON")
    assert str(row).startswith(f"{path}: row 0: invalid JSON: line 1: maximum recursion depth exceeded")


def test_regression_a_folder_is_a_source_error(tmp_path):
    # read_bytes raised IsADirectoryError.
    path = tmp_path / "train.jsonl"
    path.mkdir()
    with pytest.raises(SourceError) as info:
        list(iter_rows(str(path)))
    assert str(info.value) == f"{path}: cannot read the file: Is a directory"


def test_regression_escaped_deep_arguments_string():
    # The arguments string decodes to 10000 `[`: json.loads raised RecursionError.
    with pytest.raises(RowProblem) as info:
        parse_call_body('{"name": "f", "arguments": "' + "\\u005b" * 10_000 + '"}')
    assert (info.value.reason, info.value.detail) == ("unparseable tool call", "nested deeper than 64 levels")


# ---------------------------------------------------------------------------------------------------------
# Tool-call parsing on random strings
# ---------------------------------------------------------------------------------------------------------

TOKENS = [
    "<tool_call>", "</tool_call>", "<tool_call", "tool_call>", "<think>", "</think>", "{", "}", "[", "]", "(", ")",
    '"', "'", ":", ",", " ", "\n", "name", '"name"', "'name'", "arguments", '"arguments"', "'arguments'", "f",
    "1", "-", "+", "j", "1e999", "True", "null", "None", "...", "b'", "\\", "\\u005b", "\\ud800", "\ud800", "\x00",
    "{1, 2}", "é", "😀", "\u2028",
]  # fmt: skip


# The parser scans every character in Python: the 100000-long bodies are exercised once, not thousands of times.
RANDOM_BODIES = [
    *(body[:2000] for body in BROKEN_CALL_BODIES),
    json.dumps({"name": "f", "arguments": {"a": [1, {"b": None}]}}),
    "{'name': 'f', 'arguments': {'a': (1, 2), 'b': None, 'c': [True, 1.5]}}",
]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 40)))
    body = rng.choice(RANDOM_BODIES)
    cut = rng.randrange(len(body) + 1)
    body = body[:cut] + rng.choice(TOKENS) + body[cut:]
    return rng.choice(["", "x ", "<think>t</think>"]) + "<tool_call>" + body + rng.choice(["</tool_call>", ""])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # literal_eval on bodies with stray backslashes
def test_tool_call_parsing_only_raises_row_problems():
    rng = random.Random(99)
    outcomes = {"ok": 0, "problem": 0}
    texts = [random_text(rng) for _ in range(2000)]
    texts += ["<tool_call>" + body + "</tool_call>" for body in BROKEN_CALL_BODIES]
    for text in texts:
        for function in (find_tool_call_blocks, parse_call_body, canonicalize_tool_calls, parse_tool_calls,
                         validate_tool_calls):  # fmt: skip
            try:
                function(text)
                outcomes["ok"] += 1
            except RowProblem as problem:
                assert problem.reason in KNOWN_REASONS
                assert len(str(problem)) < 400
                outcomes["problem"] += 1
            except Exception as error:
                raise AssertionError(f"{function.__name__}({text[:300]!r}) raised {error!r:.300}") from error
    assert min(outcomes.values()) > 1000


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_canonical_text_parses_back_to_the_same_calls():
    rng = random.Random(5)
    for _ in range(1000):
        text = random_text(rng)
        try:
            canonical = canonicalize_tool_calls(text)
        except RowProblem:
            continue
        # JSON has no tuples and only string keys: the calls are the same once they are JSON values.
        assert parse_tool_calls(canonical) == [json.loads(json.dumps(call)) for call in parse_tool_calls(text)]
        assert canonicalize_tool_calls(canonical) == canonical


# ---------------------------------------------------------------------------------------------------------
# Config: every bad key, type and value is named
# ---------------------------------------------------------------------------------------------------------

ALL_KEYS = [(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
TABLE, DATE = "{ a = 1 }", "1979-05-27T07:32:00Z"


def _is_choice(toml_value: str, choices: tuple) -> bool:
    value = tomllib.loads(f"value = {toml_value}")["value"]
    return any(type(value) is type(choice) and value == choice for choice in choices)


def wrong_values(expected: Any) -> list[str]:
    """TOML literals of the wrong type for a field of the `expected` type."""
    origin = typing.get_origin(expected)
    if origin is Literal:
        args = typing.get_args(expected)
        candidates = ['"not-a-choice"', "3", "true", "1", '"true"', f'"{str(args[0]).upper()} "', TABLE, DATE]
        # A choice may itself be a bool (train.compile = "auto" | true | false): never offer a valid one.
        return [value for value in candidates if not _is_choice(value, args)]
    if origin is tuple:
        item = typing.get_args(expected)[0]
        return ["3", "true", TABLE, "[[1]]", '["x"]' if item is float else "[1]", DATE]
    return {
        str: ["3", "1.5", "true", "[]", TABLE, DATE],
        int: ['"3"', "1.5", "true", "[1]", TABLE, DATE, "nan"],
        float: ['"0.1"', "true", "nan", "inf", "-inf", "[0.1]", TABLE, DATE],
        bool: ["1", '"true"', "0.0", "[true]", TABLE, DATE],
    }[expected]


def _config_error(path: Path | None, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


def test_every_config_key_is_covered():
    hints = {section: typing.get_type_hints(cls) for section, cls in SECTIONS.items()}
    assert len(ALL_KEYS) >= 40
    assert all(wrong_values(hints[section][key]) for section, key in ALL_KEYS)


@pytest.mark.parametrize(("section", "key"), ALL_KEYS, ids=[f"{s}.{k}" for s, k in ALL_KEYS])
def test_wrong_type_names_the_key(tmp_path, section, key):
    expected = typing.get_type_hints(SECTIONS[section])[key]
    path = tmp_path / "config.toml"
    for value in wrong_values(expected):
        path.write_text(f"[{section}]\n{key} = {value}\n", encoding="utf-8")
        message = _config_error(path)
        assert f"{path}: key '{section}.{key}': expected " in message, (value, message)
        assert message.count("\n") == 1, f"exactly one problem for {value}: {message}"
        # The same value on the command line.
        assert f"key '{section}.{key}': expected " in _config_error(None, [f"--{section}.{key}={value}"])


@pytest.mark.parametrize("section", list(SECTIONS))
def test_unknown_keys_and_non_table_sections_are_named(tmp_path, section):
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\nno_such_key = 1\n", encoding="utf-8")
    assert f"{path}: unknown key '{section}.no_such_key'; valid keys in [{section}]: " in _config_error(path)
    assert f"unknown key '{section}.nope'" in _config_error(None, [f"--{section}.nope=1"])
    path.write_text(f"{section} = 3\n", encoding="utf-8")
    assert f"{path}: '{section}' must be a [section] table, got int" in _config_error(path)
    path.write_text(f"{section} = [1]\n[{section}x]\n", encoding="utf-8")
    message = _config_error(path)
    assert f"'{section}' must be a [section] table, got list" in message
    assert f"unknown section [{section}x]; valid sections: " in message


def _range_cases() -> list[tuple[str, str, str]]:
    """(section.key, bad TOML literal, ...) for every range the config checks, and every Literal."""
    cases = [
        *[(key, value) for key in ("data.max_seq_len", "train.micro_batch_size", "train.grad_accum_steps",
                                   "train.epochs", "lora.r", "eval.batch_size", "checkpoint.keep_last",
                                   "eval.max_new_tokens", "train.log_every_steps") for value in ("0", "-1")],
        *[(key, "-1") for key in ("train.max_steps", "data.max_eval_conversations", "train.warmup_steps",
                                  "eval.every_steps", "eval.max_cases", "checkpoint.every_steps")],
        *[(key, "-0.5") for key in ("train.weight_decay", "train.max_grad_norm")],
        ("data.eval_fraction", "1.0"), ("data.eval_fraction", "-0.1"), ("data.eval_fraction", "7"),
        ("lora.dropout", "1.0"), ("lora.dropout", "-0.1"),
        ("train.lr", "0"), ("train.lr", "-1e-4"),
        ("train.min_lr_ratio", "1.5"), ("train.min_lr_ratio", "-0.5"),
        ("train.adam_betas", "[]"), ("train.adam_betas", "[0.9, 0.99, 0.999]"), ("train.adam_betas", "[0.9, 1]"),
        ("train.adam_betas", "[-0.1, 0.9]"), ("train.compile_backend", '""'),
    ]  # fmt: skip
    for section, cls in SECTIONS.items():
        for name, hint in typing.get_type_hints(cls).items():
            if typing.get_origin(hint) is Literal:
                cases += [(f"{section}.{name}", '"nope"'), (f"{section}.{name}", '""')]
    return cases


RANGE_CASES = _range_cases()


@pytest.mark.parametrize(("dotted", "value"), RANGE_CASES, ids=[f"{k}={v}" for k, v in RANGE_CASES])
def test_out_of_range_values_name_the_key(tmp_path, dotted, value):
    section, key = dotted.split(".")
    assert key in {f.name for f in dataclasses.fields(SECTIONS[section])}, f"{dotted} is not a config key"
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{key} = {value}\n", encoding="utf-8")
    message = _config_error(path)
    assert message.startswith(f"invalid configuration:\n  {path}: key '{dotted}'"), message
    assert message.count("\n") == 1


@pytest.mark.parametrize(
    "text",
    ["[train\n", "[train]\nlr = \n", "[train]\nlr = 0.1\nlr = 0.2\n", "[run]\n[run]\n", 'x = "\x00"\n',
     "[data]\ntrain = [\n", "= 1\n", "[train]\nlr = 1e\n", "[a.b\n", "\ufeff[train]\nlr = 0.1\n"],
    ids=repr,
)  # fmt: skip
def test_toml_syntax_errors_name_the_file(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    message = _config_error(path)
    assert message.startswith(f"{path}: not valid TOML: "), message


def test_unreadable_config_files_name_the_file(tmp_path):
    # Regressions: invalid UTF-8 raised UnicodeDecodeError, a folder raised IsADirectoryError.
    path = tmp_path / "config.toml"
    path.write_bytes(b'[run]\nout_dir = "caf\xe9"\n')
    assert _config_error(path) == f"{path}: not valid UTF-8 at byte 20"
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    assert _config_error(folder) == f"{folder}: cannot read the config file: Is a directory"


def test_random_config_documents_load_or_raise_config_error(tmp_path):
    """Random mixes of keys, sections and values: a Config or a ConfigError each of whose lines names the
    section or key at fault, never another exception."""
    rng = random.Random(11)
    defaults = {}  # (section, key) -> the default value as a TOML literal: valid for the key by construction
    section = ""
    for line in config_to_toml(Config()).splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif " = " in line:
            key, value = line.split(" = ", 1)
            defaults[section, key] = value
    literals = ["0", "-1", "1", "0.5", "1e400", "-inf", "nan", "true", '""', '"x"', "[]", "[1, 2]", '["a"]',
                TABLE, DATE, "[[]]", '"\\u0000"', "9223372036854775807"]  # fmt: skip
    keys = [*ALL_KEYS, ("train", "nope"), ("nope", "lr"), ("", "x")]

    def value(section: str, key: str) -> str:
        return defaults[section, key] if (section, key) in defaults and rng.random() < 0.8 else rng.choice(literals)

    path = tmp_path / "config.toml"
    results = {"ok": 0, "error": 0}
    for _ in range(300):
        sections: dict[str, list[str]] = {}
        for section, key in rng.sample(keys, rng.randint(1, 4)):
            sections.setdefault(section, []).append(f"{key} = {value(section, key)}")
        text = "".join(f'["{section}"]\n' + "\n".join(lines) + "\n" for section, lines in sections.items())
        path.write_text(text, encoding="utf-8")
        overrides = [f"--{s}.{k}={value(s, k)}" for s, k in rng.sample(keys, rng.randint(0, 2))]
        try:
            config = load_config(path, overrides)
        except ConfigError as error:
            header, *problems = str(error).splitlines()
            assert header == "invalid configuration:" and problems
            for problem in problems:
                assert re.search(r"'\w*\.\w*'|section \[?'?\w*\]?'?;", problem), problem
            results["error"] += 1
        else:
            assert isinstance(config, Config)
            results["ok"] += 1
    assert min(results.values()) > 30
