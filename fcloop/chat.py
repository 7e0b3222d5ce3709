"""`python -m fcloop.chat FOLDER [--tools tools.json | --functions my_tools.py] [--prompt TEXT ...] [options]`

Talks to a trained model with your own tools: FOLDER is a final/ adapter folder, a step_NNNNNN/ checkpoint or a
merged folder written by `fcloop.export`. Each answer is streamed (its thought dimmed), every `<tool_call>` is
checked against the tool schemas, and a call's result (from the function, after a confirmation, or typed in)
goes back to the model as a tool response until it answers in text. `--prompt` answers without a terminal:
one JSON object per prompt (`thought`, `calls` with their checks, `text`), each in a fresh conversation.

Prompts are rendered exactly as training renders a conversation with tools (`fcloop.data.gemma_format`);
generation, the reading of an answer and the schema checks are evaluation's own (`fcloop.evaluation`), greedy
unless `--temperature` > 0; the device and precision are chosen as evaluation chooses them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fcloop.config import DataConfig, load_config
from fcloop.data.conversation import Conversation, Message, RowProblem
from fcloop.data.gemma_format import render
from fcloop.data.readers import parse_tools
from fcloop.errors import FcloopError, run_cli
from fcloop.evaluation.generation import decode_new_tokens, generate_one, stop_token_ids
from fcloop.evaluation.scoring import THINK_CLOSE, THINK_OPEN, call_problems, parse_assistant_output, tool_function

DIM, RED, GREEN, YELLOW, BOLD, RESET = "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
# A model that keeps calling would otherwise never give the turn back.
MAX_CALL_ROUNDS = 8
COMMANDS_HELP = "/reset (new conversation), /tools, /raw (text and token ids of the last turn), /compare, /quit"


class ChatInputError(FcloopError):
    """A tools file, a functions module or a model folder that cannot be used; the message names it."""

    exit_code = 2


@dataclass(frozen=True)
class Tools:
    schemas: tuple[dict[str, Any], ...] = ()
    """The tool schemas the model sees and its calls are checked against."""
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    """`--functions`: the functions by name, run on the model's calls; empty for `--tools`."""


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0
    """0: greedy, as evaluation decodes."""
    top_p: float = 1.0
    constrain_calls: bool = True
    """Hold every tool call to the tools' schemas while it is written (fcloop.evaluation.constrained), as
    evaluation does; `--free-calls` turns it off."""


# ---------------------------------------------------------------------------------------------------------
# Tools


def read_tools_file(path: Path) -> tuple[dict[str, Any], ...]:
    """An OpenAI-style list of function schemas, read as the training data's tool lists are read."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise ChatInputError(f"--tools {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ChatInputError(f"--tools {path}: not UTF-8 text (byte {error.start})") from None
    except ValueError as error:
        raise ChatInputError(f"--tools {path}: not JSON ({error})") from None
    if not isinstance(value, list):
        raise ChatInputError(f"--tools {path}: not a list of function schemas (the JSON is {type(value).__name__})")
    try:
        tools = parse_tools(value)
    except RowProblem:
        raise ChatInputError(f"--tools {path}: not a list of function schemas (some item is not an object)") from None
    if not tools:
        raise ChatInputError(f"--tools {path}: the list is empty; give at least one function schema")
    for position, tool in enumerate(tools):
        if not isinstance(tool_function(tool).get("name"), str):
            raise ChatInputError(
                f"--tools {path}: tool {position} is not a function schema: it has no string 'name' (nor a "
                "'function' object with one)"
            )
    return tools


def read_tools(tools_file: Path | None, functions_file: Path | None) -> Tools:
    if tools_file is not None:
        return Tools(schemas=read_tools_file(tools_file))
    return load_functions(functions_file) if functions_file is not None else Tools()


def public_functions(module: Any) -> dict[str, Callable[..., Any]]:
    """The functions a module defines itself (not those it imports), without a leading underscore."""
    return {
        name: value
        for name, value in vars(module).items()
        if inspect.isfunction(value) and not name.startswith("_") and value.__module__ == module.__name__
    }


def load_functions(path: Path) -> Tools:
    """The public functions of the Python file `path`, their schemas made by transformers' `get_json_schema`
    (from the type hints and the Google-style docstring)."""
    from transformers.utils import get_json_schema

    if not path.is_file():
        raise ChatInputError(f"--functions {path}: no such file")
    name = "fcloop_chat_functions_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ChatInputError(f"--functions {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up there
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # whatever the user's module raises is the user's to see, in one line
        raise ChatInputError(f"--functions {path}: importing it failed: {type(error).__name__}: {error}") from None
    functions = public_functions(module)
    if not functions:
        raise ChatInputError(f"--functions {path}: it defines no public function")
    schemas = []
    for function_name, function in functions.items():
        try:
            schemas.append(get_json_schema(function))
        except Exception as error:  # transformers' TypeHintParsingException, DocstringParsingException
            raise ChatInputError(f"--functions {path}: function {function_name}: {error}") from None
    return Tools(schemas=tuple(schemas), functions=functions)


def call_text(call: dict[str, Any]) -> str:
    """get_weather(city="Paris"): a call as the user reads it."""
    arguments = call.get("arguments", {})
    shown = ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in arguments.items())
    return f"{call.get('name')}({shown})"


def run_function(function: Callable[..., Any], arguments: dict[str, Any]) -> tuple[str, bool]:
    """(result as the model reads it, whether the function raised). An error goes back to the model as the
    tool's result: a real tool fails too, and what the model does then is worth seeing."""
    try:
        result = function(**arguments)
    except Exception as error:
        return f"error: {type(error).__name__}: {error}", True
    return (result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)), False


# ---------------------------------------------------------------------------------------------------------
# One-shot answers


def answer_record(prompt: str, generated: str, tools: Tools, run_calls: bool) -> dict[str, Any]:
    """The JSON object `--prompt` prints for one generated answer: its thought, its calls each with the
    schema check (and the function's result when `run_calls`), whether a call failed to parse, and its text."""
    parsed = parse_assistant_output(generated)
    calls = []
    for call in parsed.calls:
        problems = call_problems(call, tools.schemas)
        entry: dict[str, Any] = {**call, "valid": not problems, "problems": problems}
        if run_calls and call["name"] in tools.functions:
            entry["result"], entry["raised"] = run_function(tools.functions[call["name"]], call["arguments"])
        calls.append(entry)
    return {
        "prompt": prompt,
        "thought": parsed.think,
        "calls": calls,
        "parse_failed": parsed.parse_failed,
        "text": parsed.answer_text,
    }


# ---------------------------------------------------------------------------------------------------------
# The model


@dataclass
class Model:
    model: Any
    tokenizer: Any
    think_instruction: str
    device: Any
    has_adapter: bool

    def prompt(self, messages: list[Message], tools: Tools) -> str:
        conversation = Conversation(messages=tuple(messages), tools=tools.schemas)
        return render(conversation, self.think_instruction, add_generation_prompt=True).text

    def decode(self, token_ids: list[int]) -> str:
        return decode_new_tokens(token_ids, self.tokenizer, stop_token_ids(self.tokenizer), None)


def run_config_path(folder: Path) -> Path | None:
    """The run's config.toml: a final/ folder holds a copy, a step_ checkpoint's is in the run folder above."""
    for candidate in (folder / "config.toml", folder.parent / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_chat_model(folder: Path) -> Model:
    from fcloop.eval import inference_device, inference_dtype, load_inference_model
    from fcloop.hardware import detect_hardware

    if not folder.is_dir():
        raise ChatInputError(f"{folder}: no such folder")
    is_adapter = (folder / "adapter_config.json").is_file()
    if not is_adapter and not (folder / "config.json").is_file():
        raise ChatInputError(
            f"{folder}: no model in it (no adapter_config.json, no config.json); give a final/ or step_NNNNNN/ "
            "folder written by fcloop.train, or a merged folder written by fcloop.export"
        )
    config_path = run_config_path(folder)
    if is_adapter and config_path is None:
        raise ChatInputError(f"{folder}: no config.toml in it or in {folder.parent}; the base model is named there")
    config = load_config(config_path)
    device = inference_device()
    dtype, reason = inference_dtype(config.train.precision, detect_hardware(device))
    print(reason, file=sys.stderr)
    if is_adapter:
        model, tokenizer = load_inference_model(config, folder, dtype, device)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    # Without a run config (a merged folder on its own) the prompt gets the default think instruction.
    think = config.data.think_instruction if config_path is not None else DataConfig().think_instruction
    return Model(model, tokenizer, think, device, has_adapter=is_adapter)


def generate_text(
    model: Model,
    prompt: str,
    decoding: Decoding,
    streamer: Any = None,
    should_stop: Callable[[], bool] | None = None,
    base: bool = False,
    tools: Sequence[dict[str, Any]] = (),
) -> list[int]:
    """The new token ids for `prompt`; `base`: with the adapter switched off (peft's `disable_adapter`), so
    the base model answers without a second copy in memory. Calls are held to `tools` where the decoding
    says so."""
    held_to = tuple(tools) if decoding.constrain_calls and tools else None
    context = model.model.disable_adapter() if base else contextlib.nullcontext()
    with context:
        return generate_one(
            model.model, model.tokenizer, prompt, decoding.max_new_tokens, model.device, decoding.temperature,
            decoding.top_p, streamer, should_stop, merge_token_rows=not base, tools=held_to,
        )  # fmt: skip


def one_shot(
    model: Model, prompts: list[str], tools: Tools, decoding: Decoding, run_calls: bool, compare: bool
) -> None:
    for prompt in prompts:
        text = model.prompt([Message("user", prompt)], tools)
        answer = model.decode(generate_text(model, text, decoding, tools=tools.schemas))
        record = answer_record(prompt, answer, tools, run_calls)
        if compare:
            base_answer = model.decode(generate_text(model, text, decoding, base=True, tools=tools.schemas))
            record["base"] = answer_record(prompt, base_answer, tools, run_calls=False)
        print(json.dumps(record, ensure_ascii=False), flush=True)


# ---------------------------------------------------------------------------------------------------------
# The interactive loop


class Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *codes: str) -> str:
        return "".join(codes) + text + RESET if self.color and codes else text


class StreamPrinter:
    """transformers' streamer protocol (`put`, `end`): prints the answer as it is generated, thoughts dimmed.
    The first `put` is the prompt, which is skipped; the text is decoded as evaluation decodes it."""

    def __init__(self, model: Model, out: TextIO, style: Style) -> None:
        self.model, self.out, self.style = model, out, style
        self.token_ids: list[int] = []
        self.shown = ""
        self.prompt_seen = False
        self.in_thought = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.token_ids += value.flatten().tolist()
        self.show()

    def end(self) -> None:
        self.show()

    def show(self) -> None:
        text = self.model.decode(self.token_ids)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for its end
            return
        new, self.shown = text[len(self.shown) :], text
        for piece in re.split(f"({re.escape(THINK_OPEN)}|{re.escape(THINK_CLOSE)})", new):
            if piece == THINK_OPEN:
                self.in_thought = True
            self.out.write(self.style(piece, DIM) if self.in_thought else piece)
            if piece == THINK_CLOSE:
                self.in_thought = False
        self.out.flush()


@contextlib.contextmanager
def ctrl_c_stops(stop: threading.Event) -> Iterator[None]:
    """While generating, Ctrl-C sets `stop` (generation ends at the next token) instead of ending the chat."""
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class LastTurn:
    prompt: str
    prompt_ids: list[int]
    new_ids: list[int]


@dataclass
class Chat:
    model: Model
    tools: Tools
    decoding: Decoding
    yes: bool
    compare: bool
    style: Style
    out: TextIO = sys.stdout
    ask: Callable[[str], str] = input
    messages: list[Message] = field(default_factory=list)
    last: LastTurn | None = None

    def say(self, text: str = "", *codes: str) -> None:
        print(self.style(text, *codes), file=self.out, flush=True)

    def reply(self, label: str, base: bool = False) -> tuple[str, bool]:
        """Stream one answer to the conversation so far: (its text, whether Ctrl-C stopped it)."""
        prompt = self.model.prompt(self.messages, self.tools)
        self.out.write(self.style(label, BOLD))
        stop = threading.Event()
        with ctrl_c_stops(stop):
            new_ids = generate_text(
                self.model, prompt, self.decoding, StreamPrinter(self.model, self.out, self.style), stop.is_set, base,
                self.tools.schemas,
            )  # fmt: skip
        if stop.is_set():
            self.out.write(self.style(" [stopped]", YELLOW))
        self.out.write("\n")
        if not base:
            prompt_ids = self.model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            self.last = LastTurn(prompt, prompt_ids, new_ids)
        return self.model.decode(new_ids), stop.is_set()

    def show_checks(self, generated: str) -> list[dict[str, Any]]:
        """One line per call (green when it fits the schemas, red with the problems when not); the calls."""
        parsed = parse_assistant_output(generated)
        if parsed.parse_failed:
            self.say("  a <tool_call> block does not parse", RED)
        for call in parsed.calls:
            problems = call_problems(call, self.tools.schemas)
            if problems:
                self.say(f"  ✗ {call_text(call)}: {'; '.join(problems)}", RED)
            else:
                self.say(f"  ✓ {call_text(call)}", GREEN)
        return list(parsed.calls)

    def result_of(self, call: dict[str, Any]) -> str:
        """The function's result (after a confirmation unless --yes), or else the result the user types."""
        function = self.tools.functions.get(call["name"])
        if function is not None:
            answer = "y" if self.yes else self.ask(f"run {call_text(call)}? [Y/n] ").strip().lower()
            if answer in ("", "y", "yes"):
                result, raised = run_function(function, call["arguments"])
                self.say(f"  -> {result}", RED if raised else DIM)
                return result
        return self.ask(f"result of {call_text(call)}> ")

    def user_turn(self, text: str) -> None:
        """The user's message, then answers and tool results until the model answers in text."""
        self.messages.append(Message("user", text))
        for _ in range(MAX_CALL_ROUNDS):
            generated, stopped = self.reply("model> ")
            if self.compare and self.model.has_adapter:
                self.show_checks(self.reply("base>  ", base=True)[0])
            calls = self.show_checks(generated)
            self.messages.append(Message("assistant", generated))
            if stopped or not calls:
                return
            # Each result is its own tool message; the format puts consecutive ones in one user turn.
            self.messages += [Message("tool", self.result_of(call)) for call in calls]
        self.say(f"(stopped after {MAX_CALL_ROUNDS} rounds of calls)", YELLOW)

    def command(self, line: str) -> bool:
        """Run a /command; False for /quit."""
        name = line.split()[0]
        if name == "/quit":
            return False
        if name == "/reset":
            self.messages, self.last = [], None
            self.say("(new conversation)", DIM)
        elif name == "/tools":
            for schema in self.tools.schemas:
                definition = tool_function(schema)
                self.say(f"{definition['name']}: {json.dumps(definition.get('parameters', {}), ensure_ascii=False)}")
            if not self.tools.schemas:
                self.say("(no tools)", DIM)
        elif name == "/raw":
            if self.last is None:
                self.say("(nothing generated yet)", DIM)
            else:
                self.say(self.last.prompt + self.model.tokenizer.decode(self.last.new_ids, skip_special_tokens=False))
                self.say(f"prompt ids: {self.last.prompt_ids}", DIM)
                self.say(f"new ids: {self.last.new_ids}", DIM)
        elif name == "/compare":
            self.compare = not self.compare
            if self.compare and not self.model.has_adapter:
                self.say("(no adapter to switch off: a merged model has no base to compare with)", YELLOW)
            self.say(f"(compare {'on' if self.compare else 'off'})", DIM)
        else:
            self.say(f"commands: {COMMANDS_HELP}", YELLOW)
        return True

    def run(self) -> None:
        self.say(f"tools: {', '.join(tool_function(t)['name'] for t in self.tools.schemas) or 'none'}", DIM)
        self.say(f"commands: {COMMANDS_HELP}; Ctrl-C stops a generation", DIM)
        while True:
            try:
                line = self.ask("you> ").strip()
            except EOFError:
                return
            except KeyboardInterrupt:  # at the prompt, Ctrl-C clears the line: /quit or Ctrl-D leaves
                self.say()
                continue
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return
            else:
                self.user_turn(line)


# ---------------------------------------------------------------------------------------------------------
# The command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fcloop.chat", description=__doc__.split("\n\n")[1])
    parser.add_argument("folder", type=Path, help="a final/ or step_NNNNNN/ folder, or a merged folder")
    tools = parser.add_mutually_exclusive_group()
    tools.add_argument("--tools", type=Path, help="a JSON file holding an OpenAI-style list of function schemas")
    tools.add_argument(
        "--functions", type=Path, help="a Python file: its public functions (type hints, docstring) are the tools"
    )
    parser.add_argument("--prompt", action="append", help="answer this and exit, printing one JSON object (repeatable)")
    parser.add_argument("--yes", action="store_true", help="run --functions calls without asking")
    parser.add_argument("--compare", action="store_true", help="also show the base model's answer (adapter off)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (the default) decodes greedily")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling, with --temperature > 0")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="the longest answer, in tokens")
    parser.add_argument(
        "--free-calls",
        action="store_true",
        help="do not hold tool calls to the tools' schemas while they are written (they are by default)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.max_new_tokens <= 0 or args.temperature < 0 or not 0 < args.top_p <= 1:
        parser.error("--max-new-tokens must be > 0, --temperature >= 0, and --top-p in (0, 1]")
    # Tools first: a wrong file is named at once, not after the model has loaded.
    tools = read_tools(args.tools, args.functions)
    model = load_chat_model(args.folder)
    if args.compare and not model.has_adapter:
        raise ChatInputError(f"--compare: {args.folder} holds a merged model; there is no adapter to switch off")
    decoding = Decoding(args.max_new_tokens, args.temperature, args.top_p, constrain_calls=not args.free_calls)
    if args.prompt:
        one_shot(model, args.prompt, tools, decoding, run_calls=args.yes, compare=args.compare)
        return 0
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    Chat(model, tools, decoding, args.yes, args.compare, Style(color)).run()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
