"""Writing a benchmark's result: the JSON and its markdown table, beside each other."""

from __future__ import annotations

import json
from pathlib import Path


def markdown_path_for(json_path: Path, markdown: str | None) -> Path:
    """The markdown file: the one asked for, else the JSON's name with `.md`."""
    return Path(markdown) if markdown else json_path.with_suffix(".md")


def write_report(report: dict, json_path: Path, table: str, markdown_path: Path) -> None:
    """Both files, each written whole to a temporary name and renamed: a timeout never leaves half a file."""
    for path, text in ((json_path, json.dumps(report, indent=2) + "\n"), (markdown_path, table)):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
