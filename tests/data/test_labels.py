"""Labels: exact supervised token ids, an independent prefix-tokenization oracle on all data, and truncation."""

from __future__ import annotations

import pytest
from format_examples import EXAMPLES

from fcloop.config import RECIPE_THINK_INSTRUCTION
from fcloop.data.conversation import Conversation, Message, RowProblem, ToolCall
from fcloop.data.gemma_format import END_OF_TURN, assistant_text, render
from fcloop.data.readers import detect_file_format, iter_rows, read_row
from fcloop.data.tokenization import IGNORE_INDEX, encode, supervised_mask

TOKENIZERS = ["tiny_tok", "gemma_tok"]
BIG = 1_000_000

CONTENT_1 = "<think>I should call get_weather.</think>"
CALL_1 = '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
CONTENT_2 = "The weather in Paris is 18 degrees."
WEATHER = Conversation(
    messages=(
        Message("user", "What is the weather like in Paris today?"),
        Message("assistant", CONTENT_1, (ToolCall("get_weather", {"city": "Paris"}),)),
        Message("tool", '{"temperature": 18}'),
        Message("assistant", CONTENT_2),
    )
)
# Written out once from the tokenizers and checked token by token (see the decoded pieces in the comments).
WEATHER_SUPERVISED = {
    "tiny_tok": [
        514, 310, 87, 502, 80, 289, 356, 225, 424, 308, 18, 515,  # <think> "I " s hou l "d " call " " get_ weather .
        203, 516, 203, 280, 413, 424, 308, 275, 430, 344, 322, 281, 328, 505, 435, 203, 517,  # \n <tool_call> \n {"…
        4,  # <end_of_turn>
        355, 354, 431, 291, 363, 225, 300, 500, 73, 87, 18,  # "The " "weather " "in Paris " "is " 18 " " de gre e s .
        4,  # <end_of_turn>
    ],
    "gemma_tok": [
        262146, 236777, 1374, 2246, 974, 236779, 19323, 236761, 262147,  # <think> I should call get _ weather .
        107, 262148, 107, 14937, 1201, 1083, 623, 828, 236779, 19323, 827, 623, 33178, 1083, 3714, 13319, 1083, 623,
        50429, 127096, 107, 262149,  # … Paris "}} \n </tool_call>
        106,  # <end_of_turn>
        818, 7606, 528, 9079, 563, 236743, 236770, 236828, 10674, 236761,  # The weather in Paris is " " 1 8 degrees .
        106,  # <end_of_turn>
    ],
}  # fmt: skip


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def supervised(encoded) -> list[int]:
    return [label for label in encoded.labels if label != IGNORE_INDEX]


@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_golden_supervised_ids(request, tok_name):
    tokenizer = request.getfixturevalue(tok_name)
    encoded = encode(render(WEATHER, RECIPE_THINK_INSTRUCTION), tokenizer, BIG, truncate=False)
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    # Independently: each turn's supervised text tokenized on its own (it follows a "\n", a stable boundary).
    independent = [*ids(tokenizer, CONTENT_1 + CALL_1), eot, *ids(tokenizer, CONTENT_2), eot]
    assert supervised(encoded) == independent == WEATHER_SUPERVISED[tok_name]
    assert encoded.supervised_tokens == len(independent)
    assert list(encoded.input_ids) == ids(tokenizer, render(WEATHER, RECIPE_THINK_INSTRUCTION).text)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels, strict=True))


@pytest.mark.parametrize(
    ("offsets", "spans", "mask"),
    [
        ([(0, 3), (3, 5), (5, 9), (9, 9), (9, 12)], [(4, 9)], [False, True, True, False, False]),
        ([(0, 2), (2, 4), (4, 6), (6, 8)], [(0, 2), (4, 6)], [True, False, True, False]),
        ([(0, 2), (2, 4)], [], [False, False]),
        ([(0, 10)], [(3, 4), (6, 7)], [True]),
        ([(0, 2), (2, 2), (2, 4)], [(1, 4)], [True, False, True]),  # a zero-width token has no character to supervise
    ],
)
def test_supervised_mask_marks_tokens_overlapping_a_span(offsets, spans, mask):
    assert supervised_mask(offsets, spans) == mask


def test_nothing_to_supervise(tiny_tok):
    rendered = render(Conversation((Message("user", "hi"),)), "")
    with pytest.raises(RowProblem) as info:
        encode(rendered, tiny_tok, BIG, truncate=False)
    assert (info.value.reason, info.value.detail) == ("nothing to supervise", "no token falls inside an assistant turn")


# ---------------------------------------------------------------------------------------------------------
# The span oracle: labels derived a second way, by tokenizing text prefixes, on every row of all the data
# ---------------------------------------------------------------------------------------------------------


def oracle_labels(rendered, tokenizer) -> tuple[list[int], bool]:
    """For each span [s, e): tokens len(tok(text[:s])) .. len(tok(text[:e])) are supervised. Also says whether
    the assumption behind it held: every prefix tokenizes to a prefix of the whole text's tokens."""
    full = ids(tokenizer, rendered.text)
    labels = [IGNORE_INDEX] * len(full)
    cuts = [cut for span in rendered.supervised_spans for cut in span]
    prefixes = tokenizer([rendered.text[:cut] for cut in cuts], add_special_tokens=False)["input_ids"]
    stable = all(full[: len(prefix)] == prefix for prefix in prefixes)
    for start, end in zip(prefixes[::2], prefixes[1::2], strict=True):
        labels[len(start) : len(end)] = full[len(start) : len(end)]
    return labels, stable


def supervised_runs(encoded) -> list[list[int]]:
    runs, previous = [], False
    for label in encoded.labels:
        if label != IGNORE_INDEX:
            if not previous:
                runs.append([])
            runs[-1].append(label)
        previous = label != IGNORE_INDEX
    return runs


def assert_turns_supervised_exactly(conversation: Conversation, tokenizer) -> bool:
    """Labels equal the oracle; each assistant turn decodes back to exactly its text + <end_of_turn>. Returns
    False (asserting nothing) where the oracle's assumption breaks for this row."""
    rendered = render(conversation, RECIPE_THINK_INSTRUCTION)
    encoded = encode(rendered, tokenizer, BIG, truncate=False)
    expected, stable = oracle_labels(rendered, tokenizer)
    if not stable:
        return False
    assert list(encoded.labels) == expected
    turns = [assistant_text(m) + END_OF_TURN for m in conversation.messages if m.role == "assistant"]
    assert [rendered.text[start:end] for start, end in rendered.supervised_spans] == turns
    decoded = [tokenizer.decode(run, clean_up_tokenization_spaces=False) for run in supervised_runs(encoded)]
    assert decoded == turns
    # Nothing of the headers, user, system or tool turns: the unsupervised tokens rebuild the rest exactly.
    never = {tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<start_of_turn>")}
    assert never.isdisjoint(supervised(encoded))
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert supervised(encoded).count(eot) == len(turns)
    return True


def corpus(name: str, request) -> list[Conversation]:
    if name == "examples":
        return [read_row(raw, fmt, "", 0) for fmt, (raw, _) in EXAMPLES.items()] + [WEATHER]
    source = str(request.getfixturevalue("glaive_sample")) if name == "glaive" else name
    rows = list(iter_rows(source))
    fmt = detect_file_format(rows, source)
    return [read_row(row, fmt, source, index) for index, row in rows]


CORPORA = {"examples": 6, "glaive": 300, "demo:train": 1200, "demo:eval": 48}


@pytest.mark.parametrize("name", CORPORA)
@pytest.mark.parametrize("tok_name", TOKENIZERS)
def test_labels_match_the_prefix_oracle_on_all_data(request, tok_name, name):
    tokenizer = request.getfixturevalue(tok_name)
    conversations = corpus(name, request)
    assert len(conversations) == CORPORA[name]
    checked = sum(assert_turns_supervised_exactly(conversation, tokenizer) for conversation in conversations)
    if tok_name == "gemma_tok" or name == "examples":
        assert checked == len(conversations)  # the real tokenizer never merges across a span boundary here
    else:
        assert checked >= 0.95 * len(conversations)  # the tiny BPE merges freely, e.g. '\n"' across a header


@pytest.mark.parametrize("name", ["examples", "demo:train", "demo:eval"])
def test_labels_match_the_prefix_oracle_with_tags_as_text(request, gemma_text_tags_tok, name):
    # The tags split into several ordinary tokens: a merge across an assistant span's edge would show here.
    assert len(gemma_text_tags_tok.encode("<tool_call>", add_special_tokens=False)) > 1
    conversations = corpus(name, request)
    checked = sum(assert_turns_supervised_exactly(c, gemma_text_tags_tok) for c in conversations)
    assert checked == len(conversations) == CORPORA[name]


# ---------------------------------------------------------------------------------------------------------
# Truncation
# ---------------------------------------------------------------------------------------------------------

THREE_TURNS = Conversation(
    messages=tuple(
        Message(role, content)
        for role, content in [
            ("system", "You are a weather bot."),
            ("user", "What is the weather like in Paris today?"),
            ("assistant", "I should call get_weather with the city Paris."),
            ("user", "Please convert 500 USD to EUR."),
            ("assistant", "500 USD is about 462 EUR at the current rate."),
            ("user", "Thank you!"),
            ("assistant", "The meeting is scheduled for 2026-03-14."),
            ("user", "Bye."),
        ]
    )
)


@pytest.fixture(scope="module")
def three_turns(tiny_tok):
    """(rendered, full encoding, token count at each assistant turn end, total tokens)."""
    rendered = render(THREE_TURNS, RECIPE_THINK_INSTRUCTION)
    full = encode(rendered, tiny_tok, BIG, truncate=False)
    ends = [len(ids(tiny_tok, rendered.text[:end])) for end in rendered.turn_ends]
    assert ends[0] < ends[1] < ends[2] < len(full)
    return rendered, full, ends


@pytest.mark.parametrize(
    ("limit", "keep"),
    [
        (lambda ends, total: total - 1, lambda ends, total: ends[2]),
        (lambda ends, total: ends[2], lambda ends, total: ends[2]),
        (lambda ends, total: ends[2] - 1, lambda ends, total: ends[1]),
        (lambda ends, total: ends[1] + 1, lambda ends, total: ends[1]),
        (lambda ends, total: ends[0], lambda ends, total: ends[0]),
    ],
)
def test_truncate_cuts_after_the_last_assistant_turn_that_fits(tiny_tok, three_turns, limit, keep):
    rendered, full, ends = three_turns
    max_seq_len, kept = limit(ends, len(full)), keep(ends, len(full))
    encoded = encode(rendered, tiny_tok, max_seq_len, truncate=True, source="s.jsonl", index=3)
    assert encoded.truncated is True
    assert (encoded.source, encoded.index) == ("s.jsonl", 3)
    assert encoded.input_ids == full.input_ids[:kept]
    assert encoded.labels == full.labels[:kept]
    assert tiny_tok.decode(encoded.input_ids).endswith(END_OF_TURN + "\n")
    assert encoded.supervised_tokens == sum(label != IGNORE_INDEX for label in full.labels[:kept])


def test_fitting_exactly_is_not_truncated(tiny_tok, three_turns):
    rendered, full, _ = three_turns
    for truncate in (False, True):
        encoded = encode(rendered, tiny_tok, len(full), truncate=truncate)
        assert (encoded.input_ids, encoded.labels, encoded.truncated) == (full.input_ids, full.labels, False)


@pytest.mark.parametrize(
    ("truncate", "limit", "detail"),
    [
        (False, lambda ends, total: total - 1, "{total} tokens > data.max_seq_len={limit}"),
        (True, lambda ends, total: ends[0] - 1, "even the first assistant turn exceeds data.max_seq_len={limit}"),
        (True, lambda ends, total: 1, "even the first assistant turn exceeds data.max_seq_len=1"),
    ],
)
def test_too_long(tiny_tok, three_turns, truncate, limit, detail):
    rendered, full, ends = three_turns
    max_seq_len = limit(ends, len(full))
    with pytest.raises(RowProblem) as info:
        encode(rendered, tiny_tok, max_seq_len, truncate=truncate)
    assert (info.value.reason, info.value.detail) == ("too long", detail.format(total=len(full), limit=max_seq_len))
