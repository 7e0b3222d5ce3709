"""Tool calls held to the offered tools' schemas while they are generated (fcloop.evaluation.constrained)."""

from __future__ import annotations

import random
import string
from types import SimpleNamespace

import pytest
import torch

from fcloop.evaluation import constrained
from fcloop.evaluation.constrained import CallsFitTools, answer_is_possible, block_is_possible, tool_functions

SUSHI = {
    "type": "function",
    "function": {
        "name": "get_best_sushi_places",
        "description": "Best sushi places of a city.",
        "parameters": {
            "type": "dict",
            "properties": {
                "city": {"type": "string"},
                "top": {"type": "integer"},
                "min_rating": {"type": "float"},
                "open_now": {"type": "boolean"},
                "sort": {"type": "string", "enum": ["rating", "price"]},
                "cuisines": {"type": "array", "items": {"type": "string"}},
                "area": {
                    "type": "dict",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                },
            },
            "required": ["city"],
        },
    },
}
# A bare function (BFCL's form), with a name that shares a beginning with the other.
SUSHI_MENU = {"name": "get_best_sushi_menu", "parameters": {"type": "object", "properties": {"place": {}}}}
FUNCTIONS = tool_functions([SUSHI, SUSHI_MENU])
CALL = '{"name": "get_best_sushi_places", "arguments": '


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\n{",
        '\n{"na',
        '{"name": "get_best_sushi_',  # begins both names
        '{"name": "get_best_sushi_menu", "arguments": {"place": [1, {"a": null}]}}',
        CALL + '{"city": "Tokyo"',
        CALL + '{"city": "Tok\\u00e9',  # an escape
        CALL + '{"city": "Tokyo", "top": 4',  # a number may go on
        CALL + '{"city": "Tokyo", "top": -12, "min_rating": 4.5e0, "open_now": fal',
        CALL + '{"top": 3, "city": "Tokyo", "sort": "pri',
        CALL + '{"city": "Tokyo", "cuisines": ["nigiri", "maki"], "area": {"lat": 35.6, "lon": 139',
        CALL + '{"city": "Tokyo", "min_rating": 4}',  # an integer is a number
        CALL + '{"city": "Tokyo"}}\n</tool',
        CALL + "{\n" + " " * 15 + '"city"',  # a newline and an indent
        CALL + '{"city": "Tokyo",\r\n  "top": 3,\n\n"sort"',  # a Windows line break; one blank line
        CALL + '{"city": "Tok\\u00',  # cut short in a free string: any character may follow
        CALL + '{"city": "<b>Tokyo</b> <tool_call',  # other tags, and a tag not yet closed
        '{"arguments": {"x": 1}, "name": "get_best_sushi_places"}',  # the keys in the other order
        CALL + '{"city": "Tokyo", "min_rating": ' + "1" * 30 + ".",  # room left for one digit
    ],
)
def test_beginnings_of_calls_that_can_still_fit(body):
    assert block_is_possible(body, FUNCTIONS) == (True, None)


@pytest.mark.parametrize(
    "body",
    [
        "[",  # not an object
        "{'name'",  # a Python literal, not JSON
        '{"tool"',  # neither name nor arguments
        '{"name": "get_worst',  # no such tool
        '{"name": "get_best_sushi_places" "arguments"',  # a comma missing
        CALL + "[",  # the arguments must be an object
        CALL + '{"city": "Tokyo", "top": 4/5',  # not JSON
        CALL + '{"city": "Tokyo", "top": "4"',  # a string for an integer
        CALL + '{"city": "Tokyo", "top": 4.5',  # a fraction for an integer
        CALL + '{"city": "Tokyo", "top": 007',  # leading zeros
        CALL + '{"city": "Tokyo", "min_rating": 0.' + "0" * 40,  # a runaway number
        CALL + '{"city": "Tokyo", "cityx',  # no such argument
        CALL + '{"city": "Tokyo", "city"',  # the same argument twice
        CALL + '{"top": 3}',  # the required city missing
        CALL + '{"city": "Tokyo", "sort": "cheap',  # not in the enum
        CALL + '{"city": "Tokyo", "open_now": "yes"',  # a string for a boolean
        CALL + '{"city": "Tokyo", "cuisines": ["nigiri", 3',  # the items are strings
        CALL + '{"city": "Tokyo", "area": {"lat": 35.6}',  # lon is required inside the area
        CALL + '{"city": "line\nbreak"',  # a raw control character inside a string
        CALL + '{"city": "Tokyo"}} trailing',  # only </tool_call> may follow the call
        CALL + '{"city": "Tokyo"}, "extra": 1}',
        CALL + '{"city": "Tokyo",' + " " * 17,  # whitespace without end: a model kept from what it wants
        CALL + '{"city": "Tokyo",\n\n\n',  # blank lines: a model drifting from its call
        CALL + '{"city": "Tokyo"\r\n\r\n',  # the same with Windows line breaks
        '{"name": "get_\\u002',  # no character whose code begins 002 comes next in a tool's name
        CALL + '{"city": "Tokyo", "sort": "\\u006',  # the options begin r (0072) or p (0070)
        CALL + '{"city": "Tok\\u00g',  # not a hex digit
        CALL + '{"city": "<think>',  # the answer's markup inside a value: the call is lost
        CALL + '{"city": "Tokyo", "min_rating": ' + "1" * 31 + ".",  # no room left for the point's digit
        CALL + '{"city": "Tokyo", "min_rating": ' + "1" * 31 + "e",  # nor for the exponent's
        '{"name": "get_best_sushi_menu\\',  # a whole name: an escape would write one character too many
        '{"name\\',  # the same for a whole key
        CALL + '{"city": "Tokyo</tool_call>',
        # In a name, a key or an option an escape writes only a character that needs one (below): a letter spelled
        # as a \\u code is a model kept from the token it wanted, spending its tokens on escapes.
        '{"name": "get_\\u0062est',  # an escaped b, which both names hold
        '{"name": "get_\\u006',  # cut short on the way to the b's code (0062)
        CALL + '{"city": "Tokyo", "sort": "\\u0070ri',  # an escaped p: "pri" begins "price"
        '{"name": "get_best_sushi_\\',  # the next letter of either name needs no escape
        '{"n\\u0061me"',  # the same for a key
    ],
)
def test_beginnings_of_calls_that_cannot_fit(body):
    assert block_is_possible(body, FUNCTIONS) == (False, None)


DRINKS = tool_functions(
    [
        {
            "name": "order",
            "parameters": {"type": "object", "properties": {"drink": {"enum": ["café", 'a "flat" white', "tea"]}}},
        }
    ]
)
ORDER = '{"name": "order", "arguments": {"drink": "'


@pytest.mark.parametrize(
    ("body", "possible"),
    [
        (ORDER + 'café"}}', True),  # written plainly, as always
        (ORDER + 'caf\\u00e9"}}', True),  # an é escaped, as Python's json.dumps writes it
        (ORDER + "caf\\u00", True),  # cut short, still the beginning of the é's code (00e9)
        (ORDER + 'a \\"flat\\" white"}}', True),  # a quote must be escaped
        (ORDER + "a \\u0022flat", True),  # and may be as a code
        (ORDER + "caf\\u006", False),  # 006x are letters, which need no escape
        (ORDER + "\\u0074ea", False),  # the t of tea
        (ORDER + "a \\/", False),  # an escaped slash, where none of the options has one
        (ORDER + "t\\", False),  # the e after t needs no escape
    ],
)
def test_an_escape_in_an_option_writes_only_a_character_that_needs_one(body, possible):
    assert block_is_possible(body, DRINKS)[0] is possible


def test_a_closed_block_says_where_it_ends_and_only_blocks_after_the_start_are_read():
    body = CALL + '{"city": "Tokyo"}}\n</tool_call>'
    assert block_is_possible(body + "\nThen text.", FUNCTIONS) == (True, len(body))
    answer = f"<think>One call.</think><tool_call>\n{body}\n<tool_call>\n" + CALL + '{"top": "x'
    assert not answer_is_possible(answer, 0, FUNCTIONS)  # the second block breaks its tool's schema
    broken_first = "<tool_call>{'name': 1}</tool_call>"
    assert answer_is_possible(broken_first + "<tool_call>" + CALL, len(broken_first), FUNCTIONS)
    assert not answer_is_possible(broken_first + "<tool_call>" + CALL, 0, FUNCTIONS)
    assert answer_is_possible("<think>No tool fits.</think>I cannot do that.", 0, FUNCTIONS)


def test_a_required_argument_the_schema_does_not_declare_can_be_written_and_must_be():
    """A schema that requires `b` and declares only `a` (a slip of its author): the call must have `b`, and
    could never close if `b` were refused as an unknown name."""
    functions = tool_functions(
        [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]}}]
    )
    call = '{"name": "f", "arguments": '
    closed = call + '{"a": 1, "b": "any value"}}\n</tool_call>'
    assert block_is_possible(closed, functions) == (True, len(closed))
    assert block_is_possible(call + '{"a": 1}', functions) == (False, None)
    assert block_is_possible(call + '{"c"', functions) == (False, None)


def test_an_enum_that_contradicts_its_type_decides_the_value():
    """BFCL has `{"type": "integer", "enum": ["1", "2", "dontcare"]}`: no value is both, so the options decide
    (rather than no value at all, a call that could never be finished)."""
    schema = {"type": "integer", "enum": ["1", "2", "dontcare"]}
    functions = tool_functions([{"name": "f", "parameters": {"type": "object", "properties": {"n": schema}}}])
    call = '{"name": "f", "arguments": {"n": '
    assert block_is_possible(call + '"dont', functions) == (True, None)
    assert block_is_possible(call + '"3"', functions) == (False, None)
    assert block_is_possible(call + "1", functions) == (False, None)


class CharTokenizer:
    """One token per character (ids are code points), and 0 as the stop token: what the processor needs."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=False):
        return "".join(chr(i) for i in ids if i != 0)


def scores_ranking(*chars: str, vocabulary: int = 200) -> torch.Tensor:
    """Scores over the code points below `vocabulary` that rank `chars` first, in order (0 is the stop id)."""
    scores = torch.zeros(vocabulary)
    for rank, char in enumerate(chars):
        scores[0 if char == "STOP" else ord(char)] = 100.0 - rank
    return scores


def run_processor(
    prompt: str, generated: str, scores: torch.Tensor, more_candidates: int = 4096
) -> tuple[torch.Tensor, CallsFitTools]:
    ids = torch.tensor([[ord(c) for c in prompt + generated]])
    processor = CallsFitTools(
        CharTokenizer(), [[SUSHI]], len(prompt), stop_ids={0}, candidates=5, more_candidates=more_candidates
    )
    return processor(ids, scores.clone().unsqueeze(0))[0], processor


def test_the_first_fitting_candidate_is_forced_and_a_fitting_first_choice_is_untouched():
    prompt = "<tools>...</tools> Ask <think>"  # a block opened in the prompt is not the answer's: not read
    so_far = "Two.</think><tool_call>\n" + CALL + '{"city": "Tokyo", "top": '
    scores = scores_ranking('"', "x", "3", "4")  # the model would open a string; 3 is the best integer
    forced, processor = run_processor(prompt, so_far, scores)
    assert forced.argmax() == ord("3") and forced[ord("3")] == scores[ord("3")]
    assert torch.isinf(forced).sum() == len(scores) - 1
    assert (processor.counts.checked, processor.counts.replaced, processor.counts.unresolved) == (1, 1, 0)

    untouched, processor = run_processor(prompt, so_far, scores_ranking("4", '"'))
    assert torch.equal(untouched, scores_ranking("4", '"'))
    assert (processor.counts.checked, processor.counts.replaced) == (1, 0)


def test_a_call_cannot_stop_before_it_closes_and_text_outside_calls_is_never_steered():
    so_far = "</think><tool_call>\n" + CALL + '{"city": "Tokyo"}}'
    forced, _ = run_processor("", so_far, scores_ranking("STOP", "\n", "<"))
    assert forced.argmax() == ord("\n")
    closed = so_far + "\n</tool_call>"
    free, processor = run_processor("", closed, scores_ranking("STOP", "\n"))
    assert torch.equal(free, scores_ranking("STOP", "\n")) and processor.counts.checked == 0
    thought = "<think>I'd call {x: 4/5"  # no block open: anything goes
    free, processor = run_processor("", thought, scores_ranking("/", "}"))
    assert torch.equal(free, scores_ranking("/", "}")) and processor.counts.checked == 0


def test_a_row_offered_no_tools_is_never_steered():
    """No call can fit where no tool is offered; holding one would only leave the constraint with nothing to
    choose at every step."""
    so_far = "<tool_call>\n" + CALL + '{"city": "'
    ids = torch.tensor([[ord(c) for c in so_far]])
    processor = CallsFitTools(CharTokenizer(), [[]], prompt_width=0, stop_ids={0}, candidates=5)
    scores = scores_ranking("x", "STOP")
    assert torch.equal(processor(ids, scores.clone().unsqueeze(0))[0], scores)
    assert (processor.counts.checked, processor.counts.replaced, processor.counts.unresolved) == (0, 0, 0)


def test_a_fitting_token_ranked_past_the_first_candidates_is_found():
    so_far = "<tool_call>\n" + CALL + '{"city": "Tokyo", "top": '
    forced, processor = run_processor("", so_far, scores_ranking("x", "y", "z", '"', "'", "a", "7"))
    assert forced.argmax() == ord("7") and torch.isinf(forced).sum() == len(forced) - 1
    assert (processor.counts.checked, processor.counts.replaced, processor.counts.unresolved) == (1, 1, 0)


def test_when_no_candidate_fits_the_best_fitting_character_is_forced():
    """The 5 candidates tried all break the integer; of the one-character tokens that can come next (a digit,
    a minus, a space), the best scored is forced: the call is not left to the model's broken text."""
    so_far = "<tool_call>\n" + CALL + '{"city": "Tokyo", "top": '
    scores = scores_ranking("x", "y", "z", '"', "'", "a", "7", "-")
    forced, processor = run_processor("", so_far, scores, more_candidates=5)
    assert forced.argmax() == ord("7") and forced[ord("7")] == scores[ord("7")]
    assert torch.isinf(forced).sum() == len(forced) - 1
    assert (processor.counts.checked, processor.counts.replaced, processor.counts.unresolved) == (1, 1, 0)
    # Sampling falls back the same way.
    ids = torch.tensor([[ord(c) for c in so_far]])
    sampler = CallsFitTools(
        CharTokenizer(), [[SUSHI]], prompt_width=0, stop_ids={0}, candidates=5, more_candidates=5, sampling=True
    )
    kept = sampler(ids, scores.clone().unsqueeze(0))[0]
    assert torch.isfinite(kept).nonzero().flatten().tolist() == [ord("7")]


def test_when_nothing_can_fit_the_models_choice_is_kept_and_counted():
    so_far = "<tool_call>\n" + CALL + '{"city": "Tokyo", "top": x'  # broken already: no token mends it
    kept, processor = run_processor("", so_far, scores_ranking("x", "y", "z", '"', "'"), more_candidates=5)
    assert torch.equal(kept, scores_ranking("x", "y", "z", '"', "'"))
    assert (processor.counts.checked, processor.counts.replaced, processor.counts.unresolved) == (1, 0, 1)


def test_sampling_inside_a_call_keeps_every_fitting_candidate_and_nothing_else():
    so_far = "<tool_call>\n" + CALL + '{"city": "Tokyo", "top": '
    ids = torch.tensor([[ord(c) for c in so_far]])
    scores = scores_ranking('"', "3", "x", "4", " ")
    processor = CallsFitTools(CharTokenizer(), [[SUSHI]], prompt_width=0, stop_ids={0}, candidates=5, sampling=True)
    kept = processor(ids, scores.clone().unsqueeze(0))[0]
    assert [chr(i) for i in torch.isfinite(kept).nonzero().flatten().tolist()] == [" ", "3", "4"]
    assert torch.equal(kept[torch.isfinite(kept)], scores[[ord(" "), ord("3"), ord("4")]])
    assert (processor.counts.checked, processor.counts.replaced, processor.counts.unresolved) == (1, 1, 0)
    # Outside a call, sampling is free.
    thought = torch.tensor([[ord(c) for c in "<think>Top 3"]])
    assert torch.equal(processor(thought, scores.clone().unsqueeze(0))[0], scores)


def test_greedy_decodings_own_choice_among_equal_scores_is_the_one_checked(monkeypatch):
    """bf16 logits tie often; greedy decoding takes argmax's token, the first of the ties, whatever order topk
    gives them (its order among ties is unspecified; here it puts the higher id first): that token is the one
    that must fit, or the constraint must choose."""

    def topk_higher_id_first_among_ties(values, k):
        order = sorted(range(len(values)), key=lambda i: (-float(values[i]), -i))[:k]
        return SimpleNamespace(values=values[order], indices=torch.tensor(order))

    monkeypatch.setattr(torch, "topk", topk_higher_id_first_among_ties)
    so_far = "<tool_call>\n" + CALL + '{"city": "Tokyo", "top": '
    scores = torch.zeros(200)
    scores[[ord('"'), ord("3")]] = 5.0  # a tie: argmax takes '"' (the lower id), which breaks the integer
    forced, processor = run_processor("", so_far, scores)
    assert int(scores.argmax()) == ord('"') and int(forced.argmax()) == ord("3")
    assert torch.isinf(forced).sum() == len(forced) - 1
    assert (processor.counts.replaced, processor.counts.unresolved) == (1, 0)


def schema_words(schema: object) -> str:
    """Every property name and string option of a schema, nested ones included."""
    if isinstance(schema, dict):
        return "".join([*schema.get("properties", {}), *(o for o in schema.get("enum", []) if isinstance(o, str))]) + (
            "".join(schema_words(value) for value in schema.values())
        )
    return "".join(schema_words(value) for value in schema) if isinstance(schema, list) else ""


# Every character a call may hold in these tools' calls: their names, keys and options, JSON's punctuation and
# literals (true, false, null), digits, escapes and whitespace (a walk over all of string.printable is slower
# and finds no more).
WALK_ALPHABET = sorted(
    set("".join(FUNCTIONS))
    | set(schema_words(list(FUNCTIONS.values())))
    | set("namearguments")
    | set(string.hexdigits)
    | set('{}[]",:.-+eE\\/ \n\rtruefalsenullbfnrtu<>')
)


@pytest.mark.parametrize("seed", range(6))
def test_every_beginning_the_constraint_accepts_can_be_finished(monkeypatch, seed):
    """Random walks through calls, each step one of the characters the constraint accepts: after every step at
    least one character must still be accepted, or the block is closed. A beginning with no way on is a dead end:
    the constraint has nothing to choose and the model writes on unchecked (a `.` with no room left for its
    digit, a backslash after a complete name). The limits are made small so the walks reach them."""
    monkeypatch.setattr(constrained, "MAX_NUMBER_CHARS", 4)
    monkeypatch.setattr(constrained, "MAX_WHITESPACE_RUN", 3)
    rng = random.Random(seed)
    for _walk in range(8):
        text = ""
        for _step in range(160):
            if block_is_possible(text, FUNCTIONS)[1] is not None:
                break  # the call is closed
            accepted = [char for char in WALK_ALPHABET if block_is_possible(text + char, FUNCTIONS)[0]]
            assert accepted, f"a dead end: {text!r}"
            # Closing characters more often than the rest, so that walks finish values and reach the limits.
            closing = [char for char in accepted if char in '"}],']
            text += rng.choice(closing if closing and rng.random() < 0.3 else accepted)
