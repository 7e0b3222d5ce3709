"""BFCL (the Berkeley Function Calling Leaderboard) as an eval source, scored by BFCL's AST rules.

A source `bfcl:PATH[@N]` names a BFCL question file `BFCL_v4_<category>.json` (one JSON object per line:
id, question, function) whose answers are in `possible_answer/BFCL_v4_<category>.json` beside it: the
layout of the `bfcl-eval` package's `data/` folder (`pip install --no-deps bfcl-eval` brings the files
without the package's API clients). `bfcl:<category>[@N]` finds that folder in the installed package.
`@N` keeps a fixed sample of N cases: those whose ids have the smallest SHA-256 hashes, in file order. It
depends on nothing but the ids, so it is the same on every machine and for every run.seed, and a smaller
sample is part of a larger one.

Each case's tools are the question's function docs turned into JSON Schema (BFCL writes `dict` for objects
and Python type names), rendered into the same Gemma prompt as training data with tools. The generated
answer is read by `fcloop.scoring.parse_assistant_output` and checked by BFCL's rules, written here:

- irrelevance categories: right when the answer calls nothing and attempts no call;
- every other category: the answer's calls parse, there are exactly as many as expected, and they pair
  one to one with the expected calls in any order (a full matching, so the order of the model's calls never
  matters), each pair passing `check_call`: the same function name, every required parameter present, no
  parameter outside the function doc or the answer, every answer parameter given unless `""` is among its
  acceptable values, each value of the declared type and among the acceptable values.

Value rules (BFCL's): strings match after `normalize_string` (lowercase; spaces and `,./-_*^` removed;
`'` read as `"`), so "April 1, 2024" matches "april 1 2024". An `integer` takes only ints (not 1.0, not
True); a `float` takes ints too. Lists match element by element in order; a dict matches an acceptable dict
whose values are themselves lists of acceptable values. Where BFCL's answer holds a value of another type
than the function doc declares (a variable name written as a string), a value of the answer's type is
accepted, as BFCL does. Where fcloop differs from BFCL's own checker: a `<tool_call>` that does not parse
counts as an attempted call (BFCL reads undecodable output as "no call" in irrelevance); nested list items
and dict values are type-checked at every depth (BFCL checks one level); and parallel calls are paired by a
full matching, where BFCL's greedy pairing fails a right answer when one call fits two expected ones.
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

from fcloop.conversation import Conversation, Message
from fcloop.gemma_format import END_OF_TURN, render, tool_call_text
from fcloop.readers import SourceError
from fcloop.scoring import parse_assistant_output

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
# Characters BFCL's string comparison ignores.
IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")


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


# ---------------------------------------------------------------------------------------------------------
# The rules


def normalize_string(text: str) -> str:
    """BFCL's string normalization: spaces and `,./-_*^` removed, lowercase, `'` read as `"`."""
    return IGNORED_IN_STRINGS.sub("", text).lower().replace("'", '"')


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_CHECKS = {
    "string": lambda value: isinstance(value, str),
    "any": lambda value: isinstance(value, str),  # BFCL's checker reads "any" as a string
    "integer": _is_integer,
    "float": _is_number,  # BFCL converts an int to float where a float is declared
    "number": _is_number,
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list | tuple),
    "tuple": lambda value: isinstance(value, list | tuple),
    "dict": lambda value: isinstance(value, dict),
    "object": lambda value: isinstance(value, dict),
}


def type_error(value: Any, schema: Any, path: str) -> str | None:
    """Why `value` does not have the type `schema` declares (checked through list items and the declared
    properties of dicts), or None. An unknown or missing type constrains nothing."""
    if not isinstance(schema, dict):
        return None
    declared = schema.get("type")
    check = _TYPE_CHECKS.get(declared) if isinstance(declared, str) else None
    if check is None:
        return None
    if not check(value):
        return f"{path}: expected {declared}, got {type(value).__name__} {value!r}"
    if isinstance(value, list | tuple):
        for position, item in enumerate(value):
            if problem := type_error(item, schema.get("items"), f"{path}[{position}]"):
                return problem
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        for key, item in value.items():
            if problem := type_error(item, schema["properties"].get(key), f"{path}.{key}"):
                return problem
    return None


def _answer_type_differs(value: Any, options: Any, schema: Any) -> bool:
    """BFCL's answers sometimes hold another type than the doc declares (a variable name written as a
    string, a null, strings in a list of integers): then a value of the answer's own type is taken as meant.
    The answer is its first acceptable value that is not "omitted", as BFCL reads it."""
    given = [option for option in _as_options(options) if option != ""]
    if not given or type(value) is not type(given[0]):
        return False
    return type_error(reference_value(given[0]), schema, "") is not None


def value_matches(value: Any, option: Any) -> bool:
    """Whether `value` equals one acceptable value. A dict option maps each key to its own list of
    acceptable values; a list option matches element by element; strings after `normalize_string`;
    numbers by value (ints and floats compare equal; bools only with bools)."""
    if isinstance(option, dict):
        if not isinstance(value, dict):
            return False
        if any(key not in option or not any_option_matches(item, option[key]) for key, item in value.items()):
            return False
        return all(key in value or _may_omit(options) for key, options in option.items())
    if isinstance(option, list | tuple):
        return isinstance(value, list | tuple) and len(value) == len(option) and all(map(value_matches, value, option))
    if isinstance(option, str):
        return isinstance(value, str) and normalize_string(value) == normalize_string(option)
    if isinstance(option, bool) or isinstance(value, bool):
        return isinstance(option, bool) and isinstance(value, bool) and option == value
    if _is_number(option):
        return _is_number(value) and value == option
    return value == option  # None


def _as_options(options: Any) -> list[Any]:
    return options if isinstance(options, list) else [options]


def _may_omit(options: Any) -> bool:
    return "" in _as_options(options)


def any_option_matches(value: Any, options: Any) -> bool:
    return any(value_matches(value, option) for option in _as_options(options) if option != "")


def check_call(call: dict[str, Any], function: dict[str, Any], expected: dict[str, dict[str, list[Any]]]) -> str | None:
    """Why one parsed call {"name", "arguments"} fails BFCL's rules against one expected call
    {name: {parameter: acceptable values}} whose function doc is `function`, or None when it passes."""
    ((name, acceptable),) = expected.items()
    if call.get("name") != name:
        return f"wrong function: {call.get('name')!r} instead of {name!r}"
    arguments = call.get("arguments")
    if not isinstance(arguments, dict):
        return "arguments are not an object"
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    for required in parameters.get("required") or []:
        if required not in arguments:
            return f"missing required parameter {required!r}"
    for parameter, value in arguments.items():
        if parameter not in properties or parameter not in acceptable:
            return f"unexpected parameter {parameter!r}"
        options = acceptable[parameter]
        problem = type_error(value, properties[parameter], parameter)
        if problem and not _answer_type_differs(value, options, properties[parameter]):
            return f"wrong type: {problem}"
        if not any_option_matches(value, options):
            shown = [option for option in options if option != ""]
            return f"wrong value for {parameter!r}: {value!r} is not among {shown!r}"
    for parameter, options in acceptable.items():
        if parameter not in arguments and not _may_omit(options):
            return f"missing parameter {parameter!r} (the answer does not allow omitting it)"
    return None


def _function_doc(functions: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    return next((function for function in functions if function.get("name") == name), {})


def _has_full_matching(fits: list[list[bool]]) -> bool:
    """Whether every expected call (row) pairs with its own generated call (column): bipartite matching by
    augmenting paths. Greedy pairing could miss a pairing that exists when one call fits two answers."""
    owner: dict[int, int] = {}

    def assign(row: int, visited: set[int]) -> bool:
        for column, fit in enumerate(fits[row]):
            if fit and column not in visited:
                visited.add(column)
                if column not in owner or assign(owner[column], visited):
                    owner[column] = row
                    return True
        return False

    return all(assign(row, set()) for row in range(len(fits)))


def check_calls(case: BfclCase, calls: Sequence[dict[str, Any]], parse_failed: bool) -> str | None:
    """Why the generated calls fail the case, or None when the answer is right."""
    if case.expects_no_call:
        if calls or parse_failed:
            return "called a function where none fits"
        return None
    if parse_failed:
        return "a tool call does not parse"
    if len(calls) != len(case.ground_truth):
        return f"{len(calls)} calls instead of {len(case.ground_truth)}"
    problems = [
        [check_call(call, _function_doc(case.functions, next(iter(expected))), expected) for call in calls]
        for expected in case.ground_truth
    ]
    if _has_full_matching([[problem is None for problem in row] for row in problems]):
        return None
    if len(calls) == 1:
        return problems[0][0]
    return (
        "; ".join(
            f"expected call {index} ({next(iter(expected))}): " + " | ".join(str(p) for p in row)
            for index, (expected, row) in enumerate(zip(case.ground_truth, problems, strict=True))
            if all(problem is not None for problem in row)
        )
        or "no one-to-one pairing of the calls with the expected ones"
    )


def check_generated(case: BfclCase, generated: str) -> str | None:
    """Why a generated assistant text fails the case, or None when it is right."""
    parsed = parse_assistant_output(generated)
    return check_calls(case, parsed.calls, parsed.parse_failed)


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
        given = [option for option in _as_options(options) if option != ""]
        if given:
            arguments[parameter] = reference_value(given[0])
    return arguments


# ---------------------------------------------------------------------------------------------------------
# Evaluation: prompts -> generations -> verdicts -> metrics


def describe(cases: Sequence[BfclCase]) -> str:
    """One line for the log: how many cases of each category."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.category] = counts.get(case.category, 0) + 1
    return f"BFCL cases: {len(cases)} (" + ", ".join(f"{name} {count}" for name, count in counts.items()) + ")"


def prompt_text(case: BfclCase, think_instruction: str) -> str:
    return render(case.prompt(), think_instruction, add_generation_prompt=True).text


def prompt_limit(model, max_seq_len: int) -> int:
    """The longest prompt a case may have: data.max_seq_len, or the model's context where that is shorter."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(max_seq_len, context) if isinstance(context, int) and context > 0 else max_seq_len


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _shown(ids: Sequence[str]) -> str:
    return ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")


def warnings_for(
    cases: Sequence[BfclCase], tokenizer, think_instruction: str, max_prompt_tokens: int, max_new_tokens: int
) -> list[str]:
    """What to tell the user before generating: cases whose prompt is too long (they count as wrong), and
    cases whose reference answer needs more than max_new_tokens (a right answer would be cut off)."""
    too_long = [
        case.id for case in cases if _token_count(tokenizer, prompt_text(case, think_instruction)) > max_prompt_tokens
    ]
    cut_off = [
        case.id
        for case in cases
        if not case.expects_no_call and _token_count(tokenizer, case.reference_text() + END_OF_TURN) > max_new_tokens
    ]
    warnings = []
    if too_long:
        warnings.append(
            f"warning: {len(too_long)} of {len(cases)} BFCL cases have prompts longer than {max_prompt_tokens} "
            f"tokens (data.max_seq_len or the model's context) ({_shown(too_long)}); they count as wrong."
        )
    if cut_off:
        warnings.append(
            f"warning: {len(cut_off)} of {len(cases)} BFCL cases expect calls longer than eval.max_new_tokens = "
            f"{max_new_tokens} tokens ({_shown(cut_off)}); generation stops before their end. Raise "
            f"eval.max_new_tokens."
        )
    return warnings


def bfcl_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float | int | None]:
    """`bfcl/accuracy` (right cases / all cases, every category together), `bfcl/<category>` per category,
    the counts `bfcl/n` and `bfcl/<category>/n`, and `bfcl/too_long` (cases counted wrong because their
    prompt does not fit)."""
    metrics: dict[str, float | int | None] = {
        "bfcl/accuracy": sum(r["correct"] for r in records) / len(records) if records else None,
        "bfcl/n": len(records),
        "bfcl/too_long": sum(r["too_long"] for r in records),
    }
    for category in dict.fromkeys(r["category"] for r in records):
        chosen = [r for r in records if r["category"] == category]
        metrics[f"bfcl/{category}"] = sum(r["correct"] for r in chosen) / len(chosen)
        metrics[f"bfcl/{category}/n"] = len(chosen)
    return metrics


def evaluate_bfcl(
    model,
    tokenizer,
    cases: Sequence[BfclCase],
    think_instruction: str,
    max_new_tokens: int,
    batch_size: int,
    device,
    max_prompt_tokens: int,
    synced_ranks: bool = False,
    progress: bool = False,
) -> tuple[dict[str, float | int | None], list[dict[str, Any]]]:
    """Generate an answer for every case whose prompt fits and judge it: (metrics of `bfcl_metrics`,
    records {"id", "category", "prompt_tokens", "too_long", "expected", "generated", "correct", "error"}
    in case order). A case whose prompt is longer than `max_prompt_tokens` is not generated and is wrong."""
    from fcloop.generation import generate  # here, so that reading sources and the rules need no torch

    prompts = [prompt_text(case, think_instruction) for case in cases]
    lengths = [_token_count(tokenizer, prompt) for prompt in prompts]
    fitting = [index for index, length in enumerate(lengths) if length <= max_prompt_tokens]
    texts = generate(
        model, tokenizer, [prompts[i] for i in fitting], max_new_tokens, batch_size, device, synced_ranks, progress
    )
    generated: dict[int, str] = dict(zip(fitting, texts, strict=True))
    records = []
    for index, case in enumerate(cases):
        too_long = index not in generated
        error = (
            f"prompt of {lengths[index]} tokens is longer than {max_prompt_tokens}"
            if too_long
            else check_generated(case, generated[index])
        )
        records.append(
            {
                "id": case.id,
                "category": case.category,
                "prompt_tokens": lengths[index],
                "too_long": too_long,
                "expected": case.reference_text(),
                "generated": generated.get(index),
                "correct": error is None,
                "error": error,
            }
        )
    return bfcl_metrics(records), records
