"""Raw rows of every supported format -> Conversation.

Sources are local .json / .jsonl / .parquet files, the packaged demo set (`demo:train`, `demo:eval`), or a hub
data set id `owner/name[:config][@split]` read through `datasets.load_dataset`. Each row is read into one
Conversation or raises BadRow naming the source, the row index and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fcloop import hub
from fcloop.data.conversation import BadRow, Conversation, Message, RowProblem, ToolCall
from fcloop.data.toolcalls import MAX_NESTING, canonicalize_tool_calls, validate_tool_calls
from fcloop.errors import FcloopError

FORMATS = ("hermes", "hermes_thinking", "openai", "glaive", "flat")
DEMO_DIR = Path(__file__).parent / "demo_data"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")

# Role names of each format mapped to ours. glaive's `function_call` and `observation` are handled apart.
HERMES_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "tool": "tool"}
THINKING_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "model": "assistant",
    "assistant": "assistant",
    "gpt": "assistant",
    "tool": "tool",
}
OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
GLAIVE_ROLES = {
    "system": "system",
    "human": "user",
    "gpt": "assistant",
    "function_call": "assistant",
    "observation": "tool",
}


# ---------------------------------------------------------------------------------------------------------
# Sources: where rows come from
# ---------------------------------------------------------------------------------------------------------


class SourceError(FcloopError, ValueError):
    """A source that cannot be read at all (missing file, not JSON, empty, unknown hub id)."""


def resolve_source(source: str) -> str:
    """Map `demo:NAME` to the packaged file; other sources are returned as given."""
    if source.startswith("demo:"):
        path = DEMO_DIR / f"{source.removeprefix('demo:')}.jsonl"
        if not path.exists():
            raise SourceError(f"{source}: no packaged demo split {path.name} (have: train, eval)")
        return str(path)
    return source


def is_local(source: str) -> bool:
    return source.endswith(LOCAL_SUFFIXES) or Path(source).exists()


def iter_rows(source: str) -> Iterator[tuple[int, Any]]:
    """(row index, raw row) for every row of a source. A row that cannot be decoded is yielded as a
    BadRow instance in place of the row, so the caller decides between error and counted skip."""
    source = resolve_source(source)
    if is_local(source):
        yield from _iter_local_rows(Path(source))
    else:
        yield from _iter_hub_rows(source)


EXPECTED_FILES = "fcloop reads JSON lines (UTF-8, one JSON object per line), a .json file holding a list, or .parquet"


def looks_utf16(data: bytes) -> bool:
    """A byte-order mark, or ASCII text stored as UTF-16 (every other byte of the first characters zero)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    head = data[:16]
    return len(head) >= 8 and (set(head[1::2]) == {0} or set(head[0::2]) == {0})


def wrong_kind_of_file(data: bytes, suffix: str) -> str | None:
    """What a data file is when it is not what fcloop reads, and what to do; None when it may be. Said for the
    whole file, since each of its lines would otherwise fail alone, as "no row could be decoded"."""
    if data[:2] == b"\x1f\x8b":
        return f"a gzip-compressed file; {EXPECTED_FILES}: decompress it (gunzip) and name the result"
    if looks_utf16(data):
        return f"UTF-16 text; {EXPECTED_FILES}: convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)"
    first_line = data.lstrip().split(b"\n", 1)[0].strip()
    if suffix != ".json" and first_line[:1] == b"[":
        try:
            whole = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            whole = None
        if isinstance(whole, list):
            return f"one JSON array, not JSON lines; {EXPECTED_FILES}: name the file .json to read it as a list"
    if first_line[:1] not in (b"{", b"[") and b"," in first_line and suffix != ".json":
        try:
            json.loads(first_line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return f"comma-separated values (CSV), not JSON; {EXPECTED_FILES}: write each row as a JSON object"
    return None


def _iter_local_rows(path: Path) -> Iterator[tuple[int, Any]]:
    if not path.exists():
        raise SourceError(f"{path}: file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet  # a dependency of `datasets`

        try:
            table = pyarrow.parquet.read_table(path)
        except (pyarrow.ArrowException, OSError) as exc:
            raise SourceError(f"{path}: not a readable parquet file: {exc}") from None
        if table.num_rows == 0:
            raise SourceError(f"{path}: the file has no rows")
        yield from enumerate(table.to_pylist())
        return
    try:
        data = path.read_bytes()
    except OSError as exc:  # a folder named like a file, no permission
        raise SourceError(f"{path}: cannot read the file: {exc.strerror}") from None
    if not data.strip():
        raise SourceError(f"{path}: the file is empty")
    if problem := wrong_kind_of_file(data, path.suffix):
        raise SourceError(f"{path}: {problem}")
    if path.suffix == ".json":
        try:
            whole = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SourceError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
        except (ValueError, RecursionError) as exc:
            if data.lstrip()[:1] == b"[":
                raise SourceError(f"{path}: not valid JSON: {exc}") from None
            whole = None  # not one JSON document: read it as JSON lines below
        if isinstance(whole, list) and not whole:
            raise SourceError(f"{path}: the JSON list is empty")
        if whole is not None:
            # A list of rows, or a single pretty-printed row.
            yield from enumerate(whole if isinstance(whole, list) else [whole])
            return
    # JSON lines (also a .json file holding one object per line). Blank lines are not rows.
    row = 0
    for line_number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield row, json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield row, BadRow(str(path), row, "invalid UTF-8", f"line {line_number}, byte {exc.start}")
        except (ValueError, RecursionError) as exc:
            yield row, BadRow(str(path), row, "invalid JSON", f"line {line_number}: {exc}")
        row += 1


def parse_hub_id(source: str) -> tuple[str, str | None, str]:
    """`owner/name[:config][@split]` -> (dataset id, config name or None, split)."""
    rest, _, split = source.partition("@")
    dataset_id, _, config_name = rest.partition(":")
    return dataset_id, (config_name or None), (split or "train")


def _iter_hub_rows(source: str) -> Iterator[tuple[int, Any]]:
    import datasets

    dataset_id, config_name, split = parse_hub_id(source)
    what = f"{source}: could not load hub data set {dataset_id!r} (config {config_name}, split {split})"
    local_advice = "download it where the hub is reachable and name the local file(s) in data.train or data.eval"
    unavailable = hub.unavailable_reason()
    if unavailable is not None and not hub.offline_by_setting():
        # Fail now rather than after the hub client's retries; HF_HUB_OFFLINE=1 reads a cached copy instead.
        raise SourceError(
            f"{what}: the hub cannot be reached ({unavailable}); {local_advice}, or set HF_HUB_OFFLINE=1 to use a "
            "copy already in the local cache"
        )
    try:
        dataset = datasets.load_dataset(dataset_id, config_name, split=split)
    except Exception as exc:  # the hub client raises many types; the user needs the id and the cause
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = f"; the hub is not used ({unavailable}), so {local_advice}" if unavailable else ""
        raise SourceError(f"{what}: {cause}{offline}") from exc
    yield from enumerate(dataset)


# ---------------------------------------------------------------------------------------------------------
# Format detection
# ---------------------------------------------------------------------------------------------------------


def detect_format(row: Any, source: str) -> str:
    """Name the format from one row's keys and role names."""
    if isinstance(row, dict):
        if "messages" in row:
            return "openai"
        if "query" in row and "tool_call" in row:
            return "flat"
        turns = row.get("conversations")
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            if "role" in turns[0]:
                return "hermes_thinking"
            if "from" in turns[0]:
                names = {turn["from"] for turn in turns if isinstance(turn, dict) and isinstance(turn.get("from"), str)}
                return "glaive" if names & {"function_call", "observation"} else "hermes"
    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
    raise SourceError(
        f"{source}: cannot detect the format from the first row (keys: {keys}); set data.format to one of "
        + ", ".join(FORMATS)
    )


def detect_file_format(rows: list[tuple[int, Any]], source: str) -> str:
    """Detect per file: glaive and hermes share `from`/`value`, so any glaive role anywhere decides."""
    decodable = [row for _, row in rows if not isinstance(row, BadRow)]
    if not decodable:
        raise SourceError(f"{source}: no row could be decoded")
    first = detect_format(decodable[0], source)
    if first == "hermes" and any(detect_format_quiet(row) == "glaive" for row in decodable):
        return "glaive"
    return first


def detect_format_quiet(row: Any) -> str | None:
    try:
        return detect_format(row, "")
    except SourceError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Row readers: one per format, each raw row -> Conversation (or RowProblem)
# ---------------------------------------------------------------------------------------------------------


def _require(row: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(row, dict):
        raise RowProblem("row is not an object", f"got {type(row).__name__}")
    if key not in row:
        raise RowProblem("missing key", f"'{key}' (row keys: {sorted(row)})")
    value = row[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RowProblem("wrong type", f"'{key}' must be {names}, got {type(value).__name__}")
    return value


def _content(turn: dict[str, Any], key: str, position: int) -> str:
    if key not in turn:
        raise RowProblem("missing content", f"turn {position} has no '{key}'")
    value = turn[key]
    if not isinstance(value, str):
        raise RowProblem("non-string content", f"turn {position} '{key}' is {type(value).__name__}")
    return value


def _role(turn: Any, key: str, roles: dict[str, str], position: int) -> str:
    if not isinstance(turn, dict):
        raise RowProblem("turn is not an object", f"turn {position} is {type(turn).__name__}")
    name = turn.get(key)
    if not isinstance(name, str) or name not in roles:  # a list or object as a name is not hashable
        raise RowProblem("unknown role", f"turn {position} has {key}={_short_repr(name)}; valid: {', '.join(roles)}")
    return roles[name]


def _short_repr(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_tools(value: Any) -> tuple[dict[str, Any], ...]:
    """A tools list given as a list or as a JSON string of a list (glaive, some hermes configs)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise RowProblem("invalid tools", f"tools string is not JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise RowProblem("invalid tools", "tools must be a list of objects")
    return tuple(value)


def _inline_message(role: str, content: str) -> Message:
    if role == "assistant":
        validate_tool_calls(content)
    return Message(role=role, content=content)


def _tools_unless_in_system(row: dict[str, Any], messages: list[Message]) -> tuple[dict[str, Any], ...]:
    # Hermes rows usually carry their tools inside the system text already; repeating them would double
    # the prompt, so a separate tools column is used only when the system text does not hold them.
    tools = parse_tools(row.get("tools"))
    system_text = messages[0].content if messages and messages[0].role == "system" else ""
    return () if "<tools>" in system_text else tools


def _read_inline_turns(
    row: Any, role_key: str, roles: dict[str, str], content_key: str
) -> tuple[list[Message], tuple[dict[str, Any], ...]]:
    """The hermes layouts: `conversations` turns whose text holds the calls and responses inline."""
    turns = _require(row, "conversations", list)
    messages = [
        _inline_message(_role(turn, role_key, roles, i), _content(turn, content_key, i)) for i, turn in enumerate(turns)
    ]
    return messages, _tools_unless_in_system(row, messages)


def read_hermes(row: Any) -> tuple[list[Message], tuple[dict[str, Any], ...]]:
    return _read_inline_turns(row, "from", HERMES_ROLES, "value")


def read_hermes_thinking(row: Any) -> tuple[list[Message], tuple[dict[str, Any], ...]]:
    return _read_inline_turns(row, "role", THINKING_ROLES, "content")


def _structured_call(raw: Any, position: int) -> ToolCall:
    call = raw.get("function", raw) if isinstance(raw, dict) else raw
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise RowProblem("unparseable tool call", f"turn {position}: a tool call needs a string 'name'")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise RowProblem("unparseable tool call", f"turn {position}: arguments are not JSON") from None
    if not isinstance(arguments, dict):
        raise RowProblem("unparseable tool call", f"turn {position}: arguments must be an object")
    return ToolCall(name=call["name"], arguments=arguments)


def read_openai(row: Any) -> tuple[list[Message], tuple[dict[str, Any], ...]]:
    turns = _require(row, "messages", list)
    messages = []
    for i, turn in enumerate(turns):
        role = _role(turn, "role", OPENAI_ROLES, i)
        raw_calls = turn.get("tool_calls") or []
        if role == "assistant" and turn.get("content") is None and raw_calls:
            content = ""  # OpenAI leaves content null on a pure tool-call turn
        else:
            content = _content(turn, "content", i)
        if not isinstance(raw_calls, list):
            raise RowProblem("unparseable tool call", f"turn {i}: tool_calls must be a list")
        if raw_calls and role != "assistant":
            raise RowProblem("misplaced tool call", f"turn {i}: only assistant turns carry tool_calls")
        calls = tuple(_structured_call(raw, i) for raw in raw_calls)
        if role == "assistant":
            validate_tool_calls(content)
        messages.append(Message(role=role, content=content, tool_calls=calls))
    return messages, parse_tools(row.get("tools"))


def read_glaive(row: Any) -> tuple[list[Message], tuple[dict[str, Any], ...]]:
    turns = _require(row, "conversations", list)
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        role = _role(turn, "from", GLAIVE_ROLES, i)
        value = _content(turn, "value", i)
        if turn["from"] != "function_call":
            messages.append(_inline_message(role, value))
            continue
        try:
            raw_call = json.loads(value)
        except ValueError:
            raise RowProblem("unparseable tool call", f"turn {i}: function_call value is not JSON") from None
        call = _structured_call(raw_call, i)
        if messages and messages[-1].role == "assistant":
            # A function_call right after a gpt turn belongs to that same assistant turn.
            previous = messages.pop()
            messages.append(Message("assistant", previous.content, (*previous.tool_calls, call)))
        else:
            messages.append(Message("assistant", "", (call,)))
    return messages, parse_tools(row.get("tools"))


def read_flat(row: Any) -> tuple[list[Message], tuple[dict[str, Any], ...]]:
    query = _require(row, "query", str)
    raw_calls = _require(row, "tool_call", (dict, list, str))
    thoughts = row.get("thoughts") or ""
    if not isinstance(thoughts, str):
        raise RowProblem("non-string content", f"'thoughts' is {type(thoughts).__name__}")
    if isinstance(raw_calls, str):
        try:
            raw_calls = json.loads(raw_calls)
        except ValueError:
            raise RowProblem("unparseable tool call", "'tool_call' string is not JSON") from None
    calls = tuple(_structured_call(raw, 0) for raw in (raw_calls if isinstance(raw_calls, list) else [raw_calls]))
    content = f"<think>{thoughts}</think>" if thoughts else ""
    return [Message("user", query), Message("assistant", content, calls)], parse_tools(row.get("tools"))


READERS: dict[str, Callable[[Any], tuple[list[Message], tuple[dict[str, Any], ...]]]] = {
    "hermes": read_hermes,
    "hermes_thinking": read_hermes_thinking,
    "openai": read_openai,
    "glaive": read_glaive,
    "flat": read_flat,
}


def check_turn_order(messages: list[Message]) -> None:
    """The shape every renderer relies on: optional system first, then a user turn, and something to learn."""
    if any(m.role == "system" for m in messages[1:]):
        raise RowProblem("misplaced system turn", "a system turn is only allowed first")
    body = messages[1:] if messages and messages[0].role == "system" else messages
    if not body or body[0].role != "user":
        raise RowProblem("bad turn order", "the conversation must start with a user turn (after any system turn)")
    assistants = [m for m in body if m.role == "assistant"]
    if not assistants:
        raise RowProblem("nothing to supervise", "the conversation has no assistant turn")
    for position, message in enumerate(body):
        if message.role == "assistant" and not message.content.strip() and not message.tool_calls:
            raise RowProblem("nothing to supervise", f"assistant turn {position} is empty")


def _too_deep(value: Any) -> bool:
    """Whether lists and objects nest deeper than MAX_NESTING, found without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > MAX_NESTING:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON escapes can spell lone surrogates; no tokenizer takes them
        raise RowProblem(
            "invalid UTF-8", f"{where}: lone surrogate {text[exc.start]!r} at character {exc.start}"
        ) from None


def _check_json(value: Any, where: str, reason: str) -> None:
    if _too_deep(value):
        raise RowProblem("too deeply nested", f"{where}: nested deeper than {MAX_NESTING} levels")
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # parquet and hub rows can hold bytes, decimals, timestamps
        raise RowProblem(reason, f"{where}: no JSON form: {exc}") from None
    _check_text(text, where)


def check_renderable(messages: list[Message], tools: tuple[dict[str, Any], ...]) -> None:
    """What rendering and tokenizing need beyond the format: UTF-8 text, and tool calls and tools that
    have a JSON form of bounded nesting (the renderer writes them with json.dumps)."""
    for position, message in enumerate(messages):
        where = f"message {position} ({message.role})"
        _check_text(message.content, where)
        for call in message.tool_calls:
            _check_text(call.name, f"{where}, tool call name")
            _check_json(
                call.arguments, f"{where}, arguments of tool call {_short_repr(call.name)}", "unparseable tool call"
            )
    for position, tool in enumerate(tools):
        _check_json(tool, f"tool {position}", "invalid tools")


def read_row(row: Any, fmt: str, source: str, index: int, canonicalize: bool = False) -> Conversation:
    """One raw row -> Conversation, or BadRow naming source, row and reason. `canonicalize` rewrites
    Python-dict tool calls in assistant text as JSON."""
    if isinstance(row, BadRow):
        raise row
    try:
        messages, tools = READERS[fmt](row)
        check_turn_order(messages)
        if canonicalize:
            messages = [
                Message(m.role, canonicalize_tool_calls(m.content), m.tool_calls) if m.role == "assistant" else m
                for m in messages
            ]
        check_renderable(messages, tools)
    except RowProblem as problem:
        raise BadRow(source, index, problem.reason, problem.detail) from None
    except RecursionError:
        raise BadRow(source, index, "too deeply nested") from None
    return Conversation(messages=tuple(messages), tools=tools, source=source, index=index)
