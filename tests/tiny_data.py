"""Short deterministic conversations for the fast loop tests (tiny model, a few hundred tokens each)."""

from __future__ import annotations

import json
import random
from pathlib import Path

CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Rome"]


def conversation(index: int) -> dict:
    rng = random.Random(index)
    city = rng.choice(CITIES)
    degrees = rng.randint(-5, 35)
    turns = [
        {"from": "system", "value": "You are a helpful assistant with tools."},
        {"from": "human", "value": f"What is the weather in {city}?"},
        {
            "from": "gpt",
            "value": f"<think>I will call get_weather for {city}.</think><tool_call>\n"
            + json.dumps({"name": "get_weather", "arguments": {"city": city}})
            + "\n</tool_call>",
        },
        {"from": "tool", "value": json.dumps({"temperature": degrees})},
        {"from": "gpt", "value": f"It is {degrees} degrees in {city}."},
    ]
    if index % 3 == 0:
        turns += [{"from": "human", "value": "Thanks!"}, {"from": "gpt", "value": "You are welcome."}]
    return {"conversations": turns}


def write_tiny_data(folder: Path, train_count: int = 8, eval_count: int = 4) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train, held_out = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("".join(json.dumps(conversation(i)) + "\n" for i in range(train_count)))
    held_out.write_text("".join(json.dumps(conversation(1000 + i)) + "\n" for i in range(eval_count)))
    return train, held_out
