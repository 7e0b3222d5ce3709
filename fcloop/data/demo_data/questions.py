"""Questions that need no tool: drawn from templates and answered by computation, so every answer is true.

Real users ask tool-using assistants plenty that no tool serves: sums, conversions, dates, where a city is,
how a word is spelt. A model that has seen only a few fixed questions learns those questions, not the
decision; these are drawn fresh for every row, and most come with tools of a nearby domain offered (a math
tool beside a sum, a calendar tool beside a weekday), the case where a model is most tempted to call one.

Each family says which domains are near: offered tools come mostly from there. No concept in
`vocabulary.py` computes what these ask (sums, percentages of a number, unit factors, weekdays, month lengths,
leap years, where a city is, letters of a word), so every tool offered is one that does not serve.
"""

from __future__ import annotations

import calendar
import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass

from fcloop.data.demo_data.vocabulary import CHAT, PLACES, US_CITIES

PERCENTS = (5, 10, 12, 15, 20, 25, 30, 40, 50, 75)
SPELLED_WORDS = (
    "harbor", "lantern", "orchard", "velvet", "compass", "meadow", "thunder", "pebble", "saffron",
    "glacier", "biscuit", "quartz", "marble", "kettle", "horizon", "puzzle", "cactus", "walnut",
)  # fmt: skip
# (unit asked for, unit given, how many of the first make one of the second)
UNIT_PAIRS = (
    ("minutes", "hours", 60), ("seconds", "minutes", 60), ("hours", "days", 24), ("days", "weeks", 7),
    ("months", "years", 12), ("grams", "kilograms", 1000), ("centimeters", "meters", 100),
    ("millimeters", "centimeters", 10), ("milliliters", "liters", 1000), ("meters", "kilometers", 1000),
)  # fmt: skip


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    near_domains: tuple[str, ...]
    """Domains whose tools look related (offered first), although none of them answers the question."""


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def arithmetic(rng: random.Random) -> Question:
    a, b = rng.randint(11, 99), rng.randint(11, 99)
    operation = rng.choice(("times", "plus", "minus"))
    result = {"times": a * b, "plus": a + b, "minus": a - b}[operation]
    text = rng.choice(("What is {a} {op} {b}?", "What's {a} {op} {b}?", "Quick one: {a} {op} {b}?"))
    said = "multiplied by" if operation == "times" and rng.random() < 0.3 else operation
    return Question(
        text.format(a=a, op=said, b=b),
        f"{a} {said} {b} is {result}.",
        ("math", "statistics", "finance"),
    )


def percent_of(rng: random.Random) -> Question:
    percent, base = rng.choice(PERCENTS), rng.randrange(20, 1000, 20)
    result = _number(round(percent * base / 100, 2))
    text = rng.choice(("What is {p}% of {n}?", "How much is {p} percent of {n}?", "Calculate {p}% of {n} for me."))
    return Question(
        text.format(p=percent, n=base), f"{percent}% of {base} is {result}.", ("shopping", "finance", "math")
    )


def unit_conversion(rng: random.Random) -> Question:
    small, large, factor = rng.choice(UNIT_PAIRS)
    count = rng.randint(2, 12)
    text = rng.choice(("How many {s} are in {n} {l}?", "How many {s} make {n} {l}?", "Convert {n} {l} to {s}."))
    return Question(
        text.format(s=small, n=count, l=large),
        f"{count} {large} is {count * factor:,} {small}.",
        ("units", "time", "physics"),
    )


def weekday(rng: random.Random) -> Question:
    day = datetime.date(rng.choice((2025, 2026, 2027)), rng.randint(1, 12), rng.randint(1, 28))
    said = f"{calendar.month_name[day.month]} {day.day}, {day.year}"
    text = rng.choice(("What day of the week is {d}?", "Which weekday is {d}?", "Is {d} a weekday or a weekend day?"))
    name = calendar.day_name[day.weekday()]
    kind = "a weekend day" if day.weekday() >= 5 else "a weekday"
    answer = f"{said} is a {name}." if not text.startswith("Is") else f"{said} is a {name}, so it is {kind}."
    return Question(text.format(d=said), answer, ("calendar", "time", "events"))


def month_length(rng: random.Random) -> Question:
    year, month = rng.randint(2024, 2032), rng.randint(1, 12)
    days = calendar.monthrange(year, month)[1]
    text = rng.choice(("How many days are in {m} {y}?", "How many days does {m} {y} have?"))
    name = calendar.month_name[month]
    return Question(text.format(m=name, y=year), f"{name} {year} has {days} days.", ("calendar", "time"))


def leap_year(rng: random.Random) -> Question:
    year = rng.randint(1990, 2060)
    verdict = "is a leap year" if calendar.isleap(year) else "is not a leap year"
    return Question(f"Is {year} a leap year?", f"{year} {verdict}.", ("calendar", "time", "history"))


def city_location(rng: random.Random) -> Question:
    if rng.random() < 0.4:
        city = rng.choice(US_CITIES)
        text = rng.choice(("Which US state is {c} in?", "In which state is {c}?"))
        return Question(text.format(c=city), f"{city} is in {PLACES[city][1]}.", ("weather", "travel", "maps"))
    city = rng.choice([city for city, (state, _, _) in PLACES.items() if not state])
    text = rng.choice(("Which country is {c} in?", "What country is the city of {c} in?", "Where is {c}?"))
    return Question(text.format(c=city), f"{city} is in {PLACES[city][2]}.", ("weather", "travel", "maps"))


def letters(rng: random.Random) -> Question:
    word = rng.choice(SPELLED_WORDS)
    if rng.random() < 0.5:
        text = rng.choice(("How many letters are in the word '{w}'?", 'How many letters does "{w}" have?'))
        return Question(text.format(w=word), f"'{word}' has {len(word)} letters.", ("language", "education"))
    text = rng.choice(("Spell '{w}' backwards.", "What is '{w}' written backwards?"))
    return Question(text.format(w=word), f"'{word}' backwards is '{word[::-1]}'.", ("language", "education"))


def known_fact(rng: random.Random) -> Question:
    text, answer = rng.choice(CHAT)
    return Question(text, answer, ())


FAMILIES: tuple[Callable[[random.Random], Question], ...] = (
    arithmetic,
    percent_of,
    unit_conversion,
    weekday,
    month_length,
    leap_year,
    city_location,
    letters,
    known_fact,
    known_fact,
)


def draw_question(rng: random.Random) -> Question:
    return rng.choice(FAMILIES)(rng)
