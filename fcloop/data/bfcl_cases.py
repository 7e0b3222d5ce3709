"""BFCL's question and answer files read into cases with JSON Schema tools (scored in fcloop.evaluation.bfcl).

A source `bfcl:PATH[@N]` names a BFCL question file `BFCL_v4_<category>.json` (one JSON object per line:
id, question, function) whose answers are in `possible_answer/BFCL_v4_<category>.json` beside it: the
layout of the `bfcl-eval` package's `data/` folder (`pip install --no-deps bfcl-eval` brings the files
without the package's API clients). `bfcl:<category>[@N]` finds that folder in the installed package.
`@N` keeps a fixed sample of N cases: those whose ids have the smallest SHA-256 hashes, in file order. It
depends on nothing but the ids, so it is the same on every machine and for every run.seed, and a smaller
sample is part of a larger one.


Each case's tools are the question's function docs turned into JSON Schema (BFCL writes `dict` for objects
and Python type names).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcloop.data.conversation import Conversation, Message
from fcloop.data.gemma_format import tool_call_text
from fcloop.data.readers import SourceError

PREFIX = "bfcl:"
FILE_PATTERN = re.compile(r"BFCL_v\d+_(?P<category>[a-z_]+)\.json")
ANSWERS_FOLDER = "possible_answer"
# The single-turn categories BFCL scores by AST: one question, function docs, acceptable answers.
CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
)
ROLES = {"system", "user", "assistant"}

# BFCL's type names -> JSON Schema's, for the prompt. "any" becomes "string", as BFCL's own conversion to
# OpenAI tools does (and as its checker expects).
SCHEMA_TYPES = {
    "dict": "object",
    "object": "object",
    "float": "number",
    "number": "number",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
    "any": "string",
}


# ---------------------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class BfclCase:
    id: str
    """BFCL's id, e.g. `simple_python_12`."""
    category: str
    """From the file name: `BFCL_v4_<category>.json`."""
    messages: tuple[Message, ...]
    """The question's messages (the first and only turn of a single-turn case)."""
    functions: tuple[dict[str, Any], ...]
    """The function docs as BFCL gives them (what the checker reads)."""
    ground_truth: tuple[dict[str, dict[str, list[Any]]], ...]
    """One {function name: {parameter: acceptable values}} per expected call; empty for irrelevance."""

    @property
    def expects_no_call(self) -> bool:
        return "irrelevance" in self.category

    def prompt(self) -> Conversation:
        """The conversation the model answers: the question with the function docs as JSON Schema tools."""
        tools = tuple(function_tool(function) for function in self.functions)
        return Conversation(messages=self.messages, tools=tools, source=f"{PREFIX}{self.category}")

    def reference_text(self) -> str:
        """The expected answer written as training data writes calls: each expected call with its first
        acceptable value per parameter (parameters whose only acceptable value is "omitted" left out)."""
        return "\n".join(
            tool_call_text(name, reference_arguments(parameters))
            for call in self.ground_truth
            for name, parameters in call.items()
        )


def as_options(options: Any) -> list[Any]:
    return options if isinstance(options, list) else [options]


def reference_value(option: Any) -> Any:
    """An acceptable value written out: a dict option's keys take their first acceptable value each."""
    if isinstance(option, dict):
        return reference_arguments(option)
    if isinstance(option, list | tuple):
        return [reference_value(item) for item in option]
    return option


def reference_arguments(acceptable: dict[str, Any]) -> dict[str, Any]:
    arguments = {}
    for parameter, options in acceptable.items():
        given = [option for option in as_options(options) if option != ""]
        if given:
            arguments[parameter] = reference_value(given[0])
    return arguments


def is_bfcl_source(source: str) -> bool:
    return source.startswith(PREFIX)


def split_sources(sources: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(conversation sources, BFCL sources), each in the given order."""
    return tuple(s for s in sources if not is_bfcl_source(s)), tuple(s for s in sources if is_bfcl_source(s))


def installed_data_folder() -> Path | None:
    """The installed bfcl-eval package's data/ folder, found without importing the package."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def parse_source(source: str) -> tuple[Path, int]:
    """`bfcl:PATH[@N]` or `bfcl:CATEGORY[@N]` -> (question file, sample size; 0 means every case)."""
    spec = source.removeprefix(PREFIX)
    sample = 0
    head, at, count = spec.rpartition("@")
    if at and count.isdigit():
        spec, sample = head, int(count)
        if sample == 0:
            raise SourceError(f"{source}: the sample size after '@' must be at least 1")
    if spec in CATEGORIES:
        folder = installed_data_folder()
        if folder is None:
            raise SourceError(
                f"{source}: the bfcl-eval package is not installed to find {spec!r} in; install its data with "
                f"`pip install --no-deps bfcl-eval`, or give the path of a BFCL_v4_<category>.json file"
            )
        return folder / f"BFCL_v4_{spec}.json", sample
    return Path(spec), sample


def category_of(path: Path, source: str) -> str:
    match = FILE_PATTERN.fullmatch(path.name)
    if match is None:
        raise SourceError(
            f"{source}: {path.name!r} is not named like a BFCL question file (BFCL_v4_<category>.json); a "
            f"category name alone is one of {', '.join(CATEGORIES)}"
        )
    category = match["category"]
    if category not in CATEGORIES:
        raise SourceError(
            f"{source}: category {category!r} is not a single-turn AST category; supported: {', '.join(CATEGORIES)}"
        )
    return category


def _read_json_lines(path: Path, source: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"{source}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"{source}: cannot read {path}: {error}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise SourceError(f"{path}: line {number}: not JSON: {error}") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise SourceError(f"{path}: line {number}: not a JSON object with a string 'id'")
        rows.append((number, row))
    if not rows:
        raise SourceError(f"{source}: {path} holds no cases")
    return rows


def _messages(question: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(question, list) or len(question) != 1 or not isinstance(question[0], list):
        raise SourceError(f"{where}: 'question' must hold exactly one turn (a list of messages)")
    messages = []
    for message in question[0]:
        well_formed = isinstance(message, dict) and isinstance(message.get("content"), str)
        if not well_formed or message.get("role") not in ROLES:
            raise SourceError(f"{where}: each message needs a role among {sorted(ROLES)} and a string content")
        messages.append(Message(role=message["role"], content=message["content"]))
    if not messages or messages[-1].role != "user":
        raise SourceError(f"{where}: the question must end with a user message")
    return tuple(messages)


def _functions(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    # An empty list is a case with no tools at all (live_irrelevance has some).
    if not isinstance(value, list):
        raise SourceError(f"{where}: 'function' must be a list of function docs")
    for function in value:
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise SourceError(f"{where}: every function doc needs a string 'name'")
        parameters = function.get("parameters", {})
        if not isinstance(parameters, dict) or not isinstance(parameters.get("properties", {}), dict):
            raise SourceError(f"{where}: function {function['name']!r}: 'parameters' must be an object schema")
    return tuple(value)


def _ground_truth(value: Any, where: str) -> tuple[dict[str, dict[str, list[Any]]], ...]:
    if not isinstance(value, list) or not value:
        raise SourceError(f"{where}: 'ground_truth' must be a non-empty list of calls")
    for call in value:
        if not (isinstance(call, dict) and len(call) == 1 and all(isinstance(p, dict) for p in call.values())):
            raise SourceError(f"{where}: every ground-truth call must be {{name: {{parameter: [values]}}}}")
        for parameter, options in next(iter(call.values())).items():
            if not isinstance(options, list):
                raise SourceError(f"{where}: acceptable values of {parameter!r} must be a list")
    return tuple(value)


def sample_ids(ids: Sequence[str], size: int) -> set[str]:
    """The `size` ids with the smallest SHA-256 hashes: a fixed sample that depends on the ids alone."""
    return set(sorted(ids, key=lambda case_id: hashlib.sha256(case_id.encode("utf-8")).hexdigest())[:size])


def load_source(source: str) -> list[BfclCase]:
    """Every case of one `bfcl:` source (or its fixed sample), in file order."""
    path, sample = parse_source(source)
    category = category_of(path, source)
    rows = _read_json_lines(path, source)
    answers: dict[str, Any] = {}
    if "irrelevance" not in category:
        answer_path = path.parent / ANSWERS_FOLDER / path.name
        answers = {row["id"]: (number, row) for number, row in _read_json_lines(answer_path, source)}
    if sample > len(rows):
        raise SourceError(f"{source}: asks for {sample} cases, but {path} has only {len(rows)}")
    kept = sample_ids([row["id"] for _, row in rows], sample) if sample else None
    cases = []
    for number, row in rows:
        if kept is not None and row["id"] not in kept:
            continue
        where = f"{path}: line {number} ({row['id']})"
        ground_truth: tuple[dict[str, dict[str, list[Any]]], ...] = ()
        if "irrelevance" not in category:
            if row["id"] not in answers:
                raise SourceError(f"{where}: no answer with this id in {path.parent / ANSWERS_FOLDER / path.name}")
            answer_number, answer = answers[row["id"]]
            answer_where = f"{path.parent / ANSWERS_FOLDER / path.name}: line {answer_number} ({row['id']})"
            ground_truth = _ground_truth(answer.get("ground_truth"), answer_where)
        cases.append(
            BfclCase(
                id=row["id"],
                category=category,
                messages=_messages(row.get("question"), where),
                functions=_functions(row.get("function"), where),
                ground_truth=ground_truth,
            )
        )
    return cases


def load_sources(sources: Sequence[str]) -> list[BfclCase]:
    """The cases of every `bfcl:` source, in order; a case id given twice is an error (it would count twice)."""
    cases, seen = [], set()
    for source in sources:
        for case in load_source(source):
            if case.id in seen:
                raise SourceError(f"{source}: case {case.id} is already in an earlier bfcl source")
            seen.add(case.id)
            cases.append(case)
    return cases


# ---------------------------------------------------------------------------------------------------------
# Function docs -> JSON Schema tools


def json_schema(schema: Any) -> Any:
    """A BFCL parameter schema as JSON Schema: BFCL type names mapped (`dict` -> `object`, `float` ->
    `number`, `tuple` -> `array`, `any` -> `string`), at every depth; other keys kept as written."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            converted[key] = SCHEMA_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            converted[key] = {name: json_schema(item) for name, item in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            converted[key] = json_schema(value)
        else:
            converted[key] = value
    return converted


def function_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function doc as the `{"type": "function", "function": {...}}` tool training data carries."""
    body = {key: value for key, value in function.items() if key != "parameters"}
    if "parameters" in function:
        body["parameters"] = json_schema(function["parameters"])
    return {"type": "function", "function": body}
