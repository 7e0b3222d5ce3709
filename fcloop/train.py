"""`python -m fcloop.train CONFIG [--section.key=value ...]`: train, writing everything to run.out_dir."""

from __future__ import annotations

import sys

from fcloop.config import ConfigError, load_config, split_cli


def main(argv: list[str] | None = None) -> int:
    config_path, overrides, rest = split_cli(sys.argv[1:] if argv is None else argv)
    if rest or config_path is None:
        print(__doc__.strip(), file=sys.stderr)
        if rest:
            print(f"unrecognized arguments: {' '.join(rest)}", file=sys.stderr)
        return 2
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    from fcloop.loop import train  # heavy imports only after the config is known to be valid

    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
