"""Gemma rendering: golden text and spans, the preamble, tool turns, and chat-template parity with `render`."""

from __future__ import annotations

import pytest
from format_examples import EXAMPLES

from fcloop.config import RECIPE_THINK_INSTRUCTION
from fcloop.data.conversation import Conversation, Message, ToolCall
from fcloop.data.gemma_format import SPECIAL_TOKENS, chat_template, render, to_chat_messages
from fcloop.data.readers import detect_file_format, iter_rows, read_row
from fcloop.data.tokenization import prepare_tokenizer
from fcloop.model.tiny import tiny_tokenizer

TOKENIZERS = ["tiny_tok", "gemma_tok"]

GOLDEN = Conversation(
    messages=(
        Message("system", "You are a weather bot."),
        Message("user", "Weather in Paris?"),
        Message("assistant", "<think>Paris & <city>.</think>", (ToolCall("get_weather", {"city": "Paris"}),)),
        Message("tool", '{"temp": 18}'),
        Message("assistant", "It is 18 °C."),
    ),
    tools=({"name": "get_weather", "description": "Weather"},),
)
GOLDEN_TEXT = (
    "<bos><start_of_turn>user\n"
    "You are a weather bot.\n\n"
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don't make assumptions about what "
    'values to plug into functions. Here are the available tools: <tools> {"name": "get_weather", "description": '
    '"Weather"} </tools> For each function call return a json object with function name and arguments within '
    "<tool_call></tool_call> XML tags as follows:\n"
    "<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-dict>}\n'
    "</tool_call>\n\n"
    "Think first.\n\n"
    "Weather in Paris?<end_of_turn>\n"
    "<start_of_turn>model\n"
    "<think>Paris & <city>.</think>\n"
    "<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call><end_of_turn>\n"
    "<start_of_turn>user\n"
    "<tool_response>\n"
    '{"temp": 18}\n'
    "</tool_response><end_of_turn>\n"
    "<start_of_turn>model\n"
    "It is 18 °C.<end_of_turn>\n"
)
GOLDEN_SUPERVISED = (
    '<think>Paris & <city>.</think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call><end_of_turn>",
    "It is 18 °C.<end_of_turn>",
)


def conversation(*items, tools=()) -> Conversation:
    return Conversation(messages=tuple(Message(*item) for item in items), tools=tuple(tools))


def test_golden_render():
    rendered = render(GOLDEN, "Think first.")
    assert rendered.text == GOLDEN_TEXT
    assert tuple(GOLDEN_TEXT[start:end] for start, end in rendered.supervised_spans) == GOLDEN_SUPERVISED
    # Each span starts right after the model header and ends with <end_of_turn>, before the "\n".
    first = GOLDEN_TEXT.index("<start_of_turn>model\n") + len("<start_of_turn>model\n")
    second = GOLDEN_TEXT.rindex("<start_of_turn>model\n") + len("<start_of_turn>model\n")
    first_end = first + len(GOLDEN_SUPERVISED[0])
    assert rendered.supervised_spans == ((first, first_end), (second, len(GOLDEN_TEXT) - 1))
    assert rendered.turn_ends == (first_end + 1, len(GOLDEN_TEXT))


def test_golden_render_with_generation_prompt():
    rendered = render(GOLDEN, "Think first.", add_generation_prompt=True)
    assert rendered.text == GOLDEN_TEXT + "<start_of_turn>model\n"
    assert rendered.supervised_spans == render(GOLDEN, "Think first.").supervised_spans


HI = ("user", "hi")
YO = ("assistant", "yo")
TAIL = "hi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n"


@pytest.mark.parametrize(
    ("items", "think", "expected"),
    [
        ((HI, YO), "Think.", "<bos><start_of_turn>user\n" + TAIL),  # no system, no tools: no think instruction
        ((("system", "S"), HI, YO), "Think.", "<bos><start_of_turn>user\nS\n\nThink.\n\n" + TAIL),
        ((("system", "S"), HI, YO), "", "<bos><start_of_turn>user\nS\n\n" + TAIL),
        ((("system", ""), HI, YO), "Think.", "<bos><start_of_turn>user\n" + TAIL),
        (
            (("system", "S"), HI, YO, ("user", "again"), ("assistant", "ok")),
            "Think.",
            "<bos><start_of_turn>user\nS\n\nThink.\n\n" + TAIL
            + "<start_of_turn>user\nagain<end_of_turn>\n<start_of_turn>model\nok<end_of_turn>\n",
        ),
        ((HI, YO, ("user", "bye")), "",
         "<bos><start_of_turn>user\n" + TAIL + "<start_of_turn>user\nbye<end_of_turn>\n"),
    ],
)  # fmt: skip
def test_preamble(tiny_tok, items, think, expected):
    assert render(conversation(*items), think).text == expected
    assert_parity(tiny_tok, conversation(*items), think, chat_template=chat_template(think))


def test_tools_without_system_text():
    text = render(conversation(HI, YO, tools=[{"name": "f"}]), "Think.").text
    assert text.startswith("<bos><start_of_turn>user\nYou are a function calling AI model. ")
    assert text.endswith(
        '<tools> {"name": "f"} </tools> For each function call return a json object with function name and arguments '
        "within <tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-dict>}\n</tool_call>\n\nThink.\n\n' + TAIL
    )


@pytest.mark.parametrize(
    ("tool_messages", "user_turn"),
    [
        (["r1"], "<tool_response>\nr1\n</tool_response>"),
        (["<tool_response>r1</tool_response>"], "<tool_response>r1</tool_response>"),
        ([" \n<tool_response>\nr1\n</tool_response>\n"], " \n<tool_response>\nr1\n</tool_response>\n"),
        (["<tool_response> half"], "<tool_response>\n<tool_response> half\n</tool_response>"),
        (
            ["r1", "<tool_response>r2</tool_response>", "r3"],
            "<tool_response>\nr1\n</tool_response>\n<tool_response>r2</tool_response>\n<tool_response>\nr3\n"
            "</tool_response>",
        ),
    ],
)
def test_tool_responses_are_wrapped_and_consecutive_ones_share_a_turn(tiny_tok, tool_messages, user_turn):
    items = [HI, ("assistant", "", (ToolCall("f", {}),)), *(("tool", m) for m in tool_messages), ("assistant", "done")]
    rendered = render(conversation(*items), "")
    assert rendered.text == (
        '<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n<tool_call>\n{"name": "f", "arguments": {}}'
        f"\n</tool_call><end_of_turn>\n<start_of_turn>user\n{user_turn}<end_of_turn>\n"
        "<start_of_turn>model\ndone<end_of_turn>\n"
    )
    assert_parity(tiny_tok, conversation(*items), "", chat_template=chat_template(""))


def test_assistant_content_and_several_calls_join_with_newlines(tiny_tok):
    calls = (ToolCall("a", {"x": "é"}), ToolCall("b", {}))
    rendered = render(conversation(HI, ("assistant", "Sure.", calls)), "")
    assert_parity(tiny_tok, conversation(HI, ("assistant", "Sure.", calls)), "", chat_template=chat_template(""))
    start, end = rendered.supervised_spans[0]
    assert rendered.text[start:end] == (
        'Sure.\n<tool_call>\n{"name": "a", "arguments": {"x": "é"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call><end_of_turn>'
    )


# ---------------------------------------------------------------------------------------------------------
# Chat-template parity: apply_chat_template(to_chat_messages(conv), tools=...) == render(conv)
# ---------------------------------------------------------------------------------------------------------


def assert_parity(tokenizer, conv: Conversation, think: str = RECIPE_THINK_INSTRUCTION, generation=False, **kwargs):
    rendered = render(conv, think, add_generation_prompt=generation)
    arguments = {"tools": list(conv.tools) or None, "add_generation_prompt": generation, **kwargs}
    messages = to_chat_messages(conv)
    assert tokenizer.apply_chat_template(messages, tokenize=False, **arguments) == rendered.text
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **arguments)
    assert list(ids) == tokenizer(rendered.text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert list(ids).count(tokenizer.bos_token_id) == 1  # no double BOS


@pytest.mark.parametrize("generation", [False, True])
@pytest.mark.parametrize("fmt", EXAMPLES)
@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_chat_template_parity_on_every_format(request, tok_name, fmt, generation):
    raw, _ = EXAMPLES[fmt]
    assert_parity(request.getfixturevalue(tok_name), read_row(raw, fmt, "", 0), generation=generation)


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_chat_template_parity_on_golden(request, tok_name):
    tokenizer = request.getfixturevalue(tok_name)
    assert_parity(tokenizer, GOLDEN, "Think first.", chat_template=chat_template("Think first."))
    assert_parity(tokenizer, GOLDEN, "", generation=True, chat_template=chat_template(""))


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_chat_template_parity_on_every_glaive_row(request, tok_name, glaive_sample):
    tokenizer = request.getfixturevalue(tok_name)
    rows = list(iter_rows(str(glaive_sample)))
    fmt = detect_file_format(rows, str(glaive_sample))
    for index, row in rows:
        assert_parity(tokenizer, read_row(row, fmt, str(glaive_sample), index), generation=index % 2 == 1)


@pytest.mark.parametrize(
    "think", ["", "Plan first.", "tab\t, newline\n, quotes \"' and \\ and {{ x }} {% if %} -%}", "é ☃ \u2028", "🙂"]
)
def test_chat_template_parity_for_any_think_instruction(tiny_tok, think):
    assert_parity(tiny_tok, GOLDEN, think, chat_template=chat_template(think))


@pytest.mark.parametrize("tok_name", TOKENIZERS)
@pytest.mark.parametrize("tag", SPECIAL_TOKENS)
def test_tags_are_single_tokens(request, tok_name, tag):
    tokenizer = request.getfixturevalue(tok_name)
    tag_id = tokenizer.convert_tokens_to_ids(tag)
    assert tokenizer.encode(tag, add_special_tokens=False) == [tag_id]
    assert tokenizer.encode(f"a{tag}b", add_special_tokens=False).count(tag_id) == 1
    assert tokenizer.decode([tag_id]) == tag


def test_prepare_tokenizer_adds_the_missing_tags_once():
    tokenizer = tiny_tokenizer()
    assert prepare_tokenizer(tokenizer, "x") == [512, 513, 514, 515, 516, 517, 518, 519]
    assert tokenizer.convert_ids_to_tokens(list(range(512, 520))) == list(SPECIAL_TOKENS)
    assert prepare_tokenizer(tokenizer, "y") == []
    assert len(tokenizer) == 520
    assert tokenizer.chat_template == chat_template("y")


def test_tags_as_text_add_no_token_and_keep_template_parity():
    tokenizer = tiny_tokenizer()
    size = len(tokenizer)
    assert prepare_tokenizer(tokenizer, "x", tags_as_tokens=False) == []
    assert len(tokenizer) == size
    assert len(tokenizer.encode("<tool_call>", add_special_tokens=False)) > 1
    assert tokenizer.chat_template == chat_template("x")
    assert_parity(tokenizer, GOLDEN, "x")


def test_gemma_tags_are_the_eight_new_ids(gemma_tok):
    assert gemma_tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(262144, 262152))
