"""Finding and parsing `<tool_call>` blocks in assistant text.

Calls come both as JSON and as Python dict reprs (`'name'`, `True`), so parsing tries `json.loads` first and
falls back to `ast.literal_eval`. Blocks are found by plain string search, not an XML parser, because
thoughts and argument strings may hold `&`, `<` and `>`.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from fcloop.data.conversation import RowProblem

OPEN, CLOSE = "<tool_call>", "</tool_call>"

# Nesting deeper than this is not a tool call a model should learn; it also keeps the parsers safe.
MAX_NESTING = 64


@dataclass(frozen=True)
class ToolCallBlock:
    start: int
    """Index of `<tool_call>` in the text."""
    end: int
    """Index just past `</tool_call>`."""
    body: str
    """The text between the tags, as written."""


def find_tool_call_blocks(text: str) -> list[ToolCallBlock]:
    """Every `<tool_call>…</tool_call>` block in order; unbalanced or nested tags are a RowProblem."""
    blocks = []
    position = 0
    while True:
        start = text.find(OPEN, position)
        stray_close = text.find(CLOSE, position)
        if start < 0:
            if stray_close >= 0:
                raise RowProblem("unbalanced tool_call tags", f"'{CLOSE}' without '{OPEN}'")
            return blocks
        if 0 <= stray_close < start:
            raise RowProblem("unbalanced tool_call tags", f"'{CLOSE}' without '{OPEN}'")
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            raise RowProblem("unbalanced tool_call tags", f"'{OPEN}' without '{CLOSE}'")
        body = text[start + len(OPEN) : end]
        if OPEN in body:
            raise RowProblem("unbalanced tool_call tags", f"nested '{OPEN}'")
        blocks.append(ToolCallBlock(start, end + len(CLOSE), body))
        position = end + len(CLOSE)


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]})":
            depth -= 1
    return deepest


def parse_call_body(body: str) -> tuple[dict[str, Any], bool]:
    """Parse one call body -> (call dict with a string `name`, whether it was JSON).

    Raises RowProblem when it is neither JSON nor a Python literal, or is not a {"name": ..., ...} object.
    """
    text = body.strip()
    if _nesting_depth(text) > MAX_NESTING:
        raise RowProblem("unparseable tool call", f"nested deeper than {MAX_NESTING} levels")
    is_json = True
    try:
        call = json.loads(text)
    except ValueError:
        is_json = False
        try:
            call = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise RowProblem("unparseable tool call", f"neither JSON nor a Python literal: {text[:120]!r}") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise RowProblem("unparseable tool call", f"not an object with a string 'name': {text[:120]!r}")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        # Some data sets store the arguments as a JSON string inside the call; its `\u005b` escapes can hide
        # brackets from the depth check above.
        if _nesting_depth(arguments) > MAX_NESTING:
            raise RowProblem("unparseable tool call", f"nested deeper than {MAX_NESTING} levels")
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise RowProblem("unparseable tool call", f"arguments string is not JSON: {arguments[:120]!r}") from None
    if not isinstance(arguments, dict):
        raise RowProblem("unparseable tool call", f"arguments must be an object, got {type(arguments).__name__}")
    return {**call, "arguments": arguments}, is_json


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """All calls written inline in an assistant text, parsed."""
    return [parse_call_body(block.body)[0] for block in find_tool_call_blocks(text)]


def canonicalize_tool_calls(text: str) -> str:
    """Rewrite Python-dict call bodies as JSON; JSON bodies and all other text stay byte-identical."""
    pieces, position = [], 0
    for block in find_tool_call_blocks(text):
        call, is_json = parse_call_body(block.body)
        if is_json:
            continue
        # Keep the whitespace around the body as written, replace only the object itself.
        stripped = block.body.strip()
        lead = block.body[: len(block.body) - len(block.body.lstrip())]
        trail = block.body[len(lead) + len(stripped) :]
        body_start = block.start + len(OPEN)
        try:
            as_json = json.dumps(call, ensure_ascii=False)
        except (TypeError, ValueError):  # a Python literal with no JSON form, e.g. a set
            raise RowProblem("unparseable tool call", f"no JSON form for {stripped[:120]!r}") from None
        pieces += [text[position:body_start], lead, as_json, trail]
        position = block.end - len(CLOSE)
    pieces.append(text[position:])
    return "".join(pieces)


def validate_tool_calls(text: str) -> None:
    """Raise RowProblem if any inline call is malformed."""
    for block in find_tool_call_blocks(text):
        parse_call_body(block.body)
