"""Export: the merged model, loaded by plain transformers, computes the adapter model's logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from saved_adapters import saved_adapter
from tiny_data import conversation

from fcloop.config import load_config
from fcloop.data.gemma_format import SPECIAL_TOKENS, render, to_chat_messages
from fcloop.data.readers import read_row
from fcloop.errors import run_cli
from fcloop.export import main as export_main

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory):
    """LoRA on lm_head (tied to the embedding in Gemma) and trained new-token rows: the hard case."""
    final, model, tokenizer = saved_adapter(tmp_path_factory.mktemp("export"), [])
    config = load_config(final / "config.toml")
    assert "lm_head" in config.lora.target_modules and config.lora.train_new_token_rows
    return final, model, tokenizer


def probe_sequences(tokenizer) -> list[list[int]]:
    """A rendered conversation (tags, turn markers) and a short sequence made of the new tokens only."""
    rendered = render(read_row(conversation(0), "hermes", "probe", 0), "").text
    tags = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    return [
        tokenizer(rendered, add_special_tokens=False)["input_ids"],
        [tokenizer.bos_token_id, *tags, tokenizer.convert_tokens_to_ids("<end_of_turn>"), *reversed(tags)],
    ]


@torch.no_grad()
def logits_of(model, sequences: list[list[int]]) -> list[torch.Tensor]:
    return [model(input_ids=torch.tensor([sequence])).logits[0] for sequence in sequences]


@pytest.fixture(scope="module")
def merged_folder(adapter_run, tmp_path_factory) -> Path:
    final, _, _ = adapter_run
    out = tmp_path_factory.mktemp("merged") / "model"
    assert export_main([str(final), "--merge", str(out)]) == 0
    return out


def test_merged_model_gives_the_adapter_models_logits(adapter_run, merged_folder):
    from transformers import AutoModelForCausalLM

    _, adapter_model, tokenizer = adapter_run
    merged = AutoModelForCausalLM.from_pretrained(merged_folder, dtype=torch.float32)
    merged.eval()
    assert not [m for m in merged.modules() if type(m).__module__.startswith("peft")]
    # The LoRA on lm_head must not have leaked into the input embedding: the two are separate weights now.
    assert merged.get_output_embeddings().weight.data_ptr() != merged.get_input_embeddings().weight.data_ptr()
    sequences = probe_sequences(tokenizer)
    expected = logits_of(adapter_model, sequences)
    actual = logits_of(merged, sequences)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # The check means something: without the adapter the logits are far from these.
    with adapter_model.disable_adapter():
        base_logits = logits_of(adapter_model, sequences)
    assert (base_logits[1] - expected[1]).abs().max() > 0.1


def test_without_lora_on_lm_head_the_merged_model_stays_tied(tmp_path):
    from transformers import AutoModelForCausalLM

    final, adapter_model, tokenizer = saved_adapter(tmp_path, ['--lora.target_modules=["q_proj", "v_proj"]'])
    out = tmp_path / "merged"
    assert export_main([str(final), "--merge", str(out)]) == 0
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    assert merged.get_output_embeddings().weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()
    sequences = probe_sequences(tokenizer)
    for want, got in zip(logits_of(adapter_model, sequences), logits_of(merged, sequences), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_merged_folder_is_a_plain_transformers_model(merged_folder):
    from transformers import AutoTokenizer

    names = {path.name for path in merged_folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    assert not names & set(ADAPTER_FILES)
    model_config = json.loads((merged_folder / "config.json").read_text())
    assert model_config["tie_word_embeddings"] is False
    assert model_config["use_cache"] is True
    generation_config = json.loads((merged_folder / "generation_config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(merged_folder)
    assert sorted(generation_config["eos_token_id"]) == sorted(
        tokenizer.convert_tokens_to_ids(["<eos>", "<end_of_turn>"])
    )


def test_merged_tokenizer_chat_template_renders_like_fcloop(adapter_run, merged_folder):
    from transformers import AutoTokenizer

    final, _, _ = adapter_run
    config = load_config(final / "config.toml")
    tokenizer = AutoTokenizer.from_pretrained(merged_folder)
    whole = read_row(conversation(3), "hermes", "probe", 3)  # system, a tool turn, two user turns
    before_last_answer = type(whole)(messages=whole.messages[:-1])
    for chat, generation_prompt in ((whole, False), (before_last_answer, True)):
        text = tokenizer.apply_chat_template(
            to_chat_messages(chat), tokenize=False, add_generation_prompt=generation_prompt
        )
        assert text == render(chat, config.data.think_instruction, generation_prompt).text


# ---------------------------------------------------------------------------------------------------------
# Export never overwrites what it did not write, and never writes into the adapter it reads

DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_refuses_a_folder_holding_other_files(adapter_run, tmp_path, capsys):
    final, _, _ = adapter_run
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}\n')
    assert run_cli(export_main, [str(final), "--merge", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} is not empty (config.json); choose a new output path, or pass --overwrite to replace it\n"
        f"{DEBUG_HINT}\n"
    )
    assert contents(out) == {"config.json": b'{"mine": true}\n'}


def test_export_with_overwrite_replaces_the_folder_whole(adapter_run, merged_folder, tmp_path):
    final, _, _ = adapter_run
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}\n')
    (out / "notes.txt").write_text("old\n")
    assert run_cli(export_main, [str(final), "--merge", str(out), "--overwrite"]) == 0
    assert sorted(contents(out)) == sorted(contents(merged_folder))  # the export alone: nothing old is left
    assert not (tmp_path / "model.partial").exists()


@pytest.mark.parametrize("where", ["the adapter itself", "inside the adapter", "the run folder above it"])
def test_export_never_writes_into_the_adapter_it_reads(adapter_run, capsys, where):
    final, _, _ = adapter_run
    out = {
        "the adapter itself": final,
        "inside the adapter": final / "merged",
        "the run folder above it": final.parent,
    }[where]
    before = contents(final)
    for extra in ([], ["--overwrite"]):
        assert run_cli(export_main, [str(final), "--merge", str(out), *extra]) == 2
        assert capsys.readouterr().err == (
            f"error: {out}: the output would be written into {final}, which this command reads from; choose another "
            f"output path\n{DEBUG_HINT}\n"
        )
    assert contents(final) == before
    assert not (final / "merged").exists()


def test_export_of_a_run_folder_names_the_positional_argument(tmp_path, capsys):
    run = tmp_path / "run"  # a run folder: its config.toml, no adapter (that is in run/final)
    run.mkdir()
    (run / "config.toml").write_text("")
    assert run_cli(export_main, [str(run), "--merge", str(tmp_path / "model")]) == 2
    assert capsys.readouterr().err == (
        f"error: {run}: no model in it (no adapter_config.json, no config.json); expected a final/ folder written by "
        "fcloop.train or a merged folder written by fcloop.export (python -m fcloop.export RUN/final --merge OUT)\n"
    )
    assert not (tmp_path / "model").exists()
