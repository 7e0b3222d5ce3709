"""BFCL's cases (`fcloop.data.bfcl_cases`) scored by BFCL's AST rules, and the evaluation that generates them.

Each case's tools are the question's function docs turned into JSON Schema (BFCL writes `dict` for objects
and Python type names), rendered into the same Gemma prompt as training data with tools. The generated
answer is read by `fcloop.evaluation.scoring.parse_assistant_output` and checked by BFCL's rules, written here:

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

import re
from collections.abc import Callable, Sequence
from typing import Any

from fcloop.data.bfcl_cases import BfclCase, as_options, reference_value
from fcloop.data.gemma_format import END_OF_TURN, render
from fcloop.evaluation.scoring import parse_assistant_output

# Characters BFCL's string comparison ignores.
IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")


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
    given = [option for option in as_options(options) if option != ""]
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


def _may_omit(options: Any) -> bool:
    return "" in as_options(options)


def any_option_matches(value: Any, options: Any) -> bool:
    return any(value_matches(value, option) for option in as_options(options) if option != "")


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
    should_stop: Callable[[], bool] | None = None,
    constrain_calls: bool = False,
) -> tuple[dict[str, float | int | None], list[dict[str, Any]]]:
    """Generate an answer for every case whose prompt fits and judge it: (metrics of `bfcl_metrics`,
    records {"id", "category", "prompt_tokens", "too_long", "expected", "generated", "correct", "error"}
    in case order). A case whose prompt is longer than `max_prompt_tokens` is not generated and is wrong.
    `should_stop`: as `fcloop.evaluation.generation.generate` takes it (GenerationStopped). `constrain_calls`:
    calls are held to each case's tools while they are written; the metrics then count what that changed."""
    # Here, so that reading sources and the rules need no torch.
    from fcloop.evaluation.constrained import ConstraintCounts, constraint_metrics
    from fcloop.evaluation.generation import generate

    prompts = [prompt_text(case, think_instruction) for case in cases]
    lengths = [_token_count(tokenizer, prompt) for prompt in prompts]
    fitting = [index for index, length in enumerate(lengths) if length <= max_prompt_tokens]
    fitting_prompts = [prompts[i] for i in fitting]
    counts = ConstraintCounts()
    texts = generate(
        model, tokenizer, fitting_prompts, max_new_tokens, batch_size, device, synced_ranks, progress, should_stop,
        tools=[cases[i].prompt().tools for i in fitting] if constrain_calls else None, constraint_counts=counts,
    )  # fmt: skip
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
    metrics = bfcl_metrics(records)
    if constrain_calls:
        metrics |= constraint_metrics(counts, "bfcl/")
    return metrics, records
