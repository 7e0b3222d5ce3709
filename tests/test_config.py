"""Config: TOML sections -> frozen dataclasses, strict types, overrides, precedence, round trip, CLI split."""

from __future__ import annotations

import dataclasses

import pytest

from fcloop.config import (
    RECIPE_THINK_INSTRUCTION,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    config_to_toml,
    load_config,
    parse_override,
    split_overrides,
)

SECTION_NAMES = "run, model, data, train, lora, eval, checkpoint"
TRAIN_KEYS = (
    "micro_batch_size, grad_accum_steps, max_steps, epochs, lr, warmup_steps, schedule, min_lr_ratio, "
    "weight_decay, adam_betas, max_grad_norm, precision, activation_checkpointing, recompute_logits, "
    "loss_chunk_tokens, compile, compile_backend, data_parallel, log_every_steps, "
    "on_nonfinite"
)


def write_toml(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


def test_sections_map_to_frozen_dataclasses(tmp_path):
    path = write_toml(
        tmp_path,
        """
[run]
seed = 7
[data]
train = ["a.jsonl", "demo:train"]
eval = "b.parquet"
max_seq_len = 512
packing = false
format = "glaive"
[train]
lr = 1
adam_betas = [0.9, 0.95]
schedule = "linear"
[lora]
target_modules = ["q_proj"]
""",
    )
    config = load_config(path)
    assert config == Config(
        run=RunConfig(seed=7),
        data=DataConfig(
            train=("a.jsonl", "demo:train"), eval=("b.parquet",), max_seq_len=512, packing=False, format="glaive"
        ),
        train=TrainConfig(lr=1.0, adam_betas=(0.9, 0.95), schedule="linear"),
        lora=LoraConfig(target_modules=("q_proj",)),
    )
    assert type(config.train.lr) is float  # an int is accepted for a float and stored as one
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data = DataConfig()  # type: ignore[misc]


def test_no_file_gives_defaults():
    assert load_config(None) == Config()
    assert Config().data.think_instruction == RECIPE_THINK_INSTRUCTION


def test_precision_is_auto_by_default_and_takes_each_choice():
    assert load_config(None).train.precision == "auto"
    for choice in ("auto", "bf16", "fp32"):
        assert load_config(None, [f"--train.precision={choice}"]).train.precision == choice
    with pytest.raises(ConfigError) as info:
        load_config(None, ["--train.precision=fp16"])
    assert str(info.value) == (
        "invalid configuration:\n  <defaults> (with overrides): key 'train.precision': "
        """expected one of "auto" | "bf16" | "fp32", got 'fp16'"""
    )


def test_unknown_key_names_file_key_and_valid_keys(tmp_path):
    path = write_toml(tmp_path, "[train]\nlearning_rate = 0.1\n")
    assert config_error(path) == (
        f"invalid configuration:\n  {path}: unknown key 'train.learning_rate'; valid keys in [train]: {TRAIN_KEYS}"
    )


def test_unknown_section_and_non_table_section(tmp_path):
    path = write_toml(tmp_path, "run = 3\n[trainer]\nlr = 0.1\n")
    assert config_error(path) == (
        "invalid configuration:\n"
        f"  {path}: 'run' must be a [section] table, got int\n"
        f"  {path}: unknown section [trainer]; valid sections: {SECTION_NAMES}"
    )


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ('[train]\nmicro_batch_size = "2"', "train.micro_batch_size", "expected int, got str '2'"),
        ("[train]\nmicro_batch_size = true", "train.micro_batch_size", "expected int, got bool True"),
        ("[run]\nseed = 1.5", "run.seed", "expected int, got float 1.5"),
        ('[train]\nlr = "fast"', "train.lr", "expected float, got str 'fast'"),
        ("[train]\nlr = false", "train.lr", "expected float, got bool False"),
        ("[train]\nlr = nan", "train.lr", "expected float, got float nan"),
        ("[data]\npacking = 1", "data.packing", "expected bool, got int 1"),
        ("[model]\npath = 3", "model.path", "expected str, got int 3"),
        ("[lora]\ntarget_modules = 3", "lora.target_modules", "expected list of str, got int 3"),
        ('[lora]\ntarget_modules = ["q_proj", 3]', "lora.target_modules", "expected str, got int 3"),
        ('[train]\nadam_betas = [0.9, "x"]', "train.adam_betas", "expected float, got str 'x'"),
        (
            '[data]\nformat = "csv"',
            "data.format",
            'expected one of "auto" | "hermes" | "hermes_thinking" | "openai" | "glaive" | "flat", got \'csv\'',
        ),
        ("[train]\nprecision = true", "train.precision", 'expected one of "auto" | "bf16" | "fp32", got True'),
        ('[data]\non_bad_row = "ignore"', "data.on_bad_row", 'expected one of "error" | "skip", got \'ignore\''),
    ],
)
def test_wrong_type_names_the_key(tmp_path, line, key, problem):
    path = write_toml(tmp_path, line + "\n")
    assert config_error(path) == f"invalid configuration:\n  {path}: key '{key}': {problem}"


def test_all_errors_are_collected_in_one_error(tmp_path):
    path = write_toml(
        tmp_path, '[nope]\nx = 1\n[train]\nlr = "a"\nbogus = 1\n[data]\nmax_seq_len = 0\n[lora]\nr = "4"\n'
    )
    assert config_error(path) == (
        "invalid configuration:\n"
        f"  {path}: unknown section [nope]; valid sections: {SECTION_NAMES}\n"
        f"  {path}: key 'train.lr': expected float, got str 'a'\n"
        f"  {path}: unknown key 'train.bogus'; valid keys in [train]: {TRAIN_KEYS}\n"
        f"  {path}: key 'lora.r': expected int, got str '4'\n"
        f"  {path}: key 'data.max_seq_len' must be > 0, got 0"
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("train", "micro_batch_size", "0", "must be > 0, got 0"),
        ("train", "grad_accum_steps", "-1", "must be > 0, got -1"),
        ("data", "max_seq_len", "0", "must be > 0, got 0"),
        ("checkpoint", "keep_last", "0", "must be > 0, got 0"),
        ("train", "max_steps", "-1", "must be >= 0, got -1"),
        ("train", "max_grad_norm", "-0.5", "must be >= 0, got -0.5"),
        ("data", "eval_fraction", "1.0", "must be in [0, 1), got 1.0"),
        ("lora", "dropout", "-0.1", "must be in [0, 1), got -0.1"),
        ("train", "lr", "0", "must be > 0, got 0.0"),
        ("train", "min_lr_ratio", "1.5", "must be in [0, 1], got 1.5"),
        ("train", "adam_betas", "[0.9]", "must be two numbers in [0, 1), got [0.9]"),
        ("train", "adam_betas", "[0.9, 1]", "must be two numbers in [0, 1), got [0.9, 1.0]"),
        ("eval", "max_new_tokens", "0", "must be > 0, got 0"),
        ("train", "loss_chunk_tokens", "0", "must be > 0, got 0"),
    ],
)
def test_range_checks(tmp_path, section, key, value, problem):
    path = write_toml(tmp_path, f"[{section}]\n{key} = {value}\n")
    assert config_error(path) == f"invalid configuration:\n  {path}: key '{section}.{key}' {problem}"


def test_missing_and_invalid_files(tmp_path):
    missing = tmp_path / "missing.toml"
    assert config_error(missing) == f"{missing}: config file not found"
    broken = write_toml(tmp_path, "[train\n")
    assert config_error(broken).startswith(f"{broken}: not valid TOML: ")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("--data.train=a.jsonl", ("data", "train", "a.jsonl")),
        ('--data.train=["a.jsonl", "b.jsonl"]', ("data", "train", ["a.jsonl", "b.jsonl"])),
        ("--train.lr=1e-3", ("train", "lr", 0.001)),
        ("--run.seed=12", ("run", "seed", 12)),
        ("--data.packing=false", ("data", "packing", False)),
        ("--run.out_dir=runs/x", ("run", "out_dir", "runs/x")),
        ('--run.out_dir="runs/a b"', ("run", "out_dir", "runs/a b")),
        ("--run.out_dir=a=b", ("run", "out_dir", "a=b")),
        ("--data.think_instruction=", ("data", "think_instruction", "")),
        ("--model.path=google/gemma-2-2b-it", ("model", "path", "google/gemma-2-2b-it")),
    ],
)
def test_parse_override(text, parsed):
    assert parse_override(text) == parsed


@pytest.mark.parametrize("text", ["--lr=1", "data.train=a", "--data.train", "-data.train=a"])
def test_malformed_override(text):
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert str(info.value) == f"override {text!r}: expected the form --section.key=value"


def test_precedence_cli_over_file_over_defaults(tmp_path):
    path = write_toml(tmp_path, "[lora]\nr = 4\nalpha = 8\n[data]\ntrain = ['file.jsonl']\n")
    config = load_config(path, ["--lora.alpha=32", "--data.train=cli.jsonl", "--train.lr=0.5"])
    assert config.lora == LoraConfig(r=4, alpha=32)
    assert config.data == DataConfig(train=("cli.jsonl",))
    assert config.train == TrainConfig(lr=0.5)
    assert config.lora.dropout == LoraConfig().dropout


def test_override_errors_name_the_key(tmp_path):
    path = write_toml(tmp_path, "[run]\nseed = 1\n")
    assert config_error(path, ["--trainer.lr=1", "--train.lr=fast", "--train.nope=1"]) == (
        "invalid configuration:\n"
        f"  override '--trainer.lr=1': unknown section 'trainer'; valid sections: {SECTION_NAMES}\n"
        f"  {path} (with overrides): key 'train.lr': expected float, got str 'fast'\n"
        f"  {path} (with overrides): unknown key 'train.nope'; valid keys in [train]: {TRAIN_KEYS}"
    )


def test_override_without_file():
    assert load_config(None, ["--run.seed=3"]) == Config(run=RunConfig(seed=3))


NON_DEFAULT = Config(
    run=RunConfig(out_dir="runs/ä b", seed=42),
    model=ModelConfig(path="tiny:gemma2", tokenizer="tok", trust_remote_code=True),
    data=DataConfig(
        train=("a.jsonl", "owner/name:cfg@train"),
        eval_fraction=0.125,
        format="openai",
        max_seq_len=77,
        on_bad_row="skip",
        on_too_long="truncate",
        think_instruction='Think "hard"\\ \t and\nlong ☃',
    ),
    train=TrainConfig(lr=3e-05, adam_betas=(0.5, 0.75), precision="fp32", max_grad_norm=0.0),
    lora=LoraConfig(r=2, alpha=3, target_modules=()),
    eval=EvalConfig(every_steps=0, max_cases=0),
)


@pytest.mark.parametrize("config", [Config(), NON_DEFAULT], ids=["defaults", "non-default"])
def test_config_to_toml_round_trip(tmp_path, config):
    path = write_toml(tmp_path, config_to_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize("text", ["", "tab\tnewline\n", "bell\x07 escape\x1b nul\x00", "delete\x7f", "\u2028 😀"])
def test_config_to_toml_round_trips_any_string(tmp_path, text):
    config = Config(data=DataConfig(think_instruction=text))
    assert load_config(write_toml(tmp_path, config_to_toml(config))) == config


@pytest.mark.parametrize(
    ("argv", "split"),
    [
        ([], ([], [])),
        (["cfg.toml"], ([], ["cfg.toml"])),
        (
            ["cfg.toml", "--data.train=a.jsonl", "--dump", "out.jsonl", "--show", "3"],
            (["--data.train=a.jsonl"], ["cfg.toml", "--dump", "out.jsonl", "--show", "3"]),
        ),
        (["--train.lr=1", "cfg.toml", "--dump=x.y/z.jsonl"], (["--train.lr=1"], ["cfg.toml", "--dump=x.y/z.jsonl"])),
    ],
)
def test_split_overrides(argv, split):
    assert split_overrides(argv) == split


def test_an_option_value_is_not_taken_for_the_config_path():
    from fcloop.inspect import build_parser

    args = build_parser().parse_args(["--dump", "out.jsonl", "cfg.toml"])
    assert (args.config, str(args.dump)) == ("cfg.toml", "out.jsonl")
