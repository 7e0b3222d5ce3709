"""fcloop.evaluation.bfcl: BFCL sources, function docs as tools, BFCL's scoring rules (hand-made cases, and every gold
answer of the installed bfcl-eval data, skipped when that is absent), and the evaluation's records/metrics."""

from __future__ import annotations

import json

import pytest
from bfcl_data import AREA_DOC, WEATHER_DOC, write_bfcl_folder, write_jsonl

import fcloop.evaluation.generation
from fcloop.data import bfcl_cases
from fcloop.data.bfcl_cases import BfclCase, load_source
from fcloop.data.conversation import Conversation, Message
from fcloop.data.gemma_format import render
from fcloop.data.readers import SourceError
from fcloop.evaluation import bfcl
from fcloop.evaluation.bfcl import check_call, check_calls, check_generated


def call(function: str, arguments: dict | None = None, /, **more) -> dict:
    """A parsed call; arguments as a dict where their names could clash with these (`function`, ...)."""
    return {"name": function, "arguments": {**(arguments or {}), **more}}


def text_of(*calls: dict) -> str:
    return "".join("<tool_call>\n" + json.dumps(c) + "\n</tool_call>" for c in calls)


WEATHER_ANSWER = {"weather.current": {"city": ["New York", "NYC"], "days": [2], "unit": ["", "celsius"]}}


# ---------------------------------------------------------------------------------------------------------
# Function docs -> tools, and the prompt


def test_bfcl_types_become_json_schema_at_every_depth():
    schema = {
        "type": "dict",
        "properties": {
            "ratio": {"type": "float", "description": "kept", "default": 0.5},
            "point": {"type": "tuple", "items": {"type": "integer"}},
            "filters": {
                "type": "array",
                "items": {"type": "dict", "properties": {"value": {"type": "any"}, "on": {"type": "boolean"}}},
            },
            "meta": {"type": "dict", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
        },
        "required": ["ratio"],
    }
    assert bfcl_cases.json_schema(schema) == {
        "type": "object",
        "properties": {
            "ratio": {"type": "number", "description": "kept", "default": 0.5},
            "point": {"type": "array", "items": {"type": "integer"}},
            "filters": {
                "type": "array",
                "items": {"type": "object", "properties": {"value": {"type": "string"}, "on": {"type": "boolean"}}},
            },
            "meta": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
        },
        "required": ["ratio"],
    }
    assert schema["type"] == "dict"  # the doc itself is left as BFCL wrote it (the checker reads it)


def test_function_doc_becomes_a_training_style_tool():
    assert bfcl_cases.function_tool(AREA_DOC) == {
        "type": "function",
        "function": {
            "name": "circle_area",
            "description": "Area of a circle.",
            "parameters": {
                "type": "object",
                "properties": {"radius": {"type": "number", "description": "Radius."}},
                "required": ["radius"],
            },
        },
    }


def test_prompt_is_the_training_render_of_the_question_with_its_tools():
    messages = (Message("system", "Be brief."), Message("user", "Area of a circle of radius 3?"))
    case = BfclCase("simple_python_9", "simple_python", messages, (AREA_DOC,), ({"circle_area": {"radius": [3.0]}},))
    expected = render(
        Conversation(messages, tools=(bfcl_cases.function_tool(AREA_DOC),)), "Think.", add_generation_prompt=True
    )
    assert bfcl.prompt_text(case, "Think.") == expected.text
    assert expected.text.endswith("Area of a circle of radius 3?<end_of_turn>\n<start_of_turn>model\n")
    assert '{"type": "function", "function": {"name": "circle_area"' in expected.text
    assert '"type": "number"' in expected.text and '"dict"' not in expected.text


def test_reference_text_takes_the_first_acceptable_value_and_leaves_out_omittable_parameters():
    answer = {
        "f": {
            "a": ["", "x"],  # "omitted" first: the first value given is "x"
            "b": [""],  # may only be omitted: left out
            "c": [{"k": ["", 1], "m": [""]}],  # a dict option: its keys take their first values too
            "d": [[{"n": ["v"]}]],  # a list of dicts
        }
    }
    case = BfclCase("multiple_0", "multiple", (Message("user", "q"),), (), (answer,))
    assert case.reference_text() == text_of(call("f", a="x", c={"k": 1}, d=[{"n": "v"}]))


# ---------------------------------------------------------------------------------------------------------
# The rules, on hand-made cases


def test_string_normalization_is_bfcls():
    assert bfcl.normalize_string("April 1, 2024") == "april12024"
    assert bfcl.normalize_string("New-York_City/NY. *^") == "newyorkcityny"
    assert bfcl.normalize_string("it's") == 'it"s'


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"city": "New York", "days": 2}, None),
        ({"city": "new york,", "days": 2, "unit": "Celsius"}, None),  # normalized strings
        ({"city": "NYC", "days": 2, "unit": "celsius"}, None),
        ({"days": 2}, "missing required parameter 'city'"),
        ({"city": "New York"}, "missing parameter 'days' (the answer does not allow omitting it)"),
        ({"city": "New York", "days": 2, "hours": 3}, "unexpected parameter 'hours'"),
        ({"city": "Boston", "days": 2}, "wrong value for 'city': 'Boston' is not among ['New York', 'NYC']"),
        ({"city": "New York", "days": 2.0}, "wrong type: days: expected integer, got float 2.0"),
        ({"city": "New York", "days": True}, "wrong type: days: expected integer, got bool True"),
        ({"city": "New York", "days": "2"}, "wrong type: days: expected integer, got str '2'"),
        ({"city": "New York", "days": 3}, "wrong value for 'days': 3 is not among [2]"),
        (
            {"city": "New York", "days": 2, "unit": "kelvin"},
            "wrong value for 'unit': 'kelvin' is not among ['celsius']",
        ),
    ],
)
def test_one_call_against_one_answer(arguments, error):
    assert check_call(call("weather.current", **arguments), WEATHER_DOC, WEATHER_ANSWER) == error


def test_wrong_function_name_and_unknown_parameter_of_the_doc():
    assert check_call(call("current", city="NYC", days=2), WEATHER_DOC, WEATHER_ANSWER) == (
        "wrong function: 'current' instead of 'weather.current'"
    )
    # A parameter the answer lists but the function doc does not is unknown too.
    answer = {"weather.current": {"city": ["Lima"], "zone": ["", "utc"]}}
    assert check_call(call("weather.current", city="Lima", zone="utc"), WEATHER_DOC, answer) == (
        "unexpected parameter 'zone'"
    )


def test_a_float_parameter_accepts_an_int_and_an_integer_one_does_not_accept_a_float():
    answer = {"circle_area": {"radius": [3.0]}}
    assert check_call(call("circle_area", radius=3), AREA_DOC, answer) is None
    assert check_call(call("circle_area", radius=3.0), AREA_DOC, answer) is None
    assert check_call(call("circle_area", radius=False), AREA_DOC, answer) == (
        "wrong type: radius: expected float, got bool False"
    )


def test_an_answer_of_another_type_than_declared_accepts_that_type():
    # BFCL's answers sometimes name a variable as a string where the doc declares an integer.
    answer = {"weather.current": {"city": ["Lima"], "days": ["n_days"]}}
    assert check_call(call("weather.current", city="Lima", days="n_days"), WEATHER_DOC, answer) is None
    assert check_call(call("weather.current", city="Lima", days="other"), WEATHER_DOC, answer) == (
        "wrong value for 'days': 'other' is not among ['n_days']"
    )


NESTED_DOC = {
    "name": "plot",
    "parameters": {
        "type": "dict",
        "properties": {
            "points": {"type": "array", "items": {"type": "integer"}},
            "labels": {"type": "array", "items": {"type": "string"}},
            "style": {
                "type": "dict",
                "properties": {"color": {"type": "string"}, "width": {"type": "integer"}},
            },
            "series": {
                "type": "array",
                "items": {"type": "dict", "properties": {"name": {"type": "string"}, "weight": {"type": "float"}}},
            },
        },
        "required": ["points"],
    },
}
STYLE = {"color": ["Dark Red", "red"], "width": ["", 2]}
SERIES = [{"name": ["a"], "weight": [0.5]}, {"name": ["b"], "weight": [1.0, ""]}]
NESTED_ANSWER = {
    "plot": {
        "points": [[1, 2, 3]],
        "labels": [["Sales Q1", "Sales Q2"], ""],
        "style": [STYLE, ""],
        "series": [SERIES, ""],
    }
}


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"points": [1, 2, 3]}, None),
        ({"points": (1, 2, 3), "labels": ["sales q1", "SALES-Q2"]}, None),
        ({"points": [1, 2, 3], "style": {"color": "dark red"}}, None),
        ({"points": [1, 2, 3], "style": {"color": "red", "width": 2}}, None),
        ({"points": [1, 2, 3], "series": [{"name": "a", "weight": 0.5}, {"name": "b"}]}, None),
        ({"points": [3, 2, 1]}, "wrong value for 'points': [3, 2, 1] is not among [[1, 2, 3]]"),
        ({"points": [1, 2]}, "wrong value for 'points': [1, 2] is not among [[1, 2, 3]]"),
        ({"points": [1, 2, 3.0]}, "wrong type: points[2]: expected integer, got float 3.0"),
        (
            {"points": [1, 2, 3], "labels": ["Sales Q2", "Sales Q1"]},
            "wrong value for 'labels': ['Sales Q2', 'Sales Q1'] is not among [['Sales Q1', 'Sales Q2']]",
        ),
        (
            {"points": [1, 2, 3], "style": {"color": "blue"}},
            f"wrong value for 'style': {{'color': 'blue'}} is not among {[STYLE]}",
        ),
        (
            {"points": [1, 2, 3], "style": {"width": 2}},
            f"wrong value for 'style': {{'width': 2}} is not among {[STYLE]}",
        ),
        (
            {"points": [1, 2, 3], "style": {"color": "red", "alpha": 1}},
            f"wrong value for 'style': {{'color': 'red', 'alpha': 1}} is not among {[STYLE]}",
        ),
        (
            {"points": [1, 2, 3], "style": {"color": "red", "width": 2.0}},
            "wrong type: style.width: expected integer, got float 2.0",
        ),
        (
            {"points": [1, 2, 3], "series": [{"name": "b"}, {"name": "a", "weight": 0.5}]},
            f"wrong value for 'series': [{{'name': 'b'}}, {{'name': 'a', 'weight': 0.5}}] is not among {[SERIES]}",
        ),
    ],
)
def test_lists_and_nested_dicts_element_by_element(arguments, error):
    assert check_call(call("plot", **arguments), NESTED_DOC, NESTED_ANSWER) == error


def case_of(category: str, functions: list[dict], answers: list[dict]) -> BfclCase:
    return BfclCase(f"{category}_0", category, (Message("user", "q"),), tuple(functions), tuple(answers))


def test_parallel_calls_match_in_any_order_with_none_missing_and_none_extra():
    case = case_of("parallel", [WEATHER_DOC], [{"weather.current": {"city": [c]}} for c in ("Oslo", "Rome")])
    oslo, rome = call("weather.current", city="Oslo"), call("weather.current", city="Rome")
    assert check_calls(case, [oslo, rome], parse_failed=False) is None
    assert check_calls(case, [rome, oslo], parse_failed=False) is None
    assert check_calls(case, [oslo], parse_failed=False) == "1 calls instead of 2"
    assert check_calls(case, [oslo, rome, oslo], parse_failed=False) == "3 calls instead of 2"
    assert check_calls(case, [oslo, oslo], parse_failed=False) == (
        "expected call 1 (weather.current): wrong value for 'city': 'Oslo' is not among ['Rome'] | "
        "wrong value for 'city': 'Oslo' is not among ['Rome']"
    )
    assert check_calls(case, [oslo, rome], parse_failed=True) == "a tool call does not parse"


def test_parallel_pairing_finds_a_full_matching_where_greedy_pairing_would_not():
    # The first answer accepts both calls, the second only the first call: pairing the first answer with the
    # first call (greedy, BFCL's own checker) leaves the second answer without a call.
    answers = [{"weather.current": {"city": ["Oslo", "Rome"]}}, {"weather.current": {"city": ["Oslo"]}}]
    case = case_of("parallel", [WEATHER_DOC], answers)
    calls = [call("weather.current", city="Oslo"), call("weather.current", city="Rome")]
    assert check_calls(case, calls, parse_failed=False) is None


def test_multiple_needs_the_expected_function_among_several():
    case = case_of("multiple", [WEATHER_DOC, AREA_DOC], [{"circle_area": {"radius": [2.0]}}])
    assert check_generated(case, text_of(call("circle_area", radius=2))) is None
    assert check_generated(case, text_of(call("weather.current", city="Oslo"))) == (
        "wrong function: 'weather.current' instead of 'circle_area'"
    )


def test_irrelevance_is_right_only_without_any_call_attempt():
    case = case_of("irrelevance", [AREA_DOC], [])
    assert check_generated(case, "I cannot compute that with these tools.") is None
    assert check_generated(case, "<think>No tool fits <tool_call>.</think>No.") is None  # quoted in a thought
    assert check_generated(case, text_of(call("circle_area", radius=1.0))) == "called a function where none fits"
    assert check_generated(case, "<tool_call>\n{broken\n</tool_call>") == "called a function where none fits"


def test_generated_text_is_read_by_the_scoring_parser():
    case = case_of("simple_python", [AREA_DOC], [{"circle_area": {"radius": [3.0]}}])
    good = text_of(call("circle_area", radius=3))
    assert check_generated(case, "<think>Radius 3.</think>" + good + "<end_of_turn>junk") is None
    assert (
        check_generated(case, "<tool_call>\n{'name': 'circle_area', 'arguments': {'radius': 3}}\n</tool_call>") is None
    )
    assert check_generated(case, "<think>" + good) == "0 calls instead of 1"  # an unclosed thought calls nothing
    assert check_generated(case, "The area is 28.3.") == "0 calls instead of 1"
    assert check_generated(case, "<tool_call>\n{broken\n</tool_call>") == "a tool call does not parse"


# ---------------------------------------------------------------------------------------------------------
# Sources


def test_a_bfcl_file_loads_with_its_answers(tmp_path):
    folder = write_bfcl_folder(tmp_path / "data")
    cases = load_source(f"bfcl:{folder / 'BFCL_v4_simple_python.json'}")
    assert [case.id for case in cases] == ["simple_python_0", "simple_python_1", "simple_python_2"]
    assert cases[0].category == "simple_python"
    assert cases[0].messages == (Message("user", "Weather in New York, 2 days ahead?"),)
    assert cases[0].functions == (WEATHER_DOC,)
    assert cases[0].ground_truth == (WEATHER_ANSWER,)
    irrelevance = load_source(f"bfcl:{folder / 'BFCL_v4_irrelevance.json'}")  # no answers file needed
    assert [(case.id, case.ground_truth, case.expects_no_call) for case in irrelevance] == [("irrelevance_0", (), True)]


def test_a_sample_is_fixed_by_the_ids_alone_kept_in_file_order_and_nested(tmp_path):
    ids = [f"simple_python_{i}" for i in range(40)]
    rows = [{"id": i, "question": [[{"role": "user", "content": i}]], "function": [AREA_DOC]} for i in ids]
    answers = [{"id": i, "ground_truth": [{"circle_area": {"radius": [1.0]}}]} for i in ids]
    path = write_jsonl(tmp_path / "BFCL_v4_simple_python.json", rows)
    write_jsonl(tmp_path / "possible_answer" / "BFCL_v4_simple_python.json", answers[::-1])  # any answer order
    ten = [case.id for case in load_source(f"bfcl:{path}@10")]
    five = [case.id for case in load_source(f"bfcl:{path}@5")]
    assert len(ten) == 10 and sorted(ten, key=ids.index) == ten and set(five) < set(ten)
    assert set(ten) == bfcl_cases.sample_ids(ids, 10)
    # The sample is a pure function of the ids: reversing the file gives the same cases.
    write_jsonl(path, rows[::-1])
    assert {case.id for case in load_source(f"bfcl:{path}@10")} == set(ten)
    assert len(load_source(f"bfcl:{path}@40")) == 40
    with pytest.raises(SourceError, match=r"asks for 41 cases, but .* has only 40"):
        load_source(f"bfcl:{path}@41")
    with pytest.raises(SourceError, match="at least 1"):
        load_source(f"bfcl:{path}@0")


def test_sample_ids_are_the_smallest_sha256_hashes():
    import hashlib

    ids = ["a", "b", "c", "d"]
    by_hash = sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    assert bfcl_cases.sample_ids(ids, 2) == set(by_hash[:2])


def test_a_category_name_finds_the_installed_package_files(tmp_path, monkeypatch):
    folder = write_bfcl_folder(tmp_path / "data")
    monkeypatch.setattr(bfcl_cases, "installed_data_folder", lambda: folder)
    assert bfcl_cases.parse_source("bfcl:parallel@1") == (folder / "BFCL_v4_parallel.json", 1)
    assert [case.id for case in load_source("bfcl:parallel")] == ["parallel_0"]
    monkeypatch.setattr(bfcl_cases, "installed_data_folder", lambda: None)
    with pytest.raises(SourceError, match="pip install --no-deps bfcl-eval"):
        load_source("bfcl:parallel")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("questions.json", "not named like a BFCL question file"),
        ("BFCL_v4_simple_java.json", "'simple_java' is not a single-turn AST category"),
        ("BFCL_v4_multi_turn_base.json", "'multi_turn_base' is not a single-turn AST category"),
    ],
)
def test_files_that_are_not_single_turn_ast_categories_are_refused(tmp_path, name, message):
    path = write_jsonl(tmp_path / name, [{"id": "x_0", "question": [], "function": []}])
    with pytest.raises(SourceError, match=message):
        load_source(f"bfcl:{path}")


def test_bad_files_are_named_with_the_line_and_reason(tmp_path):
    folder = write_bfcl_folder(tmp_path / "data")
    path = folder / "BFCL_v4_simple_python.json"
    with pytest.raises(SourceError, match="file not found"):
        load_source(f"bfcl:{folder / 'BFCL_v4_multiple.json'}")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", lines[2]]) + "\n")
    with pytest.raises(SourceError, match=r"BFCL_v4_simple_python.json: line 2: not JSON"):
        load_source(f"bfcl:{path}")
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    answers = folder / "possible_answer" / "BFCL_v4_simple_python.json"
    answers.write_text(answers.read_text().splitlines()[0] + "\n")
    with pytest.raises(SourceError, match=r"line 2 \(simple_python_2\): no answer with this id"):
        load_source(f"bfcl:{path}")
    (answers.parent).joinpath(answers.name).unlink()
    with pytest.raises(SourceError, match=r"file not found: .*possible_answer"):
        load_source(f"bfcl:{path}")


def test_the_same_case_in_two_sources_is_refused(tmp_path):
    folder = write_bfcl_folder(tmp_path / "data")
    path = folder / "BFCL_v4_simple_python.json"
    with pytest.raises(SourceError, match=r"case simple_python_\d is already in an earlier bfcl source"):
        bfcl_cases.load_sources([f"bfcl:{path}@2", f"bfcl:{path}"])


# ---------------------------------------------------------------------------------------------------------
# Evaluation: records and metrics


def test_evaluation_records_and_metrics_count_a_too_long_prompt_as_wrong(tmp_path, monkeypatch, tiny_tok):
    folder = write_bfcl_folder(tmp_path / "data")
    cases = bfcl_cases.load_sources(
        [
            f"bfcl:{folder / name}"
            for name in ("BFCL_v4_simple_python.json", "BFCL_v4_parallel.json", "BFCL_v4_irrelevance.json")
        ]
    )
    prompts = [bfcl.prompt_text(case, "") for case in cases]
    lengths = [len(tiny_tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    limit = max(lengths) - 1  # exactly the longest prompt does not fit
    longest = lengths.index(max(lengths))
    answers = {
        "simple_python_0": text_of(call("weather.current", city="nyc", days=2)),  # right
        "simple_python_1": text_of(call("circle_area", radius="3")),  # wrong type
        "simple_python_2": text_of(call("weather.current", city="Lima")),  # right
        "parallel_0": text_of(call("weather.current", city="Rome"), call("weather.current", city="Oslo")),  # right
        "irrelevance_0": "Shakespeare.",  # right
    }
    seen_prompts = []

    seen_tools = []

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size, device, *flags, tools, **options):
        seen_prompts.extend(prompts)
        seen_tools.append(tools)
        return [answers[next(c.id for c in cases if bfcl.prompt_text(c, "") == p)] for p in prompts]

    monkeypatch.setattr(fcloop.evaluation.generation, "generate", fake_generate)
    metrics, records = bfcl.evaluate_bfcl(None, tiny_tok, cases, "", 64, 2, "cpu", limit)
    assert prompts[longest] not in seen_prompts and len(seen_prompts) == len(cases) - 1
    correct = {case.id: case.id in answers and index != longest for index, case in enumerate(cases)}
    correct["simple_python_1"] = False
    assert [record["correct"] for record in records] == [correct[case.id] for case in cases]
    too_long = records[longest]
    assert too_long["too_long"] is True and too_long["generated"] is None
    assert too_long["error"] == f"prompt of {max(lengths)} tokens is longer than {limit}"
    assert records[1]["error"] == "wrong type: radius: expected float, got str '3'"
    assert list(records[0]) == [
        "id",
        "category",
        "prompt_tokens",
        "too_long",
        "expected",
        "generated",
        "correct",
        "error",
    ]
    assert records[0]["expected"] == text_of(call("weather.current", city="New York", days=2, unit="celsius"))
    # Held to their tools, each fitting case's generation gets the tools its prompt offers, and the counts of
    # what the constraint changed join the metrics.
    assert seen_tools == [None] and "bfcl/constraint_steps" not in metrics
    held_metrics, held_records = bfcl.evaluate_bfcl(
        None, tiny_tok, cases, "", 64, 2, "cpu", limit, constrain_calls=True
    )
    fitting = [case for index, case in enumerate(cases) if index != longest]
    assert seen_tools[1] == [case.prompt().tools for case in fitting] and all(seen_tools[1])
    assert held_records == records
    assert {key: held_metrics[key] for key in ("bfcl/constraint_steps", "bfcl/constraint_replaced")} == {
        "bfcl/constraint_steps": 0,
        "bfcl/constraint_replaced": 0,
    }
    by_category = {}
    for case in cases:
        by_category.setdefault(case.category, []).append(correct[case.id])
    assert metrics == {
        "bfcl/accuracy": sum(correct.values()) / len(cases),
        "bfcl/n": 5,
        "bfcl/too_long": 1,
        **{
            key: value
            for category, flags in by_category.items()
            for key, value in ((f"bfcl/{category}", sum(flags) / len(flags)), (f"bfcl/{category}/n", len(flags)))
        },
    }


def test_warnings_name_too_long_prompts_and_answers_longer_than_max_new_tokens(tmp_path, tiny_tok):
    folder = write_bfcl_folder(tmp_path / "data")
    cases = load_source(f"bfcl:{folder / 'BFCL_v4_simple_python.json'}")
    assert bfcl.warnings_for(cases, tiny_tok, "", 10_000, 1_000) == []
    too_long, cut_off = bfcl.warnings_for(cases, tiny_tok, "", 5, 3)
    assert too_long.startswith("warning: 3 of 3 BFCL cases have prompts longer than 5 tokens")
    assert "simple_python_0, simple_python_1, simple_python_2" in too_long
    assert cut_off.startswith("warning: 3 of 3 BFCL cases expect calls longer than eval.max_new_tokens = 3")


def test_prompt_limit_is_the_shorter_of_max_seq_len_and_the_models_context():
    class Model:
        class config:
            max_position_embeddings = 512

    assert bfcl.prompt_limit(Model(), 1024) == 512
    assert bfcl.prompt_limit(Model(), 256) == 256
    assert bfcl.prompt_limit(object(), 256) == 256


# ---------------------------------------------------------------------------------------------------------
# BFCL's own gold answers (when the bfcl-eval data is installed)

INSTALLED = bfcl_cases.installed_data_folder()
needs_bfcl_data = pytest.mark.skipif(
    INSTALLED is None or not (INSTALLED / "BFCL_v4_simple_python.json").exists(),
    reason="bfcl-eval's data is not installed (pip install --no-deps bfcl-eval==2026.3.23)",
)
# Gold answers of bfcl-eval 2026.3.23 that contradict their own function docs, so no call can pass (BFCL's
# checker fails them too): a parameter of one function put in the answer of another, a required parameter
# missing from the answer, a parameter the doc does not have.
INCONSISTENT_GOLD = {
    "parallel_multiple_12",
    "parallel_multiple_26",
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_507-149-4",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}
UNLIKELY = {"string": "zq-unlikely-value", "integer": 987654321, "float": 987654.25}


def gold_calls(case: BfclCase) -> list[dict]:
    return [
        call(name, bfcl_cases.reference_arguments(parameters))
        for c in case.ground_truth
        for name, parameters in c.items()
    ]


def perturbations(case: BfclCase) -> dict[str, list[dict]]:
    """Changes of the first gold call that BFCL's rules must reject, by kind (where the case allows it)."""
    calls = gold_calls(case)
    first, rest = calls[0], calls[1:]
    properties = bfcl._function_doc(case.functions, first["name"]).get("parameters", {})
    declared = properties.get("properties", {})
    changed = {
        "wrong name": [call(first["name"] + "_v2", first["arguments"]), *rest],
        "unknown parameter": [call(first["name"], first["arguments"], zz_unknown=1), *rest],
    }
    if len(calls) > 1:
        changed["a call missing"] = calls[:-1]
        changed["a call extra"] = [*calls, calls[0]]
    required = [p for p in properties.get("required", []) if p in first["arguments"]]
    if required:
        changed["missing required"] = [
            call(first["name"], {k: v for k, v in first["arguments"].items() if k != required[0]}),
            *rest,
        ]
    for parameter, value in first["arguments"].items():
        kind = declared.get(parameter, {}).get("type")
        if kind in UNLIKELY and type(value) is type(UNLIKELY[kind]):
            changed["wrong value"] = [call(first["name"], {**first["arguments"], parameter: UNLIKELY[kind]}), *rest]
            break
    for parameter, value in first["arguments"].items():
        if declared.get(parameter, {}).get("type") == "integer" and type(value) is int:
            changed["int as float"] = [call(first["name"], {**first["arguments"], parameter: float(value)}), *rest]
            break
    return changed


@needs_bfcl_data
@pytest.mark.parametrize("category", [c for c in bfcl_cases.CATEGORIES if "irrelevance" not in c])
def test_every_gold_answer_scores_right_and_every_perturbed_one_wrong(category):
    cases = load_source(f"bfcl:{category}")
    failing_gold = {case.id for case in cases if check_generated(case, text_of(*gold_calls(case))) is not None}
    assert failing_gold == {i for i in INCONSISTENT_GOLD if i.rsplit("_", 1)[0] == category}
    applied: dict[str, int] = {}
    for case in cases:
        if case.id in INCONSISTENT_GOLD:
            continue
        if len(case.ground_truth) > 1:  # any order
            assert check_generated(case, text_of(*gold_calls(case)[::-1])) is None, case.id
        for kind, calls in perturbations(case).items():
            applied[kind] = applied.get(kind, 0) + 1
            assert check_generated(case, text_of(*calls)) is not None, (case.id, kind)
    usable = len(cases) - len(failing_gold)
    assert applied["wrong name"] == applied["unknown parameter"] == usable
    # Most cases give each kind something to change (checked so that a perturbation cannot quietly vanish).
    assert applied["wrong value"] > usable / 2 and applied["missing required"] > usable / 2
    assert applied.get("int as float", 0) > 0 or category.startswith("live_parallel")
    if "parallel" in category:
        assert applied["a call missing"] == applied["a call extra"] == usable


@needs_bfcl_data
@pytest.mark.parametrize("category", ["irrelevance", "live_irrelevance"])
def test_irrelevance_gold_is_no_call_and_any_call_is_wrong(category):
    cases = load_source(f"bfcl:{category}")
    assert cases and all(case.ground_truth == () for case in cases)
    for case in cases:
        assert check_generated(case, "None of these tools can answer that.") is None
        if case.functions:
            assert check_generated(case, text_of(call(case.functions[0]["name"]))) is not None


@needs_bfcl_data
def test_installed_samples_for_the_readme_command():
    sizes = {"simple_python": 50, "multiple": 25, "parallel": 25, "irrelevance": 25}
    cases = bfcl_cases.load_sources([f"bfcl:{category}@{size}" for category, size in sizes.items()])
    assert bfcl.describe(cases) == "BFCL cases: 125 (simple_python 50, multiple 25, parallel 25, irrelevance 25)"
