"""Tool calls held to the offered tools' schemas while they are written (constrained decoding).

A small model writes `"century": "19th"` where the schema asks for an integer, `"top": 4/5`, an argument the
tool does not have, or a name one letter off; each such call is wrong although the model's next few choices
held a right one. While a `<tool_call>` block is open, the model's best candidate tokens are tried in order
and the first with which the block can still become a call that fits is taken: JSON syntax, a name among the
offered tools, argument names among the tool's parameters (each once), values of the declared type (and
among its enum), and every required argument before the arguments close. A call the model writes right is
left untouched; thoughts, plain text and the choice to call at all are never steered. Greedy decoding stays
greedy: of the tokens that keep the call valid, the most likely one.

The check reads text, not tokens, so it holds for any tokenizer: the answer so far is decoded with each
candidate appended and read by `block_is_possible`.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from fcloop.data.gemma_format import END_OF_TURN, START_OF_TURN
from fcloop.data.toolcalls import CLOSE, OPEN
from fcloop.evaluation.scoring import THINK_CLOSE, THINK_OPEN, tool_function

WHITESPACE = " \t\n\r"
# Whitespace between the parts of a call, at most this many characters in a row (a newline and an indent of
# several levels): a model kept from the token it wants would otherwise write spaces until its tokens run out.
MAX_WHITESPACE_RUN = 16
# Line-break characters in one such run: a line break ("\r\n" on Windows) or one blank line. A model that
# drifts writes blank lines between the parts of a call, then more call text after them.
MAX_LINE_BREAKS_IN_RUN = 2
# A number longer than this is a model repeating a digit ("0.000000..."), not a value anyone means.
MAX_NUMBER_CHARS = 32
# The answer's own markup, never inside a string value: a model that writes "<think>..." or "<tool_call>" into a
# value has lost its call and would go on writing the next answer inside the string until its tokens run out.
MARKUP_TAGS = (OPEN, CLOSE, THINK_OPEN, THINK_CLOSE, START_OF_TURN, END_OF_TURN)
_LONGEST_TAG = max(len(tag) for tag in MARKUP_TAGS)
# Schema type names as data sets write them (JSON Schema's, Python's, BFCL's) -> the JSON kinds they allow.
KINDS = {
    "string": {"string"},
    "str": {"string"},
    "integer": {"integer"},
    "int": {"integer"},
    "number": {"integer", "number"},
    "float": {"integer", "number"},
    "boolean": {"boolean"},
    "bool": {"boolean"},
    "array": {"array"},
    "list": {"array"},
    "tuple": {"array"},
    "object": {"object"},
    "dict": {"object"},
    "null": {"null"},
    "None": {"null"},
}


class _Ended(Exception):
    """The text ended inside the call: what came so far can still be completed into a call that fits."""


class _Wrong(Exception):
    """No continuation of the text is a call that fits."""


@dataclass
class _Reader:
    text: str
    position: int = 0

    def peek(self) -> str:
        if self.position >= len(self.text):
            raise _Ended
        return self.text[self.position]

    def take(self) -> str:
        char = self.peek()
        self.position += 1
        return char

    def skip_whitespace(self) -> None:
        start = self.position
        while self.position < len(self.text) and self.text[self.position] in WHITESPACE:
            self.position += 1
        run = self.text[start : self.position]
        if len(run) > MAX_WHITESPACE_RUN or run.count("\n") + run.count("\r") > MAX_LINE_BREAKS_IN_RUN:
            raise _Wrong

    def expect(self, literal: str) -> None:
        for char in literal:
            if self.take() != char:
                raise _Wrong


def _kinds(schema: dict[str, Any]) -> set[str] | None:
    """The JSON kinds a schema allows, or None for any (no type, or one we do not know: it constrains nothing)."""
    declared = schema.get("type")
    names = declared if isinstance(declared, list) else [declared]
    kinds: set[str] = set()
    for name in names:
        if not isinstance(name, str) or name not in KINDS:
            return None
        kinds |= KINDS[name]
    return kinds or None


def _read_string(reader: _Reader, choices: Collection[str] | None) -> str:
    """A JSON string; with `choices`, one of them (a partial string must begin one of them)."""
    reader.expect('"')
    characters: list[str] = []
    try:
        while (char := reader.take()) != '"':
            if char == "\\":
                # In a name, a key or an option, an escape may write only a character that needs one: a model kept
                # from the token it wanted otherwise spells the option out in escapes ("faste\u0073t", or a whole
                # name in \u codes), which no encoder writes and which spends the answer's tokens.
                escapable = None if choices is None else _escapable_next("".join(characters), choices)
                if escapable is not None and not escapable:
                    raise _Wrong
                escape = reader.take()
                if escape == "u":
                    char = _read_unicode_escape(reader, escapable)
                elif escape in '"\\/':
                    char = escape
                elif escape in "bfnrt":
                    char = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}[escape]
                else:
                    raise _Wrong
                if escapable is not None and char not in escapable:
                    raise _Wrong
            elif ord(char) < 0x20:
                raise _Wrong
            characters.append(char)
            if char == ">" and "".join(characters[-_LONGEST_TAG:]).endswith(MARKUP_TAGS):
                raise _Wrong
    except _Ended:
        so_far = "".join(characters)
        if choices is not None and not any(choice.startswith(so_far) for choice in choices):
            raise _Wrong from None
        raise
    value = "".join(characters)
    if choices is not None and value not in choices:
        raise _Wrong
    return value


def _next_characters(so_far: str, choices: Collection[str]) -> set[str]:
    """The characters that can come after `so_far` in one of the choices."""
    return {choice[len(so_far)] for choice in choices if len(choice) > len(so_far) and choice.startswith(so_far)}


def _escapable_next(so_far: str, choices: Collection[str]) -> set[str]:
    """The characters that can come after `so_far` in one of the choices and that an encoder writes escaped."""
    return {char for char in _next_characters(so_far, choices) if _needs_escape(char)}


def _needs_escape(char: str) -> bool:
    """Whether JSON encoders write this character escaped: a quote, a backslash, a control character, and (with
    Python's default ensure_ascii) anything beyond ASCII."""
    return char in '"\\' or ord(char) < 0x20 or ord(char) > 0x7E


def _read_unicode_escape(reader: _Reader, candidates: Collection[str] | None) -> str:
    """The four hex digits after `\\u`. Cut short with `candidates` (the characters that may come next), the digits
    so far must begin the code of one of them: `"caf\\u00f` can become `"café"`, `"caf\\u002` never."""
    digits = ""
    try:
        while len(digits) < 4:
            digits += reader.take()
            if digits[-1] not in string.hexdigits:
                raise _Wrong
    except _Ended:
        if candidates is not None and not any(f"{ord(char):04x}".startswith(digits.lower()) for char in candidates):
            raise _Wrong from None
        raise
    return chr(int(digits, 16))


def _read_number(reader: _Reader, integer: bool) -> None:
    """A JSON number (an integer: no fraction, no exponent). A number ends at the first character that cannot
    continue it, so one at the very end of the text is unfinished."""
    start = reader.position

    def take_before_digit() -> None:
        """A sign, a point or an exponent's `e`: a digit must follow, so there must be room left for one."""
        reader.take()
        if reader.position - start >= MAX_NUMBER_CHARS:
            raise _Wrong

    def digits() -> None:
        if not reader.peek().isdigit():
            raise _Wrong
        while reader.peek().isdigit():
            reader.take()
            if reader.position - start > MAX_NUMBER_CHARS:
                raise _Wrong

    if reader.peek() == "-":
        take_before_digit()
    if reader.peek() == "0":
        reader.take()
    else:
        digits()
    if reader.peek() == "." and not integer:
        take_before_digit()
        digits()
    if reader.peek() in "eE" and not integer:
        take_before_digit()
        if reader.peek() in "+-":
            take_before_digit()
        digits()


def _kind_of(value: Any) -> str:
    """The JSON kind of a Python value read from JSON (an enum's option)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    kinds = {float: "number", str: "string", list: "array", dict: "object"}
    return next((kind for python_type, kind in kinds.items() if isinstance(value, python_type)), "null")


def _read_value(reader: _Reader, schema: Any) -> None:
    schema = schema if isinstance(schema, dict) else {}
    kinds = _kinds(schema)
    options = schema.get("enum") if isinstance(schema.get("enum"), list) and schema.get("enum") else None
    if options and kinds is not None and not any(_kind_of(option) in kinds for option in options):
        # The schema contradicts itself ("integer" with the options "1", "2", "dontcare"): no value would fit
        # both, so the options, which name each value allowed, decide.
        kinds = None

    def allowed(kind: str) -> bool:
        return kinds is None or kind in kinds

    char = reader.peek()
    if char == '"' and allowed("string"):
        _read_string(reader, [o for o in options if isinstance(o, str)] if options else None)
    elif (char == "-" or char.isdigit()) and (allowed("integer") or allowed("number")):
        if options and not any(isinstance(o, int | float) and not isinstance(o, bool) for o in options):
            raise _Wrong
        _read_number(reader, integer=kinds is not None and "number" not in kinds)
    elif char in "tf" and allowed("boolean"):
        reader.expect("true" if char == "t" else "false")
    elif char == "n" and allowed("null"):
        reader.expect("null")
    elif char == "[" and allowed("array"):
        _read_array(reader, schema.get("items"))
    elif char == "{" and allowed("object"):
        _read_object(reader, schema)
    else:
        raise _Wrong


def _read_array(reader: _Reader, items: Any) -> None:
    reader.expect("[")
    reader.skip_whitespace()
    if reader.peek() == "]":
        reader.take()
        return
    while True:
        _read_value(reader, items)
        reader.skip_whitespace()
        if reader.take() == "]":
            return
        if reader.text[reader.position - 1] != ",":
            raise _Wrong
        reader.skip_whitespace()


def _read_object(reader: _Reader, schema: dict[str, Any]) -> None:
    """An object; where the schema lists properties, only those (each once), and every required one before
    the object closes. (JSON Schema would allow other names unless additionalProperties is false; a tool's
    arguments that it does not declare are a wrong call in every checker we know, so only an explicit
    additionalProperties lets them in.)"""
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    additional = schema.get("additionalProperties")
    open_names = not properties or additional is True or isinstance(additional, dict)
    required = (
        {key for key in schema.get("required", ()) if isinstance(key, str)}
        if isinstance(schema.get("required"), list)
        else set()
    )
    seen: set[str] = set()
    reader.expect("{")
    reader.skip_whitespace()
    while True:
        if reader.peek() == "}":
            if not required <= seen:
                raise _Wrong
            reader.take()
            return
        if seen and not reader.text.startswith(",", reader.position):
            raise _Wrong
        if seen:
            reader.take()
            reader.skip_whitespace()
        # A required name the schema forgot to declare is a name the call must have, not one it cannot.
        names = [*properties, *sorted(required - properties.keys())]
        choices = None if open_names else [name for name in names if name not in seen]
        if choices is not None and not choices:
            raise _Wrong
        key = _read_string(reader, choices)
        if key in seen:
            raise _Wrong
        seen.add(key)
        reader.skip_whitespace()
        reader.expect(":")
        reader.skip_whitespace()
        item_schema = properties.get(key, additional if isinstance(additional, dict) else {})
        _read_value(reader, item_schema)
        reader.skip_whitespace()


def tool_functions(tools: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{name: its parameters schema} of tools given as {"type": "function", "function": {...}} or as functions."""
    functions = {}
    for tool in tools:
        definition = tool_function(tool)
        if isinstance(definition.get("name"), str):
            parameters = definition.get("parameters")
            functions.setdefault(definition["name"], parameters if isinstance(parameters, dict) else {})
    return functions


def _read_call(reader: _Reader, functions: dict[str, dict[str, Any]]) -> None:
    """{"name": <an offered tool>, "arguments": <fitting its parameters>}, the two keys in either order."""
    reader.expect("{")
    name: str | None = None
    seen: list[str] = []
    while len(seen) < 2:
        reader.skip_whitespace()
        if seen:
            reader.expect(",")
            reader.skip_whitespace()
        key = _read_string(reader, [k for k in ("name", "arguments") if k not in seen])
        seen.append(key)
        reader.skip_whitespace()
        reader.expect(":")
        reader.skip_whitespace()
        if key == "name":
            name = _read_string(reader, list(functions))
        else:
            parameters = functions.get(name, {}) if name is not None else {}
            _read_object(reader, {**parameters, "type": "object"} if name is not None else {})
    reader.skip_whitespace()
    reader.expect("}")


def block_is_possible(text: str, functions: dict[str, dict[str, Any]]) -> tuple[bool, int | None]:
    """Whether `text` (what follows a `<tool_call>` tag) can still become one call that fits, followed by
    `</tool_call>`: (possible, the index just past `</tool_call>` when the block is closed, else None)."""
    reader = _Reader(text)
    try:
        reader.skip_whitespace()
        _read_call(reader, functions)
        reader.skip_whitespace()
    except _Ended:
        return True, None
    except _Wrong:
        return False, None
    rest = text[reader.position :]
    if rest.startswith(CLOSE):
        return True, reader.position + len(CLOSE)
    return CLOSE.startswith(rest), None


def answer_is_possible(text: str, start: int, functions: dict[str, dict[str, Any]]) -> bool:
    """Whether every `<tool_call>` block of `text` that opens at or after `start` fits so far."""
    position = start
    while (opening := text.find(OPEN, position)) >= 0:
        possible, end = block_is_possible(text[opening + len(OPEN) :], functions)
        if not possible:
            return False
        if end is None:
            return True
        position = opening + len(OPEN) + end
    return True


def inside_open_block(text: str) -> bool:
    opening = text.rfind(OPEN)
    return opening >= 0 and CLOSE not in text[opening:]


@dataclass
class ConstraintCounts:
    """What the constraint did over a generation: steps it checked inside calls, tokens it replaced (the
    model's first choice would have broken the call), and steps where none of the candidates tried fitted
    (the model's own choice was kept there; the call will not parse or not fit)."""

    checked: int = 0
    replaced: int = 0
    unresolved: int = 0

    def add(self, other: ConstraintCounts) -> None:
        self.checked += other.checked
        self.replaced += other.replaced
        self.unresolved += other.unresolved


def constraint_metrics(counts: ConstraintCounts, prefix: str) -> dict[str, int]:
    """The counts as metrics named `{prefix}constraint_...`: decoding steps inside calls, tokens the constraint
    replaced, and steps where no candidate tried fitted."""
    return {
        f"{prefix}constraint_steps": counts.checked,
        f"{prefix}constraint_replaced": counts.replaced,
        f"{prefix}constraint_unresolved": counts.unresolved,
    }


@dataclass
class CallsFitTools(LogitsProcessor):
    """A transformers logits processor for a batch of left-padded prompts of `prompt_width` columns: row i's
    calls must fit `tools[i]`, in the answer after the prompt. Greedy (`sampling` false): where the model's
    first choice would break a call, every score but that of the best candidate that fits is set to -inf.
    Sampling: inside a call, every candidate that does not fit and every token past the `candidates` best is
    set to -inf, so what is sampled fits."""

    tokenizer: Any
    tools: Sequence[Sequence[dict[str, Any]]]
    prompt_width: int
    stop_ids: Collection[int]
    candidates: int = 64
    more_candidates: int = 4096
    """Tried, best first, where none of the first `candidates` fits (a token the call needs can rank low)."""
    sampling: bool = False
    counts: ConstraintCounts = field(default_factory=ConstraintCounts)

    def __post_init__(self) -> None:
        self._functions = [tool_functions(row_tools) for row_tools in self.tools]
        self._character_tokens: dict[str, int] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self.prompt_width :].tolist()
            if any(token in self.stop_ids for token in generated):
                continue  # finished: it only gets padding now
            if not self._functions[row]:
                continue  # no tools offered: no call can fit, so there is nothing to hold a call to
            kept = self._kept_tokens(_Answer(self, generated, self._functions[row]), scores[row])
            if kept is not None:
                keep = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
                keep[kept] = True
                scores[row] = scores[row].masked_fill(~keep, -torch.inf)
        return scores

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def character_tokens(self) -> dict[str, int]:
        """{character: the token that is that character alone}, for the characters a call is written in."""
        if self._character_tokens is None:
            self._character_tokens = {}
            for char in PROBE_CHARACTERS:
                ids = self.tokenizer.encode(char, add_special_tokens=False)
                if len(ids) == 1 and self.decode(ids) == char:
                    self._character_tokens[char] = ids[0]
        return self._character_tokens

    def _best_character_token(self, answer: _Answer, row_scores: torch.Tensor) -> int | None:
        """Where none of the best candidates fits (a model drifting from its call ranks every token that
        would go on with it low): of the one-character tokens that can come next, the best scored. The call
        then still closes as one that fits, instead of the model's text breaking it for good."""
        by_character = self.character_tokens()
        tokens = [by_character[char] for char in answer.next_characters() if char in by_character]
        tokens.sort(key=lambda token: (-float(row_scores[token]), token))
        return next((token for token in tokens if answer.fits(token)), None)

    def _kept_tokens(self, answer: _Answer, row_scores: torch.Tensor) -> list[int] | None:
        """The tokens the model may choose from, or None to leave its scores alone."""
        if self.sampling and answer.in_block:
            ranked = torch.topk(row_scores, min(self.candidates, row_scores.shape[0])).indices.tolist()
            fitting = [token for token in ranked if answer.fits(token)]
            if not fitting:
                more = torch.topk(row_scores, min(self.more_candidates, row_scores.shape[0])).indices.tolist()
                fitting = next(([token] for token in more if answer.fits(token)), [])
            if not fitting and (character_token := self._best_character_token(answer, row_scores)) is not None:
                fitting = [character_token]
            self.counts.checked += 1
            self.counts.replaced += bool(fitting) and fitting[0] != ranked[0]
            self.counts.unresolved += not fitting
            return fitting or None
        # The token greedy decoding takes: argmax's, the first of equal scores (bf16 logits tie often, and
        # topk may order ties otherwise).
        first = int(row_scores.argmax())
        if answer.fits(first):
            self.counts.checked += answer.in_block
            return None
        self.counts.checked += 1
        more = torch.topk(row_scores, min(self.more_candidates, row_scores.shape[0])).indices.tolist()
        choice = next((token for token in more if token != first and answer.fits(token)), None)
        if choice is None:
            choice = self._best_character_token(answer, row_scores)
        if choice is None:
            self.counts.unresolved += 1
            return None
        self.counts.replaced += 1
        return [choice]


# Characters tried after the answer so far, to learn which can come next: a candidate token whose text starts
# with another is rejected without reading the whole call again (most of the thousands tried when the model's
# best candidates all break the call).
PROBE_CHARACTERS = string.printable


class _Answer:
    """One row's answer so far, and whether it stays possible with one more token."""

    def __init__(self, processor: CallsFitTools, generated: list[int], functions: dict[str, dict[str, Any]]):
        self.processor, self.generated, self.functions = processor, generated, functions
        self.text = processor.decode(generated)
        closed = self.text.rfind(CLOSE)
        self.start = closed + len(CLOSE) if closed >= 0 else 0  # blocks closed before were checked already
        self.in_block = inside_open_block(self.text)
        # The last token's text, to decode a candidate after it: with it, a tokenizer that drops the space at
        # the start of a text still writes the candidate's leading space.
        self.last_text = processor.decode(generated[-1:]) if generated else ""
        self._next_characters: set[str] | None = None

    def extended(self, token: int) -> str:
        """The answer's text with `token` appended, as the tokenizer decodes it."""
        if self.generated and "\ufffd" not in self.last_text:
            pair = self.processor.decode([self.generated[-1], token])
            if pair.startswith(self.last_text) and "\ufffd" not in pair:
                return self.text + pair[len(self.last_text) :]
        return self.processor.decode([*self.generated, token])  # bytes of a character split across tokens

    def next_characters(self) -> set[str]:
        if self._next_characters is None:
            self._next_characters = {
                char for char in PROBE_CHARACTERS if answer_is_possible(self.text + char, self.start, self.functions)
            }
        return self._next_characters

    def fits(self, token: int) -> bool:
        if token in self.processor.stop_ids:
            return not self.in_block
        extended = self.extended(token)
        if not self.in_block and OPEN not in extended[max(self.start, len(self.text) - len(OPEN)) :]:
            return True  # text outside calls, and no call opened: nothing to check
        added = extended[len(self.text) :] if extended.startswith(self.text) else None
        if added and added[0] in PROBE_CHARACTERS and self.in_block and added[0] not in self.next_characters():
            return False
        return answer_is_possible(extended, self.start, self.functions)
