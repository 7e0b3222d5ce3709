"""`python -m fcloop.chat`: tools in, calls checked, one-shot JSON, bad input, and the loop in a real terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_data import write_tiny_data

from fcloop import chat
from fcloop.chat import Tools, answer_record, call_text
from fcloop.config import load_config
from fcloop.errors import run_cli
from fcloop.evaluation.scoring import call_is_schema_valid, call_problems
from fcloop.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DEBUG_HINT = "(FCLOOP_DEBUG=1 shows the traceback)"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
FUNCTIONS_MODULE = '''
def get_weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city.

    Args:
        city: The city's name.
        unit: The temperature unit.
    """
    return f"21 degrees in {city}"


def fail(reason: str) -> str:
    """Always fails.

    Args:
        reason: Why.
    """
    raise RuntimeError(f"broken: {reason}")


def _helper() -> None:
    pass
'''


def tool_call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def command_error(path_or_text: str) -> str:
    return f"error: {path_or_text}\n{DEBUG_HINT}\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny run trained for one step; returns its out_dir (final/ and step_000001/ in it)."""
    folder = tmp_path_factory.mktemp("chat_run")
    train_file, eval_file = write_tiny_data(folder / "data", train_count=4, eval_count=1)
    config = load_config(
        CONFIGS / "tiny.toml",
        [
            f"--run.out_dir={folder / 'run'}",
            f"--data.train={train_file}",
            f"--data.eval={eval_file}",
            "--data.eval_fraction=0.0",
            "--data.max_seq_len=512",
            "--train.precision=fp32",
            "--train.max_steps=1",
            "--eval.every_steps=0",
            "--checkpoint.every_steps=1",
        ],
    )
    train(config)
    return Path(config.run.out_dir)


@pytest.fixture
def tools_file(tmp_path) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([WEATHER]))
    return path


@pytest.fixture
def functions_file(tmp_path) -> Path:
    path = tmp_path / "my_tools.py"
    path.write_text(FUNCTIONS_MODULE)
    return path


# ---------------------------------------------------------------------------------------------------------
# Checking calls and assembling the answer


@pytest.mark.parametrize(
    ("call", "problems"),
    [
        ({"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, []),
        ({"name": "get_wether", "arguments": {"city": "Paris"}}, ['unknown function "get_wether"']),
        ({"name": "get_weather", "arguments": {"unit": "celsius"}}, ["missing required argument 'city'"]),
        ({"name": "get_weather", "arguments": {"city": 75}}, ["'city' should be string, got 75"]),
        (
            {"name": "get_weather", "arguments": {"city": "Paris", "unit": "kelvin"}},
            ['\'unit\' = "kelvin" is not one of ["celsius", "fahrenheit"]'],
        ),
    ],
)
def test_call_problems_name_what_breaks_the_schema_and_agree_with_evaluations_check(call, problems):
    assert call_problems(call, [WEATHER]) == problems
    assert call_is_schema_valid(call, [WEATHER]) == (problems == [])


def test_the_answer_record_holds_the_thought_each_call_with_its_check_and_the_text():
    generated = (
        "<think>Weather for both.</think>"
        + tool_call("get_weather", {"city": "Paris"})
        + "\n"
        + tool_call("get_weather", {"city": "Lyon", "unit": "kelvin"})
        + "\nOne moment."
    )
    assert answer_record("Weather?", generated, Tools(schemas=(WEATHER,)), run_calls=False) == {
        "prompt": "Weather?",
        "thought": "Weather for both.",
        "calls": [
            {"name": "get_weather", "arguments": {"city": "Paris"}, "valid": True, "problems": []},
            {
                "name": "get_weather",
                "arguments": {"city": "Lyon", "unit": "kelvin"},
                "valid": False,
                "problems": ['\'unit\' = "kelvin" is not one of ["celsius", "fahrenheit"]'],
            },
        ],
        "parse_failed": False,
        "text": "One moment.",
    }
    assert answer_record("Hi", "<tool_call>\n{bad\n</tool_call>", Tools(), run_calls=False) == {
        "prompt": "Hi",
        "thought": None,
        "calls": [],
        "parse_failed": True,
        "text": "",
    }
    assert call_text({"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}) == (
        'get_weather(city="Paris", days=2)'
    )


# ---------------------------------------------------------------------------------------------------------
# One-shot mode through the command


def scripted_generation(answers: list[str]):
    """A stand-in for `generate_one` that answers `answers` in order, as token ids of the model's tokenizer."""

    def generate_one(model, tokenizer, prompt, *args, **kwargs):
        return tokenizer(answers.pop(0) + "<end_of_turn>", add_special_tokens=False)["input_ids"]

    return generate_one


def stdout_records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_one_shot_prints_one_json_object_per_prompt(run, tools_file, monkeypatch, capsys):
    answers = [tool_call("get_weather", {"city": 3}), "Hello there."]
    monkeypatch.setattr(chat, "generate_one", scripted_generation(answers))
    argv = [str(run / "final"), "--tools", str(tools_file), "--prompt", "Weather in Paris?", "--prompt", "Hi"]
    assert run_cli(chat.main, argv) == 0
    assert stdout_records(capsys.readouterr().out) == [
        {
            "prompt": "Weather in Paris?",
            "thought": None,
            "calls": [
                {
                    "name": "get_weather",
                    "arguments": {"city": 3},
                    "valid": False,
                    "problems": ["'city' should be string, got 3"],
                }
            ],
            "parse_failed": False,
            "text": "",
        },
        {"prompt": "Hi", "thought": None, "calls": [], "parse_failed": False, "text": "Hello there."},
    ]


def test_one_shot_prompts_are_rendered_as_training_renders_them(run, tools_file, monkeypatch, capsys):
    from fcloop.data.conversation import Conversation, Message
    from fcloop.data.gemma_format import render

    seen = []

    def generate_one(model, tokenizer, prompt, *args, **kwargs):
        seen.append(prompt)
        return tokenizer("Ok.<end_of_turn>", add_special_tokens=False)["input_ids"]

    monkeypatch.setattr(chat, "generate_one", generate_one)
    assert run_cli(chat.main, [str(run / "final"), "--tools", str(tools_file), "--prompt", "Hi"]) == 0
    think = load_config(run / "config.toml").data.think_instruction
    expected = render(Conversation((Message("user", "Hi"),), tools=(WEATHER,)), think, add_generation_prompt=True)
    assert seen == [expected.text]


def test_calls_are_held_to_the_tools_unless_free_calls_is_given(run, tools_file, monkeypatch, capsys):
    held_to = []

    def generate_one(model, tokenizer, prompt, *args, tools=None, **kwargs):
        held_to.append(tools)
        return tokenizer("Ok.<end_of_turn>", add_special_tokens=False)["input_ids"]

    monkeypatch.setattr(chat, "generate_one", generate_one)
    argv = [str(run / "final"), "--tools", str(tools_file), "--prompt", "Hi"]
    assert run_cli(chat.main, argv) == 0
    assert run_cli(chat.main, [*argv, "--free-calls"]) == 0
    assert run_cli(chat.main, [*argv, "--compare"]) == 0  # the base model's answer is held to them too
    assert run_cli(chat.main, [str(run / "final"), "--prompt", "Hi"]) == 0  # no tools: nothing to hold to
    assert held_to == [(WEATHER,), None, (WEATHER,), (WEATHER,), None]


def test_one_shot_end_to_end_is_greedy_and_the_same_from_the_final_folder_and_the_checkpoint(run, tools_file, capsys):
    argv = ["--tools", str(tools_file), "--prompt", "Weather in Paris?", "--max-new-tokens", "4"]
    assert run_cli(chat.main, [str(run / "final"), *argv]) == 0
    final = stdout_records(capsys.readouterr().out)
    assert [list(record) for record in final] == [["prompt", "thought", "calls", "parse_failed", "text"]]
    assert final[0]["prompt"] == "Weather in Paris?" and isinstance(final[0]["text"], str)
    assert run_cli(chat.main, [str(run / "step_000001"), *argv]) == 0
    assert stdout_records(capsys.readouterr().out) == final
    assert run_cli(chat.main, [str(run / "final"), *argv, "--temperature", "1.0", "--top-p", "0.9"]) == 0
    assert [record["prompt"] for record in stdout_records(capsys.readouterr().out)] == ["Weather in Paris?"]


def test_one_shot_on_a_merged_folder_and_compare_needs_an_adapter(run, tools_file, tmp_path, capsys):
    from fcloop.export import export_merged

    merged = export_merged(run / "final", tmp_path / "merged")
    argv = [str(merged), "--tools", str(tools_file), "--prompt", "Hi", "--max-new-tokens", "4"]
    assert run_cli(chat.main, argv) == 0
    [record] = stdout_records(capsys.readouterr().out)
    assert (record["prompt"], record["parse_failed"]) == ("Hi", False)
    assert run_cli(chat.main, [*argv, "--compare"]) == 2
    assert capsys.readouterr().err.endswith(
        command_error(f"--compare: {merged} holds a merged model; there is no adapter to switch off")
    )


def test_functions_become_tools_and_run_only_with_yes(run, functions_file, monkeypatch, capsys):
    answers = [tool_call("get_weather", {"city": "Paris"}) + "\n" + tool_call("fail", {"reason": "disk"})] * 2
    monkeypatch.setattr(chat, "generate_one", scripted_generation(answers))
    argv = [str(run / "final"), "--functions", str(functions_file), "--prompt", "Weather?"]
    assert run_cli(chat.main, argv) == 0
    assert [call.get("result") for call in stdout_records(capsys.readouterr().out)[0]["calls"]] == [None, None]
    assert run_cli(chat.main, [*argv, "--yes"]) == 0
    calls = stdout_records(capsys.readouterr().out)[0]["calls"]
    assert [(call["valid"], call["result"], call["raised"]) for call in calls] == [
        (True, "21 degrees in Paris", False),
        (True, "error: RuntimeError: broken: disk", True),  # the error is the tool's result; nothing stops
    ]
    assert chat.load_functions(functions_file).schemas[0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name."},
                    "unit": {"type": "string", "description": "The temperature unit."},
                },
                "required": ["city"],
            },
            "return": {"type": "string"},
        },
    }


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, no traceback


NO_HINT_MODULE = 'def f(x):\n    """Does f.\n\n    Args:\n        x: X.\n    """\n'
BAD_INPUTS = [
    (
        "tools.json",
        "[{not json",
        "not JSON (Expecting property name enclosed in double quotes: line 1 column 3 (char 2))",
    ),
    ("tools.json", '{"name": "x"}', "not a list of function schemas (the JSON is dict)"),
    ("tools.json", "[1, 2]", "not a list of function schemas (some item is not an object)"),
    (
        "tools.json",
        '[{"type": "function"}]',
        "tool 0 is not a function schema: it has no string 'name' (nor a 'function' object with one)",
    ),
    ("tools.json", "[]", "the list is empty; give at least one function schema"),
    (
        "my_tools.py",
        "import not_a_module_anywhere\n",
        "importing it failed: ModuleNotFoundError: No module named 'not_a_module_anywhere'",
    ),
    ("my_tools.py", NO_HINT_MODULE, "function f: Argument x is missing a type hint in function f"),
    ("my_tools.py", "X = 1\n", "it defines no public function"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS)
def test_a_bad_tools_file_or_module_is_one_error_line_before_the_model_loads(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    option = "--tools" if name.endswith(".json") else "--functions"
    assert run_cli(chat.main, [str(tmp_path / "no_model_here"), option, str(path), "--prompt", "x"]) == 2
    assert capsys.readouterr().err == command_error(f"{option} {path}: {message}")


def test_a_folder_without_a_model_is_one_error_line_from_the_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fcloop.chat", str(tmp_path), "--prompt", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == command_error(
        f"{tmp_path}: no model in it (no adapter_config.json, no config.json); give a final/ or step_NNNNNN/ "
        "folder written by fcloop.train, or a merged folder written by fcloop.export"
    )


# ---------------------------------------------------------------------------------------------------------
# The interactive loop in a real terminal

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
# A stand-in model for the loop: the real tiny model is loaded, but its answers are scripted (a random model
# calls no tool), streamed token by token through the chat's own streamer, and the last one is slow enough
# to be stopped by Ctrl-C.
DRIVER = """
import json, sys, time
import torch
from fcloop import chat

ANSWERS = json.loads(sys.argv[1])
BASE = json.loads(sys.argv[2])


def generate_one(model, tokenizer, prompt, max_new_tokens, device, temperature, top_p, streamer=None,
                 should_stop=None, merge_token_rows=True, tools=None):
    assert tools is not None and [tool["function"]["name"] for tool in tools] == ["get_weather", "fail"]
    text = (ANSWERS if merge_token_rows else BASE).pop(0)
    slow = text.startswith("la la")
    ids = tokenizer(text + "<end_of_turn>", add_special_tokens=False)["input_ids"]
    streamer.put(torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]]))
    done = []
    for token in ids:
        if should_stop is not None and should_stop():
            break
        streamer.put(torch.tensor([token]))
        done.append(token)
        time.sleep(0.2 if slow else 0)
    streamer.end()
    return done


chat.generate_one = generate_one
sys.argv = [sys.argv[0], *sys.argv[3:]]
sys.exit(chat.run_cli(chat.main))
"""


class Terminal:
    """A command running in a detached tmux session, read through capture-pane."""

    def __init__(self, name: str, command: str) -> None:
        self.name = name
        shell = f"cd {ROOT} && {command}; echo EXITED $?; sleep 60"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50", shell], check=True)

    def screen(self) -> str:
        result = subprocess.run(
            ["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name], capture_output=True, text=True
        )
        return result.stdout

    def wait_for(self, text: str, count: int = 1, timeout: float = 600) -> str:
        # Generous: the command loads torch and a model first, on a CPU that may be busy with other work.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} (x{count}) did not appear; the screen:\n{self.screen()}")

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type(self, line: str) -> None:
        self.send("-l", line)
        self.send("Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminal(tmp_path):
    opened: list[Terminal] = []

    def start(command: str) -> Terminal:
        # The process id too: two test runs at once on one machine (the two CI environments run by hand side by
        # side) get the same tmp_path names, and tmux refuses a second session of the same name.
        opened.append(Terminal(f"fcloop_chat_{os.getpid()}_{tmp_path.name}_{len(opened)}", command))
        return opened[-1]

    yield start
    for one in opened:
        one.close()


def python_command(*arguments: str) -> str:
    quoted = " ".join("'" + argument.replace("'", "'\\''") + "'" for argument in arguments)
    # PYTHONPATH: a script's own folder, not the working directory, is first on its path.
    return f"nice -n 19 env PYTHONPATH={ROOT} OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE {sys.executable} {quoted}"


@needs_tmux
def test_the_loop_runs_calls_takes_typed_results_compares_resets_and_survives_ctrl_c(
    run, functions_file, tmp_path, terminal
):
    answers = [
        "<think>Weather.</think>" + tool_call("get_weather", {"city": "Paris"}),
        "It is 21 degrees.",
        tool_call("get_time", {"zone": 5}),
        "It is noon.",
        tool_call("fail", {"reason": "disk"}),
        "Sorry, the tool failed.",
        "Hi.",
        "la " * 200,
    ]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    arguments = [json.dumps(answers), json.dumps(["Base hi."]), str(run / "final"), "--functions", str(functions_file)]
    screen = terminal(python_command(str(driver), *arguments))
    screen.wait_for("you> ")
    screen.type("Weather in Paris?")
    screen.wait_for('✓ get_weather(city="Paris")')
    screen.wait_for('run get_weather(city="Paris")? [Y/n]')
    screen.type("")  # Enter: yes
    screen.wait_for("-> 21 degrees in Paris")
    screen.wait_for("model> It is 21 degrees.")

    screen.type("And the time?")
    screen.wait_for('✗ get_time(zone=5): unknown function "get_time"')
    screen.wait_for("result of get_time(zone=5)> ")
    screen.type("noon")
    screen.wait_for("model> It is noon.")
    screen.type("/raw")
    text = screen.wait_for("new ids: [")
    # The typed result went back as a tool response, in the training format.
    assert "<start_of_turn>user\n<tool_response>\nnoon\n</tool_response><end_of_turn>" in text

    screen.type("Break it")
    screen.wait_for('run fail(reason="disk")? [Y/n]')
    screen.type("y")
    # The function's error is shown and goes back to the model as the tool's result; the chat goes on.
    screen.wait_for("-> error: RuntimeError: broken: disk")
    screen.wait_for("model> Sorry, the tool failed.")

    screen.type("/compare")
    screen.wait_for("(compare on)")
    screen.type("Hello")
    screen.wait_for("model> Hi.")
    screen.wait_for("base>  Base hi.")
    screen.type("/compare")
    screen.wait_for("(compare off)")

    screen.type("/reset")
    screen.wait_for("(new conversation)")
    screen.type("/raw")
    screen.wait_for("(nothing generated yet)")

    screen.type("Sing")
    screen.wait_for("model> la la la")
    screen.send("C-c")
    screen.wait_for("[stopped]")
    screen.type("/quit")  # the chat goes on after the stopped answer
    assert "EXITED 0" in screen.wait_for("EXITED")


@needs_tmux
def test_the_loop_on_the_real_tiny_model_with_compare(run, tools_file, terminal):
    screen = terminal(
        python_command(
            "-m", "fcloop.chat", str(run / "final"), "--tools", str(tools_file), "--compare", "--max-new-tokens", "4"
        )
    )
    screen.wait_for("you> ")
    screen.type("Weather in Paris?")
    screen.wait_for("base>  ")
    screen.wait_for("you> ", count=2)
    screen.type("/tools")
    screen.wait_for('get_weather: {"type": "object"')
    screen.type("/quit")
    assert "EXITED 0" in screen.wait_for("EXITED")


@pytest.mark.parametrize("option", [["--max-new-tokens", "0"], ["--temperature", "-1"], ["--top-p", "0"]])
def test_decoding_settings_that_cannot_work_are_usage_errors(tmp_path, option):
    with pytest.raises(SystemExit):
        chat.main([str(tmp_path), "--prompt", "x", *option])
