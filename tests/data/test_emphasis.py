"""data.emphasis_pattern: which tokens it weighs, how the weights travel through packing into the loss, and
the settings it refuses."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_data import write_tiny_data

from fcloop.config import RECIPE_THINK_INSTRUCTION, ConfigError, DataConfig, load_config
from fcloop.data.conversation import Conversation
from fcloop.data.gemma_format import render
from fcloop.data.load import load_datasets
from fcloop.data.packing import collate
from fcloop.data.readers import read_row
from fcloop.data.tokenization import IGNORE_INDEX, Encoded, emphasis_spans, encode, label_weights
from fcloop.model.loss import softcap_logits, supervised_cross_entropy

X = IGNORE_INDEX


def tool_conversation(user: str, thought: str) -> Conversation:
    row = {
        "conversations": [
            {"from": "human", "value": user},
            {"from": "gpt", "value": f"<think>{thought}</think>It is sunny."},
        ]
    }
    return read_row(row, "hermes", "test", 0)


@pytest.mark.parametrize(
    ("text", "spans", "pattern", "found"),
    [
        # The same words in the user's text (0-11) are not searched, only the supervised span (20-40).
        ("Use get_weather now. Use get_weather then!", [(20, 42)], r"Use get_\w+", [(21, 36)]),
        ("ab ab ab", [(0, 2), (6, 8)], "ab", [(0, 2), (6, 8)]),
        # A match may not run past its span's end, even where the text goes on.
        ("abcabc", [(0, 4)], "abc+", [(0, 3)]),
        # Empty matches weigh nothing: they would mark whichever token holds their position.
        ("xay", [(0, 3)], "a*", [(1, 2)]),
        ("xyz", [(0, 3)], "q", []),
    ],
)
def test_emphasis_spans_are_searched_only_inside_the_supervised_spans(text, spans, pattern, found):
    assert emphasis_spans(text, spans, pattern) == found


def test_label_weights_weigh_only_supervised_tokens_inside_a_match():
    mask = [False, True, True, True, False]
    inside = [True, True, False, True, True]
    assert label_weights(mask, inside, 3.0) == (1.0, 3.0, 1.0, 3.0, 1.0)


def test_encode_weighs_exactly_the_tokens_of_the_match(tiny_tok):
    conversation = tool_conversation("Please Use get_weather for Paris.", "Use get_weather for (1).")
    rendered = render(conversation, RECIPE_THINK_INSTRUCTION)
    plain = encode(rendered, tiny_tok, 4096, truncate=False)
    weighted = encode(rendered, tiny_tok, 4096, truncate=False, emphasis=(r"Use get_weather", 2.5))
    assert plain.weights is None and plain.emphasized_tokens == 0
    assert (weighted.input_ids, weighted.labels) == (plain.input_ids, plain.labels)
    heavy = [token for token, weight in zip(weighted.input_ids, weighted.weights, strict=True) if weight != 1.0]
    # Only the assistant's words, not the same words in the user's request.
    assert tiny_tok.decode(heavy).strip() == "Use get_weather"
    assert {weight for weight in weighted.weights if weight != 1.0} == {2.5}
    assert all(label != X for label, weight in zip(weighted.labels, weighted.weights, strict=True) if weight != 1.0)
    assert weighted.emphasized_tokens == len(heavy) > 0


def test_truncation_keeps_the_weights_aligned(tiny_tok):
    row = {
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Use it once."},
            {"from": "human", "value": "Again, with many more words so that this turn is long " * 4},
            {"from": "gpt", "value": "Use it twice."},
        ]
    }
    rendered = render(read_row(row, "hermes", "test", 0), RECIPE_THINK_INSTRUCTION)
    full = encode(rendered, tiny_tok, 4096, truncate=False, emphasis=("Use it", 3.0))
    cut = encode(rendered, tiny_tok, len(full) - 1, truncate=True, emphasis=("Use it", 3.0))
    assert cut.truncated and len(cut.weights) == len(cut) < len(full)
    assert cut.weights == full.weights[: len(cut)]
    assert cut.emphasized_tokens * 2 == full.emphasized_tokens


def doc(ids, labels, weights=None) -> Encoded:
    return Encoded(tuple(ids), tuple(labels), "test", 0, weights=None if weights is None else tuple(weights))


def test_collate_shifts_the_weights_with_the_targets():
    rows = [
        [doc([10, 11, 12], [X, 11, 12], [1.0, 4.0, 2.0]), doc([20, 21], [X, 21])],
        [doc([30, 31, 32, 33], [X, X, 32, 33], [1.0, 1.0, 1.0, 5.0])],
    ]
    batch = collate(rows, pad_token_id=0)
    assert batch.target_ids.tolist() == [[11, 12, X, 21, X], [X, 32, 33, X, X]]
    # Position i's weight is that of the token it predicts; a document without weights and padding count once.
    assert batch.target_weights.tolist() == [[4.0, 2.0, 1.0, 1.0, 1.0], [1.0, 1.0, 5.0, 1.0, 1.0]]
    assert batch.target_weights.dtype == torch.float32
    assert torch.equal(batch.to("cpu").target_weights, batch.target_weights)


def test_collate_without_weights_has_none():
    batch = collate([[doc([1, 2, 3], [X, 2, 3])]], pad_token_id=0)
    assert batch.target_weights is None and batch.to("cpu").target_weights is None


def test_weighted_loss_is_the_weighted_sum_of_token_losses():
    torch.manual_seed(0)
    lm_head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(2, 5, 8)
    targets = torch.tensor([[3, X, 7, 1, X], [X, 2, 2, X, 9]])
    weights = torch.tensor([[2.0, 9.0, 1.0, 0.5, 9.0], [9.0, 3.0, 1.0, 9.0, 1.0]])
    logits = softcap_logits(lm_head(hidden).float(), 30.0)
    per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    per_token = per_token.detach()
    expected = float((per_token * weights.flatten())[targets.flatten() != X].sum())
    assert expected == pytest.approx(
        2.0 * float(per_token[0]) + float(per_token[2]) + 0.5 * float(per_token[3])
        + 3.0 * float(per_token[6]) + float(per_token[7]) + float(per_token[9]),
        rel=1e-6,
    )  # fmt: skip
    for chunk_size in (1, 2, 1024):
        for recompute in (True, False):
            total, count = supervised_cross_entropy(
                hidden, targets, lm_head, 30.0, chunk_size=chunk_size, recompute=recompute, target_weights=weights
            )
            assert count == 6
            assert float(total) == pytest.approx(expected, rel=1e-6)
    unweighted, _ = supervised_cross_entropy(hidden, targets, lm_head, 30.0)
    ones, _ = supervised_cross_entropy(hidden, targets, lm_head, 30.0, target_weights=torch.ones(2, 5))
    assert float(ones) == pytest.approx(float(unweighted), rel=1e-6)
    assert not math.isclose(float(unweighted), expected, rel_tol=1e-3)


def test_weighted_loss_gradient_is_the_weighted_sum_of_token_gradients():
    torch.manual_seed(1)
    lm_head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(1, 4, 8)
    targets = torch.tensor([[3, 5, X, 7]])
    weights = torch.tensor([[3.0, 1.0, 1.0, 0.25]])
    total, _ = supervised_cross_entropy(hidden, targets, lm_head, None, chunk_size=2, target_weights=weights)
    (ours,) = torch.autograd.grad(total, [lm_head.weight])
    expected = torch.zeros_like(lm_head.weight)
    for position, weight in ((0, 3.0), (1, 1.0), (3, 0.25)):
        token_loss = torch.nn.functional.cross_entropy(lm_head(hidden[0, position]), targets[0, position])
        expected += weight * torch.autograd.grad(token_loss, [lm_head.weight])[0]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)


def write_toml(tmp_path, data_lines: str):
    path = tmp_path / "config.toml"
    path.write_text("[data]\n" + data_lines)
    return path


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ("emphasis_weight = 3.0\n", "key 'data.emphasis_weight' is 3.0 but 'data.emphasis_pattern' is empty"),
        ('emphasis_pattern = "Use "\n', "key 'data.emphasis_pattern' is set but 'data.emphasis_weight' is 1.0"),
        ('emphasis_pattern = "Use ("\nemphasis_weight = 3.0\n', "is not a valid regular expression: missing ), "),
        ('emphasis_pattern = "Use"\nemphasis_weight = 0.0\n', "must be a finite number > 0, got 0.0"),
        ('emphasis_pattern = "Use"\nemphasis_weight = -2.0\n', "must be a finite number > 0, got -2.0"),
        (
            'emphasis_pattern = "Use"\nemphasis_weight = nan\n',
            "key 'data.emphasis_weight': expected float, got float nan",
        ),
        (
            'emphasis_pattern = "Use"\nemphasis_weight = inf\n',
            "key 'data.emphasis_weight': expected float, got float inf",
        ),
    ],
)
def test_emphasis_settings_that_would_do_nothing_or_harm_are_refused(tmp_path, lines, problem):
    path = write_toml(tmp_path, lines)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert problem in str(error.value)
    assert str(path) in str(error.value)


def test_a_valid_emphasis_is_accepted(tmp_path):
    config = load_config(write_toml(tmp_path, 'emphasis_pattern = "Use \\\\S+"\nemphasis_weight = 3.0\n'))
    assert (config.data.emphasis_pattern, config.data.emphasis_weight) == (r"Use \S+", 3.0)


def data_config(train, held_out, **emphasis) -> DataConfig:
    return DataConfig(train=(str(train),), eval=(str(held_out),), max_seq_len=512, **emphasis)


def test_only_the_training_data_is_weighted_and_the_stats_count_it(tmp_path, tiny_tok):
    train, held_out = write_tiny_data(tmp_path)
    plain = load_datasets(data_config(train, held_out), tiny_tok, seed=0)
    config = data_config(train, held_out, emphasis_pattern=r"get_weather for \w+", emphasis_weight=3.0)
    data = load_datasets(config, tiny_tok, seed=0)
    assert [e.input_ids for e in data.train] == [e.input_ids for e in plain.train]
    assert all(e.weights is not None and e.emphasized_tokens > 0 for e in data.train)
    assert all(e.weights is None for e in data.eval)  # the eval loss stays unweighted, comparable between runs
    assert data.train_stats.emphasized_tokens == sum(e.emphasized_tokens for e in data.train)
    assert data.eval_stats.emphasized_tokens == plain.train_stats.emphasized_tokens == 0
    share = data.train_stats.emphasized_tokens / data.train_stats.supervised_tokens
    line = f"  of them emphasized (data.emphasis_pattern): {data.train_stats.emphasized_tokens} ({share:.1%})"
    assert line in data.train_stats.lines()
    assert not any("emphasized" in line for line in plain.train_stats.lines())


def test_a_pattern_that_matches_no_supervised_token_is_an_error(tmp_path, tiny_tok):
    train, held_out = write_tiny_data(tmp_path)
    # "weather in" is in every user turn, never in an assistant's: it must not silently change nothing.
    config = data_config(train, held_out, emphasis_pattern="weather in", emphasis_weight=3.0)
    with pytest.raises(ConfigError, match=r"data.emphasis_pattern 'weather in' matches no supervised token"):
        load_datasets(config, tiny_tok, seed=0)
    assert "weather in" in json.loads(train.read_text().splitlines()[0])["conversations"][1]["value"]
