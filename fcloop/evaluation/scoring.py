"""Scoring generated assistant turns against the expected ones: did the model call the right tools, right?

How a generated text is read (`parse_assistant_output`), and why:
- Everything from the first `<end_of_turn>` or `<eos>` on is dropped: generation may run past the turn.
- `<think>` opens a thought and the next `</think>` closes it. Tool calls are searched only OUTSIDE thoughts,
  because a thought may quote the tags ("I will write <tool_call> next"); a plain string search would find them.
- An unclosed `<think>` makes the rest of the text thought: the model never finished thinking (typically it
  ran out of tokens), so it called nothing. That is not a parse failure. A stray `</think>` is answer text.
- Between thoughts, `<tool_call>` blocks are found and parsed by `fcloop.data.toolcalls` (JSON first, then Python
  literals). Unbalanced tags, or a block that does not parse, set `parse_failed`; the blocks that do parse
  still count as calls (with unbalanced tags no block boundary can be trusted, so that stretch gives none).

Metrics (`aggregate`) are fractions in [0, 1]; a metric whose denominator is 0 is None (JSON null) rather
than a made-up 0 or 1, so "nothing to measure" is never mistaken for a score.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcloop.data.conversation import RowProblem
from fcloop.data.gemma_format import END_OF_TURN
from fcloop.data.toolcalls import find_tool_call_blocks, parse_call_body

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STOP_MARKERS = (END_OF_TURN, "<eos>")


# ---------------------------------------------------------------------------------------------------------
# Reading an assistant text


@dataclass(frozen=True)
class ParsedOutput:
    think: str | None
    """The first thought's text, stripped; None without `<think>`. Unclosed: the rest of the text."""
    calls: tuple[dict[str, Any], ...]
    """The calls that parsed, in order, each exactly {"name": str, "arguments": dict}."""
    parse_failed: bool
    """Some `<tool_call>` block does not parse, or the tool_call tags are unbalanced (outside thoughts)."""
    answer_text: str
    """The text outside thoughts and tool_call blocks, stripped."""
    think_before_call: bool
    """A thought with non-blank text comes before the first call. An empty `<think></think>` is not
    reasoning, so it does not count."""

    @property
    def tried_to_call(self) -> bool:
        """The decision to call a tool: a call parsed, or the text holds a call attempt that did not parse."""
        return bool(self.calls) or self.parse_failed


@dataclass(frozen=True)
class _Segment:
    text: str
    is_think: bool


def cut_at_stop_marker(text: str) -> str:
    """The text before the first `<end_of_turn>` / `<eos>`: what follows is not part of the answer."""
    positions = [position for position in (text.find(marker) for marker in STOP_MARKERS) if position >= 0]
    return text[: min(positions)] if positions else text


def _split_thoughts(text: str) -> list[_Segment]:
    """The text as alternating outside/think segments, in order."""
    segments = []
    position = 0
    while True:
        start = text.find(THINK_OPEN, position)
        if start < 0:
            segments.append(_Segment(text[position:], is_think=False))
            return segments
        segments.append(_Segment(text[position:start], is_think=False))
        body_start = start + len(THINK_OPEN)
        end = text.find(THINK_CLOSE, body_start)
        if end < 0:
            segments.append(_Segment(text[body_start:], is_think=True))
            return segments
        segments.append(_Segment(text[body_start:end], is_think=True))
        position = end + len(THINK_CLOSE)


def _read_calls(text: str) -> tuple[list[dict[str, Any]], bool, str]:
    """Text outside thoughts -> (calls that parsed, whether anything failed, the text around the blocks)."""
    try:
        blocks = find_tool_call_blocks(text)
    except RowProblem:
        return [], True, text
    calls, failed, answer_pieces, position = [], False, [], 0
    for block in blocks:
        answer_pieces.append(text[position : block.start])
        position = block.end
        try:
            call, _ = parse_call_body(block.body)
        except RowProblem:
            failed = True
            continue
        # Keys beyond name and arguments (ids, types) say nothing about the call's correctness.
        calls.append({"name": call["name"], "arguments": call["arguments"]})
    answer_pieces.append(text[position:])
    return calls, failed, "".join(answer_pieces)


def parse_assistant_output(text: str) -> ParsedOutput:
    """Read one assistant text (expected or generated). Never raises: model output can be anything."""
    think: str | None = None
    calls: list[dict[str, Any]] = []
    parse_failed = False
    answer_pieces = []
    saw_reasoning = think_before_call = False
    for segment in _split_thoughts(cut_at_stop_marker(text)):
        if segment.is_think:
            if think is None:
                think = segment.text.strip()
            saw_reasoning = saw_reasoning or bool(segment.text.strip())
            continue
        segment_calls, segment_failed, segment_answer = _read_calls(segment.text)
        if segment_calls and not calls:
            think_before_call = saw_reasoning
        calls += segment_calls
        parse_failed = parse_failed or segment_failed
        answer_pieces.append(segment_answer)
    return ParsedOutput(
        think=think,
        calls=tuple(calls),
        parse_failed=parse_failed,
        answer_text="".join(answer_pieces).strip(),
        think_before_call=think_before_call,
    )


# ---------------------------------------------------------------------------------------------------------
# Comparing arguments and matching calls


def values_equal(expected: Any, actual: Any) -> bool:
    """Type-aware equality of argument values.

    - Strings are compared exactly: no case folding, no stripping ("Paris" != "paris").
    - A bool equals only a bool (True != 1), although Python says True == 1.
    - Numbers compare by value, so 1 == 1.0: JSON has one number type and writers differ in whether they print
      1 or 1.0. Whether a value must be an integer is the schema check's business, not equality's.
    - Lists (and tuples, which Python-literal calls may hold) compare elementwise, order-sensitive.
    - Dicts need the same keys and equal values, recursively. None equals only None.
    """
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        return len(expected) == len(actual) and all(map(values_equal, expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(values_equal(expected[key], actual[key]) for key in expected)
    return type(expected) is type(actual) and expected == actual


def _arguments_of(call: dict[str, Any]) -> Any:
    return call.get("arguments", {})


def argument_accuracy(expected_arguments: Any, actual_arguments: Any) -> float:
    """Fraction of argument names (the union of both calls') whose values are equal; extra or missing
    arguments count as wrong. 1.0 when neither call has arguments."""
    if not isinstance(expected_arguments, dict) or not isinstance(actual_arguments, dict):
        return float(values_equal(expected_arguments, actual_arguments))
    names = expected_arguments.keys() | actual_arguments.keys()
    if not names:
        return 1.0
    equal = sum(
        name in expected_arguments
        and name in actual_arguments
        and values_equal(expected_arguments[name], actual_arguments[name])
        for name in names
    )
    return equal / len(names)


@dataclass(frozen=True)
class CallPair:
    expected_index: int
    actual_index: int
    arguments_equal: bool
    """The whole arguments dicts are `values_equal`: with the same name, an exact match."""
    argument_accuracy: float
    """See `argument_accuracy`: partial credit, for looking into near misses."""


@dataclass(frozen=True)
class CallMatch:
    pairs: tuple[CallPair, ...]
    """Same-name pairs, by expected index; each expected and each actual call is in at most one."""
    expected_count: int
    actual_count: int

    @property
    def exact_matches(self) -> int:
        return sum(pair.arguments_equal for pair in self.pairs)

    @property
    def name_matches(self) -> int:
        return len(self.pairs)

    @property
    def is_exact(self) -> bool:
        """Every expected call matched exactly and no call left over on either side."""
        return self.exact_matches == self.expected_count == self.actual_count


def match_calls(expected: Sequence[dict[str, Any]], actual: Sequence[dict[str, Any]]) -> CallMatch:
    """Pair expected with actual calls regardless of order: as many exact pairs as possible, then as many
    same-name pairs as possible among the rest. Calls with different names are never paired.

    Two greedy passes in index order give a maximum matching here, no augmenting paths needed: exact equality
    (same name, `values_equal` arguments) is transitive, so the exact pairs form groups where every expected
    call equals every actual call, and any pair taken within a group blocks no better choice; the same holds
    for same-name groups in the second pass. Index order makes the result deterministic.
    """
    taken_actual: set[int] = set()
    paired: dict[int, int] = {}

    def pair_up(accepts: Callable[[dict[str, Any], dict[str, Any]], bool]) -> None:
        for expected_index, expected_call in enumerate(expected):
            if expected_index in paired:
                continue
            for actual_index, actual_call in enumerate(actual):
                if actual_index not in taken_actual and accepts(expected_call, actual_call):
                    paired[expected_index] = actual_index
                    taken_actual.add(actual_index)
                    break

    def same_name(expected_call: dict[str, Any], actual_call: dict[str, Any]) -> bool:
        return expected_call.get("name") == actual_call.get("name")

    pair_up(lambda e, a: same_name(e, a) and values_equal(_arguments_of(e), _arguments_of(a)))
    pair_up(same_name)
    pairs = []
    for expected_index, actual_index in sorted(paired.items()):
        expected_arguments = _arguments_of(expected[expected_index])
        actual_arguments = _arguments_of(actual[actual_index])
        pairs.append(
            CallPair(
                expected_index=expected_index,
                actual_index=actual_index,
                arguments_equal=values_equal(expected_arguments, actual_arguments),
                argument_accuracy=argument_accuracy(expected_arguments, actual_arguments),
            )
        )
    return CallMatch(pairs=tuple(pairs), expected_count=len(expected), actual_count=len(actual))


# ---------------------------------------------------------------------------------------------------------
# Schema validity

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    # A bool is not an integer, and neither is 2.0: a model that writes 2.0 for an integer did not follow the
    # schema, even though values_equal(2, 2.0) holds.
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list | tuple),
    "object": lambda value: isinstance(value, dict),
    "null": lambda value: value is None,
}
# Some data sets write Python type names into their schemas.
_TYPE_ALIASES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "None": "null",
}


def tool_function(tool: dict[str, Any]) -> dict[str, Any]:
    """The function part of a tool, given as {"type": "function", "function": {...}} or as the function."""
    return tool["function"] if isinstance(tool.get("function"), dict) else tool


def _tool_definition(name: Any, tools: Sequence[Any]) -> dict[str, Any] | None:
    """The first tool named `name`."""
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        definition = tool_function(tool)
        if definition.get("name") == name:
            return definition
    return None


def _has_type(value: Any, declared: Any) -> bool:
    """`declared` is a type name or a list of them. A type we do not know constrains nothing: calling the
    model wrong for a schema we cannot read would measure the data, not the model."""
    if isinstance(declared, list):
        return not declared or any(_has_type(value, one) for one in declared)
    if not isinstance(declared, str):
        return True
    check = _TYPE_CHECKS.get(_TYPE_ALIASES.get(declared, declared))
    return check is None or check(value)


def _type_names(declared: Any) -> str:
    return " or ".join(declared) if isinstance(declared, list) else str(declared)


def _object_problems(value: dict[Any, Any], schema: dict[str, Any], where: str) -> list[str]:
    problems = []
    required = schema.get("required")
    if isinstance(required, list):
        prefix = f"{where}." if where else ""
        problems += [
            f"missing required argument '{prefix}{key}'"
            for key in required
            if isinstance(key, str) and key not in value
        ]
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    # JSON Schema's default: properties not listed are allowed unless additionalProperties says otherwise.
    additional = schema.get("additionalProperties", True)
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        if key in properties:
            problems += _value_problems(item, properties[key], path)
        elif additional is False:
            problems.append(f"unexpected argument '{path}'")
        elif isinstance(additional, dict):
            problems += _value_problems(item, additional, path)
    return problems


def _value_problems(value: Any, schema: Any, where: str) -> list[str]:
    """What in `value` breaks `schema` (JSON Schema's core keywords: type, enum, and object/array structure;
    keywords apply to their own kind of value only, as in JSON Schema), one line each, `where` naming the
    argument. Recursion follows the value, whose depth parsing bounds."""
    if not isinstance(schema, dict):
        return []
    name = f"'{where}'" if where else "the arguments"
    if "type" in schema and not _has_type(value, schema["type"]):
        return [f"{name} should be {_type_names(schema['type'])}, got {json.dumps(value, ensure_ascii=False)}"]
    options = schema.get("enum")
    if isinstance(options, list) and not any(values_equal(option, value) for option in options):
        shown = json.dumps(options, ensure_ascii=False)
        return [f"{name} = {json.dumps(value, ensure_ascii=False)} is not one of {shown}"]
    if isinstance(value, dict):
        return _object_problems(value, schema, where)
    if isinstance(value, list | tuple):
        return [
            problem
            for i, item in enumerate(value)
            for problem in _value_problems(item, schema.get("items"), f"{where}[{i}]")
        ]
    return []


def call_problems(call: dict[str, Any], tools: Sequence[dict[str, Any]]) -> list[str]:
    """Why a call does not fit the tool schemas, one line each (unknown name, missing required argument,
    wrong type, value outside the enum); empty for a valid call. `fcloop.chat` shows them to the user."""
    if not isinstance(call, dict):
        return ["the call is not an object"]
    definition = _tool_definition(call.get("name"), tools)
    if definition is None:
        return [f"unknown function {json.dumps(call.get('name'), ensure_ascii=False)}"]
    arguments = _arguments_of(call)
    if not isinstance(arguments, dict):
        return ["the arguments are not an object"]
    return _value_problems(arguments, definition.get("parameters"), "")


def call_is_schema_valid(call: dict[str, Any], tools: Sequence[dict[str, Any]]) -> bool:
    """The call names a given tool and its arguments fit that tool's `parameters` schema (`call_problems`
    finds nothing).

    Extra arguments are invalid only where the schema says "additionalProperties": false (JSON Schema's
    default allows them). A tool without `parameters` accepts any arguments.
    """
    return not call_problems(call, tools)


# ---------------------------------------------------------------------------------------------------------
# Scoring cases


@dataclass(frozen=True)
class CaseScore:
    expected: ParsedOutput
    generated: ParsedOutput
    match: CallMatch
    schema_valid_calls: int
    """How many of the generated calls (those that parsed) fit the tool schemas."""

    @property
    def expects_call(self) -> bool:
        return bool(self.expected.calls)

    @property
    def decision_correct(self) -> bool:
        """Same choice between calling a tool and answering in text; a call that fails to parse is a call."""
        return self.expects_call == self.generated.tried_to_call

    @property
    def exact_match(self) -> bool:
        """All expected calls exactly, nothing more, and nothing that failed to parse. With no call
        expected: the output makes no call (and attempts none)."""
        return self.match.is_exact and not self.generated.parse_failed


def score_case(expected_text: str, generated_text: str, tools: Sequence[dict[str, Any]]) -> CaseScore:
    """Score one generated assistant text against the expected one. Raises ValueError when the EXPECTED text
    has a tool call that does not parse: the reference is broken, and no score would mean anything."""
    expected = parse_assistant_output(expected_text)
    if expected.parse_failed:
        raise ValueError(f"the expected text has a tool call that does not parse: {expected_text[:200]!r}")
    generated = parse_assistant_output(generated_text)
    return CaseScore(
        expected=expected,
        generated=generated,
        match=match_calls(expected.calls, generated.calls),
        schema_valid_calls=sum(call_is_schema_valid(call, tools) for call in generated.calls),
    )


def _fraction(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def aggregate(scores: Sequence[CaseScore]) -> dict[str, float | int | None]:
    """The metrics over a list of cases. Each is a fraction in [0, 1], or None when its denominator is 0:

    - decision_accuracy: cases whose output decides like the expected one (call vs text) / all cases.
    - call_exact_match: cases with `CaseScore.exact_match` / all cases.
    - name_accuracy: expected calls paired with a same-name generated call / all expected calls (micro: a case
      with three expected calls weighs three times a case with one).
    - argument_accuracy: name-paired expected calls whose whole arguments are equal / name-paired expected calls.
    - parse_failure_rate: cases whose output has a tool_call block that does not parse (or unbalanced tags)
      / all cases.
    - schema_valid_rate: generated calls (parsed) that fit the schemas / all generated calls (parsed).
    - think_before_call_rate: cases whose output has a thought before its first call / cases whose output
      has at least one (parsed) call.
    - right_no_call, right_one_call, right_several_calls: `call_exact_match` within the cases that expect no
      call, exactly one call, and two or more: a run's before/after table reads the skill per kind of request
      there, where the mean over all cases can fall only because the mix changed what the model gets wrong.
    - n: the number of cases.
    """
    name_matched = sum(score.match.name_matches for score in scores)
    calling = [score for score in scores if score.generated.calls]
    by_kind: dict[str, list[CaseScore]] = {"no_call": [], "one_call": [], "several_calls": []}
    for score in scores:
        expected = score.match.expected_count
        by_kind["no_call" if expected == 0 else "one_call" if expected == 1 else "several_calls"].append(score)
    return {
        "decision_accuracy": _fraction(sum(score.decision_correct for score in scores), len(scores)),
        "call_exact_match": _fraction(sum(score.exact_match for score in scores), len(scores)),
        "name_accuracy": _fraction(name_matched, sum(score.match.expected_count for score in scores)),
        "argument_accuracy": _fraction(sum(score.match.exact_matches for score in scores), name_matched),
        "parse_failure_rate": _fraction(sum(score.generated.parse_failed for score in scores), len(scores)),
        "schema_valid_rate": _fraction(
            sum(score.schema_valid_calls for score in scores), sum(score.match.actual_count for score in scores)
        ),
        "think_before_call_rate": _fraction(sum(score.generated.think_before_call for score in calling), len(calling)),
        **{
            f"right_{kind}": _fraction(sum(score.exact_match for score in group), len(group))
            for kind, group in by_kind.items()
        },
        "n": len(scores),
    }


# ---------------------------------------------------------------------------------------------------------
# Predictions files


def _tools_of(record: dict[str, Any]) -> list[Any]:
    tools = record.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools)
    if not isinstance(tools, list):
        raise ValueError("'tools' must be a list of tool schemas, or a JSON string of one")
    return tools


def _score_line(line: bytes) -> CaseScore:
    record = json.loads(line.decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for key in ("expected", "generated"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"'{key}' must be a string")
    return score_case(record["expected"], record["generated"], _tools_of(record))


def score_predictions_file(path: str | Path) -> dict[str, float | int | None]:
    """Aggregate metrics of a JSONL file of {"id", "tools", "expected", "generated"} objects (blank lines are
    skipped). A bad line raises ValueError naming the file and the line (1-based)."""
    path = Path(path)
    scores = []
    # Bytes, so that even invalid UTF-8 is reported with its line number.
    with path.open("rb") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                scores.append(_score_line(line))
            except ValueError as error:
                raise ValueError(f"{path}: line {line_number}: {error}") from error
    return aggregate(scores)
