"""Generation-based evaluation: eval conversations -> cases -> greedy generations -> tool-call metrics.

A case is one assistant turn of an eval conversation: the model sees everything before that turn, rendered
exactly as in training with the generation prompt, and its answer is scored against the turn as written.
Generation is greedy and batched with left padding and the KV cache; it stops at `<end_of_turn>` or `<eos>`.
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from fcloop.data.conversation import Conversation
from fcloop.data.gemma_format import END_OF_TURN, assistant_text, render
from fcloop.evaluation.constrained import CallsFitTools, ConstraintCounts, constraint_metrics
from fcloop.evaluation.scoring import aggregate, cut_at_stop_marker, score_case
from fcloop.model.load import base_config
from fcloop.model.lora import token_rows_merged
from fcloop.outputs import written_atomically

TOOLS_OPEN, TOOLS_CLOSE = "<tools>", "</tools>"
EOS = "<eos>"


@dataclass(frozen=True)
class EvalCase:
    id: str
    """`source:row:turn`, turn counting the conversation's assistant turns from 0."""
    prompt: Conversation
    """The conversation up to (not including) the assistant turn."""
    tools: tuple[dict[str, Any], ...]
    """The tool schemas the scorer checks calls against."""
    expected: str
    """The assistant turn's text exactly as rendered in training (without `<end_of_turn>`)."""


# ---------------------------------------------------------------------------------------------------------
# Cases


def _top_level_brackets(text: str) -> list[str]:
    """The top-level `{…}` / `[…]` spans of `text`, in order. Quotes (either kind) are tracked so that a
    bracket inside a string does not count; an unclosed span at the end is dropped."""
    spans, depth, start, quote, escaped = [], 0, 0, "", False
    for position, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'" and depth > 0:
            quote = char
        elif char in "{[":
            start = position if depth == 0 else start
            depth += 1
        elif char in "}]" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : position + 1])
    return spans


def _parse_literal(text: str) -> Any:
    """JSON first; then a Python literal, since some data sets write their tool lists as Python reprs."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def tools_in_system_text(text: str) -> tuple[dict[str, Any], ...]:
    """The tool schemas written inside `<tools>…</tools>` blocks: JSON objects separated by whitespace, or
    lists of them. A piece that does not parse is skipped: a broken schema should cost the scorer one tool,
    not the whole case."""
    tools: list[dict[str, Any]] = []
    position = 0
    while (start := text.find(TOOLS_OPEN, position)) >= 0:
        end = text.find(TOOLS_CLOSE, start)
        if end < 0:
            break
        for piece in _top_level_brackets(text[start + len(TOOLS_OPEN) : end]):
            value = _parse_literal(piece)
            items = value if isinstance(value, list) else [value]
            tools += [item for item in items if isinstance(item, dict)]
        position = end + len(TOOLS_CLOSE)
    return tuple(tools)


def tools_of(conversation: Conversation) -> tuple[dict[str, Any], ...]:
    """Tools given beside the messages, or else those written into the system text (Hermes rows)."""
    if conversation.tools:
        return conversation.tools
    messages = conversation.messages
    return tools_in_system_text(messages[0].content) if messages and messages[0].role == "system" else ()


def cases_of(conversation: Conversation) -> list[EvalCase]:
    tools = tools_of(conversation)
    cases = []
    for position, message in enumerate(conversation.messages):
        if message.role != "assistant":
            continue
        prompt = Conversation(
            messages=conversation.messages[:position],
            tools=conversation.tools,
            source=conversation.source,
            index=conversation.index,
        )
        case_id = f"{conversation.source}:{conversation.index}:{len(cases)}"
        cases.append(EvalCase(id=case_id, prompt=prompt, tools=tools, expected=assistant_text(message)))
    return cases


def build_cases(conversations: Sequence[Conversation], max_cases: int = 0) -> list[EvalCase]:
    """One case per assistant turn, in conversation order; `max_cases` > 0 keeps only the first that many."""
    cases = []
    for conversation in conversations:
        cases += cases_of(conversation)
        if max_cases and len(cases) >= max_cases:
            return cases[:max_cases]
    return cases


def cases_longer_than(cases: Sequence[EvalCase], tokenizer, max_new_tokens: int) -> list[str]:
    """Ids of the cases whose expected answer, with the `<end_of_turn>` that ends it, takes more than
    `max_new_tokens` tokens: generation stops before the answer does, so such a case cannot match."""
    return [
        case.id
        for case in cases
        if len(tokenizer(case.expected + END_OF_TURN, add_special_tokens=False)["input_ids"]) > max_new_tokens
    ]


def too_long_warning(cases: Sequence[EvalCase], tokenizer, max_new_tokens: int) -> str | None:
    """The warning naming the cases that `cases_longer_than` finds, or None when every case fits."""
    too_long = cases_longer_than(cases, tokenizer, max_new_tokens)
    if not too_long:
        return None
    shown = ", ".join(too_long[:5]) + (", ..." if len(too_long) > 5 else "")
    return (
        f"warning: {len(too_long)} of {len(cases)} eval cases expect answers longer than eval.max_new_tokens = "
        f"{max_new_tokens} tokens ({shown}); generation stops before their end, so they cannot match. "
        f"Raise eval.max_new_tokens."
    )


# ---------------------------------------------------------------------------------------------------------
# Generation


def stop_token_ids(tokenizer) -> list[int]:
    """`<eos>` and `<end_of_turn>`: a chat model ends its turn with the latter, a base model with the former."""
    ids = [tokenizer.convert_tokens_to_ids(token) for token in (EOS, END_OF_TURN)]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted({i for i in ids if i is not None and i != tokenizer.unk_token_id})


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), padded on the left so every row's next token is at the same column."""
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, width - len(sequence) :] = 1
    return input_ids, attention_mask


def decode_new_tokens(token_ids: Sequence[int], tokenizer, stop_ids: Sequence[int], pad_id: int | None) -> str:
    """The generated text up to (not including) the first stop token, without padding."""
    kept = []
    for token in token_ids:
        if token in stop_ids:
            break
        if token != pad_id:
            kept.append(token)
    text = tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    # A model may also spell a marker out of ordinary tokens; the scorer cuts there too.
    return cut_at_stop_marker(text)


def _generation_config(
    tokenizer, max_new_tokens: int, stop_ids: list[int], temperature: float = 0.0, top_p: float = 1.0
) -> GenerationConfig:
    # A fresh config, so that sampling settings shipped with a model cannot turn greedy decoding into sampling.
    # Temperature 0 is greedy, as evaluation decodes; only a positive one samples.
    sampling = {"temperature": temperature, "top_p": top_p} if temperature > 0 else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        **sampling,
        num_beams=1,
        use_cache=True,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


@contextlib.contextmanager
def eager_uncompiled(model):
    """Generation's own attention path: eager attention (with the KV cache) and nothing compiled.

    Training may run flex attention inside compiled decoder layers with fixed shapes; decoding one token at
    a time against a growing cache has other shapes every step and transformers would build its own flex
    masks, so running those compiled functions here would recompile them until the limit, evicting nothing
    useful and costing minutes. Eager attention is exact for Gemma-2's softcap and cheap at decode sizes."""
    config = base_config(model)
    training_attention = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        with torch.compiler.set_stance("force_eager"):
            yield
    finally:
        config._attn_implementation = training_attention


def _contiguous_first_input(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


@contextlib.contextmanager
def contiguous_head_input(model):
    """The output layer gets a contiguous input while generating.

    A batched prefill hands the output layer only the last position of every row, a strided view
    [batch, 1, hidden] of the hidden states. For such an input torch's matmul cannot fold the batch into one
    matrix product: it broadcasts the weight to [batch, hidden, vocab] and copies it, 2.7 GB per prefill at
    batch 8 with Gemma's quarter-million-token vocabulary in bf16 (6.3 s on two cores, against 0.03 s for the
    same product on a contiguous copy of the input, bitwise equal). Copying the [batch, 1, hidden] input is
    free; decoding steps and one-row prompts are contiguous already and pass through unchanged."""
    handle = model.get_output_embeddings().register_forward_pre_hook(_contiguous_first_input)
    try:
        yield
    finally:
        handle.remove()


class GenerationStopped(Exception):
    """`should_stop` said stop (a SIGTERM during an evaluation): the answers are incomplete and must be discarded."""


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    device: torch.device | str,
    synced_ranks: bool = False,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    tools: Sequence[Sequence[dict[str, Any]]] | None = None,
    constraint_counts: ConstraintCounts | None = None,
) -> list[str]:
    """Greedy continuations of `prompts` (rendered texts that already start with `<bos>`), in order.

    Prompts are batched longest first, so that rows of a batch need little padding; greedy decoding makes
    the result independent of the batching. The model's training mode is restored afterwards.
    `synced_ranks`: every rank generates, and none stops decoding before all are done (FSDP).
    `progress`: a bar of cases done on stderr (a CPU eval of a hundred cases takes many minutes).
    `should_stop`: asked before each batch and, without `synced_ranks`, after every decoding step too (a batch
    on a CPU takes minutes, longer than a preemption's grace period); once it says stop, GenerationStopped is
    raised and nothing is returned. With `synced_ranks` it must give every rank the same answer (a collective),
    and it is asked between batches only, where every rank asks it the same number of times.
    `tools`: the tools offered in each prompt; given, every tool call is held to them while it is written
    (`fcloop.evaluation.constrained`), and what the constraint did is added to `constraint_counts`.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; batched generation needs one for left padding")
    stop_ids = stop_token_ids(tokenizer)
    config = _generation_config(tokenizer, max_new_tokens, stop_ids)
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    texts = [""] * len(prompts)
    stop_when = _StopWhen(should_stop) if should_stop is not None and not synced_ranks else None
    was_training = model.training
    model.eval()
    try:
        with (
            token_rows_merged(model),
            eager_uncompiled(model),
            contiguous_head_input(model),
            tqdm(total=len(prompts), desc="generating", unit="case", disable=not progress) as bar,
        ):
            for start in range(0, len(order), batch_size):
                if should_stop is not None and should_stop():
                    raise GenerationStopped
                chunk = order[start : start + batch_size]
                input_ids, attention_mask = left_pad([encoded[i] for i in chunk], tokenizer.pad_token_id)
                constraint = (
                    CallsFitTools(tokenizer, [tools[i] for i in chunk], input_ids.shape[1], stop_ids)
                    if tools is not None
                    else None
                )
                output = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    generation_config=config,
                    synced_gpus=synced_ranks,
                    stopping_criteria=StoppingCriteriaList([stop_when]) if stop_when is not None else None,
                    logits_processor=LogitsProcessorList([constraint]) if constraint is not None else None,
                )
                if constraint is not None and constraint_counts is not None:
                    constraint_counts.add(constraint.counts)
                if stop_when is not None and stop_when.fired:  # this batch's answers were cut short
                    raise GenerationStopped
                new_tokens = output[:, input_ids.shape[1] :].tolist()
                for index, tokens in zip(chunk, new_tokens, strict=True):
                    texts[index] = decode_new_tokens(tokens, tokenizer, stop_ids, tokenizer.pad_token_id)
                bar.update(len(chunk))
    finally:
        model.train(was_training)
    return texts


class _StopWhen(StoppingCriteria):
    """Stops every row once `should_stop()` says so (a chat's Ctrl-C, a SIGTERM during an evaluation),
    keeping what was generated; `fired` tells whether it did."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.fired = self.fired or bool(self.should_stop())
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_one(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    device: torch.device | str,
    temperature: float = 0.0,
    top_p: float = 1.0,
    streamer: Any = None,
    should_stop: Callable[[], bool] | None = None,
    merge_token_rows: bool = True,
    tools: Sequence[dict[str, Any]] | None = None,
) -> list[int]:
    """The new token ids of one continuation of `prompt` (a rendered text that starts with `<bos>`), the stop
    token that ended it included; `decode_new_tokens` reads them as evaluation does. Greedy unless
    `temperature` > 0. `streamer` gets the tokens as they come (transformers' streamer protocol); generation
    ends early once `should_stop()` is true. `merge_token_rows=False` leaves the trained new-token rows out,
    for a model whose adapter is switched off. `tools`: given, every tool call is held to them while it is
    written (`fcloop.evaluation.constrained`), sampled calls included."""
    stop_ids = stop_token_ids(tokenizer)
    config = _generation_config(tokenizer, max_new_tokens, stop_ids, temperature, top_p)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    constraint = (
        CallsFitTools(tokenizer, [tools], len(prompt_ids), stop_ids, sampling=temperature > 0)
        if tools is not None
        else None
    )
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    criteria = StoppingCriteriaList([_StopWhen(should_stop)]) if should_stop is not None else None
    was_training = model.training
    model.eval()
    try:
        with (
            token_rows_merged(model) if merge_token_rows else contextlib.nullcontext(),
            eager_uncompiled(model),
            contiguous_head_input(model),
        ):
            output = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                streamer=streamer,
                stopping_criteria=criteria,
                logits_processor=LogitsProcessorList([constraint]) if constraint is not None else None,
            )
    finally:
        model.train(was_training)
    return output[0, len(prompt_ids) :].tolist()


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def prediction_record(case: EvalCase, generated: str) -> dict[str, Any]:
    return {"id": case.id, "tools": list(case.tools), "expected": case.expected, "generated": generated}


def write_predictions(path: Path, records: list[dict[str, Any]]) -> None:
    with written_atomically(path) as partial, partial.open("w", encoding="utf-8") as file:  # whole, or not at all
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")


def evaluate_tool_calls(
    model,
    tokenizer,
    cases: Sequence[EvalCase],
    think_instruction: str,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device | str,
    synced_ranks: bool = False,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
    constrain_calls: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate an answer for every case and score it: (metrics of `fcloop.evaluation.scoring.aggregate`, prediction
    records {"id", "tools", "expected", "generated"} in case order). GenerationStopped: see `generate`.
    `constrain_calls`: calls are held to each case's tools while they are written; the metrics then count what
    that changed."""
    prompts = [render(case.prompt, think_instruction, add_generation_prompt=True).text for case in cases]
    counts = ConstraintCounts()
    generated = generate(
        model, tokenizer, prompts, max_new_tokens, batch_size, device, synced_ranks, progress, should_stop,
        tools=[case.tools for case in cases] if constrain_calls else None, constraint_counts=counts,
    )  # fmt: skip
    scores = [score_case(case.expected, text, case.tools) for case, text in zip(cases, generated, strict=True)]
    records = [prediction_record(case, text) for case, text in zip(cases, generated, strict=True)]
    metrics = aggregate(scores)
    return (metrics | constraint_metrics(counts, "") if constrain_calls else metrics), records
