"""Hand-made files in the layout of bfcl-eval's data/ folder (questions, and answers in possible_answer/), for
the tests that must run without the package. Made up here; nothing is taken from BFCL's data."""

from __future__ import annotations

import json
from pathlib import Path

WEATHER_DOC = {
    "name": "weather.current",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "dict",
        "properties": {
            "city": {"type": "string", "description": "City name."},
            "days": {"type": "integer", "description": "Days ahead."},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit."},
        },
        "required": ["city"],
    },
}
AREA_DOC = {
    "name": "circle_area",
    "description": "Area of a circle.",
    "parameters": {
        "type": "dict",
        "properties": {"radius": {"type": "float", "description": "Radius."}},
        "required": ["radius"],
    },
}


def question(text: str) -> list[list[dict]]:
    return [[{"role": "user", "content": text}]]


SIMPLE = [
    (
        {
            "id": "simple_python_0",
            "question": question("Weather in New York, 2 days ahead?"),
            "function": [WEATHER_DOC],
        },
        {
            "id": "simple_python_0",
            "ground_truth": [{"weather.current": {"city": ["New York", "NYC"], "days": [2], "unit": ["", "celsius"]}}],
        },
    ),
    (
        {"id": "simple_python_1", "question": question("Area of a circle of radius 3?"), "function": [AREA_DOC]},
        {"id": "simple_python_1", "ground_truth": [{"circle_area": {"radius": [3.0]}}]},
    ),
    (
        {"id": "simple_python_2", "question": question("Weather in Lima?"), "function": [WEATHER_DOC]},
        {
            "id": "simple_python_2",
            "ground_truth": [{"weather.current": {"city": ["Lima"], "days": ["", 0], "unit": [""]}}],
        },
    ),
]
PARALLEL = [
    (
        {"id": "parallel_0", "question": question("Weather in Oslo and in Rome?"), "function": [WEATHER_DOC]},
        {
            "id": "parallel_0",
            "ground_truth": [{"weather.current": {"city": ["Oslo"]}}, {"weather.current": {"city": ["Rome"]}}],
        },
    ),
]
IRRELEVANCE = [
    {"id": "irrelevance_0", "question": question("Who wrote Hamlet?"), "function": [AREA_DOC]},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_bfcl_folder(folder: Path) -> Path:
    """BFCL_v4_simple_python.json, BFCL_v4_parallel.json (answers beside them) and BFCL_v4_irrelevance.json."""
    for category, pairs in (("simple_python", SIMPLE), ("parallel", PARALLEL)):
        write_jsonl(folder / f"BFCL_v4_{category}.json", [q for q, _ in pairs])
        write_jsonl(folder / "possible_answer" / f"BFCL_v4_{category}.json", [a for _, a in pairs])
    write_jsonl(folder / "BFCL_v4_irrelevance.json", IRRELEVANCE)
    return folder
