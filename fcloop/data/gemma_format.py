"""Gemma's turn format: the only module that knows it.

Gemma has a `user` and a `model` role and nothing else, so:
- the system text, the tool schemas (when given apart from the messages) and the think instruction form a
  preamble at the start of the first user turn;
- tool responses become their own user turn, each wrapped in `<tool_response>…</tool_response>` unless it
  already is; consecutive tool messages share one turn;
- assistant turns keep their text as given; structured tool calls are appended as
  `<tool_call>\n{json}\n</tool_call>` blocks.

`render` returns the text with the character spans to supervise (each assistant turn's content and its
`<end_of_turn>`); `chat_template` writes the same format as Jinja, so that at inference
`tokenizer.apply_chat_template(messages, tools=...)` gives exactly the training tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fcloop.data.conversation import Conversation, Message

# Tags that must each be one token, so a model emits and a parser finds them reliably.
SPECIAL_TOKENS = (
    "<tools>",
    "</tools>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)
BOS = "<bos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
USER_HEADER = f"{START_OF_TURN}user\n"
MODEL_HEADER = f"{START_OF_TURN}model\n"
TURN_END = f"{END_OF_TURN}\n"
PREAMBLE_SEPARATOR = "\n\n"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"

# The Hermes function-calling prompt, used when tool schemas come apart from the messages.
TOOLS_PROMPT_HEAD = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions about "
    "what values to plug into functions. Here are the available tools: <tools> "
)
TOOLS_PROMPT_TAIL = (
    " </tools> For each function call return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags as follows:\n<tool_call>\n{"name": <function-name>, "arguments": '
    "<args-dict>}\n</tool_call>"
)


@dataclass(frozen=True)
class RenderedConversation:
    text: str
    supervised_spans: tuple[tuple[int, int], ...]
    """[start, end) character ranges of `text` to supervise, one per assistant turn, in order."""
    turn_ends: tuple[int, ...]
    """Character offset just past each assistant turn (after its `<end_of_turn>\n`): the places where a
    conversation may be cut without cutting a supervised span."""


def tools_prompt(tools: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str:
    return TOOLS_PROMPT_HEAD + " ".join(json.dumps(tool, ensure_ascii=False) for tool in tools) + TOOLS_PROMPT_TAIL


def preamble(system: str, tools: tuple[dict[str, Any], ...], think_instruction: str) -> str:
    """What precedes the first user message: system text, tools prompt, then the think instruction."""
    parts = [part for part in (system, tools_prompt(tools) if tools else "") if part]
    if parts and think_instruction:
        parts.append(think_instruction)
    return PREAMBLE_SEPARATOR.join(parts)


def wrap_tool_response(content: str) -> str:
    stripped = content.strip()
    if stripped.startswith(TOOL_RESPONSE_OPEN) and stripped.endswith(TOOL_RESPONSE_CLOSE):
        return content
    return f"{TOOL_RESPONSE_OPEN}\n{content}\n{TOOL_RESPONSE_CLOSE}"


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def assistant_text(message: Message) -> str:
    pieces = [message.content] if message.content else []
    pieces += [tool_call_text(call.name, call.arguments) for call in message.tool_calls]
    return "\n".join(pieces)


def render(
    conversation: Conversation, think_instruction: str, add_generation_prompt: bool = False
) -> RenderedConversation:
    """Conversation -> Gemma text with the supervised spans. Pure; assumes `check_turn_order` passed."""
    messages = list(conversation.messages)
    system = messages.pop(0).content if messages and messages[0].role == "system" else ""
    intro = preamble(system, conversation.tools, think_instruction)
    text = BOS
    spans, turn_ends = [], []
    first_user = True
    for position, message in enumerate(messages):
        if message.role == "user":
            prefix = intro + PREAMBLE_SEPARATOR if (first_user and intro) else ""
            text += USER_HEADER + prefix + message.content + TURN_END
            first_user = False
        elif message.role == "assistant":
            text += MODEL_HEADER
            start = len(text)
            text += assistant_text(message) + END_OF_TURN
            spans.append((start, len(text)))
            text += "\n"
            turn_ends.append(len(text))
        else:  # tool: consecutive tool messages share one user turn
            follows_tool = position > 0 and messages[position - 1].role == "tool"
            text += "\n" if follows_tool else USER_HEADER
            text += wrap_tool_response(message.content)
            if position + 1 == len(messages) or messages[position + 1].role != "tool":
                text += TURN_END
    if add_generation_prompt:
        text += MODEL_HEADER
    return RenderedConversation(text=text, supervised_spans=tuple(spans), turn_ends=tuple(turn_ends))


def to_chat_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation as the OpenAI-style message dicts that `apply_chat_template` takes."""
    messages = []
    for message in conversation.messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            entry["tool_calls"] = [
                {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in message.tool_calls
            ]
        messages.append(entry)
    return messages


def _jinja_string(text: str) -> str:
    # JSON escapes are valid in a Jinja string literal. Non-ASCII stays literal: \uXXXX escapes of characters
    # outside the BMP would come back from Jinja as two lone surrogates.
    return json.dumps(text, ensure_ascii=False)


def chat_template(think_instruction: str) -> str:
    """The Jinja form of `render`; tests assert both give identical token ids."""
    return (
        "{%- set ns = namespace(intro='', first_user=true, tool_texts=[], pieces=[]) -%}\n"
        "{%- set msgs = messages -%}\n"
        "{%- set system = '' -%}\n"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = messages[0]['content'] -%}{%- set msgs = messages[1:] -%}{%- endif -%}\n"
        "{%- set parts = [] -%}\n"
        "{%- if system -%}{%- set parts = parts + [system] -%}{%- endif -%}\n"
        "{%- if tools -%}{%- set ns.tool_texts = [] -%}"
        "{%- for tool in tools -%}{%- set ns.tool_texts = ns.tool_texts + [tool | tojson] -%}{%- endfor -%}"
        f"{{%- set parts = parts + [{_jinja_string(TOOLS_PROMPT_HEAD)} ~ ns.tool_texts | join(' ') ~ "
        f"{_jinja_string(TOOLS_PROMPT_TAIL)}] -%}}{{%- endif -%}}\n"
        f"{{%- set think = {_jinja_string(think_instruction)} -%}}\n"
        "{%- if parts and think -%}{%- set parts = parts + [think] -%}{%- endif -%}\n"
        f"{{%- set ns.intro = parts | join({_jinja_string(PREAMBLE_SEPARATOR)}) -%}}\n"
        f"{{{{- {_jinja_string(BOS)} -}}}}\n"
        "{%- for message in msgs -%}\n"
        "{%- set content = message['content'] or '' -%}\n"
        "{%- if message['role'] == 'user' -%}\n"
        f"{{{{- {_jinja_string(USER_HEADER)} -}}}}"
        f"{{%- if ns.first_user and ns.intro -%}}{{{{- ns.intro ~ {_jinja_string(PREAMBLE_SEPARATOR)} -}}}}"
        "{%- endif -%}{%- set ns.first_user = false -%}"
        f"{{{{- content ~ {_jinja_string(TURN_END)} -}}}}\n"
        "{%- elif message['role'] == 'assistant' -%}\n"
        "{%- set ns.pieces = [content] if content else [] -%}\n"
        "{%- for item in message['tool_calls'] or [] -%}"
        "{%- set call = item['function'] if item['function'] is defined else item -%}"
        "{%- set args = call['arguments'] if call['arguments'] is string else call['arguments'] | tojson -%}"
        "{%- set ns.pieces = ns.pieces + ['<tool_call>\\n{\"name\": ' ~ call['name'] | tojson ~ ', \"arguments\": ' "
        "~ args ~ '}\\n</tool_call>'] -%}"
        "{%- endfor -%}\n"
        f"{{{{- {_jinja_string(MODEL_HEADER)} ~ ns.pieces | join('\\n') ~ {_jinja_string(TURN_END)} -}}}}\n"
        "{%- elif message['role'] == 'tool' -%}\n"
        "{%- if loop.index0 > 0 and msgs[loop.index0 - 1]['role'] == 'tool' -%}{{- '\\n' -}}"
        f"{{%- else -%}}{{{{- {_jinja_string(USER_HEADER)} -}}}}{{%- endif -%}}\n"
        f"{{%- set stripped = content.strip() -%}}"
        f"{{%- if stripped.startswith({_jinja_string(TOOL_RESPONSE_OPEN)}) and "
        f"stripped.endswith({_jinja_string(TOOL_RESPONSE_CLOSE)}) -%}}{{{{- content -}}}}"
        f"{{%- else -%}}{{{{- {_jinja_string(TOOL_RESPONSE_OPEN + chr(10))} ~ content ~ "
        f"{_jinja_string(chr(10) + TOOL_RESPONSE_CLOSE)} -}}}}{{%- endif -%}}\n"
        "{%- if loop.last or msgs[loop.index0 + 1]['role'] != 'tool' -%}"
        f"{{{{- {_jinja_string(TURN_END)} -}}}}{{%- endif -%}}\n"
        "{%- else -%}{{- raise_exception('unknown role: ' ~ message['role']) -}}\n"
        "{%- endif -%}\n"
        "{%- endfor -%}\n"
        f"{{%- if add_generation_prompt -%}}{{{{- {_jinja_string(MODEL_HEADER)} -}}}}{{%- endif -%}}\n"
    )
