"""A trained model in llama.cpp against fcloop: the run's eval prompts, greedy answers compared.

    python -m fcloop.export RUN/final --gguf model.gguf --gguf-type f16
    python -m benchmarks.gguf_parity RUN/final --gguf model.gguf \
        --predictions RUN/eval/predictions_step_000250.jsonl --out benchmarks/results/gguf_parity.json

Each case of the predictions file (written by training's evaluation or `fcloop.eval`) is rebuilt from the run's
eval data as evaluation builds it and its prompt rendered as training renders it. llama.cpp (llama-cpp-python,
the `llama` extra) tokenizes the prompt itself (checked against the tokenizer's ids) and answers greedily up to
the run's eval.max_new_tokens, stopping where evaluation stops (`<end_of_turn>`, `<eos>`). The answer's text is
read with control tokens written out, as fcloop's evaluation reads it: llama.cpp's completion API leaves them out
of its text, and with `data.tags_as_tokens` the tags are control tokens. The report (JSON, and markdown beside it)
says per case whether llama.cpp's answer is fcloop's, else where the two part.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import markdown_path_for, write_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gguf_parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", type=Path, help="the run's final/ folder (its config.toml and tokenizer)")
    parser.add_argument("--gguf", type=Path, required=True, help="the file `fcloop.export --gguf` wrote from it")
    parser.add_argument("--predictions", type=Path, required=True, help="fcloop's answers to the run's eval cases")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report (its markdown is written beside)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp's threads")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="the limit the predictions were generated with (the run's eval.max_new_tokens)",
    )
    return parser


def first_difference(a: str, b: str) -> int:
    """The first character position where `a` and `b` differ (the shorter one's length if one extends the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def llama_answer(llm, prompt_ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> tuple[str, str]:
    """(text, how it ended: "stop" or "length") of llama.cpp's greedy continuation, cut as evaluation cuts it."""
    from fcloop.evaluation.scoring import cut_at_stop_marker

    tokens: list[int] = []
    for token in llm.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
        if token in stop_ids:
            return cut_at_stop_marker(detokenized(llm, tokens)), "stop"
        tokens.append(token)
        if len(tokens) == max_new_tokens:
            break
    return cut_at_stop_marker(detokenized(llm, tokens)), "length"


def detokenized(llm, tokens: list[int]) -> str:
    return llm.detokenize(tokens, special=True).decode("utf-8", errors="replace")


def compare(case_id: str, llama_text: str, finish_reason: str, same_prompt_tokens: bool, fcloop_text: str) -> dict:
    same = llama_text == fcloop_text
    return {
        "id": case_id,
        "same": same,
        "same_prompt_tokens": same_prompt_tokens,
        "finish_reason": finish_reason,
        "parts_at_char": None if same else first_difference(llama_text, fcloop_text),
        "llama_cpp": llama_text,
        "fcloop": fcloop_text,
    }


def markdown(report: dict) -> str:
    lines = [
        f"# A trained model in llama.cpp against fcloop ({report['date']})",
        "",
        f"`{report['command']}`",
        "",
        f"{report['machine']['cpu']} ({', '.join(report['machine']['flags']) or 'no reported flags'}), "
        f"{report['machine']['cores']} cores; llama-cpp-python {report['versions']['llama_cpp_python']}, "
        f"transformers {report['versions']['transformers']}.",
        "",
        f"**{report['same']} of {report['cases']}** greedy answers identical; prompts tokenized by llama.cpp as by "
        f"the tokenizer in {report['same_prompt_tokens']} of {report['cases']}; {report['seconds']} s in llama.cpp.",
        "",
        "| case | same answer | same prompt tokens | llama.cpp stopped by | parts at char |",
        "|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        parts = "" if row["same"] else str(row["parts_at_char"])
        same, tokens = "yes" if row["same"] else "no", "yes" if row["same_prompt_tokens"] else "no"
        lines.append(f"| {row['id']} | {same} | {tokens} | {row['finish_reason']} | {parts} |")
    return "\n".join(lines) + "\n"


def machine() -> dict:
    from fcloop.hardware import REPORTED_CPU_FLAGS, cpu_name, detect_cpu_flags

    flags = detect_cpu_flags()
    return {"cpu": cpu_name(), "flags": [f for f in REPORTED_CPU_FLAGS if f in flags], "cores": os.cpu_count()}


def measure(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from fcloop.config import load_config
    from fcloop.data.gemma_format import render
    from fcloop.data.load import load_eval_data
    from fcloop.evaluation.generation import build_cases, stop_token_ids

    config = load_config(args.adapter / "config.toml")
    tokenizer = AutoTokenizer.from_pretrained(args.adapter)
    conversations, _ = load_eval_data(config.data, tokenizer, config.run.seed)
    cases = {case.id: case for case in build_cases(conversations)}
    lines = args.predictions.read_text(encoding="utf-8").splitlines()
    predictions = [json.loads(line) for line in lines if line.strip()]
    if missing := [p["id"] for p in predictions if p["id"] not in cases]:
        raise SystemExit(f"error: {args.predictions}: cases {missing[:3]} are not in {args.adapter}'s eval data")
    max_new_tokens = args.max_new_tokens or config.eval.max_new_tokens
    stop_ids = stop_token_ids(tokenizer)
    context = config.data.max_seq_len + max_new_tokens  # the longest prompt training renders, and the answer
    llm = Llama(model_path=str(args.gguf), n_ctx=context, n_threads=args.threads, verbose=False, seed=0)
    rows, started = [], time.perf_counter()
    for prediction in predictions:
        case = cases[prediction["id"]]
        prompt = render(case.prompt, config.data.think_instruction, add_generation_prompt=True).text
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        llama_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        text, finish_reason = llama_answer(llm, llama_ids, max_new_tokens, stop_ids)
        rows.append(compare(case.id, text, finish_reason, llama_ids == ids, prediction["generated"]))
        print(f"{case.id}: {'same' if rows[-1]['same'] else 'parts at char ' + str(rows[-1]['parts_at_char'])}")
    return {
        "command": "python -m benchmarks.gguf_parity " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "versions": {
            "python": platform.python_version(),
            "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
            "transformers": importlib.metadata.version("transformers"),
        },
        "gguf": str(args.gguf),
        "predictions": str(args.predictions),
        "max_new_tokens": max_new_tokens,
        "cases": len(rows),
        "same": sum(row["same"] for row in rows),
        "same_prompt_tokens": sum(row["same_prompt_tokens"] for row in rows),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    report = measure(args, argv)
    write_report(report, args.out, markdown(report), markdown_path_for(args.out, None))
    print(f"{report['same']} of {report['cases']} answers identical; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
