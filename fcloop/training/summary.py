"""The table a run ends with: its first evaluation (the base model, at step 0) beside its last.

It shows the measures that follow the skill: the cases answered right, per kind of request (one call, several
calls, no call), and BFCL's categories when `bfcl:` sources are evaluated. A mean over all cases alone can fall
while the skill rises (a base model that never calls a tool is right on every no-call case), so the kinds are
shown apart, and each row says what it counts.
"""

from __future__ import annotations

from typing import Any

# (metrics.jsonl key, what the row counts); rows whose values are missing in both evaluations are left out.
ROWS = (
    ("eval/loss", "eval loss (supervised tokens)"),
    ("eval/call_exact_match", "cases right, all kinds"),
    ("eval/right_one_call", "  one call asked"),
    ("eval/right_several_calls", "  several calls asked"),
    ("eval/right_no_call", "  no call fits"),
    ("eval/decision_accuracy", "call or text chosen right"),
    ("eval/parse_failure_rate", "answers with a call that does not parse"),
    ("eval/schema_valid_rate", "calls valid for their schema"),
)
LABEL_WIDTH = max(len(label) for _, label in ROWS)


def evaluations(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics.jsonl records of evaluation passes, in step order."""
    return [r for r in records if any(key.startswith(("eval/", "bfcl/")) for key in r)]


def _bfcl_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    categories = sorted(k for k in record if k.startswith("bfcl/") and k.count("/") == 1 and k not in ("bfcl/n",))
    categories = [k for k in categories if k not in ("bfcl/accuracy", "bfcl/too_long")]
    rows = [("bfcl/accuracy", "BFCL, all categories")] if "bfcl/accuracy" in record else []
    return rows + [(key, f"  {key.removeprefix('bfcl/')}") for key in categories]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def before_after_table(records: list[dict[str, Any]]) -> list[str]:
    """Lines of the table for a run's metrics.jsonl records; none when it holds fewer than two evaluations."""
    passes = evaluations(records)
    if len(passes) < 2:
        return []
    first, last = passes[0], passes[-1]
    rows = [
        row for row in ROWS + tuple(_bfcl_rows(last)) if first.get(row[0]) is not None or last.get(row[0]) is not None
    ]
    width = max(LABEL_WIDTH, *(len(label) for _, label in rows))
    before, after = f"step {first['step']}", f"step {last['step']}"
    counted = [f"{last[key]} {what}" for key, what in (("eval/n", "held-out conversations"), ("bfcl/n", "BFCL cases"))
               if last.get(key) is not None]  # fmt: skip
    lines = [
        f"before and after training, on the eval cases ({', '.join(counted)}):",
        f"  {'':<{width}}  {before:>9}  {after:>9}",
    ]
    for key, label in rows:
        lines.append(f"  {label:<{width}}  {_cell(first.get(key)):>9}  {_cell(last.get(key)):>9}")
    return lines
