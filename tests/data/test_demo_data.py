"""The packaged demo data: what its generator writes, every conversation fits the demo's rows, every call is
valid for the tools offered and typed as their schemas say, thoughts read the request and the tools before they
decide, the data has the variety it promises (many tools, the right one anywhere in the list), and it holds no
BFCL content."""

from __future__ import annotations

import calendar
import collections
import datetime
import json
import random
import re
from pathlib import Path

import pytest

from fcloop.config import load_config
from fcloop.data.demo_data.generate import (
    EVAL_SIZE,
    KIND_SHARES,
    NEAR_MISS_SHARE,
    NUMBER_WORDS,
    OPENERS,
    SAME_AGAIN,
    SERVE_ALIKE,
    TRAIN_SIZE,
    ToolParam,
    build_tool,
    draft_irrelevant,
    draw_value,
    generate,
    offer,
    parallel_request,
    split_concepts,
    write_jsonl,
)
from fcloop.data.demo_data.questions import SPELLED_WORDS, UNIT_PAIRS, draw_question
from fcloop.data.demo_data.vocabulary import CHAT, PARAMS, PLACES
from fcloop.data.gemma_format import END_OF_TURN, render
from fcloop.data.readers import DEMO_DIR, iter_rows, read_row
from fcloop.evaluation.generation import build_cases, cases_longer_than
from fcloop.evaluation.scoring import call_is_schema_valid, parse_assistant_output

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.toml"


def rows(split: str) -> list[dict]:
    return [row for _, row in iter_rows(f"demo:{split}")]


def function_of(tool: dict) -> dict:
    return tool.get("function", tool)


def answers(row: dict):
    """(request text, parsed answer) for the row's one exchange."""
    human, gpt = row["conversations"]
    assert (human["from"], gpt["from"]) == ("human", "gpt")
    return human["value"], parse_assistant_output(gpt["value"])


def kind(row: dict) -> str:
    _, answer = answers(row)
    names = [call["name"] for call in answer.calls]
    if not names:
        return "no_call"
    if len(names) == 1:
        return "single"
    return "parallel" if len(set(names)) == 1 else "parallel_mixed"


def test_packaged_files_are_exactly_what_the_generator_writes(tmp_path):
    train, eval_rows = generate(seed=0)
    for name, split_rows in (("train.jsonl", train), ("eval.jsonl", eval_rows)):
        write_jsonl(split_rows, tmp_path / name)
        assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes(), name


def test_every_demo_conversation_fits_the_demo_rows_whole(gemma_text_tags_tok):
    # The demo's data must not lose a conversation to data.on_too_long: not one is dropped or truncated.
    config = load_config(DEMO_CONFIG)
    assert not config.data.tags_as_tokens  # so the tokenizer below is the demo's
    longest = 0
    for split in ("demo:train", "demo:eval"):
        for index, row in iter_rows(split):
            conversation = read_row(row, "hermes", split, index)
            assert conversation.tools == tuple(row["tools"])  # the tools column is the prompt's tool list
            text = render(conversation, config.data.think_instruction).text
            longest = max(longest, len(gemma_text_tags_tok(text, add_special_tokens=False)["input_ids"]))
    assert 0.8 * config.data.max_seq_len < longest <= config.data.max_seq_len


def test_the_demos_scored_eval_answers_fit_its_generation_limit(gemma_text_tags_tok):
    # A scored case whose expected answer is longer than eval.max_new_tokens cannot match: the demo's closing
    # table would count it wrong whatever the model learned. The limit also must not be far above the longest
    # answer: the base model never stops early, so every extra token is a decoding step of the whole batch.
    config = load_config(DEMO_CONFIG)
    conversations = [read_row(row, "hermes", "demo:eval", index) for index, row in iter_rows("demo:eval")]
    cases = build_cases(conversations, config.eval.max_cases)
    assert len(cases) == config.eval.max_cases
    assert cases_longer_than(cases, gemma_text_tags_tok, config.eval.max_new_tokens) == []
    longest = max(
        len(gemma_text_tags_tok(case.expected + END_OF_TURN, add_special_tokens=False)["input_ids"]) for case in cases
    )
    assert config.eval.max_new_tokens <= longest + 32


def test_kinds_come_in_the_stated_shares():
    for split, size in (("train", TRAIN_SIZE), ("eval", EVAL_SIZE)):
        counts = collections.Counter(kind(row) for row in rows(split))
        exact = {name: share * size for name, share in KIND_SHARES.items()}
        no_call = exact.pop("irrelevant") + exact.pop("question")
        assert sum(counts.values()) == size
        assert abs(counts["no_call"] - no_call) <= 1, (split, counts)
        for name, expected in exact.items():
            assert abs(counts[name] - expected) <= 1, (split, name, counts)


def test_every_call_is_valid_for_the_tools_offered():
    calls = 0
    for split in ("train", "eval"):
        for row in rows(split):
            _, answer = answers(row)
            assert not answer.parse_failed
            for call in answer.calls:
                assert call_is_schema_valid(call, row["tools"]), (row["id"], call)
                (definition,) = [function_of(t) for t in row["tools"] if function_of(t)["name"] == call["name"]]
                properties = definition["parameters"]["properties"]
                assert set(call["arguments"]) <= set(properties), (row["id"], call)  # no unknown parameter
                calls += 1
    assert calls > TRAIN_SIZE


# How a thought's last sentence, the decision, begins: a plan of calls, or why there is none.
CALL_DECISIONS = ("So: ", "Plan: ", "Use ")
NO_CALL_DECISIONS = ("The tools here (", "None of ", "The offered ")
CHAT_DECISIONS = ("No tool is needed", "I can answer this myself", "I answer it directly")


def split_thought(thought: str) -> tuple[str, str]:
    """(what is asked, the decision): the thought's two parts; the decision is its last sentence."""
    starts = "|".join(re.escape(start) for start in CALL_DECISIONS + NO_CALL_DECISIONS + CHAT_DECISIONS)
    *_, last = re.finditer(rf"\. (?=(?:{starts}))", thought)
    return thought[: last.start()], thought[last.end() :]


def test_thoughts_read_the_request_before_they_decide():
    """Every thought has one shape, whatever the answer: the request restated first (one numbered item per call,
    no tool named), then the decision: which tool serves which item, or that the offered tools, each named, do
    other things (or that no tool is needed). The opener says nothing of the kind of answer, and no thought names
    a count, so the number of calls is the number of items the thought has listed. No thought lists the tools with
    what they do (a 270M model learnt to write such lists, with invented names, and then to call every time)."""
    openers_by_kind = collections.defaultdict(collections.Counter)
    for split in ("train", "eval"):
        for row in rows(split):
            _, answer = answers(row)
            thought, names = answer.think, [call["name"] for call in answer.calls]
            assert thought and len(thought.split()) <= 80 and thought[-1] == ".", (row["id"], thought)
            offered = [function_of(tool)["name"] for tool in row["tools"]]
            asked, decision = split_thought(thought)
            assert not any(name in asked for name in offered), (row["id"], thought)
            assert "Tools:" not in thought, (row["id"], thought)
            assert not re.search(r"\b(twice|three times|four times|calls to|once each)\b", thought), row["id"]
            openers_by_kind[kind(row)][next(opener for opener in OPENERS if asked.startswith(opener))] += 1
            items = re.findall(r"\((\d)\) ", asked)
            if not answer.calls:
                assert answer.answer_text and items == ["1"], (row["id"], thought)
                if decision.startswith(CHAT_DECISIONS):  # a question any model answers: no tool named
                    assert not any(name in decision for name in offered), (row["id"], thought)
                else:  # every offered tool named, as the reason there is no call
                    assert decision.startswith(NO_CALL_DECISIONS), (row["id"], thought)
                    assert all(name in decision for name in offered), (row["id"], thought)
                continue
            assert answer.think_before_call and decision.startswith(CALL_DECISIONS), (row["id"], thought)
            assert items == [str(number) for number in range(1, len(names) + 1)], (row["id"], thought)
            served = {}
            for part in decision.split(": ", 1)[-1].removeprefix("Use ").rstrip(".").split("; "):
                name, _, numbers = part.partition(" for ")
                served.update({int(number): name for number in re.findall(r"\((\d)\)", numbers)})
            assert [served[number] for number in range(1, len(names) + 1)] == names, (row["id"], thought)
            # Only the tools it calls: nothing the model could copy as a list of what is offered.
            assert not any(name in decision for name in set(offered) - set(names)), (row["id"], thought)
    # The opener is drawn for every kind alike: it gives no hint of a call, a count or no call.
    assert len({frozenset(counts) for counts in openers_by_kind.values()}) == 1, openers_by_kind
    assert all(len(counts) >= 3 for counts in openers_by_kind.values()), openers_by_kind


def test_the_demos_emphasis_finds_exactly_each_thoughts_decision():
    """configs/demo.toml weighs the decision in the loss (data.emphasis_pattern): the pattern must find the
    thought's closing sentence, whole, once in every answer, and nothing else."""
    config = load_config(DEMO_CONFIG)
    assert config.data.emphasis_weight == 3.0
    pattern = re.compile(config.data.emphasis_pattern)
    for split in ("train", "eval"):
        for row in rows(split):
            answer_text = row["conversations"][1]["value"]
            _, decision = split_thought(parse_assistant_output(answer_text).think)
            assert [match.group() for match in pattern.finditer(answer_text)] == [decision + "</think>"], row["id"]


def test_no_answer_repeats_a_call():
    for split in ("train", "eval"):
        for row in rows(split):
            _, answer = answers(row)
            calls = [json.dumps(call, sort_keys=True) for call in answer.calls]
            assert len(calls) == len(set(calls)), row["id"]


def test_lists_of_strings_are_common_often_last_and_said_by_the_user():
    # A model that rarely saw a list of strings closes one with `}` or leaves its items unquoted (BFCL answers of
    # the demo's model, README "What the demo measured"): the data must hold many, most of them the last argument
    # (the list is then followed by the call's `}}`), with items of several words and capitals, each said in the
    # request.
    calls = with_lists = last = 0
    items = set()
    for row in rows("train"):
        request, answer = answers(row)
        for call in answer.calls:
            values = list(call["arguments"].values())
            string_lists = [isinstance(v, list) and v != [] and all(isinstance(i, str) for i in v) for v in values]
            calls += 1
            with_lists += any(string_lists)
            last += bool(string_lists) and string_lists[-1]
            for value in values:
                if isinstance(value, list) and all(isinstance(item, str) for item in value):
                    assert all(item in request for item in value), (row["id"], value)
                    items.update(value)
    assert with_lists >= 0.06 * calls, (with_lists, calls)
    assert last >= 0.8 * with_lists, (last, with_lists)
    assert sum(" " in item for item in items) >= 20 and sum(item[0].isupper() for item in items) >= 20, items


def test_the_data_offers_many_tools_and_the_right_one_anywhere():
    train = rows("train")
    names = {function_of(tool)["name"] for row in train for tool in row["tools"]}
    assert len(names) > 1000
    assert any("." in name for name in names) and any(name != name.lower() for name in names)  # dotted, camelCase
    positions = collections.Counter()
    for row in train:
        _, answer = answers(row)
        if kind(row) == "single" and len(row["tools"]) > 1:
            offered = [function_of(tool)["name"] for tool in row["tools"]]
            positions[(len(offered), offered.index(answer.calls[0]["name"]))] += 1
    for count in (2, 3, 4):
        assert all(positions[(count, position)] > 0 for position in range(count)), positions
    types = collections.Counter(
        spec["type"]
        for row in train
        for tool in row["tools"]
        for spec in function_of(tool)["parameters"]["properties"].values()
    )
    assert set(types) == {"string", "integer", "number", "float", "boolean", "array", "object", "dict"}


def test_eval_asks_for_tools_train_never_offers():
    """The tools eval's answers call do things no training row's tool does (siblings, which only share an
    object's name with a called tool and say so, may be offered on both sides)."""
    train_descriptions = {function_of(tool)["description"] for row in rows("train") for tool in row["tools"]}
    eval_called = set()
    for row in rows("eval"):
        _, answer = answers(row)
        offered = {function_of(tool)["name"]: function_of(tool)["description"] for tool in row["tools"]}
        eval_called |= {offered[call["name"]] for call in answer.calls}
    assert eval_called and not eval_called & train_descriptions


def tool_param(key: str, percent_as_fraction: bool = False) -> ToolParam:
    return ToolParam(PARAMS[key], key, True, percent_as_fraction)


def test_values_are_typed_from_the_users_words():
    rng = random.Random(0)
    months = {name: number for number, name in enumerate(calendar.month_name) if name}
    for _ in range(200):
        number, said = draw_value(rng, tool_param("days"))
        assert type(number) is int and (said == str(number) or NUMBER_WORDS[number] == said)
        fraction, said_percent = draw_value(rng, tool_param("annual_rate", percent_as_fraction=True))
        percent, said_again = draw_value(rng, tool_param("annual_rate", percent_as_fraction=False))
        # "4.5%" or "4.5 percent"; typed as 0.045 or 4.5, as the tool's description says.
        assert round(fraction * 100, 6) == float(said_percent.removesuffix("%").removesuffix(" percent"))
        assert percent == float(said_again.removesuffix("%").removesuffix(" percent"))
        assert said_percent[-1] == "%" or said_percent.endswith(" percent")
        iso, said_date = draw_value(rng, tool_param("date"))
        year, month, day = (int(part) for part in iso.split("-"))
        words = said_date.replace(",", "").split()
        assert said_date == iso or (
            str(year) in words and str(day) in words and months[next(w for w in words if w in months)] == month
        )
        amount, said_money = draw_value(rng, tool_param("principal"))
        assert float(said_money.replace("$", "").replace(",", "").removesuffix(" dollars")) == amount
        items, said_list = draw_value(rng, tool_param("cities"))
        assert isinstance(items, list) and said_list == ", ".join(items[:-1]) + " and " + items[-1]


def bfcl_data_dir() -> Path | None:
    try:
        import bfcl_eval
    except ImportError:
        return None
    folder = Path(bfcl_eval.__file__).parent / "data"
    return folder if folder.is_dir() else None


def bfcl_names_and_questions(folder: Path) -> tuple[set[str], set[str]]:
    names, questions = set(), set()

    def collect(value):
        if isinstance(value, dict):
            if isinstance(value.get("name"), str) and "parameters" in value:
                names.add(value["name"])
            if value.get("role") == "user" and isinstance(value.get("content"), str):
                questions.add(value["content"].strip())
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for path in sorted(folder.rglob("*.json")):
        if "possible_answer" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        try:  # one JSON object per line, as BFCL writes its question files
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:  # a few files hold one indented document
            documents = [json.loads(text)]
        collect(documents)
    return names, questions


@pytest.mark.skipif(bfcl_data_dir() is None, reason="the bfcl-eval package's data files are not installed")
def test_no_bfcl_function_or_question_is_in_the_demo_data():
    names, questions = bfcl_names_and_questions(bfcl_data_dir())
    assert len(names) > 1000 and len(questions) > 1000  # the files were read
    demo = rows("train") + rows("eval")
    demo_names = {function_of(tool)["name"] for row in demo for tool in row["tools"]}
    assert not demo_names & names
    requests = "\n".join(turn["value"] for row in demo for turn in row["conversations"] if turn["from"] == "human")
    assert not [question for question in questions if len(question) >= 20 and question in requests]


def test_questions_that_need_no_tool_are_answered_right():
    """Every family of drawn questions, checked against its own computation: no row teaches a wrong answer."""
    rng = random.Random(0)
    families = collections.Counter()
    for _ in range(600):
        question = draw_question(rng)
        text, answer = question.text, question.answer
        numbers = [int(n.replace(",", "")) for n in re.findall(r"-?\d[\d,]*", text)]
        if match := re.fullmatch(r"(?:What is|What's|Quick one:) (\d+) (times|multiplied by|plus|minus) (\d+)\?", text):
            a, operation, b = int(match[1]), match[2], int(match[3])
            expected = {"times": a * b, "multiplied by": a * b, "plus": a + b, "minus": a - b}[operation]
            assert answer == f"{a} {operation} {b} is {expected}.", (text, answer)
            families["arithmetic"] += 1
        elif "%" in text or "percent" in text:
            percent, base = numbers
            assert float(answer.split(" is ")[1].rstrip(".").replace(",", "")) == percent * base / 100, answer
            families["percent"] += 1
        elif text.startswith(("How many days are in", "How many days does")) and len(numbers) == 1:
            month = next(number for number, name in enumerate(calendar.month_name) if name and name in text)
            assert answer.endswith(f"has {calendar.monthrange(numbers[0], month)[1]} days."), (text, answer)
            families["month"] += 1
        elif match := re.search(r"How many (\w+) (?:are in|make) (\d+) (\w+)\?|Convert (\d+) (\w+) to (\w+)\.", text):
            small, count, large = (match[1], match[2], match[3]) if match[1] else (match[6], match[4], match[5])
            factor = {(s, big): f for s, big, f in UNIT_PAIRS}[(small, large)]
            assert answer == f"{count} {large} is {int(count) * factor:,} {small}.", (text, answer)
            families["units"] += 1
        elif "week" in text and len(numbers) == 2:
            month = next(number for number, name in enumerate(calendar.month_name) if name and name in text)
            day = datetime.date(numbers[1], month, numbers[0])
            assert f"is a {calendar.day_name[day.weekday()]}" in answer, (text, answer)
            families["weekday"] += 1
        elif "leap year" in text and numbers:
            assert answer == f"{numbers[0]} {'is' if calendar.isleap(numbers[0]) else 'is not'} a leap year."
            families["leap"] += 1
        elif city := next((c for c in PLACES if c in text), None):
            state_name, country = PLACES[city][1], PLACES[city][2]
            assert answer == f"{city} is in {state_name if 'state' in text else country}.", (text, answer)
            families["city"] += 1
        elif word := next((w for w in SPELLED_WORDS if f"{w}'" in text or f'{w}"' in text), None):
            assert answer in (f"'{word}' has {len(word)} letters.", f"'{word}' backwards is '{word[::-1]}'.")
            assert ("backwards" in text) == ("backwards" in answer), (text, answer)
            families["letters"] += 1
        else:
            assert (text, answer) in CHAT, (text, answer)
            families["known"] += 1
    assert len(families) == 9 and min(families.values()) >= 20, families


def test_near_misses_offer_the_requests_own_domain_and_never_a_tool_that_serves():
    """Half the requests no tool serves offer tools of the request's own domain (or a sibling of the wanted
    tool); none offers the wanted concept or one alike (SERVE_ALIKE): the answer "no call" stays true."""
    concepts, _ = split_concepts()
    rng = random.Random(0)
    near_misses = with_near_tool = 0
    for _ in range(400):
        draft = draft_irrelevant(rng, concepts)
        offered = offer(rng, draft, concepts)
        assert offered and not {tool.concept for tool in offered} & set(draft.never_offered)
        if not draft.near_domains:
            assert not {tool.concept.domain for tool in offered} & set(draft.avoid_domains)
            continue
        near_misses += 1
        (domain,) = draft.near_domains
        never_objects = {concept.obj for concept in draft.never_offered}
        alike_objects = {obj for pair in SERVE_ALIKE if pair & never_objects for obj in pair}
        assert {concept for concept in concepts if concept.obj in alike_objects} <= set(draft.never_offered)
        with_near_tool += any(tool.concept.domain == domain for tool in offered)
        if draft.sibling_of is not None:
            siblings = [tool for tool in offered if tool.concept.obj == draft.sibling_of.concept.obj]
            assert siblings and all(tool.concept.verb != draft.sibling_of.concept.verb for tool in siblings)
    assert abs(near_misses / 400 - NEAR_MISS_SHARE) < 0.1
    assert with_near_tool > 0.8 * near_misses


def test_requests_no_tool_serves_are_offered_tools_named_with_their_own_verb():
    """The other half: tools of other domains, first those whose action is the request's own ("calculate" a
    room's area beside a request to calculate a loan payment), so a shared verb is never a reason to call."""
    concepts, _ = split_concepts()
    rng = random.Random(1)
    far = with_same_verb = 0
    for _ in range(400):
        draft = draft_irrelevant(rng, concepts)
        if draft.near_domains:
            continue
        far += 1
        (verb,) = draft.near_verbs
        offered = offer(rng, draft, concepts)
        assert not {tool.concept.domain for tool in offered} & set(draft.avoid_domains)
        with_same_verb += any(tool.concept.verb == verb for tool in offered)
    assert far > 150 and with_same_verb > 0.7 * far


def test_parallel_requests_sometimes_list_the_values_once():
    """'for the koala, the red fox and the barn owl': the values listed once, as people write them, and still
    one numbered item (and one call) per value."""
    concepts, _ = split_concepts()
    rng = random.Random(0)
    listed = 0
    for _ in range(300):
        tool = build_tool(rng, rng.choice(concepts))
        request = parallel_request(rng, tool, 3)
        if request is None:
            continue
        assert len(request.items) == len(request.calls) == 3
        spoken = [item.split(" ", 1)[-1] for item in request.items]
        listed += ", ".join(spoken[:-1]) + " and " + spoken[-1] in request.text
    assert listed > 20


def test_parallel_requests_come_in_the_ways_people_ask_for_several_results():
    """Two lists matched in order ("with a base of 10 and 15 and a height of 5 and 7, respectively") and the
    first call asked in full with the others as "the same" in a second sentence: still one numbered item and one
    call per result, the items' values in the calls' order."""
    concepts, _ = split_concepts()
    rng = random.Random(0)
    forms = collections.Counter()
    for _ in range(400):
        tool = build_tool(rng, rng.choice(concepts))
        count = rng.choice((2, 3))
        request = parallel_request(rng, tool, count)
        if request is None:
            continue
        assert len(request.items) == len(request.calls) == count
        if request.text.rstrip("?!.").endswith("respectively"):
            forms["respectively"] += 1
            # Each varying value is said in the text in the order of the calls.
            first, second = (call.arguments for call in request.calls[:2])
            assert len([name for name in first if first[name] != second[name]]) == 2, request
        elif any(same.split(" {rest}")[0] in request.text for same in SAME_AGAIN):
            forms["the_same"] += 1
            first_sentence = request.text.split(". ", 1)[0]
            assert request.items[0] in first_sentence or request.items[0].split(" ", 1)[-1] in first_sentence
    assert forms["respectively"] > 10 and forms["the_same"] > 20, forms
