"""Deterministic generator of the demo's function-calling data: many tools, each one read, not remembered.

Every conversation offers its own freshly built tool list (1-5 schemas, the right one at a random place among
similar ones), so a model cannot learn a fixed set of tools; it has to read the names, parameter names, types
and descriptions in front of it. Tools are composed from the concepts in `vocabulary.py` (domain x action x
object x parameters) with varied names (`finance.loan_payment.calculate`, `calcLoanPayment`, ...), snake_case
or camelCase parameter names, type spellings (`number`/`float`, `object`/`dict`), optional parameters with
and without defaults, enums, arrays and nested objects. Requests state the values in words ("five", "$25,000",
"4.5%", "March 3, 2026") and the call carries them typed as the schema says (5, 25000, 0.045 or 4.5, "2026-03-03").
Kinds: one call, parallel calls (one tool several times, or two tools), and no call: a request the tools offered
cannot serve (half of them near misses: tools of the same domain, or one that does another thing with the same
object), or a question no tool is needed for (`questions.py`: drawn and computed, offered beside tools of a
nearby domain). Every thought restates what is asked (one numbered item per result wanted), then decides in one
sentence: which tool serves which item, or that none does.

Rows use the hermes layout with the tools in a `tools` column (no system turn), so the prompt is the project's
own tools preamble (`fcloop.data.gemma_format.tools_prompt`), the one any tool list is rendered with at eval time.
The eval split uses concepts that train never shows. Every choice comes from a seeded `random.Random`, so a
given seed always produces byte-identical files.

Usage: ``python -m fcloop.data.demo_data.generate [--out-dir DIR] [--seed N]``
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fcloop.data.demo_data.questions import draw_question
from fcloop.data.demo_data.vocabulary import (
    CHATTER_AFTER,
    CHATTER_BEFORE,
    CONCEPTS,
    PARAMS,
    PLACES,
    US_CITIES,
    Concept,
    Param,
)

Row = dict[str, Any]
Turn = dict[str, str]
Tool = dict[str, Any]

TRAIN_SIZE = 1200
EVAL_SIZE = 48
# Every concept whose index is a multiple of this is kept for eval: eval asks for tools of kinds train never saw.
EVAL_CONCEPT_EVERY = 8
# About 900 tokens at most: with the preamble, every conversation fits the demo's 1024-token rows whole.
MAX_CHARS = 2600
# About 1 in 3 answers make no call, as BFCL's irrelevance category and real tool use ask of a model; with fewer
# (mixes of 16% + 8% and 15% + 13% were tried) a 270M model calls a tool for most requests that want none.
KIND_SHARES = {"single": 0.37, "parallel": 0.20, "parallel_mixed": 0.11, "irrelevant": 0.19, "question": 0.13}
# Of the requests no offered tool serves, this share is a near miss: the tools come from the request's own domain
# (other concepts) and may include one that does another thing with the same object (delete beside get), so the
# decision has to come from what each tool does, not from the domain's words.
NEAR_MISS_SHARE = 0.5
# Concept pairs where one could be argued to serve a request for the other (a room's area from a shape's area):
# never a near miss of each other, so that no row says "no call" where a tool fits even loosely.
SERVE_ALIKE = (
    frozenset({"money_amount", "fx_rate"}),
    frozenset({"clock_time", "time_zone"}),
    frozenset({"shape_area", "room_area"}),
    frozenset({"route_directions", "travel_time"}),
)
# A parallel request with one varying value sometimes lists the values once ("in Denver, Boston and Austin"), as
# people do, instead of a phrase for each ("in Denver, in Boston and in Austin"); the thought still numbers one
# item per value.
# How a request for several calls says its values: a phrase for each call ("each"), the values listed once
# ("listed"; with two varying values, two lists matched in order: "respectively"), or the first call asked in full
# and the rest as "the same" in a second sentence. A list that would not read right (a value with a comma of its
# own, a value repeated in it) falls back to "each".
PARALLEL_FORMS = {"each": 0.35, "listed": 0.5, "the_same": 0.15}
SAME_AGAIN = ("Then do the same {rest}.", "And the same {rest}.", "Also {rest}, please.", "Repeat that {rest}.")
# How many tools a conversation offers (at least as many as it calls): mostly short lists, so that a CPU step
# holds more conversations, but up to five, as in real tool lists.
TOOL_COUNT_WEIGHTS = {1: 0.40, 2: 0.25, 3: 0.20, 4: 0.10, 5: 0.05}
OPTIONAL_IN_SCHEMA = 0.8  # an optional parameter of the concept is in the tool's schema
OPTIONAL_SAID = 0.55  # ... and the user gives a value for it (only then is it in the call, and then always)
# A tool of the same object with another action (create beside search, delete beside get) is offered too:
# the request, not the object's name, picks the function.
SIBLING_SHARE = 0.45
CHATTER_BEFORE_SHARE = 0.3  # the request comes after a sentence of context no tool needs
CHATTER_AFTER_SHARE = 0.2
# Most tools come as {"type": "function", "function": {...}} with JSON Schema type names, the way `bfcl:` eval
# sources and OpenAI-style data give them; the rest as the bare function, or with Python-style type names.
WRAPPED_SHARE = 0.7
JSON_TYPES_SHARE = 0.7

NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
TIMES = {2: "twice", 3: "three times", 4: "four times"}

# ---------------------------------------------------------------------------------------------------------
# Tool schemas: one concept -> many tools
# ---------------------------------------------------------------------------------------------------------

VERB_ALIASES = {
    "calculate": ("calculate", "calc", "compute"),
    "compute": ("compute", "calc", "calculate"),
    "get": ("get", "fetch", "lookup"),
    "search": ("search", "find", "query"),
    "find": ("find", "search", "locate"),
    "estimate": ("estimate", "predict", "calc"),
    "convert": ("convert", "transform"),
    "create": ("create", "new", "make"),
    "book": ("book", "reserve"),
    "list": ("list", "get"),
    "send": ("send", "post"),
    "check": ("check", "verify"),
}
# (type names) per dialect: JSON Schema's, or the Python-flavoured ones many real tool lists use.
DIALECTS = (
    {"object": "object", "number": "number", "array": "array"},
    {"object": "dict", "number": "float", "array": "array"},
)


@dataclass(frozen=True)
class ToolParam:
    """A parameter as one tool has it: its name there, whether it is required, how it types percentages."""

    param: Param
    name: str
    required: bool
    percent_as_fraction: bool
    parts: tuple[ToolParam, ...] = ()
    style: str = ""
    """How this tool spells the value: a city "bare", "state" ("Austin, TX") or "country" ("Lyon, France");
    an enum "as_is", "upper" ("PREMIUM_ECONOMY"), "title" ("Premium Economy") or "kebab"; a flag "boolean" or
    "string" ("true"/"false" as strings)."""


@dataclass(frozen=True)
class BuiltTool:
    concept: Concept
    name: str
    params: tuple[ToolParam, ...]
    schema: Tool


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.capitalize() for word in rest)


def tool_name(rng: random.Random, concept: Concept) -> str:
    verb = rng.choice(VERB_ALIASES.get(concept.verb, (concept.verb,)))
    obj, domain = concept.obj, concept.domain
    version = rng.randint(1, 3)
    styles = (
        f"{verb}_{obj}",
        f"{domain}.{verb}_{obj}",
        f"{obj}.{verb}",
        f"{domain}.{obj}.{verb}",
        camel(f"{verb}_{obj}"),
        f"{domain}_{obj}_{verb}",
        # class paths and versioned services, as REST wrappers and SDKs name them
        f"{domain.capitalize()}Service.{camel(f'{verb}_{obj}')}",
        f"{domain}_api.v{version}.{verb}_{obj}",
        f"{camel(obj)[0].upper()}{camel(obj)[1:]}Client.{verb}",
    )
    return rng.choice(styles)


def _tool_params(rng: random.Random, keys: tuple[str, ...], camel_case: bool) -> tuple[ToolParam, ...]:
    params, used = [], set()
    for key in keys:
        optional = key.endswith("?")
        param = PARAMS[key.rstrip("?")]
        if optional and rng.random() > OPTIONAL_IN_SCHEMA:
            continue
        names = [name for name in param.names if name not in used] or [param.key]
        name = rng.choice(names)
        used.add(name)
        parts = _tool_params(rng, param.kind.parts, camel_case) if param.kind.form == "object" else ()
        tool_param = ToolParam(param, camel(name) if camel_case else name, not optional, rng.random() < 0.5, parts)
        params.append(replace(tool_param, style=_draw_style(rng, param.kind.form)))
    return tuple(params)


STYLES = {
    "city": {"bare": 0.4, "state": 0.3, "country": 0.3},
    "enum": {"as_is": 0.55, "upper": 0.15, "title": 0.15, "kebab": 0.15},
    "flag": {"boolean": 0.8, "string": 0.2},
}


def _draw_style(rng: random.Random, form: str) -> str:
    weights = STYLES.get(form)
    return rng.choices(list(weights), weights=list(weights.values()))[0] if weights else ""


def enum_spelling(value: str, style: str) -> str:
    """How a tool spells the option a user says in plain words."""
    if style == "upper":
        return value.upper().replace(" ", "_").replace("-", "_")
    if style == "title":
        return value.title()
    if style == "kebab":
        return value.replace(" ", "-")
    return value


def city_spelling(city: str, style: str) -> str:
    state, _, country = PLACES[city]
    if style == "state":
        return f"{city}, {state}"
    if style == "country":
        return f"{city}, {country}"
    return city


CITY_DESCRIPTIONS = {
    "bare": ("{d}, e.g. {ex}", "{d} (city name only, e.g. {ex})"),
    "state": ("{d} and state, e.g. {ex}", "{d} in the format 'City, ST', such as {ex}"),
    "country": ("{d} and country, e.g. {ex}", "{d}, written as 'City, Country', for example {ex}"),
}


def _description(rng: random.Random, tool_param: ToolParam) -> str:
    param, text = tool_param.param, tool_param.param.description
    if param.kind.form == "city":
        example_pool = US_CITIES if tool_param.style == "state" else param.kind.pool
        example = city_spelling(rng.choice(example_pool), tool_param.style)
        text = rng.choice(CITY_DESCRIPTIONS[tool_param.style]).format(d=text, ex=example)
    if param.kind.form == "flag" and tool_param.style == "string":
        text += ', "true" or "false"'
    if param.kind.form == "percent":
        text += " as a decimal, e.g. 0.05 for 5%" if tool_param.percent_as_fraction else " in percent, e.g. 5 for 5%"
    if not tool_param.required and param.kind.form == "enum" and rng.random() < 0.5:
        text += f". Default: {enum_spelling(param.kind.pool[0], tool_param.style)}"
    elif not tool_param.required and rng.random() < 0.3:
        text += " (optional)"
    return text + "."


def _json_type(tool_param: ToolParam, dialect: dict[str, str]) -> str:
    form = tool_param.param.kind.form
    if form in ("text", "date", "enum", "city") or (form == "flag" and tool_param.style == "string"):
        return "string"
    if form in ("number", "money", "percent"):
        return dialect["number"]
    simple = {"integer": "integer", "flag": "boolean", "list": "array", "numbers": "array", "object": dialect["object"]}
    return simple[form]


def _param_schema(rng: random.Random, tool_param: ToolParam, dialect: dict[str, str]) -> Tool:
    kind = tool_param.param.kind
    schema: Tool = {"type": _json_type(tool_param, dialect), "description": _description(rng, tool_param)}
    if kind.form == "enum":
        schema["enum"] = [enum_spelling(value, tool_param.style) for value in kind.pool]
    elif kind.form == "flag" and tool_param.style == "string":
        schema["enum"] = ["true", "false"]
    elif kind.form == "list":
        schema["items"] = {"type": "string"}
    elif kind.form == "numbers":
        schema["items"] = {"type": "integer"}
    elif kind.form == "object":
        schema["properties"] = {part.name: _param_schema(rng, part, dialect) for part in tool_param.parts}
        schema["required"] = [part.name for part in tool_param.parts]
    return schema


def build_tool(rng: random.Random, concept: Concept) -> BuiltTool:
    """A fresh tool for `concept`: its name, parameter names, optional parameters and type spellings drawn."""
    name = tool_name(rng, concept)
    params = _tool_params(rng, concept.params, camel_case=rng.random() < 0.3)
    dialect = DIALECTS[0] if rng.random() < JSON_TYPES_SHARE else DIALECTS[1]
    function = {
        "name": name,
        "description": concept.description,
        "parameters": {
            "type": dialect["object"],
            "properties": {p.name: _param_schema(rng, p, dialect) for p in params},
            "required": [p.name for p in params if p.required],
        },
    }
    schema = {"type": "function", "function": function} if rng.random() < WRAPPED_SHARE else function
    return BuiltTool(concept, name, params, schema)


# ---------------------------------------------------------------------------------------------------------
# Values: drawn, said in words, typed as the schema says
# ---------------------------------------------------------------------------------------------------------


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _money(rng: random.Random, low: float, high: float, decimals: int) -> float | int:
    if decimals:
        return round(rng.uniform(low, high), decimals)
    step = 1000 if high >= 100000 else 100 if high >= 5000 else 5
    return rng.randrange(int(low) // step + 1, int(high) // step + 1) * step


def _said_money(rng: random.Random, value: float | int) -> str:
    if isinstance(value, float):
        return f"${value:.2f}"
    return rng.choice((f"${value:,}", f"{value:,} dollars", f"${value}"))


def draw_value(rng: random.Random, tool_param: ToolParam) -> tuple[Any, str]:
    """(the call's value, how the user says it)."""
    kind = tool_param.param.kind
    form = kind.form
    if form == "text":
        value = rng.choice(kind.pool)
        return value, value
    if form == "enum":
        value = rng.choice(kind.pool)
        return enum_spelling(value, tool_param.style), value
    if form == "city":
        city = rng.choice(US_CITIES if tool_param.style == "state" else kind.pool)
        state, state_name, country = PLACES[city]
        # Mostly the bare city, as people say it; sometimes with its state or country, whatever the tool wants.
        said = rng.choices(
            (city, f"{city}, {state_name or country}", f"{city}, {state}" if state else city), (6, 2, 1)
        )[0]
        return city_spelling(city, tool_param.style), said
    if form == "integer":
        number = rng.randint(int(kind.low), int(kind.high))
        spoken = NUMBER_WORDS[number] if 0 <= number < len(NUMBER_WORDS) and rng.random() < 0.35 else str(number)
        return number, spoken
    if form == "number":
        number = _plain_number(round(rng.uniform(kind.low, kind.high), kind.decimals))
        return number, str(number)
    if form == "money":
        amount = _money(rng, kind.low, kind.high, kind.decimals)
        return amount, _said_money(rng, amount)
    if form == "percent":
        percent = _plain_number(round(rng.uniform(kind.low, kind.high), kind.decimals))
        value = round(percent / 100, kind.decimals + 2) if tool_param.percent_as_fraction else percent
        return value, f"{percent}%" if rng.random() < 0.75 else f"{percent} percent"
    if form == "date":
        year, month, day = rng.choice((2025, 2026)), rng.randint(1, 12), rng.randint(1, 28)
        month_name = calendar.month_name[month]
        iso = f"{year}-{month:02d}-{day:02d}"
        return iso, rng.choice((f"{month_name} {day}, {year}", f"{day} {month_name} {year}", iso))
    if form == "flag":
        on = rng.random() < 0.75 or not tool_param.param.off_phrases
        return (("true" if on else "false") if tool_param.style == "string" else on), ""
    if form == "list":
        items = rng.sample(kind.pool, rng.randint(2, 3))
        return items, _join(items)
    if form == "numbers":
        numbers = [rng.randint(1, 99) for _ in range(rng.randint(3, 5))]
        return numbers, _join([str(number) for number in numbers])
    if form == "object":
        drawn = [draw_value(rng, part) for part in tool_param.parts]
        return {part.name: value for part, (value, _) in zip(tool_param.parts, drawn, strict=True)}, ", ".join(
            said for _, said in drawn
        )
    raise ValueError(f"unknown value form {form!r}")


def phrase(rng: random.Random, tool_param: ToolParam, value: Any, said: str) -> str:
    param = tool_param.param
    if param.kind.form == "flag":
        return rng.choice(param.phrases if value in (True, "true") else param.off_phrases)
    return rng.choice(param.phrases).format(v=said)


def listed_phrase(
    rng: random.Random, tool_param: ToolParam, said_values: list[str], worded: bool = False
) -> str | None:
    """One phrase for several values ("in Denver, Boston and Austin"), or None where a list would read as one
    value: a phrase that quotes its value ("with the subject 'A, B and C'" is one subject) or a value with a
    comma of its own ("March 3, 2026", "$25,000", "Lyon, France"). `worded`: only a phrase with a word of its
    own ("in {v}", not "{v}" or "and {v}"), so that two lists side by side can be told apart."""
    if any("," in said for said in said_values):
        return None
    unquoted = [text for text in tool_param.param.phrases if "'{v}'" not in text and '"{v}"' not in text]
    if worded:
        unquoted = [text for text in unquoted if set(text.replace("{v}", "").split()) - {"and"}]
    return rng.choice(unquoted).format(v=_join(said_values)) if unquoted else None


# ---------------------------------------------------------------------------------------------------------
# Requests and turns
# ---------------------------------------------------------------------------------------------------------

QUESTION_WORDS = ("what", "how", "when", "where", "which", "who", "do ", "are ", "is ")
LEADS = ("", "", "", "Please ", "Can you ", "Could you ", "I need to ", "I'd like to ", "Help me ", "I want to ")


def _sentence(rng: random.Random, ask: str, body: str) -> str:
    text = f"{ask} {body}".strip()
    if ask.startswith(QUESTION_WORDS):
        return text[0].upper() + text[1:] + "?"
    lead = rng.choice(LEADS)
    text = lead + text
    return text[0].upper() + text[1:] + ("?" if lead in ("Can you ", "Could you ") else rng.choice((".", ".", "!")))


def _joined_phrases(rng: random.Random, phrases: list[str]) -> str:
    if len(phrases) > 2 and rng.random() < 0.3:
        rng.shuffle(phrases)
    return " ".join(phrases) if rng.random() < 0.5 else _join(phrases) if len(phrases) > 1 else "".join(phrases)


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Request:
    """A request's text, the calls that serve it, and what the thought restates in the user's words: the
    thing asked for, the phrases every call shares, and one item per call (the phrases that call alone has)."""

    text: str
    calls: tuple[Call, ...]
    noun: str
    shared: tuple[str, ...]
    items: tuple[str, ...]


def _said_params(rng: random.Random, tool: BuiltTool) -> list[ToolParam]:
    return [p for p in tool.params if p.required or rng.random() < OPTIONAL_SAID]


def draw_distinct(rng: random.Random, tool_param: ToolParam, taken: set[str]) -> tuple[Any, str]:
    """A value not already said in this request (no trip "from Lyon to Lyon", no "CHF into CHF")."""
    for _ in range(50):
        value, said = draw_value(rng, tool_param)
        if not said or said not in taken:
            taken.add(said)
            return value, said
    raise RuntimeError(f"{tool_param.name}: no distinct value left")


def single_request(rng: random.Random, tool: BuiltTool) -> Request:
    """A request for one call of `tool`, and that call."""
    arguments, phrases, taken = {}, [], set()
    for tool_param in _said_params(rng, tool):
        value, said = draw_distinct(rng, tool_param, taken)
        arguments[tool_param.name] = value
        phrases.append(phrase(rng, tool_param, value, said))
    # The item keeps the phrases in the schema's order, before _joined_phrases may shuffle the request's.
    item = ", ".join(phrases)
    text = _sentence(rng, rng.choice(tool.concept.asks), _joined_phrases(rng, list(phrases)))
    return Request(text, (Call(tool.name, arguments),), tool.concept.noun, (), (item,) if item else ())


def parallel_request(rng: random.Random, tool: BuiltTool, count: int) -> Request | None:
    """One request asking `tool` for `count` different values of one or two of its parameters."""
    said = _said_params(rng, tool)
    variable = [p for p in said if p.param.kind.form in ("text", "city", "integer", "number", "money", "date", "enum")]
    if not variable:
        return None
    varying = rng.sample(variable, min(len(variable), rng.choice((1, 1, 2))))
    shared, shared_phrases, taken = {}, [], set()
    for tool_param in said:
        if tool_param not in varying:
            value, spoken = draw_distinct(rng, tool_param, taken)
            shared[tool_param.name] = value
            shared_phrases.append(phrase(rng, tool_param, value, spoken))
    calls, groups, spoken_by_call, seen = [], [], [], set()
    for _ in range(count * 10):
        drawn = [(p, *draw_value(rng, p)) for p in varying]
        key = json.dumps([value for _, value, _ in drawn])
        spoken_values = [spoken for _, _, spoken in drawn]
        if key in seen or len(set(spoken_values)) < len(drawn) or any(spoken in taken for spoken in spoken_values):
            continue
        seen.add(key)
        arguments = {p.name: shared.get(p.name) for p in said}
        arguments.update({p.name: value for p, value, _ in drawn})
        calls.append(Call(tool.name, arguments))
        groups.append(" ".join(phrase(rng, p, value, spoken) for p, value, spoken in drawn))
        spoken_by_call.append(spoken_values)
        if len(calls) == count:
            text = _parallel_text(rng, tool, varying, shared_phrases, groups, spoken_by_call)
            return Request(text, tuple(calls), tool.concept.noun, tuple(shared_phrases), tuple(groups))
    return None


def _parallel_text(
    rng: random.Random,
    tool: BuiltTool,
    varying: list[ToolParam],
    shared_phrases: list[str],
    groups: list[str],
    spoken_by_call: list[list[str]],
) -> str:
    """The request for several calls, in one of the ways people ask for them: a phrase for each call ("in Denver
    and in Boston"), the values listed once ("in Denver, Boston and Austin"), two lists matched in order ("with a
    base of 10 and 15 and a height of 5 and 7, respectively"), or the first call asked in full and the others as
    "the same" in a second sentence."""
    ask = rng.choice(tool.concept.asks)
    form = rng.choices(tuple(PARALLEL_FORMS), weights=tuple(PARALLEL_FORMS.values()))[0]
    if form == "listed" and len(varying) == 1:
        values_said = listed_phrase(rng, varying[0], [spoken for (spoken,) in spoken_by_call])
        if values_said:
            return _sentence(rng, ask, " ".join([*shared_phrases, values_said]))
    # Two lists, each of different values: "on medium and medium level" would read as one value said twice.
    distinct = all(len({spoken[i] for spoken in spoken_by_call}) == len(spoken_by_call) for i in range(len(varying)))
    if form == "listed" and len(varying) == 2 and distinct:
        lists = [
            listed_phrase(rng, p, [spoken[i] for spoken in spoken_by_call], worded=True) for i, p in enumerate(varying)
        ]
        if all(lists):
            return _sentence(rng, ask, " ".join([*shared_phrases, f"{lists[0]} and {lists[1]}, respectively"]))
    if form == "the_same":
        first = _sentence(rng, ask, " ".join([*shared_phrases, groups[0]]))
        return first + " " + rng.choice(SAME_AGAIN).format(rest=_join(groups[1:]))
    return _sentence(rng, ask, " ".join([*shared_phrases, _join(groups)]))


def chatty(rng: random.Random, text: str) -> str:
    """The request as people write it: sometimes after a sentence of context, sometimes with a thank-you."""
    if rng.random() < CHATTER_BEFORE_SHARE:
        text = rng.choice(CHATTER_BEFORE) + " " + text
    if rng.random() < CHATTER_AFTER_SHARE:
        text = text + " " + rng.choice(CHATTER_AFTER)
    return text


def _lower_first(text: str) -> str:
    return text if text.startswith(("I ", "I'")) else text[0].lower() + text[1:]


def _think(text: str) -> str:
    return f"<think>{text}</think>"


def call_turn(thought: str, calls: list[Call] | tuple[Call, ...]) -> Turn:
    blocks = [
        "<tool_call>\n" + json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False) + "\n</tool_call>"
        for c in calls
    ]
    return {"from": "gpt", "value": _think(thought) + "\n".join(blocks)}


# Every thought starts the same way, whatever the answer turns out to be: what is asked, in the user's words, one
# numbered item per result wanted; the opener names no tool and no count. Only then the decision, in one short
# sentence: which tool serves which item ("get_forecast for (1) and (2)"), or that the offered tools, named, do
# other things. So the kind of answer and the count of calls are decided after the request is read, at one point
# of the thought, and the count is the count of items listed. (A thought that also listed every offered tool with
# what it does, tried in 854efda, taught a 270M model to write tool lists, with invented names, and then to call
# something every time: BFCL irrelevance 0.72 -> 0.00.)

OFFERED_NAMES = "\x00offered names\x00"
"""Stands in a draft's thought for the names of the tools offered, drawn after the draft."""

OPENERS = ("The user asks for", "Asked for", "The request is for", "Wanted:")


def asked(request: Request, first_item: int) -> str:
    """'a stock forecast for ORBT: (1) for four days; (2) for a week' (items numbered from `first_item`)."""
    noun = ", ".join((request.noun, *request.shared))
    if not request.items:
        return noun
    numbered = "; ".join(f"({first_item + index}) {item}" for index, item in enumerate(request.items))
    return f"{noun}: {numbered}"


def plan(requests: list[Request]) -> str:
    """'get_forecast for (1) and (2); convert_money for (3)': each tool with the items it serves, in order."""
    parts, item = [], 1
    for request in requests:
        numbers = [f"({item + index})" for index in range(len(request.calls))]
        parts.append(f"{request.calls[0].name} for {_join(numbers)}")
        item += len(request.calls)
    return "; ".join(parts)


def request_thought(rng: random.Random, requests: list[Request]) -> str:
    """The thought before calls that serve `requests` (one request, or two asked in one message)."""
    said, item = [], 1
    for request in requests:
        said.append(asked(request, item))
        item += len(request.items)
    closing = rng.choice(("So: ", "Plan: ", "Use "))
    return f"{rng.choice(OPENERS)} {'; and '.join(said)}. {closing}{plan(requests)}."


def no_tool_thought(rng: random.Random, request: Request) -> str:
    closing = rng.choice(
        (
            f"The tools here ({OFFERED_NAMES}) do other things, so no call.",
            f"None of {OFFERED_NAMES} gives {request.noun}, so no call.",
            f"The offered {OFFERED_NAMES} cannot provide it; I answer in text.",
        )
    )
    return f"{rng.choice(OPENERS)} {asked(request, 1)}. {closing}"


def question_thought(rng: random.Random, question: str) -> str:
    closing = rng.choice(
        ("No tool is needed for this.", "I can answer this myself, without a tool.", "I answer it directly.")
    )
    item = _lower_first(question.rstrip("?.!"))
    return f"{rng.choice(OPENERS)} an answer: (1) {item}. {closing}"


# ---------------------------------------------------------------------------------------------------------
# Conversations: a draft picks concepts and turns, then the tool list is offered around it
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    used: tuple[BuiltTool, ...]
    turns: tuple[Turn, ...]
    avoid_domains: tuple[str, ...] = ()
    """Distractors must come from other domains (the request must stay impossible with the tools offered)."""
    near_domains: tuple[str, ...] = ()
    """Domains to offer the tools of first (beside those of the tools used)."""
    never_offered: tuple[Concept, ...] = ()
    """Concepts whose tools would serve the request: a no-call draft's own wanted concept and those alike."""
    sibling_of: BuiltTool | None = None
    """A tool whose sibling (another action on its object) is offered, although the tool itself is not."""
    near_verbs: tuple[str, ...] = ()
    """Actions whose tools are offered first too ("calculate_room_area" beside a request to calculate a loan
    payment): a tool named with the request's own verb is no reason to call it."""


def draft_single(rng: random.Random, concepts: list[Concept]) -> Draft | None:
    tool = build_tool(rng, rng.choice(concepts))
    request = single_request(rng, tool)
    answer = call_turn(request_thought(rng, [request]), request.calls)
    return Draft((tool,), ({"from": "human", "value": chatty(rng, request.text)}, answer))


def draft_parallel(rng: random.Random, concepts: list[Concept]) -> Draft | None:
    tool = build_tool(rng, rng.choice(concepts))
    request = parallel_request(rng, tool, rng.choice((2, 2, 3, 4)))
    if request is None:
        return None
    answer = call_turn(request_thought(rng, [request]), request.calls)
    return Draft((tool,), ({"from": "human", "value": chatty(rng, request.text)}, answer))


def draft_parallel_mixed(rng: random.Random, concepts: list[Concept]) -> Draft | None:
    """Two tools, each asked once or (the second) for two values: BFCL's parallel-multiple."""
    first, second = (build_tool(rng, concept) for concept in rng.sample(concepts, 2))
    request1 = single_request(rng, first)
    request2 = (parallel_request(rng, second, 2) if rng.random() < 0.35 else None) or single_request(rng, second)
    joiner = rng.choice(("Also, ", "And ", "Then ", ""))
    text = request1.text + " " + (joiner + _lower_first(request2.text) if joiner else request2.text)
    answer = call_turn(request_thought(rng, [request1, request2]), request1.calls + request2.calls)
    return Draft((first, second), ({"from": "human", "value": chatty(rng, text)}, answer))


def draft_irrelevant(rng: random.Random, concepts: list[Concept]) -> Draft | None:
    """A request for a tool that is not offered: the others come from other domains (first those named with the
    request's own verb), or (a near miss) from its own domain, perhaps with a sibling of the wanted tool."""
    wanted = build_tool(rng, rng.choice(concepts))
    request = single_request(rng, wanted)
    near_miss = rng.random() < NEAR_MISS_SHARE
    noun, thought = request.noun, no_tool_thought(rng, request)
    answer = rng.choice(
        (
            f"I can't help with {noun} using the tools I have here.",
            f"Sorry, none of the available tools handles {noun}.",
            f"The tools available to me can't provide {noun}, so I can't do that here.",
        )
    )
    turns = ({"from": "human", "value": chatty(rng, request.text)}, {"from": "gpt", "value": _think(thought) + answer})
    if not near_miss:
        return Draft((), turns, avoid_domains=(wanted.concept.domain,), near_verbs=(wanted.concept.verb,))
    alike = {obj for pair in SERVE_ALIKE if wanted.concept.obj in pair for obj in pair}
    never = tuple(c for c in concepts if c == wanted.concept or c.obj in alike)
    sibling_of = wanted if rng.random() < SIBLING_SHARE else None
    return Draft((), turns, near_domains=(wanted.concept.domain,), never_offered=never, sibling_of=sibling_of)


def draft_question(rng: random.Random, concepts: list[Concept]) -> Draft | None:
    question = draw_question(rng)
    thought = question_thought(rng, question.text)
    turns = ({"from": "human", "value": question.text}, {"from": "gpt", "value": _think(thought) + question.answer})
    return Draft((), turns, near_domains=question.near_domains)


DRAFTS: dict[str, Callable[[random.Random, list[Concept]], Draft | None]] = {
    "single": draft_single,
    "parallel": draft_parallel,
    "parallel_mixed": draft_parallel_mixed,
    "irrelevant": draft_irrelevant,
    "question": draft_question,
}

SIBLING_ACTIONS = {
    "create": "Create a new {obj} record.",
    "delete": "Delete a saved {obj} record.",
    "update": "Update the details of a saved {obj} record.",
    "cancel": "Cancel a pending {obj} request.",
    "schedule": "Schedule a {obj} job to run later.",
    "archive": "Archive an old {obj} record.",
}


def sibling_tool(rng: random.Random, tool: BuiltTool) -> BuiltTool | None:
    """A tool for the same object that does something else (it cannot serve the request)."""
    concept = tool.concept
    for _ in range(10):
        verb = rng.choice([verb for verb in SIBLING_ACTIONS if verb != concept.verb])
        description = SIBLING_ACTIONS[verb].format(obj=f"{concept.domain} {concept.obj.replace('_', ' ')}")
        sibling = build_tool(rng, replace(concept, verb=verb, description=description))
        if sibling.name != tool.name:
            return sibling
    return None


def offer(rng: random.Random, draft: Draft, concepts: list[Concept]) -> list[BuiltTool]:
    """The used tools plus distractors (mostly of the same domain: similar tools; sometimes a sibling that does
    another thing with the same object), in random order. A draft without a call gets a tool of its near domains
    first, when there is one."""
    count = rng.choices(list(TOOL_COUNT_WEIGHTS), weights=list(TOOL_COUNT_WEIGHTS.values()))[0]
    count = max(count, len(draft.used), 1)
    taken = {tool.concept for tool in draft.used} | set(draft.never_offered)
    domains = {tool.concept.domain for tool in draft.used} | set(draft.near_domains)
    allowed = [c for c in concepts if c not in taken and c.domain not in draft.avoid_domains]
    near = [c for c in allowed if c.domain in domains or c.verb in draft.near_verbs]
    tools = list(draft.used)
    like = draft.sibling_of or (rng.choice(draft.used) if draft.used and rng.random() < SIBLING_SHARE else None)
    if like is not None:
        sibling = sibling_tool(rng, like)
        if sibling is not None:
            tools.append(sibling)
            count = max(count, len(tools))
    while len(tools) < count:
        pool = near if near and (not tools or rng.random() < 0.6) else allowed
        concept = rng.choice(pool)
        taken.add(concept)
        near, allowed = [c for c in near if c != concept], [c for c in allowed if c != concept]
        tools.append(build_tool(rng, concept))
    rng.shuffle(tools)
    return tools


def with_offered_names(turns: tuple[Turn, ...], tools: list[BuiltTool]) -> list[Turn]:
    names = _join([tool.name for tool in tools]) if tools else "no tools"
    return [{**turn, "value": turn["value"].replace(OFFERED_NAMES, names)} for turn in turns]


def conversation_chars(row: Row) -> int:
    return len(json.dumps(row["tools"], ensure_ascii=False)) + sum(len(turn["value"]) for turn in row["conversations"])


def _kind_counts(size: int) -> dict[str, int]:
    """Exact kind counts: largest remainder rounding of the shares."""
    exact = {kind: share * size for kind, share in KIND_SHARES.items()}
    counts = {kind: int(value) for kind, value in exact.items()}
    for kind in sorted(exact, key=lambda kind: counts[kind] - exact[kind])[: size - sum(counts.values())]:
        counts[kind] += 1
    return counts


def _kind_schedule(rng: random.Random, size: int) -> list[str]:
    """The kinds of a training split, in shuffled order."""
    kinds = [kind for kind, count in _kind_counts(size).items() for _ in range(count)]
    rng.shuffle(kinds)
    return kinds


def stratified_kinds(size: int) -> list[str]:
    """The kinds of the eval split in an order where every prefix holds them in about their shares: a run that
    scores the first N eval conversations (data.max_eval_conversations) sees every kind, not a random few."""
    counts, order = _kind_counts(size), []
    for position in range(1, size + 1):
        # The kind furthest behind its share of the first `position` rows (ties: the larger share first).
        kind = max(counts, key=lambda k: (KIND_SHARES[k] * position - order.count(k), KIND_SHARES[k]))
        order.append(kind)
    return order


def _new_row(rng: random.Random, kind: str, concepts: list[Concept], seen: set[str]) -> Row:
    for _ in range(1000):
        draft = DRAFTS[kind](rng, concepts)
        if draft is None:
            continue
        tools = offer(rng, draft, concepts)
        row = {"tools": [tool.schema for tool in tools], "conversations": with_offered_names(draft.turns, tools)}
        key = json.dumps(row, ensure_ascii=False)
        # `seen` spans both splits, so eval never repeats a training conversation.
        if conversation_chars(row) <= MAX_CHARS and key not in seen:
            seen.add(key)
            return row
    raise RuntimeError(f"could not draw a new {kind} conversation")


def _split(rng: random.Random, kinds: list[str], prefix: str, concepts: list[Concept], seen: set[str]) -> list[Row]:
    rows: list[Row] = []
    for kind in kinds:
        rows.append({"id": f"{prefix}-{len(rows):04d}", **_new_row(rng, kind, concepts, seen)})
    return rows


def split_concepts() -> tuple[list[Concept], list[Concept]]:
    """(train concepts, eval concepts): eval's are never offered in train, so eval asks for unseen tools."""
    unknown = sorted({key.rstrip("?") for c in CONCEPTS for key in c.params} - set(PARAMS))
    if unknown:
        raise ValueError(f"concepts use undefined parameters: {unknown}")
    held_out = [c for i, c in enumerate(CONCEPTS) if i % EVAL_CONCEPT_EVERY == 0]
    return [c for c in CONCEPTS if c not in held_out], held_out


def generate(seed: int = 0) -> tuple[list[Row], list[Row]]:
    """Build (train, eval) rows. The splits use separate random streams and never share a conversation."""
    train_concepts, eval_concepts = split_concepts()
    seen: set[str] = set()
    train_rng = random.Random(f"fcloop-demo-train-{seed}")
    train = _split(train_rng, _kind_schedule(train_rng, TRAIN_SIZE), "demo-train", train_concepts, seen)
    # Eval draws its requests and its distractors from the held-out concepts only.
    eval_rng = random.Random(f"fcloop-demo-eval-{seed}")
    eval_rows = _split(eval_rng, stratified_kinds(EVAL_SIZE), "demo-eval", eval_concepts, seen)
    return train, eval_rows


def write_jsonl(rows: list[Row], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic function-calling demo data set.")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    train, eval_rows = generate(options.seed)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", eval_rows)):
        write_jsonl(rows, options.out_dir / name)
        print(f"wrote {len(rows)} conversations to {options.out_dir / name}")


if __name__ == "__main__":
    main()
