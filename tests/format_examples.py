"""One small raw row per supported format, with the Conversation each must read as (tests import this)."""

from __future__ import annotations

import json

from fcloop.data.conversation import Conversation, Message, ToolCall

WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_TOOL = {"type": "function", "function": WEATHER_FUNCTION}
TOOLS_IN_SYSTEM = "You call functions. <tools> " + json.dumps(WEATHER_TOOL) + " </tools>"

# Thoughts and strings hold `&`, `<` and `>`: found by string search, never parsed as XML.
THINK_AND_CALL = (
    '<think>Paris & "Lyon" are both < 3 > 1 cities; call get_weather.</think>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris <&> \'Lyon\'"}}\n</tool_call>'
)
WRAPPED_RESPONSE = '<tool_response>\n{"temp": 18}\n</tool_response>'
ANSWER = "It is 18 °C in Paris."

HERMES = {
    "conversations": [
        {"from": "system", "value": "You are a weather bot."},
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "gpt", "value": THINK_AND_CALL},
        {"from": "tool", "value": WRAPPED_RESPONSE},
        {"from": "gpt", "value": ANSWER},
    ],
    "tools": [WEATHER_TOOL],
}
HERMES_CONVERSATION = Conversation(
    messages=(
        Message("system", "You are a weather bot."),
        Message("user", "Weather in Paris?"),
        Message("assistant", THINK_AND_CALL),
        Message("tool", WRAPPED_RESPONSE),
        Message("assistant", ANSWER),
    ),
    tools=(WEATHER_TOOL,),
)

HERMES_THINKING = {
    "conversations": [
        {"role": "system", "content": TOOLS_IN_SYSTEM},
        {"role": "human", "content": "Weather in Paris?"},
        {"role": "model", "content": THINK_AND_CALL},
        {"role": "tool", "content": '{"temp": 18}'},
        {"role": "model", "content": ANSWER},
    ],
}
HERMES_THINKING_CONVERSATION = Conversation(
    messages=(
        Message("system", TOOLS_IN_SYSTEM),
        Message("user", "Weather in Paris?"),
        Message("assistant", THINK_AND_CALL),
        Message("tool", '{"temp": 18}'),
        Message("assistant", ANSWER),
    ),
)

OPENAI = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 18}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "Paris: 18 °C, Lyon: 21 °C."},
    ],
    "tools": [WEATHER_TOOL],
}
OPENAI_CONVERSATION = Conversation(
    messages=(
        Message("system", "You are a weather bot."),
        Message("user", "Weather in Paris and Lyon?"),
        Message(
            "assistant",
            "",
            (ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Lyon"})),
        ),
        Message("tool", '{"temp": 18}'),
        Message("tool", '{"temp": 21}'),
        Message("assistant", "Paris: 18 °C, Lyon: 21 °C."),
    ),
    tools=(WEATHER_TOOL,),
)

GLAIVE = {
    "conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "gpt", "value": "Let me check."},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"from": "observation", "value": '{"temp": 18}'},
        {"from": "gpt", "value": ANSWER},
        {"from": "human", "value": "And Lyon?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Lyon"}}'},
        {"from": "observation", "value": '{"temp": 21}'},
        {"from": "gpt", "value": "21 °C in Lyon."},
    ],
    "tools": json.dumps([WEATHER_FUNCTION]),
}
GLAIVE_CONVERSATION = Conversation(
    messages=(
        Message("user", "Weather in Paris?"),
        Message("assistant", "Let me check.", (ToolCall("get_weather", {"city": "Paris"}),)),
        Message("tool", '{"temp": 18}'),
        Message("assistant", ANSWER),
        Message("user", "And Lyon?"),
        Message("assistant", "", (ToolCall("get_weather", {"city": "Lyon"}),)),
        Message("tool", '{"temp": 21}'),
        Message("assistant", "21 °C in Lyon."),
    ),
    tools=(WEATHER_FUNCTION,),
)

FLAT = {
    "query": "Weather in Paris?",
    "tools": [WEATHER_TOOL],
    "thoughts": "The user wants Paris & nothing < else.",
    "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}},
}
FLAT_CONVERSATION = Conversation(
    messages=(
        Message("user", "Weather in Paris?"),
        Message(
            "assistant",
            "<think>The user wants Paris & nothing < else.</think>",
            (ToolCall("get_weather", {"city": "Paris"}),),
        ),
    ),
    tools=(WEATHER_TOOL,),
)

# format name -> (raw row, the Conversation it reads as, with source "" and index 0)
EXAMPLES = {
    "hermes": (HERMES, HERMES_CONVERSATION),
    "hermes_thinking": (HERMES_THINKING, HERMES_THINKING_CONVERSATION),
    "openai": (OPENAI, OPENAI_CONVERSATION),
    "glaive": (GLAIVE, GLAIVE_CONVERSATION),
    "flat": (FLAT, FLAT_CONVERSATION),
}
