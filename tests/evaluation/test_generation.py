"""Eval cases from conversations, greedy batched generation with the tiny model, and their scoring."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_data import conversation

import fcloop.evaluation.generation as generation
from fcloop.config import RECIPE_THINK_INSTRUCTION, load_config
from fcloop.data.conversation import Conversation, Message, ToolCall
from fcloop.data.gemma_format import END_OF_TURN, render
from fcloop.data.readers import read_row
from fcloop.data.tokenization import prepare_tokenizer
from fcloop.evaluation.constrained import ConstraintCounts
from fcloop.evaluation.generation import (
    build_cases,
    cases_longer_than,
    evaluate_tool_calls,
    generate,
    too_long_warning,
    tools_in_system_text,
    tools_of,
)
from fcloop.model.load import load_model, load_tokenizer
from fcloop.model.lora import add_token_rows

CPU = torch.device("cpu")
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
TIME = {"name": "get_time", "description": 'Time in {city}, e.g. "10:30" [24h]', "parameters": {}}


def tools_system_text(*pieces: str) -> str:
    return f"You are a function calling AI model. Here are the available tools: <tools> {' '.join(pieces)} </tools>"


def two_turn_conversation() -> Conversation:
    """Tools in the system text, a structured call in the first answer, a tool response, a text answer."""
    return Conversation(
        messages=(
            Message("system", tools_system_text(json.dumps(WEATHER), json.dumps(TIME))),
            Message("user", "Weather in Paris?"),
            Message("assistant", "<think>Call it.</think>", (ToolCall("get_weather", {"city": "Paris"}),)),
            Message("tool", '{"temperature": 18}'),
            Message("assistant", "It is 18 degrees in Paris."),
        ),
        source="eval.jsonl",
        index=7,
    )


# ---------------------------------------------------------------------------------------------------------
# Cases


def test_build_cases_gives_one_case_per_assistant_turn_with_exact_prompt_and_expected_text():
    chat = two_turn_conversation()
    cases = build_cases([chat])
    assert [case.id for case in cases] == ["eval.jsonl:7:0", "eval.jsonl:7:1"]
    assert [case.prompt.messages for case in cases] == [chat.messages[:2], chat.messages[:4]]
    assert all((case.prompt.source, case.prompt.index) == ("eval.jsonl", 7) for case in cases)
    assert [case.expected for case in cases] == [
        '<think>Call it.</think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "It is 18 degrees in Paris.",
    ]
    assert cases[0].tools == cases[1].tools == (WEATHER, TIME)
    # The expected text is exactly the supervised span of the rendered conversation, less <end_of_turn>.
    rendered = render(chat, RECIPE_THINK_INSTRUCTION)
    spans = [rendered.text[start:end].removesuffix(END_OF_TURN) for start, end in rendered.supervised_spans]
    assert spans == [case.expected for case in cases]
    # The prompt renders to the conversation's text up to that turn's answer.
    for case, (start, _) in zip(cases, rendered.supervised_spans, strict=True):
        assert render(case.prompt, RECIPE_THINK_INSTRUCTION, add_generation_prompt=True).text == rendered.text[:start]


def test_build_cases_keeps_the_first_max_cases_in_order():
    chats = [read_row(conversation(i), "hermes", "data", i) for i in range(3)]  # 3, 2 and 2 assistant turns
    all_ids = [case.id for case in build_cases(chats)]
    assert all_ids == ["data:0:0", "data:0:1", "data:0:2", "data:1:0", "data:1:1", "data:2:0", "data:2:1"]
    assert [case.id for case in build_cases(chats, max_cases=4)] == all_ids[:4]
    assert [case.id for case in build_cases(chats, max_cases=100)] == all_ids


def test_tools_parsed_from_the_system_texts_tools_block():
    assert tools_in_system_text(tools_system_text(json.dumps(WEATHER), json.dumps(TIME))) == (WEATHER, TIME)
    # Python reprs in a list (some Hermes rows), a schema that does not parse (skipped), two blocks.
    text = (
        f"<tools> [{WEATHER!r}] {{'broken': }} </tools> Format: <tools></tools>. "
        f"More: <tools>\n{json.dumps(TIME, indent=2)}\n</tools>"
    )
    assert tools_in_system_text(text) == (WEATHER, TIME)
    assert tools_in_system_text("no tools here") == ()
    assert tools_in_system_text(f"<tools> {json.dumps(WEATHER)}") == ()  # never closed


def test_tools_given_beside_the_messages_come_first():
    beside = Conversation(messages=two_turn_conversation().messages, tools=(TIME,))
    assert tools_of(beside) == (TIME,)
    assert tools_of(two_turn_conversation()) == (WEATHER, TIME)
    assert tools_of(Conversation(messages=(Message("user", "hi"), Message("assistant", "hello")))) == ()


def test_evaluate_tool_calls_scores_generations_against_the_cases(monkeypatch):
    chats = [two_turn_conversation(), read_row(conversation(1), "hermes", "data", 1)]
    cases = build_cases(chats)
    seen_prompts = []

    def perfect_generation(model, tokenizer, prompts, max_new_tokens, batch_size, device, *flags, **options):
        seen_prompts.extend(prompts)
        return [case.expected for case in cases]

    monkeypatch.setattr(generation, "generate", perfect_generation)
    metrics, records = evaluate_tool_calls(None, None, cases, "Think first.", 8, 2, CPU)
    assert seen_prompts == [render(case.prompt, "Think first.", add_generation_prompt=True).text for case in cases]
    assert [list(record) for record in records] == [["id", "tools", "expected", "generated"]] * 4
    assert records[0]["tools"] == [WEATHER, TIME]
    assert metrics["n"] == 4
    assert metrics["decision_accuracy"] == metrics["call_exact_match"] == metrics["name_accuracy"] == 1.0
    # The first conversation's call fits its schema; the tiny data's system text has no <tools> block.
    assert metrics["schema_valid_rate"] == 0.5


# ---------------------------------------------------------------------------------------------------------
# Generation with the tiny model


def tiny_model_and_tokenizer():
    config = load_config(None, ["--model.path=tiny:gemma2"])
    tokenizer = load_tokenizer(config.model)
    new_token_ids = prepare_tokenizer(tokenizer, config.data.think_instruction)
    model = load_model(config.model, len(tokenizer), torch.float32, CPU, seed=0)
    add_token_rows(model, len(tokenizer), new_token_ids)
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_tokenizer()


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Prompts of different lengths (longer than the tiny model's sliding window), from short conversations."""
    chats = [read_row(conversation(i), "hermes", "data", i) for i in range(3)]
    cases = build_cases(chats)
    return [render(case.prompt, "", add_generation_prompt=True).text for case in cases[:5]]


def test_batched_generation_equals_one_at_a_time(tiny, prompts):
    model, tokenizer = tiny
    lengths = [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts]
    assert len(set(lengths)) == len(lengths) and min(lengths) > 24  # left padding and the sliding window matter
    model.train()
    batched = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=3, device=CPU)
    assert model.training  # the mode is restored
    one_at_a_time = [generate(model, tokenizer, [prompt], 6, 1, CPU)[0] for prompt in prompts]
    assert batched == one_at_a_time
    assert len(set(batched)) > 1  # different prompts, different continuations: the texts are not all padding
    assert all(END_OF_TURN not in text and "<pad>" not in text for text in batched)


def test_generation_with_tools_equals_generation_without_when_no_call_is_written(tiny, prompts):
    """The tiny model writes no `<tool_call>`: holding calls to the tools (fcloop.evaluation.constrained) must
    not change one token of its answers, and it counts no step inside a call."""
    model, tokenizer = tiny
    free = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3, device=CPU)
    assert all("<tool_call>" not in text for text in free)
    counts = ConstraintCounts()
    held = generate(model, tokenizer, prompts, 8, 3, CPU, tools=[[WEATHER]] * len(prompts), constraint_counts=counts)
    assert held == free
    assert (counts.checked, counts.replaced, counts.unresolved) == (0, 0, 0)


def test_one_new_token_is_the_argmax_of_a_plain_forward_pass(tiny, prompts):
    model, tokenizer = tiny
    expected = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            next_token = int(model(input_ids=ids).logits[0, -1].argmax())
            expected.append(tokenizer.decode([next_token], skip_special_tokens=False))
    assert generate(model, tokenizer, prompts, max_new_tokens=1, batch_size=3, device=CPU) == expected


def test_the_output_layer_gets_contiguous_inputs_while_generating(tiny, prompts):
    """A batched prefill hands the output layer a strided view of each row's last position; torch then copies
    the weight once per row (gigabytes with Gemma's vocabulary). Every input it sees must be contiguous, the
    prefill's [batch, 1, hidden] included, and fcloop's hook is gone afterwards."""
    model, tokenizer = tiny
    head = model.get_output_embeddings()
    seen: list[tuple[tuple[int, ...], bool]] = []
    spy = head.register_forward_hook(
        lambda module, args, output: seen.append((tuple(args[0].shape), args[0].is_contiguous()))
    )
    try:
        generate(model, tokenizer, prompts[:3], max_new_tokens=3, batch_size=3, device=CPU)
    finally:
        spy.remove()
    assert len(seen) == 3 and seen[0][0] == (3, 1, head.in_features)  # the prefill's last positions, then 2 steps
    assert all(contiguous for _, contiguous in seen)
    assert not head._forward_pre_hooks  # the hook is removed


def test_generation_stops_at_end_of_turn_and_drops_it(prompts):
    """Relabel a token the model picks as <end_of_turn> (swap their lm_head rows, untied from the input
    embedding): the model computes the same, so it must stop there and return only the tokens before."""
    model, tokenizer = tiny_model_and_tokenizer()
    prompt = prompts[0]
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    free = model.generate(input_ids=prompt_ids, max_new_tokens=8, do_sample=False, use_cache=True)
    tokens = free[0, prompt_ids.shape[1] :].tolist()
    # The first token not generated before: relabeling it changes nothing earlier.
    stop_at = next(k for k in range(1, len(tokens)) if tokens[k] not in tokens[:k])
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert end_of_turn not in tokens[: stop_at + 1]
    relabeled = tokens[stop_at]
    head = model.get_output_embeddings()
    with torch.no_grad():
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        head.weight[[relabeled, end_of_turn]] = head.weight[[end_of_turn, relabeled]]
    texts = generate(model, tokenizer, [prompt, *prompts[1:3]], max_new_tokens=10, batch_size=3, device=CPU)
    assert texts[0] == tokenizer.decode(tokens[:stop_at], skip_special_tokens=False)
    assert all(END_OF_TURN not in text for text in texts)


def test_cases_whose_expected_answer_cannot_fit_in_max_new_tokens_are_named(tiny):
    _, tokenizer = tiny
    cases = build_cases([two_turn_conversation()])
    lengths = [len(tokenizer(case.expected + END_OF_TURN, add_special_tokens=False)["input_ids"]) for case in cases]
    assert lengths[0] > lengths[1] + 1  # the call answer is the longer one
    assert cases_longer_than(cases, tokenizer, lengths[0]) == []
    assert cases_longer_than(cases, tokenizer, lengths[0] - 1) == ["eval.jsonl:7:0"]
    assert cases_longer_than(cases, tokenizer, lengths[1] - 1) == ["eval.jsonl:7:0", "eval.jsonl:7:1"]
    assert too_long_warning(cases, tokenizer, lengths[0]) is None
    warning = too_long_warning(cases, tokenizer, lengths[0] - 1)
    assert "1 of 2 eval cases" in warning and "(eval.jsonl:7:0)" in warning
    assert f"eval.max_new_tokens = {lengths[0] - 1} tokens" in warning


def test_the_constraints_text_of_a_candidate_is_the_tokenizers_text_of_the_whole_answer(tiny):
    """The constraint decodes a candidate after the last token only (fast); that must give the text a decode of
    the whole answer gives: leading spaces, characters split into byte tokens, special tokens."""
    from fcloop.evaluation.constrained import CallsFitTools, _Answer

    _, tokenizer = tiny
    text = 'Hi  there, São Paulo 東京 🙂 <tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}'
    ids = tokenizer(text + "<end_of_turn>", add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tokenizer.decode([token]) for token in ids)  # an emoji's bytes, split
    processor = CallsFitTools(tokenizer, [[WEATHER]], prompt_width=0, stop_ids=[])
    for end in range(len(ids)):
        answer = _Answer(processor, ids[:end], {})
        expected = tokenizer.decode(ids[: end + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert answer.extended(ids[end]) == expected
