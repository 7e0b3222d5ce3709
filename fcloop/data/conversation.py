"""The one conversation type every reader produces, and the error a malformed row raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fcloop.errors import FcloopError

Role = Literal["system", "user", "assistant", "tool"]


class BadRow(FcloopError, ValueError):
    """A malformed input row. `reason` is a short category used to count skips; `detail` says what exactly."""

    def __init__(self, source: str, row: int, reason: str, detail: str = "") -> None:
        self.source, self.row, self.reason, self.detail = source, row, reason, detail
        message = f"{source}: row {row}: {reason}"
        super().__init__(f"{message}: {detail}" if detail else message)


class RowProblem(ValueError):
    """Raised by pure row-level code that does not know the file and row; the caller wraps it in BadRow."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class ToolCall:
    """A structured call (OpenAI `tool_calls`, glaive `function_call`). Calls written inline as
    `<tool_call>` text inside an assistant message stay in its content, exactly as given."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    tools: tuple[dict[str, Any], ...] = ()
    """Tool schemas given beside the messages (rendered into the first user turn); tools already written
    into the system text are not repeated here."""
    source: str = ""
    """File path or hub id the row came from."""
    index: int = 0
    """Row index in that source (0-based), for error messages and dumps."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
