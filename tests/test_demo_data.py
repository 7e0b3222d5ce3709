"""The packaged demo data: what its generator writes, every conversation fits the demo's rows, and every
answer to a user turn opens its thought by quoting that turn."""

from __future__ import annotations

import itertools
from pathlib import Path

from fcloop.config import load_config
from fcloop.demo_data.generate import REQUEST_QUOTE, generate, write_jsonl
from fcloop.gemma_format import render
from fcloop.readers import DEMO_DIR, iter_rows, read_row
from fcloop.scoring import THINK_OPEN

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"


def test_packaged_files_are_exactly_what_the_generator_writes(tmp_path):
    train, eval_rows = generate(seed=0)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", eval_rows)):
        write_jsonl(rows, tmp_path / name)
        assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes(), name


def test_every_demo_conversation_fits_the_demo_rows_whole(gemma_text_tags_tok):
    # The demo's data must not lose a conversation to data.on_too_long: not one is dropped or truncated.
    config = load_config(DEMO_CONFIG)
    assert not config.data.tags_as_tokens  # so the tokenizer below is the demo's
    longest = 0
    for split in ("demo:train", "demo:eval"):
        for index, row in iter_rows(split):
            text = render(read_row(row, "hermes", split, index), config.data.think_instruction).text
            longest = max(longest, len(gemma_text_tags_tok(text, add_special_tokens=False)["input_ids"]))
    assert 0.8 * config.data.max_seq_len < longest <= config.data.max_seq_len


def test_every_answer_to_a_user_turn_first_quotes_it():
    answers = 0
    for split in ("demo:train", "demo:eval"):
        for _, row in iter_rows(split):
            turns = row["conversations"]
            for previous, turn in itertools.pairwise(turns):
                if previous["from"] == "human":
                    assert turn["from"] == "gpt"
                    quote = THINK_OPEN + REQUEST_QUOTE.format(request=previous["value"])
                    assert turn["value"].startswith(quote), turn["value"]
                    answers += 1
                elif turn["from"] == "gpt":  # the answer to a tool turn: it does not quote
                    assert 'The user asked: "' not in turn["value"]
    assert answers > 368  # every conversation has at least one user turn, multi-turn ones two
