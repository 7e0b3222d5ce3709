"""Random-init models that need no download: a tiny Gemma-2 for fast CPU tests (and a tiny Gemma-3 for the GGUF
tests), gemma-2-2b's architecture for the CUDA smoke run (configs/gpu_smoke.toml), and a tiny tokenizer.

The tokenizer is a byte-level BPE trained on a fixed built-in text, so it is the same on every machine and
needs no download; it has Gemma's control tokens (`<pad>`, `<eos>`, `<bos>`, `<start_of_turn>`,
`<end_of_turn>`) and merges, so token boundaries do not always fall on span boundaries, as with a real one.
"""

from __future__ import annotations

from transformers import Gemma2Config, Gemma3TextConfig, PreTrainedTokenizerFast

TINY_PATH = "tiny:gemma2"
TINY_GEMMA2_HEAD256_PATH = "tiny:gemma2-head256"
TINY_GEMMA3_PATH = "tiny:gemma3"
RANDOM_GEMMA2_2B_PATH = "random:gemma2-2b"
GEMMA2_VOCAB = 256000
CONTROL_TOKENS = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>")

# Varied English, JSON and tool-call text; the merges it teaches make multi-character tokens that cross
# word and punctuation boundaries.
_CORPUS = """\
You are a function calling AI model. You are provided with function signatures within XML tags.
Here are the available tools: {"type": "function", "function": {"name": "get_weather", "description":
"Get the current weather for a city", "parameters": {"type": "object", "properties": {"city": {"type":
"string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
For each function call return a json object with function name and arguments within XML tags.
user
What is the weather like in Paris today? Please convert 500 USD to EUR. Can you book a flight?
model
I should call get_weather with the city Paris. The user wants to convert an amount of money.
{"name": "convert_currency", "arguments": {"amount": 500, "from_currency": "USD", "to_currency": "EUR"}}
{"temperature": 18, "condition": "cloudy", "humidity": 0.71, "ok": true, "items": [1, 2, 3]}
The weather in Paris is 18 degrees and cloudy. 500 USD is about 462 EUR at the current rate.
I'm sorry, but I cannot order food for you. However, I can help you find a recipe with the ingredients.
Thank you! The meeting is scheduled for 2026-03-14 at 10:30 in the main office with Alice and Bob.
"""


def tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CONTROL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )


def tiny_model_config(vocab_size: int) -> Gemma2Config:
    """Gemma-2's architecture at toy size: sliding and full layers alternate, both softcaps on, and a sliding
    window short enough that packed test rows exceed it."""
    return Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=24,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )


def gemma2_2b_config(vocab_size: int) -> Gemma2Config:
    """google/gemma-2-2b's architecture (ANCHORS section 3) with at least its 256000-row vocabulary, so the
    embedding, the lm_head and the loss have their real sizes even with the tiny tokenizer."""
    return Gemma2Config(
        vocab_size=max(vocab_size, GEMMA2_VOCAB),
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        query_pre_attn_scalar=256,
        sliding_window=4096,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )


def tiny_gemma2_head256_config(vocab_size: int) -> Gemma2Config:
    """The tiny Gemma-2 with Gemma's real head size, 256, and attention scale 1/sqrt(256), at toy width: heads x
    head_dim is not the hidden size, as in gemma-2-2b. transformers' GGUF loader does not read
    query_pre_attn_scalar (it takes the default, 256), so the GGUF tests need a model where that is right."""
    config = tiny_model_config(vocab_size)
    config.head_dim = 256
    config.query_pre_attn_scalar = 256
    return config


def tiny_gemma3_config(vocab_size: int) -> Gemma3TextConfig:
    """Gemma-3's text architecture at toy width: five sliding layers to one full one (Gemma-3-270M's pattern),
    q/k norms, separate rope bases for the two kinds of layer, no softcaps, one KV head, head_dim 256."""
    return Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=24,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )


RANDOM_MODEL_CONFIGS = {
    TINY_PATH: tiny_model_config,
    TINY_GEMMA2_HEAD256_PATH: tiny_gemma2_head256_config,
    TINY_GEMMA3_PATH: tiny_gemma3_config,
    RANDOM_GEMMA2_2B_PATH: gemma2_2b_config,
}
"""model.path values that build a random-init model (weights from run.seed) with the tiny tokenizer."""
