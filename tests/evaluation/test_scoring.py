"""The function-calling scorer: reading generated texts, comparing calls, schema checks and the metrics."""

from __future__ import annotations

import json

import pytest

from fcloop.evaluation.scoring import (
    CallPair,
    ParsedOutput,
    aggregate,
    argument_accuracy,
    call_is_schema_valid,
    match_calls,
    parse_assistant_output,
    score_case,
    score_predictions_file,
    values_equal,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "units": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "days"],
        },
    },
}
# The flat form, with nested structure and closed objects.
BOOKING_TOOL = {
    "name": "book_table",
    "description": "Book a table.",
    "parameters": {
        "type": "object",
        "properties": {
            "guests": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                    "required": ["name"],
                },
            },
            "options": {"type": "object", "properties": {"window": {"type": "boolean"}}, "additionalProperties": False},
            "price": {"type": "number"},
            "note": {"type": ["string", "null"]},
            "legacy": {"type": "str"},
        },
        "required": ["guests"],
        "additionalProperties": False,
    },
}
NO_PARAMETERS_TOOL = {"name": "ping", "description": "No parameters declared."}
TOOLS = [WEATHER_TOOL, BOOKING_TOOL, NO_PARAMETERS_TOOL]


def call_text(name: str, arguments: dict, python: bool = False) -> str:
    call = {"name": name, "arguments": arguments}
    body = repr(call) if python else json.dumps(call)
    return f"<tool_call>\n{body}\n</tool_call>"


def weather(city: str, days: object) -> dict:
    return {"name": "get_weather", "arguments": {"city": city, "days": days}}


# ---------------------------------------------------------------------------------------------------------
# parse_assistant_output


def test_json_call_after_a_thought():
    text = "<think>The user wants Paris.</think>\n" + call_text("get_weather", {"city": "Paris", "days": 3})
    assert parse_assistant_output(text) == ParsedOutput(
        think="The user wants Paris.",
        calls=(weather("Paris", 3),),
        parse_failed=False,
        answer_text="",
        think_before_call=True,
    )


def test_python_dict_call_parses_like_json():
    text = (
        "<tool_call>\n{'name': 'set_flag', 'arguments': {'on': True, 'value': None, 'tags': ('a', 'b')}}\n</tool_call>"
    )
    parsed = parse_assistant_output(text)
    assert parsed.calls == ({"name": "set_flag", "arguments": {"on": True, "value": None, "tags": ("a", "b")}},)
    assert not parsed.parse_failed
    assert parsed.think is None


def test_calls_keep_only_name_and_arguments():
    text = '<tool_call>{"id": "c1", "type": "function", "name": "ping", "arguments": "{\\"x\\": 1}"}</tool_call>'
    assert parse_assistant_output(text).calls == ({"name": "ping", "arguments": {"x": 1}},)


def test_answer_text_is_the_text_around_blocks():
    text = "<think>t</think>\n Sure, checking. " + call_text("ping", {}) + " Done.\n"
    parsed = parse_assistant_output(text)
    assert parsed.answer_text == "Sure, checking.  Done."
    assert parsed.calls == ({"name": "ping", "arguments": {}},)


def test_text_after_end_of_turn_or_eos_is_ignored():
    parsed = parse_assistant_output("Hello<end_of_turn>\n<tool_call>{broken")
    assert (parsed.answer_text, parsed.calls, parsed.parse_failed) == ("Hello", (), False)
    parsed = parse_assistant_output(call_text("ping", {}) + "<eos><tool_call>")
    assert (parsed.calls, parsed.parse_failed) == (({"name": "ping", "arguments": {}},), False)


def test_broken_json_is_a_parse_failure_and_an_attempted_call():
    parsed = parse_assistant_output(
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris",}\n</tool_call>'
    )
    assert parsed.parse_failed
    assert parsed.calls == ()
    assert parsed.tried_to_call


def test_a_broken_block_keeps_the_calls_that_parse():
    text = call_text("ping", {}) + "\n<tool_call>{not a call}</tool_call>"
    parsed = parse_assistant_output(text)
    assert parsed.calls == ({"name": "ping", "arguments": {}},)
    assert parsed.parse_failed


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "ping", "arguments": {}}',
        '{"name": "ping", "arguments": {}}</tool_call>',
        '</tool_call><tool_call>{"name": "ping", "arguments": {}}',
        '<tool_call><tool_call>{"name": "ping", "arguments": {}}</tool_call>',
    ],
)
def test_unbalanced_tool_call_tags_fail_and_give_no_call(text):
    parsed = parse_assistant_output(text)
    assert (parsed.calls, parsed.parse_failed, parsed.tried_to_call) == ((), True, True)
    assert parsed.answer_text == text  # block boundaries are unknown, so nothing is cut out


def test_thoughts_may_hold_markup_and_quoted_tags():
    thought = 'a < b && c > d; I must not write "<tool_call>" or </tool_call> here, & no "</tool_response>"'
    text = f"<think>{thought}</think>" + call_text("get_weather", {"city": "A&B <x>", "days": 1})
    parsed = parse_assistant_output(text)
    assert parsed.think == thought
    assert parsed.calls == (weather("A&B <x>", 1),)
    assert not parsed.parse_failed


def test_a_tag_inside_a_thought_is_not_a_call():
    parsed = parse_assistant_output("<think>maybe <tool_call>{'name': 'ping'}</tool_call>? no.</think>It is sunny.")
    assert (parsed.calls, parsed.parse_failed, parsed.tried_to_call) == ((), False, False)
    assert parsed.answer_text == "It is sunny."


def test_an_unclosed_thought_swallows_the_rest():
    parsed = parse_assistant_output("Hi <think>plan: " + call_text("ping", {}))
    assert parsed.think == "plan: " + call_text("ping", {})
    assert (parsed.calls, parsed.parse_failed, parsed.answer_text) == ((), False, "Hi")


def test_stray_think_close_is_answer_text_and_only_the_first_thought_is_kept():
    parsed = parse_assistant_output("</think>A<think> one </think>B<think>two</think>")
    assert (parsed.think, parsed.answer_text) == ("one", "</think>AB")


@pytest.mark.parametrize(
    ("text", "think_before_call"),
    [
        ("<think>why</think>" + call_text("ping", {}), True),
        ("<think>why</think>text" + call_text("ping", {}) + call_text("ping", {}), True),
        (call_text("ping", {}) + "<think>afterwards</think>" + call_text("ping", {}), False),
        ("<think>\n \n</think>" + call_text("ping", {}), False),  # an empty thought is no reasoning
        ("<think></think><think>second</think>" + call_text("ping", {}), True),
        ("<think>why</think>no call", False),
        (call_text("ping", {}), False),
    ],
)
def test_think_before_call(text, think_before_call):
    assert parse_assistant_output(text).think_before_call is think_before_call


LONG_NESTING = "[" * 10_000 + "]" * 10_000
NASTY_TEXTS = [
    "",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_call></tool_call>",
    "<tool_call>null</tool_call>",
    '<tool_call>{"name": 1}</tool_call>',
    "<tool_call><tool_call></tool_call></tool_call>",
    "<think><tool_call></think></tool_call>",
    "<end_of_turn>",
    "<eos><think>",
    LONG_NESTING,
    "<tool_call>" + LONG_NESTING + "</tool_call>",
    "<tool_call>{'name': 'x', 'arguments': " + "{'a': " * 10_000 + "</tool_call>",
    "<tool_call>" + "-" * 10_000 + "1</tool_call>",
    "<tool_call>" + "+".join(["1"] * 20_000) + "</tool_call>",
    "<tool_call>" + "9" * 5_000 + "</tool_call>",
    "<tool_call>{'name': 'x', 'arguments': {[1]: 2}}</tool_call>",
    "<tool_call>{'name': 'x', 'arguments': {1, 2}}</tool_call>",
    "<tool_call>{'name': 'x', 'arguments': 'not json'}</tool_call>",
    "<tool_call>{'name': 'x', 'arguments': {'a': b'raw', 'b': ..., 'c': 1j, 'd': 1e999}}</tool_call>",
    "<tool_call>__import__('os').system('true')</tool_call>",
    "<tool_call>{'name': '\ud800', 'arguments': {'\udfff': '\ud800'}}</tool_call>",
    "\ud800<think>\udfff</think>\udbff" + call_text("\ud800", {"x": "\udc00"}),
    "\x00" * 1_000,
    ("<think>a & b < c</think>" + call_text("ping", {"q": "x" * 100}) + "<tool_call>") * 5_000,
    "<tool_call>" + "x" * 1_000_000 + "</tool_call>",
]


@pytest.mark.parametrize("text", NASTY_TEXTS, ids=range(len(NASTY_TEXTS)))
def test_nothing_makes_the_scorer_raise(text):
    parsed = parse_assistant_output(text)
    for call in parsed.calls:
        assert isinstance(call["name"], str) and isinstance(call["arguments"], dict)
        call_is_schema_valid(call, TOOLS)
    score = score_case(call_text("ping", {}), text, TOOLS)
    aggregate([score])


# ---------------------------------------------------------------------------------------------------------
# values_equal and argument accuracy


@pytest.mark.parametrize(
    ("expected", "actual", "equal"),
    [
        (1, 1.0, True),
        (1.0, 1, True),
        (2**53 + 1, float(2**53), False),  # numbers compare exactly, not after rounding to float
        (True, 1, False),
        (1, True, False),
        (0, False, False),
        (False, False, True),
        ("Paris", "Paris", True),
        ("Paris", "paris", False),
        ("Paris", "Paris ", False),
        ("1", 1, False),
        (None, None, True),
        (None, "", False),
        (None, 0, False),
        ([1, 2], [2, 1], False),
        ([1, 2], (1, 2), True),
        ([1], [1, 1], False),
        ({"a": 1, "b": 2}, {"b": 2.0, "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ({"a": [{"b": [1, {"c": True}]}]}, {"a": [{"b": [1.0, {"c": True}]}]}, True),
        ({"a": [{"b": [1, {"c": True}]}]}, {"a": [{"b": [1, {"c": 1}]}]}, False),
        ({"a": [{"b": ["x"]}]}, {"a": [{"b": ["X"]}]}, False),
        (float("nan"), float("nan"), False),
    ],
)
def test_values_equal(expected, actual, equal):
    assert values_equal(expected, actual) is equal


def test_argument_accuracy_counts_the_union_of_argument_names():
    assert argument_accuracy({"city": "Paris", "days": 3}, {"city": "paris", "days": 3.0}) == 1 / 2
    assert argument_accuracy({"city": "Paris", "days": 3}, {"city": "Paris", "days": 3, "units": "c"}) == 2 / 3
    assert argument_accuracy({"city": "Paris", "days": 3}, {"city": "Paris"}) == 1 / 2
    assert argument_accuracy({}, {}) == 1.0


# ---------------------------------------------------------------------------------------------------------
# match_calls


def test_parallel_calls_in_another_order_match_exactly():
    expected = [weather("Paris", 3), {"name": "ping", "arguments": {}}]
    match = match_calls(expected, list(reversed(expected)))
    assert match.pairs == (CallPair(0, 1, True, 1.0), CallPair(1, 0, True, 1.0))
    assert (match.exact_matches, match.name_matches, match.is_exact) == (2, 2, True)


def test_same_name_calls_pair_by_arguments():
    match = match_calls([weather("Paris", 3), weather("Oslo", 2)], [weather("Oslo", 2), weather("Paris", 3)])
    assert [(pair.expected_index, pair.actual_index) for pair in match.pairs] == [(0, 1), (1, 0)]
    assert match.is_exact


def test_exact_pairs_are_preferred_over_index_order():
    # Pairing by order first would take (0, 0) with wrong arguments and end with no exact pair.
    match = match_calls([weather("Paris", 3), weather("Oslo", 2)], [weather("Oslo", 2), weather("Rome", 1)])
    assert match.pairs == (CallPair(0, 1, False, 0.0), CallPair(1, 0, True, 1.0))
    assert (match.exact_matches, match.name_matches, match.is_exact) == (1, 2, False)


def test_missing_extra_and_wrongly_named_calls():
    paris, ping = weather("Paris", 3), {"name": "ping", "arguments": {}}
    missing = match_calls([paris, ping], [paris])
    assert (missing.exact_matches, missing.name_matches, missing.is_exact) == (1, 1, False)
    extra = match_calls([paris], [ping, paris])
    assert (extra.exact_matches, extra.name_matches, extra.is_exact) == (1, 1, False)
    assert extra.pairs == (CallPair(0, 1, True, 1.0),)
    wrong_name = match_calls([paris], [{"name": "get_forecast", "arguments": paris["arguments"]}])
    assert (wrong_name.pairs, wrong_name.exact_matches, wrong_name.is_exact) == ((), 0, False)


def test_right_name_wrong_argument():
    match = match_calls([weather("Paris", 3)], [weather("paris", 3)])
    assert match.pairs == (CallPair(0, 0, False, 0.5),)
    assert (match.exact_matches, match.name_matches) == (0, 1)


def test_no_calls_on_either_side_is_exact():
    assert match_calls([], []).is_exact


# ---------------------------------------------------------------------------------------------------------
# call_is_schema_valid


def book(**arguments) -> dict:
    return {"name": "book_table", "arguments": arguments}


@pytest.mark.parametrize(
    ("call", "valid"),
    [
        (weather("Paris", 3), True),
        ({"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "units": "f"}}, True),
        ({"name": "get_weather", "arguments": {"city": "Paris"}}, False),  # missing required
        (weather(5, 3), False),  # wrong type
        ({"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "units": "kelvin"}}, False),  # enum
        (weather("Paris", 2.5), False),
        (weather("Paris", 2.0), False),  # an integral float is still not an integer
        (weather("Paris", True), False),  # a bool is not an integer
        (weather("Paris", None), False),
        ({"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "extra": 1}}, True),  # not closed
        ({"name": "get_weather", "arguments": "city=Paris"}, False),
        ({"name": "get_wether", "arguments": {"city": "Paris", "days": 3}}, False),  # unknown tool
        (book(guests=[{"name": "Ann", "age": 30}, {"name": "Bo"}]), True),
        (book(guests=[{"name": "Ann", "age": "30"}]), False),  # nested item type
        (book(guests=[{"age": 30}]), False),  # nested required
        (book(guests={"name": "Ann"}), False),  # not an array
        (book(guests=[], options={"window": True}), True),
        (book(guests=[], options={"window": 1}), False),
        (book(guests=[], options={"window": True, "view": "sea"}), False),  # nested additionalProperties false
        (book(guests=[], tip=5), False),  # top-level additionalProperties false
        (book(guests=[], price=12), True),  # an int is a number
        (book(guests=[], price=12.5), True),
        (book(guests=[], price=False), False),  # a bool is not a number
        (book(guests=[], note=None), True),  # type list
        (book(guests=[], note=3), False),
        (book(guests=[], legacy="x"), True),  # Python type name "str"
        (book(guests=[], legacy=1), False),
        ({"name": "ping", "arguments": {"anything": [1, {"x": None}]}}, True),  # no parameters declared
    ],
)
def test_call_is_schema_valid(call, valid):
    assert call_is_schema_valid(call, TOOLS) is valid


def test_a_tool_is_found_in_either_form():
    flat_weather = WEATHER_TOOL["function"]
    assert call_is_schema_valid(weather("Paris", 3), [flat_weather])
    assert call_is_schema_valid(weather("Paris", 3), [{"type": "function", "function": BOOKING_TOOL}, WEATHER_TOOL])
    assert not call_is_schema_valid(weather("Paris", 3), [])


# ---------------------------------------------------------------------------------------------------------
# score_case and aggregate

PARIS = call_text("get_weather", {"city": "Paris", "days": 3})
OSLO = call_text("get_weather", {"city": "Oslo", "days": 2})


def test_python_dict_expected_matches_json_generated():
    expected = call_text("get_weather", {"city": "Paris", "days": 3}, python=True)
    score = score_case(expected, "<think>Paris, three days.</think>\n" + PARIS, TOOLS)
    assert (score.decision_correct, score.exact_match) == (True, True)
    assert (score.match.name_matches, score.match.exact_matches, score.schema_valid_calls) == (1, 1, 1)
    assert score.generated.think_before_call


def test_nested_arguments_must_match_exactly():
    expected = call_text("book_table", {"guests": [{"name": "Ann", "age": 30}], "options": {"window": True}})
    same = call_text("book_table", {"options": {"window": True}, "guests": [{"age": 30.0, "name": "Ann"}]})
    other = call_text("book_table", {"guests": [{"name": "Ann", "age": 30}], "options": {"window": 1}})
    assert score_case(expected, same, TOOLS).exact_match
    assert not score_case(expected, other, TOOLS).exact_match


@pytest.mark.parametrize(
    ("expected", "generated", "decision_correct", "exact_match"),
    [
        ("It is sunny in Paris.", "<think>no tool needed</think>Sunny!", True, True),
        ("It is sunny in Paris.", PARIS, False, False),
        ("It is sunny in Paris.", "<tool_call>{oops</tool_call>", False, False),
        (PARIS, "I cannot do that.", False, False),
        (PARIS, "<tool_call>{oops</tool_call>", True, False),
        (PARIS, PARIS + "\n" + OSLO, True, False),
        (PARIS + "\n" + OSLO, OSLO + "\n" + PARIS, True, True),
        (PARIS + "\n" + OSLO, PARIS, True, False),
        (PARIS, PARIS + "\n<tool_call>{oops</tool_call>", True, False),  # a broken extra block spoils it
    ],
)
def test_decision_and_exact_match(expected, generated, decision_correct, exact_match):
    score = score_case(expected, generated, TOOLS)
    assert (score.decision_correct, score.exact_match) == (decision_correct, exact_match)


def test_an_unparseable_expected_text_is_an_error():
    with pytest.raises(ValueError, match="expected text has a tool call that does not parse"):
        score_case("<tool_call>{oops</tool_call>", PARIS, TOOLS)


AGGREGATE_CASES = [
    # 1: exact, with a thought.
    (PARIS, "<think>ok</think>" + PARIS),
    # 2: two expected, both name-matched, one with a wrong argument; no thought.
    (PARIS + OSLO, OSLO + call_text("get_weather", {"city": "paris", "days": 3})),
    # 3: text expected and given.
    ("Hello!", "Hi there."),
    # 4: a call expected, a broken block given.
    (PARIS, "<think>hmm</think><tool_call>{'name': </tool_call>"),
    # 5: text expected, a schema-invalid call given.
    ("Hello!", call_text("get_weather", {"city": "Rome", "days": 2.5})),
    # 6: a call expected, text given.
    (PARIS, "It is sunny."),
]


def test_aggregate_exact_values():
    scores = [score_case(expected, generated, TOOLS) for expected, generated in AGGREGATE_CASES]
    assert aggregate(scores) == {
        "decision_accuracy": 4 / 6,  # all but 5 and 6
        "call_exact_match": 2 / 6,  # 1 and 3
        "name_accuracy": 3 / 5,  # expected calls 1 + 2 + 1 + 1, name-matched 1 + 2
        "argument_accuracy": 2 / 3,  # of those 3, case 2's paris call has a wrong argument
        "parse_failure_rate": 1 / 6,  # case 4
        "schema_valid_rate": 3 / 4,  # generated calls 1 + 2 + 1, case 5's is invalid
        "think_before_call_rate": 1 / 3,  # cases with a parsed call: 1, 2, 5
        "right_no_call": 1 / 2,  # 3 of 3 and 5
        "right_one_call": 1 / 3,  # 1 of 1, 4 and 6
        "right_several_calls": 0.0,  # case 2
        "n": 6,
    }


def test_empty_denominators_give_none():
    assert aggregate([]) == {
        "decision_accuracy": None,
        "call_exact_match": None,
        "name_accuracy": None,
        "argument_accuracy": None,
        "parse_failure_rate": None,
        "schema_valid_rate": None,
        "think_before_call_rate": None,
        "right_no_call": None,
        "right_one_call": None,
        "right_several_calls": None,
        "n": 0,
    }
    only_text = aggregate([score_case("Hello!", "Hi.", TOOLS)])
    assert only_text["decision_accuracy"] == 1.0
    assert only_text["name_accuracy"] is None and only_text["think_before_call_rate"] is None
    json.dumps(only_text)


# ---------------------------------------------------------------------------------------------------------
# score_predictions_file


def test_predictions_file_round_trip(tmp_path):
    path = tmp_path / "predictions.jsonl"
    lines = []
    for index, (expected, generated) in enumerate(AGGREGATE_CASES):
        # Alternate the two accepted forms of `tools`.
        tools = json.dumps(TOOLS) if index % 2 else TOOLS
        lines.append(json.dumps({"id": f"case-{index}", "tools": tools, "expected": expected, "generated": generated}))
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n", encoding="utf-8")
    scores = [score_case(expected, generated, TOOLS) for expected, generated in AGGREGATE_CASES]
    assert score_predictions_file(path) == aggregate(scores)
    assert score_predictions_file(path)["n"] == 6


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (b"{not json", "line 2: "),
        (b"[1, 2]", "line 2: not a JSON object"),
        (b'{"id": 1, "tools": [], "expected": "x"}', "line 2: 'generated' must be a string"),
        (b'{"id": 1, "expected": "x", "generated": "y"}', "line 2: 'tools' must be a list"),
        (b'{"id": 1, "tools": "{\\"a\\": 1}", "expected": "x", "generated": "y"}', "line 2: 'tools' must be a list"),
        (b'{"id": 1, "tools": [], "expected": "<tool_call>{", "generated": "y"}', "line 2: the expected text"),
        (b'{"id": 1, "tools": [], "expected": "\xff", "generated": "y"}', "line 2: 'utf-8' codec"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": 0, "tools": TOOLS, "expected": PARIS, "generated": PARIS}).encode()
    path.write_bytes(good + b"\n" + bad_line + b"\n" + good + b"\n")
    with pytest.raises(ValueError, match="bad.jsonl: " + message.replace("(", r"\(")):
        score_predictions_file(path)
