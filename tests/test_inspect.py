"""`python -m fcloop.inspect`: statistics, highlighted masks, and the dump with its tokenizer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl
from transformers import AutoTokenizer

from fcloop.config import RECIPE_THINK_INSTRUCTION, load_config
from fcloop.data.conversation import BadRow, RowProblem
from fcloop.data.gemma_format import END_OF_TURN, assistant_text, render
from fcloop.data.packing import best_fit_decreasing
from fcloop.data.readers import iter_rows, read_row
from fcloop.data.tokenization import encode
from fcloop.errors import run_cli
from fcloop.inspect import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.toml")


def hermes(*pairs):
    return {"conversations": [{"from": role, "value": value} for role, value in pairs]}


TRAIN = [hermes(("human", f"Question {i}?"), ("gpt", f"Answer {i}.")) for i in range(6)]
TRAIN.insert(2, hermes(("human", "hi"), ("bot", "x")))  # row 2: a bad row
TRAIN.insert(4, hermes(("human", "Story?"), ("gpt", "Once upon a time " * 40)))  # row 4: too long for 64
EVAL = [hermes(("human", "Eval?"), ("gpt", "Yes."))]


def encodings(tokenizer, source, max_seq_len: int, limit: int = 0, emphasis=None) -> list:
    """What training would use, derived row by row: kept rows in order, bad and too long ones left out (of the
    first `limit` rows, when a limit is given)."""
    kept = []
    rows = list(iter_rows(str(source)))
    for index, row in rows[:limit] if limit else rows:
        try:
            conversation = read_row(row, "hermes", str(source), index)
            rendered = render(conversation, RECIPE_THINK_INSTRUCTION)
            kept.append(encode(rendered, tokenizer, max_seq_len, False, str(source), index, emphasis))
        except (BadRow, RowProblem):
            continue
    return kept


def stats_block(name, rows_read, kept, dropped, skipped, examples, max_seq_len, not_used: int = 0) -> str:
    tokens = sum(len(e) for e in examples)
    supervised = sum(e.supervised_tokens for e in examples)
    emphasized = sum(e.emphasized_tokens for e in examples)
    rows = len(best_fit_decreasing([len(e) for e in examples], max_seq_len))
    lines = [
        f"== {name}",
        f"  rows read: {rows_read}",
        f"  kept: {kept}",
        f"  dropped, too long: {dropped}",
        "  kept truncated (at a turn boundary): 0",
        f"  skipped bad rows: {sum(skipped.values())}",
        *(f"    {reason}: {count}" for reason, count in sorted(skipped.items())),
        *([f"  left out by data.max_eval_conversations: {not_used}"] if not_used else []),
        f"  tokens: {tokens}",
        f"  supervised tokens: {supervised} ({supervised / tokens:.1%})",
        *(
            [f"    of them emphasized (data.emphasis_pattern): {emphasized} ({emphasized / supervised:.1%})"]
            if emphasized
            else []
        ),
        f"  rows of {max_seq_len} tokens (packed): {rows}, packing efficiency {tokens / (rows * max_seq_len):.1%}",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def data_files(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", TRAIN), write_jsonl(tmp_path / "eval.jsonl", EVAL)


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([TINY, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_statistics(capsys, tiny_tok, data_files):
    train, evaluation = data_files
    overrides = [f"--data.train={train}", f"--data.eval={evaluation}", "--data.on_bad_row=skip"]
    code, out, err = run_main(capsys, *overrides, "--data.max_seq_len=64", "--show", "0")
    assert (code, err) == (0, "")
    train_examples, eval_examples = encodings(tiny_tok, train, 64), encodings(tiny_tok, evaluation, 64)
    assert [e.index for e in train_examples] == [0, 1, 3, 5, 6, 7]
    assert out == (
        stats_block("train", 8, 6, 1, {"unknown role": 1}, train_examples, 64)
        + stats_block("eval", 1, 1, 0, {}, eval_examples, 64)
    )
    # The numbers themselves, written once, so that the derivation above is checked too: 6 x 27 tokens, 2 per row.
    numbers = [
        "  tokens: 162",
        "  supervised tokens: 54 (33.3%)",
        "  rows of 64 tokens (packed): 3, packing efficiency 84.4%",
    ]
    assert out.split("\n")[7:10] == numbers


def test_show_highlights_exactly_the_assistant_turns(capsys, data_files):
    train, _ = data_files
    overrides = [f"--data.train={train}", "--data.on_bad_row=skip", "--data.eval_fraction=0"]
    code, out, _ = run_main(capsys, *overrides, "--show=2")
    assert code == 0
    shown = out.split(f"\n== {train} row ")[1:]
    assert [block.split(":", 1)[0] for block in shown] == ["0", "1"]
    for i, block in enumerate(shown):
        text = block.split("\n", 1)[1]
        conversation = read_row(TRAIN[i], "hermes", "", 0)
        assert re.findall(r"\[\[(.*?)\]\]", text, flags=re.S) == [f"Answer {i}.<end_of_turn>"]
        assert text.replace("[[", "").replace("]]", "") == render(conversation, RECIPE_THINK_INSTRUCTION).text + "\n"


def test_dump_and_its_tokenizer(capsys, tmp_path, tiny_tok, data_files):
    train, _ = data_files
    dump = tmp_path / "out" / "dump.jsonl"
    overrides = [f"--data.train={train}", "--data.on_bad_row=skip", "--data.eval_fraction=0", "--data.max_seq_len=64"]
    code, out, _ = run_main(capsys, *overrides, "--show", "0", "--dump", str(dump))
    assert code == 0
    assert out.endswith(f"\nwrote 6 conversations to {dump} and the tokenizer to {dump}.tokenizer/\n")
    records = [json.loads(line) for line in dump.read_text().splitlines()]
    expected = encodings(tiny_tok, train, 64)
    assert records == [{"index": e.index, "input_ids": list(e.input_ids), "labels": list(e.labels)} for e in expected]
    reloaded = AutoTokenizer.from_pretrained(str(dump) + ".tokenizer")
    for record in records:
        conversation = read_row(TRAIN[record["index"]], "hermes", "", 0)
        text = render(conversation, RECIPE_THINK_INSTRUCTION).text
        assert reloaded.decode(record["input_ids"], clean_up_tokenization_spaces=False) == text
        assert reloaded(text, add_special_tokens=False)["input_ids"] == record["input_ids"]


def test_dump_never_replaces_an_existing_file_unless_told(capsys, tmp_path, data_files):
    train, _ = data_files
    dump = tmp_path / "dump.jsonl"
    dump.write_text("mine\n")
    overrides = [f"--data.train={train}", "--data.on_bad_row=skip", "--data.eval_fraction=0", "--data.max_seq_len=64"]
    code = run_cli(main, [TINY, *overrides, "--show", "0", "--dump", str(dump)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: {dump} already exists; choose a new output path, or pass --overwrite to replace it\n"
        "(FCLOOP_DEBUG=1 shows the traceback)\n"
    )
    assert dump.read_text() == "mine\n" and not (tmp_path / "dump.jsonl.tokenizer").exists()
    assert run_cli(main, [TINY, *overrides, "--show", "0", "--dump", str(dump), "--overwrite"]) == 0
    assert len(dump.read_text().splitlines()) == 6
    dumped = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dump"))
    assert dumped == ["dump.jsonl", "dump.jsonl.tokenizer"]  # no .partial left


def test_config_error_exits_with_2(capsys):
    code, out, err = run_main(capsys, "--train.lr=fast")
    assert (code, out) == (2, "")
    assert (
        err
        == f"error: invalid configuration:\n  {TINY} (with overrides): key 'train.lr': expected float, got str 'fast'\n"
    )


def test_demo_config_shows_correct_masks(request):
    """`python -m fcloop.inspect configs/demo.toml`: the highlighted runs are exactly the assistant turns."""
    demo = load_config(ROOT / "configs" / "demo.toml")
    tokenizer = request.getfixturevalue("gemma_tok" if demo.data.tags_as_tokens else "gemma_text_tags_tok")
    result = subprocess.run(
        [sys.executable, "-m", "fcloop.inspect", "configs/demo.toml", "--show", "2"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    rows = dict(iter_rows("demo:train"))
    shown = result.stdout.split("\n== demo:train row ")[1:]
    assert len(shown) == 2
    for block in shown:
        header, text = block.split("\n", 1)
        conversation = read_row(rows[int(header.split(":")[0])], "hermes", "demo:train", 0)
        turns = [assistant_text(m) + END_OF_TURN for m in conversation.messages if m.role == "assistant"]
        # The demo weighs each thought's decision (data.emphasis_pattern): a run of its own inside the turn.
        whole_turns = re.sub(r"\]\]\[\[!?", "", text)
        assert re.findall(r"\[\[!?(.*?)\]\]", whole_turns, flags=re.S) == turns
        emphasized = re.findall(r"\[\[!(.*?)\]\]", text, flags=re.S)
        decisions = [re.search(demo.data.emphasis_pattern, turn).group() for turn in turns]
        assert len(emphasized) == len(decisions) and all(d in e for d, e in zip(decisions, emphasized, strict=True))
        plain = text.replace("[[!", "").replace("[[", "").replace("]]", "")
        assert plain == render(conversation, RECIPE_THINK_INSTRUCTION).text + "\n"
    blocks = []
    eval_limit = demo.data.max_eval_conversations
    for name, limit in (("train", 0), ("eval", eval_limit)):
        rows_read = len(list(iter_rows(f"demo:{name}")))
        used = min(limit, rows_read) if limit else rows_read
        # Only the training data is weighed (data.emphasis_pattern); the eval loss never is.
        emphasis = (demo.data.emphasis_pattern, demo.data.emphasis_weight) if name == "train" else None
        examples = encodings(tokenizer, f"demo:{name}", 1024, limit, emphasis)
        dropped = used - len(examples)  # the demo rows are all well formed
        block = stats_block(name, rows_read, len(examples), dropped, {}, examples, 1024, rows_read - used)
        blocks.append(block)
    assert result.stdout.startswith("".join(blocks) + "\n== demo:train row 0: ")


def test_emphasized_tokens_are_shown_counted_and_dumped(capsys, tmp_path, tiny_tok, data_files):
    train, _ = data_files
    dump = tmp_path / "dump.jsonl"
    emphasis = [r"--data.emphasis_pattern=Answer \d", "--data.emphasis_weight=2.5"]
    overrides = [f"--data.train={train}", "--data.on_bad_row=skip", "--data.eval_fraction=0", *emphasis]
    code, out, _ = run_main(capsys, *overrides, "--show=1", "--dump", str(dump))
    assert code == 0
    expected = [
        encode(render(read_row(TRAIN[i], "hermes", "", 0), RECIPE_THINK_INSTRUCTION), tiny_tok, 2048, False,
               emphasis=(r"Answer \d", 2.5))
        for i in (0, 1, 3, 4, 5, 6, 7)  # row 2 is bad; row 4, too long for 64 tokens, fits here
    ]  # fmt: skip
    emphasized = sum(e.emphasized_tokens for e in expected)
    supervised = sum(e.supervised_tokens for e in expected)
    assert emphasized > 0
    assert f"\n    of them emphasized (data.emphasis_pattern): {emphasized} ({emphasized / supervised:.1%})\n" in out
    block = out.split(f"\n== {train} row 0: ")[1]
    header, text = block.split("\nwrote ")[0].split("\n", 1)
    assert header.endswith(
        f"{expected[0].supervised_tokens} supervised (highlighted), {expected[0].emphasized_tokens} emphasized"
    )
    # The emphasized run, then the rest of the supervised turn.
    assert re.findall(r"\[\[(!?)(.*?)\]\]", text, flags=re.S) == [("!", "Answer 0"), ("", ".<end_of_turn>")]
    conversation = read_row(TRAIN[0], "hermes", "", 0)
    plain_text = text.replace("[[!", "").replace("[[", "").replace("]]", "")
    assert plain_text == render(conversation, RECIPE_THINK_INSTRUCTION).text + "\n"
    records = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [record["weights"] for record in records] == [list(e.weights) for e in expected]
