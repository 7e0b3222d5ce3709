"""`python -m fcloop.inspect CONFIG [--section.key=value ...] [--dump FILE.jsonl] [--show N]`

Reads the data exactly as training does and prints what came of it: rows read, kept, skipped and dropped by
reason, tokens, supervised tokens, packing efficiency, and a few rendered examples with the supervised
tokens highlighted (and those data.emphasis_pattern weighs, in another color). `--dump` writes one JSON object
per kept conversation in source order, {"index", "input_ids", "labels"} before packing (and "weights" with
data.emphasis_pattern), and saves the tokenizer beside it as FILE.tokenizer/; an
existing dump is refused unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fcloop.config import ConfigError, load_config, split_overrides
from fcloop.data.tokenization import IGNORE_INDEX, Encoded
from fcloop.errors import run_cli
from fcloop.outputs import refuse_overwrite, written_atomically

SUPERVISED_START, SUPERVISED_END = "\x1b[1;32m", "\x1b[0m"  # bold green on a terminal
EMPHASIZED_START = "\x1b[1;33m"  # bold yellow: supervised and weighted by data.emphasis_pattern
PLAIN_MARKERS = {"plain": "", "supervised": "[[", "emphasized": "[[!"}


def token_kind(label: int, weight: float) -> str:
    if label == IGNORE_INDEX:
        return "plain"
    return "emphasized" if weight != 1.0 else "supervised"


def highlight(example: Encoded, tokenizer, color: bool) -> str:
    """Decode token by token, wrapping supervised runs in color (or in [[ ]] when not on a terminal) and
    emphasized ones (data.emphasis_pattern) in another color (or [[! ]])."""
    starts = {"plain": "", "supervised": SUPERVISED_START, "emphasized": EMPHASIZED_START} if color else PLAIN_MARKERS
    end = SUPERVISED_END if color else "]]"
    weights = example.weights or (1.0,) * len(example)
    pieces, current = [], "plain"
    for token, label, weight in zip(example.input_ids, example.labels, weights, strict=True):
        kind = token_kind(label, weight)
        if kind != current:
            pieces.append((end if current != "plain" else "") + starts[kind])
            current = kind
        pieces.append(tokenizer.decode([token]))
    if current != "plain":
        pieces.append(end)
    return "".join(pieces)


def write_dump(path: Path, examples: list[Encoded], tokenizer) -> None:
    # Each written under a temporary name and renamed: an interrupted dump leaves the old one or none.
    with written_atomically(path) as partial, partial.open("w") as file:
        for example in sorted(examples, key=lambda e: (e.source, e.index)):
            record = {
                "index": example.index,
                "input_ids": list(example.input_ids),
                "labels": list(example.labels),
            }
            if example.weights is not None:
                record["weights"] = list(example.weights)
            file.write(json.dumps(record) + "\n")
    with written_atomically(tokenizer_folder(path)) as partial:
        tokenizer.save_pretrained(partial)


def tokenizer_folder(dump: Path) -> Path:
    return dump.with_name(dump.name + ".tokenizer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fcloop.inspect", description=__doc__.split("\n\n")[1])
    parser.add_argument("config", help="TOML config file; any key can be overridden with --section.key=value")
    parser.add_argument("--dump", type=Path, help="write the encoded training conversations here (JSON lines)")
    parser.add_argument("--show", type=int, default=2, help="rendered examples to print (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dump and its tokenizer folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    overrides, rest = split_overrides(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(rest)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)  # the prefix of every command's expected failures
        return 2

    if args.dump:  # before the data is read: a dump must not replace what it did not write
        refuse_overwrite(args.dump, args.overwrite)
        refuse_overwrite(tokenizer_folder(args.dump), args.overwrite)

    from fcloop.data.load import load_datasets
    from fcloop.data.packing import packing_efficiency, plan_rows
    from fcloop.data.tokenization import prepare_tokenizer
    from fcloop.model.load import load_tokenizer

    tokenizer = load_tokenizer(config.model)
    prepare_tokenizer(tokenizer, config.data.think_instruction, config.data.tags_as_tokens)
    data = load_datasets(config.data, tokenizer, config.run.seed)
    for name, examples, stats in (
        ("train", data.train, data.train_stats),
        ("eval", data.eval, data.eval_stats),
    ):
        if not stats.rows_read:
            continue
        lengths = [len(e) for e in examples]
        rows = plan_rows(lengths, config.data.max_seq_len, config.data.packing, config.run.seed, epoch=0)
        efficiency = packing_efficiency(rows, lengths, config.data.max_seq_len)
        print(f"== {name}")
        for line in stats.lines():
            print(f"  {line}")
        mode = "packed" if config.data.packing else "one conversation per row"
        print(f"  rows of {config.data.max_seq_len} tokens ({mode}): {len(rows)}, packing efficiency {efficiency:.1%}")
    color = sys.stdout.isatty()
    for example in data.train[: args.show]:
        print(f"\n== {example.source} row {example.index}: {len(example)} tokens, "
              f"{example.supervised_tokens} supervised (highlighted), "
              f"{example.emphasized_tokens} emphasized")  # fmt: skip
        print(highlight(example, tokenizer, color))
    if args.dump:
        write_dump(args.dump, data.train, tokenizer)
        print(f"\nwrote {len(data.train)} conversations to {args.dump} and the tokenizer to {args.dump}.tokenizer/")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
