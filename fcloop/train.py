"""`python -m fcloop.train CONFIG [--section.key=value ...]`: train, writing everything to run.out_dir."""

from __future__ import annotations

import argparse
import sys

from fcloop.config import ConfigError, load_config, split_overrides
from fcloop.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fcloop.train", description=__doc__)
    parser.add_argument("config", help="TOML config file; any key can be overridden with --section.key=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    overrides, rest = split_overrides(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(rest)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)  # the prefix of every command's expected failures
        return 2
    from fcloop.training.loop import train  # heavy imports only after the config is known to be valid

    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
