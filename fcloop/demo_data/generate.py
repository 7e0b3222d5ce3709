"""Deterministic generator of the small synthetic function-calling demo data set.

Rows use the hermes-function-calling-v1 layout (``id`` plus ``conversations`` made of system / human / gpt /
tool turns), so the demo runs through exactly the same loading and chat-templating code as the real data set.
Every random choice comes from a seeded ``random.Random`` and fake tool results are seeded from their own
arguments, so a given seed always produces byte-identical files.

Usage: ``python -m fcloop.demo_data.generate [--out-dir DIR] [--seed N]``
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Args = dict[str, Any]
Result = dict[str, Any]
Turn = dict[str, str]

TRAIN_SIZE = 320
EVAL_SIZE = 48
# About 1024 tokens: the demo trains with short sequences, so no conversation may be truncated.
MAX_CHARS = 2800
# Few tools per conversation: shorter prompts, so that a 270M model learns to choose within minutes of CPU.
MAX_TOOLS = 2
# No-tool answers get over a third: with 20-25%, 64-80 steps left the model calling a tool for "Who painted
# the Mona Lisa?" (single calls, the easiest kind, it learned well).
KIND_SHARES = {"single": 0.20, "parallel": 0.15, "multi_turn": 0.20, "no_tool": 0.35, "error": 0.10}

# ---------------------------------------------------------------------------------------------------------
# Hermes system prompt
# ---------------------------------------------------------------------------------------------------------

FUNCTION_CALL_SCHEMA = {
    "properties": {
        "arguments": {"title": "Arguments", "type": "object"},
        "name": {"title": "Name", "type": "string"},
    },
    "required": ["arguments", "name"],
    "title": "FunctionCall",
    "type": "object",
}
SYSTEM_PREFIX = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions "
    "about what values to plug into functions. Here are the available tools: <tools> "
)
SYSTEM_SUFFIX = (
    " </tools> Use the following pydantic model json schema for each tool call you will make: "
    + json.dumps(FUNCTION_CALL_SCHEMA)
    + " For each function call return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags as follows:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-dict>}\n</tool_call>'
)

# ---------------------------------------------------------------------------------------------------------
# Value pools: small and realistic, so user requests read naturally and results stay plausible
# ---------------------------------------------------------------------------------------------------------

CITY_TIMEZONES = {
    "Paris": ("Europe/Paris", 60),
    "Tokyo": ("Asia/Tokyo", 540),
    "New York": ("America/New_York", -300),
    "London": ("Europe/London", 0),
    "Berlin": ("Europe/Berlin", 60),
    "Sydney": ("Australia/Sydney", 600),
    "Toronto": ("America/Toronto", -300),
    "Madrid": ("Europe/Madrid", 60),
    "Rome": ("Europe/Rome", 60),
    "Seoul": ("Asia/Seoul", 540),
    "Mumbai": ("Asia/Kolkata", 330),
    "Cairo": ("Africa/Cairo", 120),
    "Lisbon": ("Europe/Lisbon", 0),
    "Chicago": ("America/Chicago", -360),
    "Mexico City": ("America/Mexico_City", -360),
    "Cape Town": ("Africa/Johannesburg", 120),
    "Singapore": ("Asia/Singapore", 480),
    "Amsterdam": ("Europe/Amsterdam", 60),
}
CITIES = tuple(CITY_TIMEZONES)
SOUTHERN_CITIES = ("Sydney", "Cape Town")
TROPICAL_CITIES = ("Mumbai", "Singapore", "Mexico City")
DATES = (
    "2026-01-23",
    "2026-02-10",
    "2026-03-14",
    "2026-04-02",
    "2026-05-21",
    "2026-06-09",
    "2026-07-18",
    "2026-08-30",
    "2026-10-05",
    "2026-11-27",
    "2026-12-12",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
CONDITIONS = ("sunny", "partly cloudy", "cloudy", "rainy", "overcast", "clear", "foggy", "windy")
CURRENCY_PER_USD = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 151.2,
    "CAD": 1.36,
    "AUD": 1.52,
    "CHF": 0.88,
    "INR": 83.4,
    "MXN": 17.1,
}
CURRENCIES = tuple(CURRENCY_PER_USD)
AMOUNTS = (20, 75.5, 100, 250, 499.99, 1200, 5000)
STOCK_PRICES = {"AAPL": 190, "MSFT": 420, "NVDA": 880, "TSLA": 175, "AMZN": 180, "GOOGL": 155, "NFLX": 610}
CRYPTO_PRICES_USD = {"BTC": 68000, "ETH": 3500, "SOL": 150, "ADA": 0.45}
AIRPORTS = ("JFK", "LAX", "LHR", "CDG", "NRT", "FRA", "SFO", "SYD", "YYZ", "MAD", "SIN", "ORD")
AIRLINES = (
    ("Delta", "DL"),
    ("United", "UA"),
    ("Lufthansa", "LH"),
    ("Air France", "AF"),
    ("British Airways", "BA"),
    ("Japan Airlines", "JL"),
    ("Qantas", "QF"),
    ("Air Canada", "AC"),
)
HOTELS = (
    "Grand Plaza Hotel",
    "Harbor View Inn",
    "The Linden",
    "City Nest Suites",
    "Parkside Lodge",
    "Hotel Meridian",
    "The Copper Lantern",
    "Riverside Residences",
)
ROUTES_KM = {
    ("Paris", "Lyon"): 465,
    ("Berlin", "Munich"): 585,
    ("New York", "Boston"): 346,
    ("Los Angeles", "San Diego"): 193,
    ("Madrid", "Barcelona"): 621,
    ("Toronto", "Montreal"): 541,
    ("London", "Manchester"): 335,
    ("Rome", "Florence"): 274,
}
SPEED_KMH = {"driving": 85, "transit": 70, "cycling": 18}
RESTAURANTS = {
    "Italian": ("Trattoria Sole", "Pasta Fresca", "Osteria Verde"),
    "Japanese": ("Sushi Kaze", "Ramen Ichi", "Izakaya Tomo"),
    "Mexican": ("La Cocina Roja", "Taqueria El Sol", "Casa Maiz"),
    "Indian": ("Spice Route", "Tandoor House", "Masala Garden"),
    "Thai": ("Bangkok Corner", "Lemongrass Kitchen", "Thai Orchid"),
}
RECIPES = {
    ("chicken", "rice"): (
        ("Chicken fried rice", 25),
        ("Chicken burrito bowl", 30),
        ("Lemon chicken bake", 50),
    ),
    ("eggs", "spinach", "feta"): (
        ("Spinach and feta omelette", 15),
        ("Greek spinach frittata", 35),
        ("Spinach feta egg muffins", 40),
    ),
    ("chickpeas", "tomatoes"): (
        ("Roasted chickpea salad", 20),
        ("Chickpea tomato curry", 30),
        ("Shakshuka", 35),
    ),
    ("salmon", "lemon"): (
        ("Lemon butter salmon", 20),
        ("Salmon lemon pasta", 25),
        ("Baked salmon with dill", 30),
    ),
    ("pasta", "mushrooms", "garlic"): (
        ("Garlic mushroom pasta", 20),
        ("Mushroom carbonara", 25),
        ("Creamy mushroom penne", 30),
    ),
    ("tofu", "broccoli"): (
        ("Tofu and broccoli stir-fry", 20),
        ("Sesame tofu", 30),
        ("Broccoli tofu curry", 40),
    ),
}
# Per 100 g: calories, protein, carbs, fat.
FOODS = {
    "apple": (52, 0.3, 14, 0.2),
    "banana": (89, 1.1, 23, 0.3),
    "chicken breast": (165, 31, 0, 3.6),
    "cooked white rice": (130, 2.7, 28, 0.3),
    "almonds": (579, 21, 22, 50),
    "rolled oats": (389, 17, 66, 7),
    "boiled egg": (155, 13, 1.1, 11),
    "broccoli": (34, 2.8, 7, 0.4),
}
EVENT_TITLES = (
    "Team standup",
    "Dentist appointment",
    "Lunch with Maria",
    "Quarterly review",
    "Yoga class",
    "Call with the bank",
    "Project kickoff",
)
START_TIMES = ("08:30", "09:00", "11:30", "14:00", "16:15", "18:00")
REMINDER_TIMES = tuple(f"{day} {time}" for day in DATES[:6] for time in ("08:00", "12:30", "17:45"))
CONTACTS = (
    "maria.lopez@example.com",
    "sam.chen@example.com",
    "priya.patel@example.com",
    "tom.baker@example.com",
    "amina.yusuf@example.com",
)
EMAILS = (
    ("Project update", "Hi, the draft report is ready for your review. Let me know if you have questions."),
    ("Running late", "Sorry, I'm running about 15 minutes late for our meeting."),
    ("Dinner on Friday?", "Are you free for dinner on Friday around 7?"),
    ("Invoice #4821", "Just a reminder that invoice #4821 is due on the 30th."),
    ("Thank you!", "Thanks again for your help with the move last weekend."),
)
UNIT_FACTORS = {
    ("kilometers", "miles"): 0.621371,
    ("miles", "kilometers"): 1.609344,
    ("pounds", "kilograms"): 0.453592,
    ("kilograms", "pounds"): 2.204623,
    ("liters", "gallons"): 0.264172,
    ("feet", "meters"): 0.3048,
    ("inches", "centimeters"): 2.54,
    ("ounces", "grams"): 28.349523,
}
# Precomputed so the fake calculator never has to evaluate user-supplied text.
EXPRESSIONS = {
    "(45 * 12) + 380": 920,
    "1250 / 8": 156.25,
    "17 * 23": 391,
    "(1200 - 350) * 0.15": 127.5,
    "2 ** 10": 1024,
    "(18.5 + 22.75) / 3": 13.75,
    "365 * 24": 8760,
    "84 * 0.075": 6.3,
}
TRANSLATIONS = {
    "Where is the train station?": {
        "Spanish": "¿Dónde está la estación de tren?",
        "French": "Où est la gare ?",
        "German": "Wo ist der Bahnhof?",
        "Italian": "Dov'è la stazione ferroviaria?",
        "Japanese": "駅はどこですか？",
    },
    "Thank you very much for your help.": {
        "Spanish": "Muchas gracias por tu ayuda.",
        "French": "Merci beaucoup pour votre aide.",
        "German": "Vielen Dank für Ihre Hilfe.",
        "Italian": "Grazie mille per il tuo aiuto.",
        "Japanese": "手伝ってくれて本当にありがとうございます。",
    },
    "How much does this cost?": {
        "Spanish": "¿Cuánto cuesta esto?",
        "French": "Combien ça coûte ?",
        "German": "Wie viel kostet das?",
        "Italian": "Quanto costa questo?",
        "Japanese": "これはいくらですか？",
    },
    "I would like a table for two, please.": {
        "Spanish": "Quisiera una mesa para dos, por favor.",
        "French": "Je voudrais une table pour deux, s'il vous plaît.",
        "German": "Ich hätte gern einen Tisch für zwei, bitte.",
        "Italian": "Vorrei un tavolo per due, per favore.",
        "Japanese": "二人用のテーブルをお願いします。",
    },
    "Good morning, everyone!": {
        "Spanish": "¡Buenos días a todos!",
        "French": "Bonjour à tous !",
        "German": "Guten Morgen zusammen!",
        "Italian": "Buongiorno a tutti!",
        "Japanese": "皆さん、おはようございます！",
    },
}
LANGUAGES = ("Spanish", "French", "German", "Italian", "Japanese")
WORDS = {
    "serendipity": ("noun", "the occurrence of events by chance in a happy or beneficial way"),
    "ephemeral": ("adjective", "lasting for a very short time"),
    "ubiquitous": ("adjective", "present, appearing, or found everywhere"),
    "meticulous": ("adjective", "showing great attention to detail; very careful and precise"),
    "resilient": ("adjective", "able to recover quickly from difficult conditions"),
    "gregarious": ("adjective", "fond of company; sociable"),
    "pragmatic": ("adjective", "dealing with things sensibly and realistically in a practical way"),
    "candid": ("adjective", "truthful and straightforward; frank"),
}
SYNONYMS = {
    "serendipity": ("chance", "fluke", "happy accident", "good fortune"),
    "ephemeral": ("fleeting", "transient", "short-lived", "momentary"),
    "ubiquitous": ("omnipresent", "pervasive", "universal", "widespread"),
    "meticulous": ("careful", "thorough", "precise", "painstaking"),
    "resilient": ("tough", "hardy", "adaptable", "buoyant"),
    "gregarious": ("sociable", "outgoing", "convivial", "friendly"),
    "pragmatic": ("practical", "realistic", "sensible", "down-to-earth"),
    "candid": ("frank", "honest", "open", "blunt"),
}
# Title: year, director, runtime in minutes, rating out of 10.
MOVIES = {
    "Inception": (2010, "Christopher Nolan", 148, 8.8),
    "The Matrix": (1999, "Lana and Lilly Wachowski", 136, 8.7),
    "Parasite": (2019, "Bong Joon-ho", 132, 8.5),
    "Spirited Away": (2001, "Hayao Miyazaki", 125, 8.6),
    "The Godfather": (1972, "Francis Ford Coppola", 175, 9.2),
    "Interstellar": (2014, "Christopher Nolan", 169, 8.7),
}
CINEMAS = ("Cineplex Central", "Riverside Pictures", "Odeon Park", "Lumiere Cinema", "Starlight Theater")
HEADLINES = {
    "technology": (
        "Chipmakers race to expand capacity as AI demand grows",
        "New battery design promises faster phone charging",
        "City pilots driverless shuttle service downtown",
        "Open-source tools gain ground in enterprise software",
    ),
    "business": (
        "Retail sales edge up ahead of holiday season",
        "Airline reports record quarterly bookings",
        "Small businesses experiment with four-day work weeks",
        "Coffee prices climb after a weak harvest",
    ),
    "sports": (
        "Underdogs clinch playoff spot with late comeback",
        "Star striker signs contract extension",
        "City marathon sets attendance record",
        "Veteran pitcher announces retirement",
    ),
    "science": (
        "Astronomers spot water vapor on distant exoplanet",
        "Deep-sea survey finds dozens of new species",
        "Tiny trackers map songbird migration routes",
        "Ancient DNA sheds light on early farming",
    ),
    "health": (
        "Study links daily walks to better sleep",
        "Clinics extend evening hours for flu shots",
        "New guidelines urge less added sugar for kids",
        "Researchers test app that flags skin conditions",
    ),
}
NEWS_SOURCES = ("The Daily Ledger", "Metro Wire", "The Courier", "Northern Herald")
TOP_TRACKS = {
    "Taylor Swift": ("Anti-Hero", "Cruel Summer", "Shake It Off"),
    "The Beatles": ("Hey Jude", "Let It Be", "Come Together"),
    "Adele": ("Hello", "Rolling in the Deep", "Someone Like You"),
    "Queen": ("Bohemian Rhapsody", "Don't Stop Me Now", "Under Pressure"),
    "Daft Punk": ("Get Lucky", "One More Time", "Around the World"),
    "Bad Bunny": ("Tití Me Preguntó", "Dákiti", "Me Porto Bonito"),
}
# League: teams and the range of plausible final scores.
LEAGUES = {
    "NBA": (("Lakers", "Celtics", "Warriors", "Bucks", "Nuggets", "Knicks"), (92, 128)),
    "NFL": (("Chiefs", "Eagles", "49ers", "Bills", "Cowboys", "Ravens"), (10, 38)),
    "NHL": (("Maple Leafs", "Bruins", "Oilers", "Rangers", "Canadiens", "Avalanche"), (1, 6)),
    "Premier League": (
        ("Arsenal", "Liverpool", "Manchester City", "Chelsea", "Tottenham", "Newcastle"),
        (0, 4),
    ),
    "La Liga": (
        ("Real Madrid", "Barcelona", "Atletico Madrid", "Sevilla", "Real Sociedad", "Villarreal"),
        (0, 4),
    ),
}
# Search query (plural, as people type it) and the product name it yields.
PRODUCTS = {
    "wireless earbuds": "Wireless Earbuds",
    "running shoes": "Running Shoes",
    "coffee grinders": "Coffee Grinder",
    "yoga mats": "Yoga Mat",
    "mechanical keyboards": "Mechanical Keyboard",
    "hiking backpacks": "Hiking Backpack",
}
BRANDS = ("Acme", "Northwind", "Zenith", "Everline", "Brightway")
PACKAGES = (
    ("1Z83F9A20341298877", "UPS"),
    ("773845126690", "FedEx"),
    ("JD014600006281930412", "DHL"),
    ("9400111899223344556677", "USPS"),
)
PACKAGE_STATUSES = ("in transit", "out for delivery", "delivered", "at the local facility")
# Fixed-date holidays only, so any year gives correct dates.
HOLIDAYS = {
    "US": (
        ("01-01", "New Year's Day"),
        ("07-04", "Independence Day"),
        ("11-11", "Veterans Day"),
        ("12-25", "Christmas Day"),
    ),
    "FR": (
        ("01-01", "New Year's Day"),
        ("05-01", "Labour Day"),
        ("07-14", "Bastille Day"),
        ("12-25", "Christmas Day"),
    ),
    "DE": (
        ("01-01", "New Year's Day"),
        ("05-01", "Labour Day"),
        ("10-03", "German Unity Day"),
        ("12-25", "Christmas Day"),
    ),
    "JP": (
        ("01-01", "New Year's Day"),
        ("02-11", "National Foundation Day"),
        ("05-03", "Constitution Memorial Day"),
        ("11-03", "Culture Day"),
    ),
    "MX": (("01-01", "New Year's Day"), ("09-16", "Independence Day"), ("12-25", "Christmas Day")),
}
BOOKS = {
    "Ursula K. Le Guin": (
        ("A Wizard of Earthsea", 1968),
        ("The Left Hand of Darkness", 1969),
        ("The Dispossessed", 1974),
    ),
    "Agatha Christie": (
        ("The Murder of Roger Ackroyd", 1926),
        ("Murder on the Orient Express", 1934),
        ("And Then There Were None", 1939),
    ),
    "Haruki Murakami": (("Norwegian Wood", 1987), ("Kafka on the Shore", 2002), ("1Q84", 2009)),
    "Jane Austen": (("Sense and Sensibility", 1811), ("Pride and Prejudice", 1813), ("Emma", 1815)),
    "Octavia E. Butler": (("Kindred", 1979), ("Dawn", 1987), ("Parable of the Sower", 1993)),
}
TASKS = (
    "book flights for the conference",
    "buy a birthday gift for Sam",
    "review the Q3 budget",
    "schedule a car service",
    "clean out the garage",
    "update my résumé",
)
REMINDER_MESSAGES = (
    "call the plumber",
    "pick up the dry cleaning",
    "take my medication",
    "submit the expense report",
    "water the plants",
    "renew my passport",
)

# ---------------------------------------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------------------------------------

DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}:\d{2}))?$")
FIRST_PERSON = {"I", "I'd", "I'm", "I'll", "I've"}


def _join(items: list[str]) -> str:
    """English list: 'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _pretty_date(iso: str) -> str:
    match = DATE_RE.match(iso)
    if not match:
        return iso
    year, month, day, time = match.groups()
    text = f"{MONTHS[int(month) - 1]} {int(day)}, {year}"
    return f"{text} at {time}" if time else text


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}" if value >= 10_000 else str(value)
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _show(value: Any, rng: random.Random | None = None) -> str:
    """Render an argument the way a person would type it; with an rng, dates are sometimes spelled out."""
    if isinstance(value, list):
        return _join([_show(item) for item in value])
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _number(value)
    text = str(value)
    match = DATE_RE.match(text)
    if match and rng is not None and rng.random() < 0.5:
        return _pretty_date(text)
    if match and match.group(4):
        return f"{text[:10]} at {match.group(4)}"
    return text


def _lower_first(text: str) -> str:
    """Lower-case a sentence start so it can follow 'Also,'; 'I' and 'I'd' keep their capital."""
    if text.split(" ", 1)[0] in FIRST_PERSON:
        return text
    return text[0].lower() + text[1:]


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} minutes"
    unit = "hour" if hours == 1 else "hours"
    return f"{hours} {unit} {rest} minutes" if rest else f"{hours} {unit}"


def _clock(minutes: float) -> str:
    total = round(minutes)
    return f"{total // 60 % 24:02d}:{total % 60:02d}"


def _add_minutes(start: str, minutes: int) -> str:
    total = int(start[:2]) * 60 + int(start[3:]) + minutes
    return f"{total // 60 % 24:02d}:{total % 60:02d}"


# ---------------------------------------------------------------------------------------------------------
# Tool model
# ---------------------------------------------------------------------------------------------------------


def _string(description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if enum:
        schema["enum"] = enum
    return schema


def _integer(description: str) -> dict[str, Any]:
    return {"type": "integer", "description": description}


def _float(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _boolean(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _array(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description}


@dataclass(frozen=True)
class ErrorCase:
    """A failing call: argument overrides (what the user asks for), the tool's error, the advice to give."""

    overrides: Args
    error: Result
    advice: str


@dataclass(frozen=True, eq=False)
class Tool:
    """One fake API: its JSON schema plus everything needed to ask for it, call it and talk about the result.

    ``pools`` maps a parameter to the values it may take; a key "a+b" draws parameters a and b together so
    that paired values (subject and body of an email) stay consistent. ``phrases`` say how a user mentions
    an optional parameter; they replace ``{opt}`` in the ask templates. ``follow`` is a parameter plus short
    follow-up questions ("What about {city}?") that re-ask the same tool with that parameter changed.
    """

    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    pools: dict[str, tuple[Any, ...]]
    asks: tuple[str, ...]
    purpose: str
    result: Callable[[Args, random.Random], Result]
    summary: Callable[[Args, Result], str]
    phrases: dict[str, str | dict[Any, str]] = field(default_factory=dict)
    follow: tuple[str, tuple[str, ...]] | None = None
    errors: tuple[ErrorCase, ...] = ()

    def schema(self) -> dict[str, Any]:
        parameters = {"type": "object", "properties": self.properties, "required": list(self.required)}
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": parameters},
        }

    def ordered(self, args: Args) -> Args:
        """Arguments in schema order, so the same call always serializes the same way."""
        return {name: args[name] for name in self.properties if name in args}

    def sample_args(self, rng: random.Random) -> Args:
        args: Args = {}
        for key in self.pools:
            names = key.split("+")
            # Optional parameters are left out about half the time, as real users often omit them.
            if names[0] not in self.required and rng.random() < 0.5:
                continue
            value = rng.choice(self.free_values(key, args))
            if len(names) == 1:
                args[key] = value
            else:
                args.update(zip(names, value, strict=True))
        return self.ordered(args)

    def free_values(self, key: str, args: Args, avoid: tuple[Any, ...] = ()) -> list[Any]:
        # Parameters sharing one pool (origin / destination) must differ, or the request would be silly.
        pool = self.pools[key]
        taken = [args[name] for name, other in self.pools.items() if other is pool and name in args]
        return [value for value in pool if value not in taken and value not in avoid]

    def resample(self, rng: random.Random, args: Args, param: str, avoid: tuple[Any, ...] = ()) -> Args:
        return {**args, param: rng.choice(self.free_values(param, args, avoid))}

    def render(self, template: str, args: Args, rng: random.Random | None = None) -> str:
        shown = {name: _show(value, rng) for name, value in args.items()}
        extra = "".join(self._phrase(name, args[name], shown) for name in self.phrases if name in args)
        return template.format(**shown, opt=extra)

    def _phrase(self, name: str, value: Any, shown: dict[str, str]) -> str:
        phrase = self.phrases[name]
        text = phrase[value] if isinstance(phrase, dict) else phrase
        return text.format(**shown)

    def capability(self) -> str:
        """The description as a verb phrase: 'get the current weather conditions for a city'."""
        return self.description[0].lower() + self.description[1:].rstrip(".")


def _not_found(param: str, value: Any, message: str, advice: str) -> ErrorCase:
    return ErrorCase({param: value}, {"error": message}, advice)


# ---------------------------------------------------------------------------------------------------------
# Tools: weather and environment
# ---------------------------------------------------------------------------------------------------------


def _weather(a: Args, r: random.Random) -> Result:
    celsius = r.randint(-2, 33)
    unit = a.get("units", "celsius")
    temperature = round(celsius * 9 / 5 + 32) if unit == "fahrenheit" else celsius
    return {
        "city": a["city"],
        "temperature": temperature,
        "unit": unit,
        "condition": r.choice(CONDITIONS),
        "humidity": r.randint(30, 90),
        "wind_kph": r.randint(3, 35),
    }


def _forecast(a: Args, r: random.Random) -> Result:
    days = []
    typical_high = r.randint(5, 29)  # consecutive days stay close to one another, as real weather does
    for day in range(1, a["days"] + 1):
        high = typical_high + r.randint(-3, 3)
        days.append({"day": day, "condition": r.choice(CONDITIONS), "high_c": high, "low_c": high - r.randint(4, 10)})
    return {"city": a["city"], "days": days}


def _forecast_summary(a: Args, r: Result) -> str:
    days = [f"day {d['day']} {d['condition']}, {d['low_c']} to {d['high_c']}°C" for d in r["days"]]
    return f"Here's the forecast for {a['city']}: {'; '.join(days)}."


def _air_quality(a: Args, r: random.Random) -> Result:
    aqi = r.randint(12, 160)
    category = "good" if aqi <= 50 else "moderate" if aqi <= 100 else "unhealthy for sensitive groups"
    pollutant = r.choice(("PM2.5", "ozone", "PM10", "NO2"))
    return {"city": a["city"], "aqi": aqi, "category": category, "main_pollutant": pollutant}


def _sun_times(a: Args, r: random.Random) -> Result:
    # Rough but seasonal: long summer days, short winter ones, flipped in the south, flat in the tropics.
    summer = 1 - abs(int(a["date"][5:7]) - 6.5) / 5.5
    if a["city"] in SOUTHERN_CITIES:
        summer = 1 - summer
    swing = 30 if a["city"] in TROPICAL_CITIES else 100
    half_day = 12 * 60 / 2 + (summer - 0.5) * 2 * swing + r.randint(-10, 10)
    noon = 12 * 60 + 15 + round(summer * 60) + r.randint(-15, 15)  # summer time shifts noon late
    return {
        "city": a["city"],
        "date": a["date"],
        "sunrise": _clock(noon - half_day),
        "sunset": _clock(noon + half_day),
    }


def _weather_tools() -> list[Tool]:
    city_typo = _not_found("city", "Atlantis", "city not found", "Could you double-check the city name?")
    return [
        Tool(
            name="get_current_weather",
            description="Get the current weather conditions for a city.",
            properties={
                "city": _string("City name, e.g. Paris"),
                "units": _string("Temperature units", enum=["celsius", "fahrenheit"]),
            },
            required=("city",),
            pools={"city": CITIES, "units": ("celsius", "fahrenheit")},
            asks=(
                "What's the weather like in {city} right now?{opt}",
                "Can you check the current weather in {city}?{opt}",
                "I'm about to head out in {city}. How's the weather?{opt}",
                "Tell me the current conditions in {city}, please.{opt}",
            ),
            phrases={"units": {"celsius": " Use Celsius, please.", "fahrenheit": " Give it to me in Fahrenheit."}},
            purpose="check the current weather in {city}",
            result=_weather,
            summary=lambda a, r: (
                f"It's {r['temperature']}°{r['unit'][0].upper()} and {r['condition']} in {r['city']} "
                f"right now, with {r['humidity']}% humidity and wind around {r['wind_kph']} km/h."
            ),
            follow=("city", ("What about {city}?", "And in {city}?", "How about {city}?")),
            errors=(city_typo,),
        ),
        Tool(
            name="get_weather_forecast",
            description="Get a daily weather forecast for a city for the next few days.",
            properties={"city": _string("City name"), "days": _integer("Number of days to forecast (1-7)")},
            required=("city", "days"),
            pools={"city": CITIES, "days": (2, 3)},
            asks=(
                "What's the {days}-day forecast for {city}?",
                "Could you get me the weather forecast for {city} for the next {days} days?",
                "I'm traveling to {city}. What will the weather be like over the next {days} days?",
            ),
            purpose="get the {days}-day forecast for {city}",
            result=_forecast,
            summary=_forecast_summary,
            follow=("city", ("And for {city}?", "What does it look like for {city}?")),
            errors=(city_typo,),
        ),
        Tool(
            name="get_air_quality",
            description="Get the current air quality index (AQI) for a city.",
            properties={"city": _string("City name")},
            required=("city",),
            pools={"city": CITIES},
            asks=(
                "How's the air quality in {city} today?",
                "Is the air clean in {city} right now?",
                "Check the AQI for {city}, please.",
            ),
            purpose="check the air quality in {city}",
            result=_air_quality,
            summary=lambda a, r: (
                f"The air quality index in {r['city']} is {r['aqi']}, which counts as {r['category']}. "
                f"The main pollutant right now is {r['main_pollutant']}."
            ),
            follow=("city", ("What about {city}?", "And in {city}?")),
            errors=(
                _not_found(
                    "city",
                    "Gotham",
                    "no monitoring station found for this city",
                    "Could you try a nearby large city?",
                ),
            ),
        ),
        Tool(
            name="get_sunrise_sunset",
            description="Look up sunrise and sunset times for a city on a given date.",
            properties={"city": _string("City name"), "date": _string("Date in YYYY-MM-DD format")},
            required=("city", "date"),
            pools={"city": CITIES, "date": DATES},
            asks=(
                "What time is sunrise in {city} on {date}?",
                "When does the sun rise and set in {city} on {date}?",
                "I want to catch the sunset in {city} on {date}. When is it?",
            ),
            purpose="look up sunrise and sunset times in {city} on {date}",
            result=_sun_times,
            summary=lambda a, r: (
                f"In {r['city']} on {_pretty_date(r['date'])}, sunrise is at {r['sunrise']} "
                f"and sunset is at {r['sunset']}."
            ),
            follow=("date", ("And on {date}?", "What about {date}?")),
            errors=(city_typo,),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: money
# ---------------------------------------------------------------------------------------------------------


def _convert_currency(a: Args, r: random.Random) -> Result:
    rate = CURRENCY_PER_USD[a["to_currency"]] / CURRENCY_PER_USD[a["from_currency"]]
    return {
        "from_currency": a["from_currency"],
        "to_currency": a["to_currency"],
        "rate": round(rate, 4),
        "converted_amount": round(a["amount"] * rate, 2),
    }


def _crypto_price(a: Args, r: random.Random) -> Result:
    currency = a.get("currency", "USD")
    price = CRYPTO_PRICES_USD[a["symbol"]] * CURRENCY_PER_USD[currency] * r.uniform(0.95, 1.05)
    digits = 4 if price < 1 else 2
    change = round(r.uniform(-6, 6), 2)
    return {
        "symbol": a["symbol"],
        "price": round(price, digits),
        "currency": currency,
        "change_24h_percent": change,
    }


def _stock_price(a: Args, r: random.Random) -> Result:
    price = round(STOCK_PRICES[a["ticker"]] * r.uniform(0.97, 1.03), 2)
    return {
        "ticker": a["ticker"],
        "price": price,
        "currency": "USD",
        "change_percent": round(r.uniform(-3, 3), 2),
    }


def _loan_payment(a: Args, r: random.Random) -> Result:
    monthly_rate = a["annual_rate_percent"] / 100 / 12
    months = a["years"] * 12
    payment = a["principal"] * monthly_rate / (1 - (1 + monthly_rate) ** -months)
    return {
        "monthly_payment": round(payment, 2),
        "total_interest": round(payment * months - a["principal"], 2),
    }


def _tip(a: Args, r: random.Random) -> Result:
    tip = round(a["bill_amount"] * a["tip_percent"] / 100, 2)
    result = {"tip": tip, "total": round(a["bill_amount"] + tip, 2)}
    if "split_between" in a:
        result["per_person"] = round(result["total"] / a["split_between"], 2)
    return result


def _tip_summary(a: Args, r: Result) -> str:
    text = f"A tip of {a['tip_percent']}% on ${_money(a['bill_amount'])} is ${_money(r['tip'])}"
    text += f", bringing the total to ${_money(r['total'])}"
    if "per_person" in r:
        text += f", or ${_money(r['per_person'])} each for {a['split_between']} people"
    return text + "."


def _trend(change: float) -> str:
    return f"up {change}%" if change >= 0 else f"down {abs(change)}%"


def _money_tools() -> list[Tool]:
    return [
        Tool(
            name="convert_currency",
            description="Convert an amount of money from one currency to another.",
            properties={
                "amount": _float("Amount to convert"),
                "from_currency": _string("Three-letter source currency code, e.g. USD"),
                "to_currency": _string("Three-letter target currency code, e.g. EUR"),
            },
            required=("amount", "from_currency", "to_currency"),
            pools={"amount": AMOUNTS, "from_currency": CURRENCIES, "to_currency": CURRENCIES},
            asks=(
                "How much is {amount} {from_currency} in {to_currency}?",
                "Convert {amount} {from_currency} to {to_currency}, please.",
                "I have {amount} {from_currency}. What's that in {to_currency}?",
                "Could you tell me what {amount} {from_currency} comes to in {to_currency}?",
            ),
            purpose="convert {amount} {from_currency} to {to_currency}",
            result=_convert_currency,
            summary=lambda a, r: (
                f"{_number(a['amount'])} {a['from_currency']} is about {_money(r['converted_amount'])} "
                f"{a['to_currency']}, at a rate of {r['rate']}."
            ),
            follow=(
                "to_currency",
                ("And how much is that in {to_currency}?", "What would that be in {to_currency}?"),
            ),
            errors=(
                _not_found(
                    "to_currency",
                    "XYZ",
                    "unsupported currency code: XYZ",
                    "Could you check the currency code? Standard three-letter codes like EUR or JPY work.",
                ),
            ),
        ),
        Tool(
            name="get_crypto_price",
            description="Get the current price of a cryptocurrency.",
            properties={
                "symbol": _string("Coin symbol", enum=list(CRYPTO_PRICES_USD)),
                "currency": _string("Quote currency", enum=["USD", "EUR"]),
            },
            required=("symbol",),
            pools={"symbol": tuple(CRYPTO_PRICES_USD), "currency": ("USD", "EUR")},
            asks=(
                "What's the price of {symbol} right now?{opt}",
                "How much is one {symbol} worth today?{opt}",
                "Check the current {symbol} price for me.{opt}",
            ),
            phrases={"currency": " Quote it in {currency}."},
            purpose="get the current price of {symbol}",
            result=_crypto_price,
            summary=lambda a, r: (
                f"{r['symbol']} is trading at {r['price']:,} {r['currency']}, "
                f"{_trend(r['change_24h_percent'])} over the last 24 hours."
            ),
            follow=("symbol", ("And {symbol}?", "How about {symbol}?")),
        ),
        Tool(
            name="get_stock_price",
            description="Get the latest stock price for a ticker symbol.",
            properties={"ticker": _string("Stock ticker symbol, e.g. AAPL")},
            required=("ticker",),
            pools={"ticker": tuple(STOCK_PRICES)},
            asks=(
                "What's {ticker} trading at?",
                "Can you get me the latest stock price for {ticker}?",
                "How is {ticker} doing today?",
            ),
            purpose="look up the stock price of {ticker}",
            result=_stock_price,
            summary=lambda a, r: (
                f"{r['ticker']} is trading at ${_money(r['price'])}, {_trend(r['change_percent'])} today."
            ),
            follow=("ticker", ("And {ticker}?", "How about {ticker}?", "What's {ticker} at?")),
            errors=(
                _not_found("ticker", "APPL", "unknown ticker symbol", "Did you mean AAPL, Apple's ticker?"),
                _not_found("ticker", "ZZQX", "unknown ticker symbol", "Could you double-check the ticker symbol?"),
            ),
        ),
        Tool(
            name="calculate_loan_payment",
            description="Calculate the monthly payment and total interest for a fixed-rate loan.",
            properties={
                "principal": _float("Loan amount"),
                "annual_rate_percent": _float("Annual interest rate in percent"),
                "years": _integer("Loan term in years"),
            },
            required=("principal", "annual_rate_percent", "years"),
            pools={
                "principal": (8000, 15000, 25000, 200000, 350000),
                "annual_rate_percent": (3.5, 4.9, 6.25, 7.1),
                "years": (5, 15, 30),
            },
            asks=(
                "What would my monthly payment be on a ${principal} loan at {annual_rate_percent}% over {years} years?",
                "I'm borrowing ${principal} for {years} years at {annual_rate_percent}% interest. "
                "What are the monthly payments?",
                "Calculate the payment for a {years}-year loan of ${principal} at {annual_rate_percent}%.",
            ),
            purpose="estimate the monthly payment on a ${principal} loan at {annual_rate_percent}%",
            result=_loan_payment,
            summary=lambda a, r: (
                f"Your monthly payment would be about ${_money(r['monthly_payment'])}, and you'd pay roughly "
                f"${_money(r['total_interest'])} in interest over {a['years']} years."
            ),
        ),
        Tool(
            name="calculate_tip",
            description="Calculate the tip and total for a restaurant bill, optionally split between people.",
            properties={
                "bill_amount": _float("Bill amount before tip"),
                "tip_percent": _integer("Tip percentage"),
                "split_between": _integer("Number of people splitting the bill"),
            },
            required=("bill_amount", "tip_percent"),
            pools={
                "bill_amount": (42.5, 68, 86.4, 120, 235.75),
                "tip_percent": (15, 18, 20, 22),
                "split_between": (2, 3, 4),
            },
            asks=(
                "How much is a tip of {tip_percent}% on a ${bill_amount} bill?{opt}",
                "Our bill came to ${bill_amount}. How much should I tip at {tip_percent}%?{opt}",
                "Calculate a {tip_percent} percent tip for ${bill_amount}, please.{opt}",
            ),
            phrases={"split_between": " We're splitting it {split_between} ways."},
            purpose="work out a tip of {tip_percent}% on a ${bill_amount} bill",
            result=_tip,
            summary=_tip_summary,
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: travel and places
# ---------------------------------------------------------------------------------------------------------


def _flights(a: Args, r: random.Random) -> Result:
    flights = []
    for _ in range(2):
        airline, code = r.choice(AIRLINES)
        stops = 0 if a.get("nonstop_only") else r.choice((0, 0, 1))
        flights.append(
            {
                "airline": airline,
                "flight_number": f"{code}{r.randint(100, 2999)}",
                "departure": f"{r.randint(6, 21):02d}:{r.choice((0, 15, 30, 45)):02d}",
                "stops": stops,
                "price_usd": r.randint(180, 1400),
            }
        )
    flights.sort(key=lambda flight: flight["price_usd"])
    return {"origin": a["origin"], "destination": a["destination"], "date": a["date"], "flights": flights}


def _flights_summary(a: Args, r: Result) -> str:
    best, other = r["flights"]

    def describe(flight: dict[str, Any]) -> str:
        stops = "nonstop" if flight["stops"] == 0 else f"{flight['stops']} stop"
        return (
            f"{flight['airline']} {flight['flight_number']} at {flight['departure']} ({stops}, ${flight['price_usd']})"
        )

    return (
        f"I found two flights from {r['origin']} to {r['destination']} on {_pretty_date(r['date'])}. "
        f"The cheapest is {describe(best)}; the other option is {describe(other)}."
    )


def _hotels(a: Args, r: random.Random) -> Result:
    ceiling = min(320, int(a.get("max_price_per_night", 320)))
    hotels = [
        {"name": name, "price_per_night": r.randint(70, ceiling), "rating": round(r.uniform(3.6, 4.9), 1)}
        for name in r.sample(HOTELS, 2)
    ]
    return {"city": a["city"], "hotels": hotels}


def _hotels_summary(a: Args, r: Result) -> str:
    options = [f"{h['name']} at ${h['price_per_night']} a night (rated {h['rating']})" for h in r["hotels"]]
    return f"For {a['nights']} nights in {a['city']} from {_pretty_date(a['check_in'])}, I found {_join(options)}."


def _local_time(a: Args, r: random.Random) -> Result:
    zone, offset = CITY_TIMEZONES[a["city"]]
    hours, minutes = divmod(abs(offset), 60)
    sign = "+" if offset >= 0 else "-"
    return {
        "city": a["city"],
        "timezone": zone,
        "local_time": f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
        "utc_offset": f"{sign}{hours:02d}:{minutes:02d}",
    }


def _distance(a: Args, r: random.Random) -> Result:
    km = ROUTES_KM[(a["origin"], a["destination"])]
    mode = a.get("mode", "driving")
    return {
        "origin": a["origin"],
        "destination": a["destination"],
        "mode": mode,
        "distance_km": km,
        "duration_minutes": round(km / SPEED_KMH[mode] * 60),
    }


def _restaurants(a: Args, r: random.Random) -> Result:
    names = r.sample(RESTAURANTS[a["cuisine"]], a.get("max_results", 2))
    places = [
        {"name": name, "rating": round(r.uniform(4.0, 4.9), 1), "price_level": r.choice(("$", "$$", "$$$"))}
        for name in names
    ]
    return {"city": a["city"], "cuisine": a["cuisine"], "restaurants": places}


def _restaurants_summary(a: Args, r: Result) -> str:
    places = [f"{p['name']} (rated {p['rating']}, {p['price_level']})" for p in r["restaurants"]]
    return f"Here are some {a['cuisine']} places in {a['city']}: {_join(places)}."


def _travel_tools() -> list[Tool]:
    return [
        Tool(
            name="search_flights",
            description="Search for flights between two airports on a given date.",
            properties={
                "origin": _string("Origin airport IATA code, e.g. JFK"),
                "destination": _string("Destination airport IATA code"),
                "date": _string("Departure date in YYYY-MM-DD format"),
                "nonstop_only": _boolean("Only return nonstop flights"),
            },
            required=("origin", "destination", "date"),
            pools={"origin": AIRPORTS, "destination": AIRPORTS, "date": DATES, "nonstop_only": (True,)},
            asks=(
                "Find me flights from {origin} to {destination} on {date}{opt}.",
                "Are there any flights from {origin} to {destination} on {date}{opt}?",
                "I need to fly {origin} to {destination} on {date}. What are my options{opt}?",
            ),
            phrases={"nonstop_only": ", nonstop only"},
            purpose="search for flights from {origin} to {destination} on {date}",
            result=_flights,
            summary=_flights_summary,
            follow=("date", ("What about on {date}?", "And if I leave on {date} instead?")),
            errors=(
                _not_found(
                    "date",
                    "2024-01-05",
                    "departure date is in the past",
                    "Could you give me a future travel date?",
                ),
            ),
        ),
        Tool(
            name="search_hotels",
            description="Search for available hotels in a city.",
            properties={
                "city": _string("City name"),
                "check_in": _string("Check-in date in YYYY-MM-DD format"),
                "nights": _integer("Number of nights"),
                "max_price_per_night": _float("Maximum price per night in USD"),
            },
            required=("city", "check_in", "nights"),
            pools={
                "city": CITIES,
                "check_in": DATES,
                "nights": (2, 3, 4, 5),
                "max_price_per_night": (150, 200, 250),
            },
            asks=(
                "I need a hotel in {city} for {nights} nights starting {check_in}.{opt}",
                "Can you find hotels in {city}? Checking in {check_in} for {nights} nights.{opt}",
                "Look for a place to stay in {city} from {check_in}, {nights} nights.{opt}",
            ),
            phrases={"max_price_per_night": " My budget is ${max_price_per_night} a night."},
            purpose="find hotels in {city} from {check_in} for {nights} nights",
            result=_hotels,
            summary=_hotels_summary,
            follow=("city", ("What about in {city}?", "Could you check {city} for the same dates?")),
            errors=(
                ErrorCase(
                    {},
                    {"error": "no rooms available for the selected dates"},
                    "Would you like me to try different dates or another city?",
                ),
            ),
        ),
        Tool(
            name="get_local_time",
            description="Get the current local time and time zone for a city.",
            properties={"city": _string("City name")},
            required=("city",),
            pools={"city": CITIES},
            asks=(
                "What time is it in {city} right now?",
                "Can you tell me the local time in {city}?",
                "I need to call someone in {city}. What time is it there?",
            ),
            purpose="find the local time in {city}",
            result=_local_time,
            summary=lambda a, r: (
                f"It's {r['local_time']} in {r['city']} right now ({r['timezone']}, UTC{r['utc_offset']})."
            ),
            follow=("city", ("And in {city}?", "What about {city}?")),
            errors=(_not_found("city", "El Dorado", "unknown city", "Could you check the spelling of the city?"),),
        ),
        Tool(
            name="get_distance",
            description="Get the travel distance and time between two cities.",
            properties={
                "origin": _string("Starting city"),
                "destination": _string("Destination city"),
                "mode": _string("Travel mode", enum=list(SPEED_KMH)),
            },
            required=("origin", "destination"),
            pools={"origin+destination": tuple(ROUTES_KM), "mode": tuple(SPEED_KMH)},
            asks=(
                "How far is it from {origin} to {destination}?{opt}",
                "What's the distance between {origin} and {destination}?{opt}",
                "How long does it take to get from {origin} to {destination}?{opt}",
            ),
            phrases={
                "mode": {
                    "driving": " I'll be driving.",
                    "transit": " I'm taking the train.",
                    "cycling": " By bike.",
                }
            },
            purpose="get the distance from {origin} to {destination}",
            result=_distance,
            summary=lambda a, r: (
                f"{r['origin']} to {r['destination']} is about {r['distance_km']} km; "
                f"{r['mode']} takes roughly {_duration(r['duration_minutes'])}."
            ),
            errors=(
                ErrorCase(
                    {"origin": "London", "destination": "New York", "mode": "driving"},
                    {"error": "no driving route found between London and New York"},
                    "The two cities are separated by the Atlantic, so you'd need to fly.",
                ),
            ),
        ),
        Tool(
            name="find_restaurants",
            description="Find well-rated restaurants of a given cuisine in a city.",
            properties={
                "city": _string("City name"),
                "cuisine": _string("Type of cuisine", enum=list(RESTAURANTS)),
                "max_results": _integer("Maximum number of results"),
            },
            required=("city", "cuisine"),
            pools={"city": CITIES, "cuisine": tuple(RESTAURANTS), "max_results": (2, 3)},
            asks=(
                "Find me {cuisine} restaurants in {city}.{opt}",
                "Where can I get good {cuisine} food in {city}?{opt}",
                "Any {cuisine} places you'd recommend in {city}?{opt}",
            ),
            phrases={"max_results": " Show me {max_results} options."},
            purpose="find {cuisine} restaurants in {city}",
            result=_restaurants,
            summary=_restaurants_summary,
            follow=("cuisine", ("What about {cuisine} food?", "Any {cuisine} places instead?")),
            errors=(
                _not_found("city", "Springfieldia", "location not found", "Could you double-check the city name?"),
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: food and health
# ---------------------------------------------------------------------------------------------------------


def _recipes(a: Args, r: random.Random) -> Result:
    limit = a.get("max_prep_minutes", 999)
    found = [{"name": name, "prep_minutes": minutes} for name, minutes in RECIPES[tuple(a["ingredients"])]]
    return {"recipes": [recipe for recipe in found if recipe["prep_minutes"] <= limit][:2]}


def _recipes_summary(a: Args, r: Result) -> str:
    ingredients = _join(a["ingredients"])
    if not r["recipes"]:
        return f"I couldn't find any recipes with {ingredients} that fit in {a['max_prep_minutes']} minutes."
    options = [f"{recipe['name']} ({recipe['prep_minutes']} minutes)" for recipe in r["recipes"]]
    return f"With {ingredients} you could make {_join(options)}."


def _nutrition(a: Args, r: random.Random) -> Result:
    calories, protein, carbs, fat = (value * a["grams"] / 100 for value in FOODS[a["food"]])
    return {
        "food": a["food"],
        "grams": a["grams"],
        "calories": round(calories),
        "protein_g": round(protein, 1),
        "carbs_g": round(carbs, 1),
        "fat_g": round(fat, 1),
    }


def _bmi(a: Args, r: random.Random) -> Result:
    bmi = round(a["weight_kg"] / (a["height_cm"] / 100) ** 2, 1)
    category = "underweight" if bmi < 18.5 else "normal weight" if bmi < 25 else "overweight" if bmi < 30 else "obese"
    return {"bmi": bmi, "category": category}


def _food_tools() -> list[Tool]:
    return [
        Tool(
            name="find_recipes",
            description="Find recipes that use the given ingredients.",
            properties={
                "ingredients": _array("Ingredients to cook with"),
                "max_prep_minutes": _integer("Maximum preparation time in minutes"),
            },
            required=("ingredients",),
            pools={"ingredients": tuple(list(key) for key in RECIPES), "max_prep_minutes": (20, 30, 45)},
            asks=(
                "What can I cook with {ingredients}{opt}?",
                "I've got {ingredients} in the fridge. Any recipe ideas{opt}?",
                "Find me a recipe that uses {ingredients}{opt}.",
            ),
            phrases={"max_prep_minutes": " in under {max_prep_minutes} minutes"},
            purpose="find recipes using {ingredients}",
            result=_recipes,
            summary=_recipes_summary,
            errors=(
                _not_found(
                    "ingredients",
                    ["sardines", "marshmallows"],
                    "no recipes found matching those ingredients",
                    "Maybe try a different combination of ingredients?",
                ),
            ),
        ),
        Tool(
            name="get_nutrition_info",
            description="Look up calories and macronutrients for a portion of food.",
            properties={"food": _string("Food name"), "grams": _float("Portion size in grams")},
            required=("food", "grams"),
            pools={"food": tuple(FOODS), "grams": (50, 100, 150, 200)},
            asks=(
                "How many calories are in {grams} grams of {food}?",
                "What's the nutrition breakdown for {grams} g of {food}?",
                "I'm tracking macros. Can you look up {grams}g of {food}?",
            ),
            purpose="look up nutrition facts for {grams} g of {food}",
            result=_nutrition,
            summary=lambda a, r: (
                f"{_number(r['grams'])} g of {r['food']} has about {r['calories']} calories, with "
                f"{_number(r['protein_g'])} g protein, {_number(r['carbs_g'])} g carbs "
                f"and {_number(r['fat_g'])} g fat."
            ),
            follow=("food", ("And {food}?", "What about {food}?")),
            errors=(
                _not_found(
                    "food",
                    "dragon fruit jerky",
                    "food not found in nutrition database",
                    "Could you try a more common name for it?",
                ),
            ),
        ),
        Tool(
            name="calculate_bmi",
            description="Calculate body mass index from weight and height.",
            properties={
                "weight_kg": _float("Weight in kilograms"),
                "height_cm": _float("Height in centimeters"),
            },
            required=("weight_kg", "height_cm"),
            pools={"weight_kg": (55, 68.5, 72, 85, 98), "height_cm": (160, 168, 175, 182, 190)},
            asks=(
                "I weigh {weight_kg} kg and I'm {height_cm} cm tall. What's my BMI?",
                "Calculate my BMI: {weight_kg} kg, {height_cm} cm.",
                "Can you work out the BMI for someone who is {height_cm} cm and {weight_kg} kg?",
            ),
            purpose="calculate BMI for {weight_kg} kg and {height_cm} cm",
            result=_bmi,
            summary=lambda a, r: (
                f"A BMI of {r['bmi']} falls in the {r['category']} range. Keep in mind that BMI is only a rough guide."
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: productivity
# ---------------------------------------------------------------------------------------------------------


def _create_event(a: Args, r: random.Random) -> Result:
    return {
        "status": "created",
        "event_id": f"evt_{r.randint(10000, 99999)}",
        "title": a["title"],
        "date": a["date"],
        "start_time": a["start_time"],
        "end_time": _add_minutes(a["start_time"], a.get("duration_minutes", 60)),
    }


def _list_events(a: Args, r: random.Random) -> Result:
    count = r.randint(0, 3)
    times = sorted(r.sample(START_TIMES, count))
    events = [
        {"title": title, "start_time": time} for title, time in zip(r.sample(EVENT_TITLES, count), times, strict=True)
    ]
    return {"date": a["date"], "events": events}


def _list_events_summary(a: Args, r: Result) -> str:
    day = _pretty_date(r["date"])
    if not r["events"]:
        return f"Your calendar is clear on {day}."
    events = [f"{event['title']} at {event['start_time']}" for event in r["events"]]
    return f"On {day} you have {_join(events)}."


def _reminder_summary(a: Args, r: Result) -> str:
    message = re.sub(r"\bmy\b", "your", a["message"])  # the user's "my passport" is "your passport" to us
    text = f"Done. I'll remind you to {message} on {_pretty_date(a['remind_at'])}."
    if "repeat" in a:
        text += f" It will repeat {a['repeat']}."
    return text


def _todo_summary(a: Args, r: Result) -> str:
    tags = f", tagged {_join(a['tags'])}" if "tags" in a else ""
    return f'Added "{a["task"]}" to your to-do list as a {a["priority"]}-priority item{tags}.'


def _calendar_tools() -> list[Tool]:
    return [
        Tool(
            name="create_calendar_event",
            description="Create an event in the user's calendar.",
            properties={
                "title": _string("Event title"),
                "date": _string("Date in YYYY-MM-DD format"),
                "start_time": _string("Start time in HH:MM, 24-hour clock"),
                "duration_minutes": _integer("Duration in minutes, default 60"),
            },
            required=("title", "date", "start_time"),
            pools={
                "title": EVENT_TITLES,
                "date": DATES,
                "start_time": START_TIMES,
                "duration_minutes": (30, 45, 90),
            },
            asks=(
                'Please add "{title}" to my calendar on {date} at {start_time}.{opt}',
                'Can you schedule "{title}" for {date} at {start_time}?{opt}',
                'Put "{title}" on my calendar: {date}, starting {start_time}.{opt}',
            ),
            phrases={"duration_minutes": " It should last {duration_minutes} minutes."},
            purpose='add "{title}" to the calendar on {date} at {start_time}',
            result=_create_event,
            summary=lambda a, r: (
                f'Done! "{r["title"]}" is on your calendar for {_pretty_date(r["date"])} '
                f"from {r['start_time']} to {r['end_time']}."
            ),
            errors=(
                ErrorCase(
                    {},
                    {
                        "error": "time slot conflicts with an existing event",
                        "conflicting_event": "Client call",
                    },
                    "It overlaps with your client call. Would you like me to try a different time?",
                ),
            ),
        ),
        Tool(
            name="list_calendar_events",
            description="List the events in the user's calendar on a given date.",
            properties={"date": _string("Date in YYYY-MM-DD format")},
            required=("date",),
            pools={"date": DATES},
            asks=(
                "What's on my calendar for {date}?",
                "Do I have anything scheduled on {date}?",
                "Can you check my agenda for {date}?",
            ),
            purpose="list the calendar events on {date}",
            result=_list_events,
            summary=_list_events_summary,
            follow=("date", ("And on {date}?", "What about {date}?")),
        ),
        Tool(
            name="set_reminder",
            description="Set a reminder at a specific date and time.",
            properties={
                "message": _string("What to remind the user about"),
                "remind_at": _string("Date and time in YYYY-MM-DD HH:MM format"),
                "repeat": _string("How often to repeat", enum=["daily", "weekly", "monthly"]),
            },
            required=("message", "remind_at"),
            pools={
                "message": REMINDER_MESSAGES,
                "remind_at": REMINDER_TIMES,
                "repeat": ("daily", "weekly", "monthly"),
            },
            asks=(
                "Remind me to {message} on {remind_at}.{opt}",
                "Can you set a reminder to {message} for {remind_at}?{opt}",
                "Please set a reminder on {remind_at}: {message}.{opt}",
            ),
            phrases={"repeat": " Make it repeat {repeat}."},
            purpose='set a reminder "{message}" for {remind_at}',
            result=lambda a, r: {"status": "scheduled", "reminder_id": f"rem_{r.randint(1000, 9999)}"},
            summary=_reminder_summary,
            errors=(
                _not_found(
                    "remind_at",
                    "2025-01-10 08:00",
                    "reminder time is in the past",
                    "Could you give me a date and time in the future?",
                ),
            ),
        ),
        Tool(
            name="add_todo_item",
            description="Add a task to the user's to-do list.",
            properties={
                "task": _string("Task description"),
                "priority": _string("Task priority", enum=["low", "medium", "high"]),
                "tags": _array("Optional tags"),
            },
            required=("task", "priority"),
            pools={
                "task": TASKS,
                "priority": ("low", "medium", "high"),
                "tags": (["work"], ["home"], ["errands", "weekend"], ["personal"]),
            },
            asks=(
                'Add "{task}" to my to-do list with {priority} priority.{opt}',
                "Can you put {task} on my to-do list? Priority: {priority}.{opt}",
                "New task: {task}. Mark it as {priority} priority.{opt}",
            ),
            phrases={"tags": " Tag it {tags}."},
            purpose='add "{task}" to the to-do list',
            result=lambda a, r: {"status": "added", "item_id": f"todo_{r.randint(100, 999)}"},
            summary=_todo_summary,
        ),
    ]


def _message_tools() -> list[Tool]:
    return [
        Tool(
            name="send_email",
            description="Send an email on the user's behalf.",
            properties={
                "to": _string("Recipient email address"),
                "subject": _string("Email subject"),
                "body": _string("Email body text"),
            },
            required=("to", "subject", "body"),
            pools={"to": CONTACTS, "subject+body": EMAILS},
            asks=(
                'Send an email to {to} with the subject "{subject}" saying: {body}',
                "Please email {to}. Subject: {subject}. Message: {body}",
                'Can you write to {to}? Use the subject "{subject}" and say "{body}"',
            ),
            purpose="send an email to {to}",
            result=lambda a, r: {"status": "sent", "message_id": f"msg_{r.randint(100000, 999999)}"},
            summary=lambda a, r: f'Your email "{a["subject"]}" has been sent to {a["to"]}.',
            errors=(
                _not_found(
                    "to",
                    "sam.chen@example",
                    "invalid recipient address",
                    "The address seems to be missing its domain ending. Could you confirm it?",
                ),
            ),
        )
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: math and language
# ---------------------------------------------------------------------------------------------------------


def _convert_units(a: Args, r: random.Random) -> Result:
    value = a["value"] * UNIT_FACTORS[(a["from_unit"], a["to_unit"])]
    return {
        "value": a["value"],
        "from_unit": a["from_unit"],
        "to_unit": a["to_unit"],
        "result": round(value, 2),
    }


def _define(a: Args, r: random.Random) -> Result:
    part_of_speech, definition = WORDS[a["word"]]
    return {"word": a["word"], "part_of_speech": part_of_speech, "definition": definition}


def _define_summary(a: Args, r: Result) -> str:
    article = "an" if r["part_of_speech"][0] in "aeiou" else "a"
    return f'"{r["word"].capitalize()}" is {article} {r["part_of_speech"]} meaning "{r["definition"]}".'


def _math_language_tools() -> list[Tool]:
    return [
        Tool(
            name="convert_units",
            description="Convert a value between units of measurement.",
            properties={
                "value": _float("Value to convert"),
                "from_unit": _string("Unit to convert from, e.g. miles"),
                "to_unit": _string("Unit to convert to, e.g. kilometers"),
            },
            required=("value", "from_unit", "to_unit"),
            pools={"value": (3.5, 5, 12, 26.2, 100), "from_unit+to_unit": tuple(UNIT_FACTORS)},
            asks=(
                "How many {to_unit} is {value} {from_unit}?",
                "Convert {value} {from_unit} to {to_unit}, please.",
                "What's {value} {from_unit} in {to_unit}?",
            ),
            purpose="convert {value} {from_unit} to {to_unit}",
            result=_convert_units,
            summary=lambda a, r: f"{_number(r['value'])} {r['from_unit']} is about {r['result']} {r['to_unit']}.",
            errors=(
                ErrorCase(
                    {"from_unit": "liters", "to_unit": "miles"},
                    {"error": "cannot convert between volume and length units"},
                    "Liters measure volume and miles measure distance. Did you mean a different unit?",
                ),
            ),
        ),
        Tool(
            name="calculate",
            description="Evaluate an arithmetic expression.",
            properties={"expression": _string("Arithmetic expression, e.g. (2 + 3) * 4")},
            required=("expression",),
            pools={"expression": tuple(EXPRESSIONS)},
            asks=(
                "What's {expression}?",
                "Can you calculate {expression} for me?",
                "Quick math question: what does {expression} come to?",
            ),
            purpose="evaluate {expression}",
            result=lambda a, r: {"expression": a["expression"], "result": EXPRESSIONS[a["expression"]]},
            summary=lambda a, r: f"{r['expression']} = {r['result']}.",
            errors=(_not_found("expression", "10 / 0", "division by zero", "Dividing by zero has no defined result."),),
        ),
        Tool(
            name="translate_text",
            description="Translate text into another language.",
            properties={
                "text": _string("Text to translate"),
                "target_language": _string("Language to translate into, e.g. Spanish"),
                "source_language": _string("Language of the original text, if known"),
            },
            required=("text", "target_language"),
            pools={
                "text": tuple(TRANSLATIONS),
                "target_language": LANGUAGES,
                "source_language": ("English",),
            },
            asks=(
                'How do you say "{text}" in {target_language}?{opt}',
                'Translate "{text}" into {target_language}, please.{opt}',
                'Can you translate this to {target_language}? "{text}"{opt}',
            ),
            phrases={"source_language": " It's in {source_language}."},
            purpose='translate "{text}" into {target_language}',
            result=lambda a, r: {
                "translated_text": TRANSLATIONS[a["text"]][a["target_language"]],
                "target_language": a["target_language"],
            },
            summary=lambda a, r: f'In {a["target_language"]}, that\'s: "{r["translated_text"]}"',
            follow=(
                "target_language",
                ("And in {target_language}?", "How would you say it in {target_language}?"),
            ),
            errors=(
                _not_found(
                    "target_language",
                    "Klingon",
                    "unsupported target language: Klingon",
                    "I can translate into Spanish, French, German, Italian or Japanese instead.",
                ),
            ),
        ),
        Tool(
            name="define_word",
            description="Look up the dictionary definition of an English word.",
            properties={"word": _string("The word to define")},
            required=("word",),
            pools={"word": tuple(WORDS)},
            asks=(
                'What does "{word}" mean?',
                "Define {word} for me, please.",
                "Can you look up the definition of {word}?",
            ),
            purpose='look up the definition of "{word}"',
            result=_define,
            summary=_define_summary,
            follow=("word", ("And {word}?", 'What about "{word}"?')),
            errors=(_not_found("word", "flibbertigibbetz", "word not found", "Could you check the spelling?"),),
        ),
        Tool(
            name="get_synonyms",
            description="Find synonyms for an English word.",
            properties={"word": _string("The word to find synonyms for")},
            required=("word",),
            pools={"word": tuple(WORDS)},
            asks=(
                "What's another word for {word}?",
                'Give me some synonyms for "{word}".',
                'I keep using "{word}" in my essay. What are some alternatives?',
            ),
            purpose='find synonyms for "{word}"',
            result=lambda a, r: {"word": a["word"], "synonyms": list(SYNONYMS[a["word"]])},
            summary=lambda a, r: f'Some synonyms for "{r["word"]}" are {_join(r["synonyms"])}.',
            errors=(_not_found("word", "blorptastic", "no synonyms found", "Is that word spelled correctly?"),),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: media and entertainment
# ---------------------------------------------------------------------------------------------------------


def _movie_details(a: Args, r: random.Random) -> Result:
    year, director, runtime, rating = MOVIES[a["title"]]
    return {
        "title": a["title"],
        "year": year,
        "director": director,
        "runtime_minutes": runtime,
        "rating": rating,
    }


def _showtimes(a: Args, r: random.Random) -> Result:
    times = sorted(r.sample(("13:10", "15:40", "17:20", "19:00", "20:30", "21:45"), 3))
    return {"cinema": r.choice(CINEMAS), "showtimes": times}


def _headlines(a: Args, r: random.Random) -> Result:
    titles = r.sample(HEADLINES[a["topic"]], a.get("limit", 2))
    return {
        "topic": a["topic"],
        "articles": [{"title": title, "source": r.choice(NEWS_SOURCES)} for title in titles],
    }


def _headlines_summary(a: Args, r: Result) -> str:
    items = [f'"{article["title"]}" ({article["source"]})' for article in r["articles"]]
    return f"Here are the top {r['topic']} headlines: {'; '.join(items)}."


def _scores(a: Args, r: random.Random) -> Result:
    teams, (low, high) = LEAGUES[a["league"]]
    games = []
    for _ in range(r.randint(1, 2)):
        home, away = r.sample([team for team in teams if all(team not in g.values() for g in games)], 2)
        home_score, away_score = r.sample(range(low, high + 1), 2)
        # Soccer can end level; the other leagues play until someone wins.
        if a["league"] in ("Premier League", "La Liga") and r.random() < 0.25:
            away_score = home_score
        games.append({"home": home, "away": away, "home_score": home_score, "away_score": away_score})
    return {"league": a["league"], "date": a["date"], "games": games}


def _scores_summary(a: Args, r: Result) -> str:
    results = []
    for game in r["games"]:
        home, away, hs, as_ = game["home"], game["away"], game["home_score"], game["away_score"]
        if hs == as_:
            results.append(f"{home} and {away} drew {hs}-{as_}")
        else:
            winner, loser = (home, away) if hs > as_ else (away, home)
            results.append(f"{winner} beat {loser} {max(hs, as_)}-{min(hs, as_)}")
    return f"{a['league']} results from {_pretty_date(r['date'])}: {_join(results)}."


def _media_tools() -> list[Tool]:
    return [
        Tool(
            name="get_movie_details",
            description="Get details about a movie such as year, director, runtime and rating.",
            properties={"title": _string("Movie title")},
            required=("title",),
            pools={"title": tuple(MOVIES)},
            asks=(
                "Tell me about the movie {title}.",
                "Who directed {title}, and how long is it?",
                "Can you look up {title} for me?",
            ),
            purpose="look up details about {title}",
            result=_movie_details,
            summary=lambda a, r: (
                f"{r['title']} ({r['year']}) was directed by {r['director']}. It runs {r['runtime_minutes']} "
                f"minutes and has a rating of {r['rating']}/10."
            ),
            follow=("title", ("What about {title}?", "And {title}?")),
            errors=(_not_found("title", "The Matrix 7", "movie not found", "Could you double-check the title?"),),
        ),
        Tool(
            name="get_movie_showtimes",
            description="Find cinema showtimes for a movie in a city on a given date.",
            properties={
                "title": _string("Movie title"),
                "city": _string("City name"),
                "date": _string("Date in YYYY-MM-DD format"),
            },
            required=("title", "city", "date"),
            pools={"title": tuple(MOVIES), "city": CITIES, "date": DATES},
            asks=(
                "Where can I see {title} in {city} on {date}?",
                "Find showtimes for {title} in {city} on {date}.",
                "Is {title} playing anywhere in {city} on {date}?",
            ),
            purpose="find showtimes for {title} in {city} on {date}",
            result=_showtimes,
            summary=lambda a, r: (
                f"{a['title']} is showing at {r['cinema']} in {a['city']} on {_pretty_date(a['date'])} "
                f"at {_join(r['showtimes'])}."
            ),
            follow=("date", ("What about {date}?", "And on {date}?")),
            errors=(
                ErrorCase(
                    {},
                    {"error": "no showtimes found for this date"},
                    "Would you like me to check another date?",
                ),
            ),
        ),
        Tool(
            name="get_news_headlines",
            description="Get the latest news headlines for a topic.",
            properties={
                "topic": _string("News topic", enum=list(HEADLINES)),
                "country": _string("Two-letter country code", enum=["US", "GB", "CA", "AU"]),
                "limit": _integer("Number of headlines"),
            },
            required=("topic",),
            pools={"topic": tuple(HEADLINES), "country": ("US", "GB", "CA", "AU"), "limit": (2, 3)},
            asks=(
                "What are the latest {topic} headlines?{opt}",
                "Any {topic} news today?{opt}",
                "Show me the top {topic} stories.{opt}",
            ),
            phrases={
                "country": {
                    "US": " Stick to the US.",
                    "GB": " I'm interested in the UK.",
                    "CA": " Canadian news, please.",
                    "AU": " Focus on Australia.",
                },
                "limit": " Just {limit} headlines.",
            },
            purpose="get the latest {topic} headlines",
            result=_headlines,
            summary=_headlines_summary,
            follow=("topic", ("What about {topic}?", "And the {topic} news?")),
        ),
        Tool(
            name="get_top_tracks",
            description="Get the most popular songs by an artist.",
            properties={"artist": _string("Artist or band name"), "limit": _integer("Number of tracks")},
            required=("artist",),
            pools={"artist": tuple(TOP_TRACKS), "limit": (2, 3)},
            asks=(
                "What are {artist}'s most popular songs?{opt}",
                "Show me the top tracks by {artist}.{opt}",
                "I'm getting into {artist}. Which songs should I start with?{opt}",
            ),
            phrases={"limit": " Just give me {limit}."},
            purpose="find the top tracks by {artist}",
            result=lambda a, r: {
                "artist": a["artist"],
                "tracks": list(TOP_TRACKS[a["artist"]][: a.get("limit", 3)]),
            },
            summary=lambda a, r: f"{r['artist']}'s top tracks right now are {_join(r['tracks'])}.",
            follow=("artist", ("And {artist}?", "What about {artist}?")),
            errors=(
                _not_found(
                    "artist",
                    "The Zorblaxians",
                    "artist not found",
                    "Could you check how the name is spelled?",
                ),
            ),
        ),
        Tool(
            name="get_sports_scores",
            description="Get final scores for a sports league on a given date.",
            properties={
                "league": _string("League name", enum=list(LEAGUES)),
                "date": _string("Date in YYYY-MM-DD format"),
            },
            required=("league", "date"),
            pools={"league": tuple(LEAGUES), "date": DATES},
            asks=(
                "What were the {league} scores on {date}?",
                "How did the {league} games go on {date}?",
                "Can you get me the {league} results from {date}?",
            ),
            purpose="get the {league} scores from {date}",
            result=_scores,
            summary=_scores_summary,
            follow=("league", ("And the {league}?", "What about the {league} that day?")),
            errors=(
                ErrorCase(
                    {},
                    {"error": "no games scheduled on this date"},
                    "There may not have been any games that day. Want me to try another date?",
                ),
            ),
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Tools: shopping and everything else
# ---------------------------------------------------------------------------------------------------------


def _products(a: Args, r: random.Random) -> Result:
    ceiling = int(a.get("max_price", 180))
    products = []
    for brand in r.sample(BRANDS, 2):
        name = f"{brand} {PRODUCTS[a['query']]}{r.choice(('', ' Pro', ' Lite', ' 2'))}"
        in_stock = True if a.get("in_stock_only") else r.random() < 0.7
        products.append({"name": name, "price": r.randint(20, ceiling - 1) + 0.99, "in_stock": in_stock})
    return {"query": a["query"], "products": products}


def _products_summary(a: Args, r: Result) -> str:
    items = [
        f"{p['name']} for ${p['price']} ({'in stock' if p['in_stock'] else 'out of stock'})" for p in r["products"]
    ]
    return f"Here's what I found for {r['query']}: {_join(items)}."


def _package(a: Args, r: random.Random) -> Result:
    status = r.choice(PACKAGE_STATUSES)
    result = {"tracking_number": a["tracking_number"], "status": status, "location": r.choice(CITIES)}
    if status != "delivered":
        result["estimated_delivery"] = r.choice(DATES)
    return result


def _package_summary(a: Args, r: Result) -> str:
    text = f"Your {a['carrier']} package is {r['status']} (last scanned in {r['location']})"
    if "estimated_delivery" in r:
        text += f" and should arrive on {_pretty_date(r['estimated_delivery'])}"
    return text + "."


def _holidays(a: Args, r: random.Random) -> Result:
    holidays = [{"date": f"{a['year']}-{day}", "name": name} for day, name in HOLIDAYS[a["country_code"]]]
    return {"country_code": a["country_code"], "year": a["year"], "holidays": holidays}


def _holidays_summary(a: Args, r: Result) -> str:
    items = [f"{h['name']} ({_pretty_date(h['date']).rsplit(',', 1)[0]})" for h in r["holidays"]]
    return f"Public holidays for {r['country_code']} in {r['year']} include {_join(items)}."


def _books(a: Args, r: random.Random) -> Result:
    books = BOOKS[a["author"]][: a.get("limit", 3)]
    return {"author": a["author"], "books": [{"title": title, "year": year} for title, year in books]}


def _books_summary(a: Args, r: Result) -> str:
    items = [f"{book['title']} ({book['year']})" for book in r["books"]]
    return f"Books by {r['author']} include {_join(items)}."


def _misc_tools() -> list[Tool]:
    return [
        Tool(
            name="search_products",
            description="Search an online store for products.",
            properties={
                "query": _string("What to search for"),
                "max_price": _float("Maximum price in USD"),
                "in_stock_only": _boolean("Only show products that are in stock"),
            },
            required=("query",),
            pools={"query": tuple(PRODUCTS), "max_price": (50, 100, 150), "in_stock_only": (True,)},
            asks=(
                "Can you find {query}{opt}?",
                "I'm shopping for {query}{opt}. What do you have?",
                "Search for {query}{opt}, please.",
                "Show me some {query}{opt}.",
            ),
            phrases={"max_price": " under ${max_price}", "in_stock_only": " that are in stock"},
            purpose="search for {query}",
            result=_products,
            summary=_products_summary,
            follow=("query", ("What about {query}?", "Now search for {query}.")),
        ),
        Tool(
            name="track_package",
            description="Track a parcel shipment by tracking number.",
            properties={
                "tracking_number": _string("Tracking number"),
                "carrier": _string("Shipping carrier", enum=["UPS", "FedEx", "DHL", "USPS"]),
            },
            required=("tracking_number", "carrier"),
            pools={"tracking_number+carrier": PACKAGES},
            asks=(
                "Where's my {carrier} package {tracking_number}?",
                "Can you track {carrier} shipment {tracking_number}?",
                "Please check the status of tracking number {tracking_number} ({carrier}).",
            ),
            purpose="track {carrier} package {tracking_number}",
            result=_package,
            summary=_package_summary,
            errors=(
                _not_found(
                    "tracking_number",
                    "123",
                    "tracking number not recognized",
                    "Could you double-check the number on your receipt?",
                ),
            ),
        ),
        Tool(
            name="get_public_holidays",
            description="List public holidays for a country in a given year.",
            properties={
                "country_code": _string("Two-letter ISO country code, e.g. US"),
                "year": _integer("Year"),
            },
            required=("country_code", "year"),
            pools={"country_code": tuple(HOLIDAYS), "year": (2026, 2027)},
            asks=(
                "What are the public holidays in {country_code} in {year}?",
                "List the {year} public holidays for country code {country_code}.",
                "Which holidays are there in {country_code} in {year}?",
            ),
            purpose="list public holidays for {country_code} in {year}",
            result=_holidays,
            summary=_holidays_summary,
            follow=("country_code", ("And for {country_code}?", "What about {country_code}?")),
            errors=(
                _not_found(
                    "country_code",
                    "XX",
                    "unknown country code",
                    "Could you use a two-letter code like US or FR?",
                ),
            ),
        ),
        Tool(
            name="search_books",
            description="Find books written by an author.",
            properties={"author": _string("Author name"), "limit": _integer("Maximum number of books")},
            required=("author",),
            pools={"author": tuple(BOOKS), "limit": (2, 3)},
            asks=(
                "What books has {author} written?{opt}",
                "Recommend some books by {author}.{opt}",
                "Find books by {author}, please.{opt}",
            ),
            phrases={"limit": " Just {limit} titles."},
            purpose="find books by {author}",
            result=_books,
            summary=_books_summary,
            follow=("author", ("And {author}?", "What about {author}?")),
            errors=(
                _not_found(
                    "author",
                    "Zed Q. Nobody",
                    "no books found for this author",
                    "Could you check the author's name?",
                ),
            ),
        ),
    ]


TOOLS: tuple[Tool, ...] = (
    *_weather_tools(),
    *_money_tools(),
    *_travel_tools(),
    *_food_tools(),
    *_calendar_tools(),
    *_message_tools(),
    *_math_language_tools(),
    *_media_tools(),
    *_misc_tools(),
)
FOLLOWABLE = tuple(tool for tool in TOOLS if tool.follow)

# Errors any API can return; they teach the model to report outages instead of inventing results.
GENERIC_ERRORS = (
    ErrorCase(
        {},
        {"error": "service temporarily unavailable", "retry_after_seconds": 30},
        "Please try again in about 30 seconds.",
    ),
    ErrorCase(
        {},
        {"error": "rate limit exceeded", "retry_after_seconds": 60},
        "Could you try again in a minute or so?",
    ),
    ErrorCase({}, {"error": "upstream request timed out"}, "This is usually temporary, so it should work shortly."),
)

# ---------------------------------------------------------------------------------------------------------
# Conversation text
# ---------------------------------------------------------------------------------------------------------

USER_PREFIXES = ("", "", "", "", "Hi! ", "Hey, quick question. ", "Hello. ", "Good morning! ")
USER_SUFFIXES = ("", "", "", "", " Thanks!", " Thank you.", " Thanks in advance.")
# Every answer to a user turn thinks by first quoting that turn, then deciding. A 270M model learns to copy
# the request within a few steps, and its choice (which tool, or none) is then made right next to the words it
# depends on. Thoughts that opened with a paraphrase of the request ("The user wants me to get the forecast
# for ...") taught it to paraphrase a tool's description from the system prompt instead, and call that tool.
REQUEST_QUOTE = 'The user asked: "{request}" '
CALL_THINKS = (
    "That needs {name}, so I'll call it with {args}.",
    "That needs {name}: I'll pass {args}.",
    "That needs {name}. I'll call it with {args}.",
)
PARALLEL_THINKS = (
    "That needs {count} calls at once, as the requests don't depend on each other: {names}.",
    "That needs {count} independent calls, so I'll make them in parallel: {names}.",
)
SUMMARY_THINKS = (
    "{name} returned {facts}. I'll summarize that for the user.",
    "I have the result from {name}: {facts}. Now I'll put it in plain words.",
    "The {name} call succeeded with {facts}, so I'll relay the key details.",
)
PARALLEL_SUMMARY_THINKS = (
    "Every call returned a result ({names}), so I'll combine them into one answer.",
    "I have every result I asked for from {names}. I'll summarize each one briefly.",
)
PARALLEL_OPENERS = ("", "", "Here's what I found. ", "Sure! ")
CLOSERS = ("", "", "", "", " Anything else I can help with?", " Let me know if you need anything else.")
PARALLEL_JOINS = {
    2: ("{a} {b}", "{a} Also, {b_lc}", "A couple of things. {a} {b}", "I need two things. {a} And {b_lc}"),
    3: ("{a} {b} {c}", "A few things. {a} {b} Also, {c_lc}", "I have three quick requests. {a} {b} {c}"),
}
NUMBER_WORDS = {2: "two", 3: "three"}
UNIT_LABELS = {
    "g": "g",
    "c": "°C",
    "kph": "km/h",
    "km": "km",
    "usd": "USD",
    "percent": "%",
    "minutes": "minutes",
}
SAME_TOOL_LEADS = ("", "Thanks. ", "Great. ", "OK. ", "Perfect, thanks! ")
NEW_TOOL_LEADS = (
    "Thanks! ",
    "Great, thanks. ",
    "Perfect. ",
    "Got it. ",
    "That helps. ",
    "Nice. One more thing: ",
)
ERROR_THINKS = (
    'The {name} call failed with "{error}", so I\'ll explain the problem and suggest what to do next.',
    '{name} returned an error ("{error}") for {args}. I should tell the user rather than guess a result.',
)
ERROR_ANSWERS = (
    'I tried to {purpose}, but it didn\'t work: the service returned "{error}". {advice}',
    'Sorry, I couldn\'t {purpose}. The request failed with the error "{error}". {advice}',
    'Unfortunately I wasn\'t able to {purpose} (error: "{error}"). {advice}',
)

# Questions that no tool in the pool can or needs to answer: (question, topic, answer).
KNOWLEDGE = (
    (
        "What's the capital of Australia?",
        "geography",
        "The capital of Australia is Canberra. Many people guess Sydney, but Canberra was purpose-built "
        "as a compromise between Sydney and Melbourne.",
    ),
    (
        "Can you explain photosynthesis in a couple of sentences?",
        "biology",
        "Photosynthesis is how plants, algae and some bacteria turn sunlight, water and carbon dioxide "
        "into sugar and oxygen. It takes place mainly in the chloroplasts of leaf cells.",
    ),
    (
        "Who wrote Romeo and Juliet?",
        "literature",
        "Romeo and Juliet was written by William Shakespeare, most likely in the mid-1590s.",
    ),
    (
        "Write me a haiku about autumn.",
        "creative writing",
        "Crimson leaves drifting\nacross the quiet footpath,\nthe year exhales slow.",
    ),
    (
        "What's the difference between weather and climate?",
        "science",
        "Weather is the short-term state of the atmosphere, like today's rain or tomorrow's heat. "
        "Climate is the average pattern of weather in a region over decades.",
    ),
    (
        "How many continents are there?",
        "geography",
        "By the most common convention there are seven: Africa, Antarctica, Asia, Australia (Oceania), "
        "Europe, North America and South America.",
    ),
    (
        "Thanks, that's all I needed!",
        "small talk",
        "You're welcome! Let me know if anything else comes up.",
    ),
    (
        "Any tips for remembering people's names?",
        "everyday advice",
        'Repeat the name back right away ("Nice to meet you, Sam"), link it to a vivid image or to '
        "someone you know with the same name, and use it once more before the conversation ends.",
    ),
    (
        "What does HTTP stand for?",
        "technology",
        "HTTP stands for Hypertext Transfer Protocol, the protocol browsers and web servers use to "
        "exchange pages and data.",
    ),
    (
        "Is a tomato a fruit or a vegetable?",
        "botany",
        "Botanically, a tomato is a fruit because it develops from the flower and contains seeds. In the"
        " kitchen, though, it's usually treated as a vegetable.",
    ),
    (
        "How do I politely decline a meeting invitation?",
        "workplace etiquette",
        "Keep it short and appreciative, for example: \"Thanks for the invite. Unfortunately I can't make"
        ' it at that time. Could you share the notes afterwards?" Offering another time slot also helps.',
    ),
    (
        "Why is the sky blue?",
        "physics",
        "Air molecules scatter sunlight, and short blue wavelengths scatter much more than red ones "
        "(Rayleigh scattering). That scattered blue light reaches your eyes from every direction, so the"
        " sky looks blue.",
    ),
    (
        "Can you suggest a name for my golden retriever puppy?",
        "pet naming",
        "How about Maple, Sunny, Biscuit or Honey? They suit a golden coat and are easy to call out at the park.",
    ),
    (
        "Who painted the Mona Lisa?",
        "art history",
        "The Mona Lisa was painted by Leonardo da Vinci, who started it around 1503. It hangs in the Louvre in Paris.",
    ),
    (
        "What's the plural of cactus?",
        "grammar",
        'Both "cacti" and "cactuses" are correct; "cacti" is more common in formal and scientific writing.',
    ),
    (
        "Explain what an API is to a beginner.",
        "technology",
        "An API (application programming interface) is a set of rules that lets one program ask another "
        "for data or actions. Think of a restaurant menu: it lists what you can order without showing "
        "how the kitchen works.",
    ),
    (
        "What's a good way to start learning to cook?",
        "cooking advice",
        "Start with a few simple, flexible dishes such as an omelette, a stir-fry, a pasta sauce and a "
        "tray of roast vegetables. Learn basic knife skills and repeat each recipe until it feels easy.",
    ),
    (
        "How many legs does a spider have?",
        "biology",
        "Spiders have eight legs, which is one of the features that sets them apart from insects with six.",
    ),
    (
        "What's the longest river in the world?",
        "geography",
        "The Nile is usually cited as the longest river at about 6,650 km, though some measurements put "
        "the Amazon slightly ahead.",
    ),
    (
        "Can you give me a short motivational quote for Monday morning?",
        "motivation",
        '"The secret of getting ahead is getting started." It\'s often attributed to Mark Twain. Have a great week!',
    ),
)
# Requests outside every tool's reach: (question, what the assistant cannot do).
CANT_DO = (
    ("Can you order me a large pepperoni pizza for delivery?", "order food for delivery"),
    ("Please call my mom and tell her I'll be late.", "make phone calls"),
    ("Turn off the lights in my living room.", "control smart-home devices"),
    ("Can you pay my electricity bill for this month?", "make payments"),
    ("Book me a haircut for Saturday morning.", "book salon appointments"),
    ("Post my vacation photos to Instagram, please.", "post to social media"),
    ("Can you print my boarding pass?", "print documents"),
    ("Please unlock my car. I left the keys inside.", "unlock cars remotely"),
)
CAPABILITY_QUESTIONS = (
    "Hi! What can you do?",
    "Hello, what kinds of things can you help me with?",
    "Hey, what are you able to do for me?",
)
# Every answer without a call opens (after the quote) with "No tool", every call with "That needs": the choice
# to call or not is one clear token, where varied openings spread the few no-tool examples thin.
KNOWLEDGE_THINKS = (
    "No tool is needed for this {topic} question: I can answer from my own knowledge, without {names}.",
    "No tool call is needed for this {topic} request, so I'll answer directly instead of using {names}.",
    "No tool fits: my tools ({names}) aren't relevant to {topic}. I'll just answer directly.",
)
CANT_THINKS = (
    "No tool can do this: none of the available tools ({names}) can {task}, so I'll explain and offer what I can do.",
    "No tool of mine ({names}) can {task}. I'll say so politely and mention what I can help with.",
)
CANT_ANSWERS = (
    "I'm sorry, but I can't {task}. None of the tools I have access to support that. I can {capabilities}, "
    "though, if that helps.",
    "Unfortunately I'm not able to {task}. What I can do is {capabilities}. Would any of that be useful?",
)
CAPABILITY_THINK = (
    "No tool is needed to say what I can do. I'll describe the available tools ({names}) without calling any."
)

# ---------------------------------------------------------------------------------------------------------
# Turn builders
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    tool: Tool
    args: Args
    result: Result


@dataclass(frozen=True)
class Draft:
    """A conversation without its system turn; ``render`` gets the offered tools because a no-tool answer
    mentions them, and tool-using drafts ignore them."""

    used: tuple[Tool, ...]
    render: Callable[[list[Tool]], list[Turn]]


def _execute(tool: Tool, args: Args) -> Call:
    # Seeding from the arguments makes every fake API a pure function: the same call gets the same answer.
    rng = random.Random(f"{tool.name}:{json.dumps(args, sort_keys=True)}")
    return Call(tool, args, tool.result(args, rng))


def _human(text: str) -> Turn:
    return {"from": "human", "value": text}


def _gpt(think: str, body: str) -> Turn:
    return {"from": "gpt", "value": f"<think>{think}</think>{body}"}


def _call_block(call: Call) -> str:
    payload = json.dumps({"name": call.tool.name, "arguments": call.args}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"


def _tool_turn(calls: list[Call]) -> Turn:
    blocks = [f"<tool_response>\n{json.dumps(call.result, ensure_ascii=False)}\n</tool_response>" for call in calls]
    return {"from": "tool", "value": "\n".join(blocks)}


def _format_args(args: Args) -> str:
    return ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in args.items())


def _purpose(call: Call) -> str:
    return call.tool.purpose.format(**{name: _show(value) for name, value in call.args.items()})


def _names(tools: list[Tool]) -> str:
    return _join(list(dict.fromkeys(tool.name for tool in tools)))


def _user(rng: random.Random, text: str) -> Turn:
    return _human(f"{rng.choice(USER_PREFIXES)}{text}{rng.choice(USER_SUFFIXES)}")


def _ask(rng: random.Random, call: Call) -> str:
    return call.tool.render(rng.choice(call.tool.asks), call.args, rng)


def _quoted(request: Turn, think: str) -> str:
    return REQUEST_QUOTE.format(request=request["value"]) + think


def _call_turn(rng: random.Random, request: Turn, calls: list[Call]) -> Turn:
    if len(calls) == 1:
        call = calls[0]
        think = rng.choice(CALL_THINKS).format(name=call.tool.name, args=_format_args(call.args))
    else:
        # Names only: the arguments follow in the calls, and listing them twice made parallel answers long.
        names = _names([call.tool for call in calls])
        think = rng.choice(PARALLEL_THINKS).format(count=NUMBER_WORDS[len(calls)], names=names)
    return _gpt(_quoted(request, think), "\n".join(_call_block(call) for call in calls))


def _label(key: str) -> str:
    """'protein_g' -> 'protein (g)': readable field names for the assistant's reasoning."""
    name, _, unit = key.rpartition("_")
    if name and unit in UNIT_LABELS:
        return f"{name.replace('_', ' ')} ({UNIT_LABELS[unit]})"
    return key.replace("_", " ")


def _facts(call: Call) -> str:
    """The first couple of result fields the user did not already supply, for the summary's reasoning."""
    facts = []
    for key, value in call.result.items():
        label = _label(key)
        if call.args.get(key) == value:
            continue
        if isinstance(value, list):
            facts.append(f"{len(value)} {label[:-1] if len(value) == 1 else label}")
        elif not isinstance(value, dict):
            facts.append(f'{label} "{value}"' if isinstance(value, str) else f"{label} {value}")
    return _join(facts[:2]) or "a confirmation"


def _summary_turn(rng: random.Random, calls: list[Call]) -> Turn:
    if len(calls) == 1:
        call = calls[0]
        think = rng.choice(SUMMARY_THINKS).format(name=call.tool.name, facts=_facts(call))
        body = call.tool.summary(call.args, call.result)
    else:
        names = _names([call.tool for call in calls])
        think = rng.choice(PARALLEL_SUMMARY_THINKS).format(count=NUMBER_WORDS[len(calls)], names=names)
        body = rng.choice(PARALLEL_OPENERS) + " ".join(call.tool.summary(call.args, call.result) for call in calls)
    return _gpt(think, body + rng.choice(CLOSERS))


def _exchange(rng: random.Random, user_turn: Turn, calls: list[Call]) -> list[Turn]:
    """User request, assistant call(s), one tool turn holding every response, assistant summary."""
    return [user_turn, _call_turn(rng, user_turn, calls), _tool_turn(calls), _summary_turn(rng, calls)]


def _fixed(turns: list[Turn]) -> Callable[[list[Tool]], list[Turn]]:
    return lambda _offered: turns


# ---------------------------------------------------------------------------------------------------------
# Conversation kinds
# ---------------------------------------------------------------------------------------------------------


def _draft_single(rng: random.Random) -> Draft:
    tool = rng.choice(TOOLS)
    call = _execute(tool, tool.sample_args(rng))
    return Draft((tool,), _fixed(_exchange(rng, _user(rng, _ask(rng, call)), [call])))


def _same_tool_calls(rng: random.Random, count: int) -> tuple[list[Call], str]:
    """One tool asked about several values at once: 'Weather in Paris? What about Tokyo?'."""
    tool = rng.choice(FOLLOWABLE)
    param, templates = tool.follow or ("", ())
    calls = [_execute(tool, tool.sample_args(rng))]
    while len(calls) < count:
        used = tuple(call.args[param] for call in calls)
        calls.append(_execute(tool, tool.resample(rng, calls[0].args, param, avoid=used)))
    # Distinct wordings for each follow-up, so the message does not repeat "And in X? And in Y?".
    wordings = rng.sample(templates, count - 1)
    follow_ups = [tool.render(template, call.args, rng) for template, call in zip(wordings, calls[1:], strict=True)]
    return calls, " ".join([_ask(rng, calls[0]), *follow_ups])


def _mixed_tool_calls(rng: random.Random, count: int) -> tuple[list[Call], str]:
    tools = rng.sample(TOOLS, count)
    calls = [_execute(tool, tool.sample_args(rng)) for tool in tools]
    fields: dict[str, str] = {}
    for letter, call in zip("abc", calls, strict=False):
        fields[letter] = _ask(rng, call)
        fields[f"{letter}_lc"] = _lower_first(fields[letter])
    return calls, rng.choice(PARALLEL_JOINS[count]).format(**fields)


def _draft_parallel(rng: random.Random) -> Draft:
    count = rng.choice((2, 2, 3))
    builder = _same_tool_calls if rng.random() < 0.5 else _mixed_tool_calls
    calls, text = builder(rng, count)
    turns = _exchange(rng, _user(rng, text), calls)
    return Draft(tuple(call.tool for call in calls), _fixed(turns))


def _draft_multi_turn(rng: random.Random) -> Draft:
    tool = rng.choice(TOOLS)
    first = _execute(tool, tool.sample_args(rng))
    if tool.follow and rng.random() < 0.5:
        # Same tool, one parameter changed: "What about Tokyo?" relies on the earlier turn for context.
        param, templates = tool.follow
        second = _execute(tool, tool.resample(rng, first.args, param))
        follow_up = rng.choice(SAME_TOOL_LEADS) + tool.render(rng.choice(templates), second.args, rng)
    else:
        other = rng.choice([candidate for candidate in TOOLS if candidate.name != tool.name])
        second = _execute(other, other.sample_args(rng))
        follow_up = rng.choice(NEW_TOOL_LEADS) + _ask(rng, second)
    turns = [
        *_exchange(rng, _user(rng, _ask(rng, first)), [first]),
        *_exchange(rng, _human(follow_up), [second]),
    ]
    return Draft((first.tool, second.tool), _fixed(turns))


def _draft_error(rng: random.Random) -> Draft:
    tool = rng.choice(TOOLS)
    # Mostly the tool's own failure (bad city, typo in a ticker); sometimes an outage any API can have.
    case = rng.choice(tool.errors if tool.errors and rng.random() < 0.7 else GENERIC_ERRORS)
    call = Call(tool, tool.ordered({**tool.sample_args(rng), **case.overrides}), case.error)
    message = case.error["error"]
    think = rng.choice(ERROR_THINKS).format(name=tool.name, error=message, args=_format_args(call.args))
    answer = rng.choice(ERROR_ANSWERS).format(purpose=_purpose(call), error=message, advice=case.advice)
    request = _user(rng, _ask(rng, call))
    turns = [request, _call_turn(rng, request, [call]), _tool_turn([call]), _gpt(think, answer)]
    return Draft((tool,), _fixed(turns))


def _capabilities(offered: list[Tool], limit: int) -> str:
    return _join([tool.capability() for tool in offered[:limit]])


def _draft_no_tool(rng: random.Random) -> Draft:
    roll = rng.random()
    if roll < 0.6:
        question, topic, answer = rng.choice(KNOWLEDGE)
        think = rng.choice(KNOWLEDGE_THINKS)

        def render(offered: list[Tool]) -> list[Turn]:
            request = _human(question)
            return [request, _gpt(_quoted(request, think.format(topic=topic, names=_names(offered))), answer)]

    elif roll < 0.85:
        question, task = rng.choice(CANT_DO)
        think, answer = rng.choice(CANT_THINKS), rng.choice(CANT_ANSWERS)

        def render(offered: list[Tool]) -> list[Turn]:
            text = answer.format(task=task, capabilities=_capabilities(offered, 2))
            request = _human(question)
            return [request, _gpt(_quoted(request, think.format(task=task, names=_names(offered))), text)]

    else:
        question = rng.choice(CAPABILITY_QUESTIONS)

        def render(offered: list[Tool]) -> list[Turn]:
            text = f"Hi! I can {_capabilities(offered, MAX_TOOLS)}. What would you like to do?"
            request = _human(question)
            return [request, _gpt(_quoted(request, CAPABILITY_THINK.format(names=_names(offered))), text)]

    return Draft((), render)


DRAFTS: dict[str, Callable[[random.Random], Draft]] = {
    "single": _draft_single,
    "parallel": _draft_parallel,
    "multi_turn": _draft_multi_turn,
    "no_tool": _draft_no_tool,
    "error": _draft_error,
}

# ---------------------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------------------


def _system_turn(offered: list[Tool]) -> Turn:
    tools = " ".join(json.dumps(tool.schema(), ensure_ascii=False) for tool in offered)
    return {"from": "system", "value": SYSTEM_PREFIX + tools + SYSTEM_SUFFIX}


def conversation_chars(turns: list[Turn]) -> int:
    return sum(len(turn["value"]) for turn in turns)


def _offer(rng: random.Random, used: tuple[Tool, ...]) -> list[Tool]:
    """The used tools plus random distractors, so the model must pick the right tool out of a list."""
    unique = list({tool.name: tool for tool in used}.values())
    count = rng.randint(max(1, len(unique)), max(len(unique), MAX_TOOLS))  # parallel requests may use more
    names = {tool.name for tool in unique}
    offered = [*unique, *rng.sample([tool for tool in TOOLS if tool.name not in names], count - len(unique))]
    rng.shuffle(offered)
    return offered


def _conversation(rng: random.Random, kind: str) -> list[Turn] | None:
    draft = DRAFTS[kind](rng)
    offered = _offer(rng, draft.used)
    used = {tool.name for tool in draft.used}
    while True:
        turns = [_system_turn(offered), *draft.render(offered)]
        if conversation_chars(turns) <= MAX_CHARS:
            return turns
        # Too long for the demo's sequence length: drop distractor tools before giving up on the draft.
        distractors = [tool for tool in offered if tool.name not in used]
        if not distractors or len(offered) == 1:
            return None
        offered = [tool for tool in offered if tool is not distractors[-1]]


def _kind_schedule(rng: random.Random, size: int) -> list[str]:
    """Exact kind counts (largest remainder rounding of the shares), in shuffled order."""
    exact = {kind: share * size for kind, share in KIND_SHARES.items()}
    counts = {kind: int(value) for kind, value in exact.items()}
    by_remainder = sorted(exact, key=lambda kind: counts[kind] - exact[kind])
    for kind in by_remainder[: size - sum(counts.values())]:
        counts[kind] += 1
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    return kinds


def _new_conversation(rng: random.Random, kind: str, seen: set[str]) -> list[Turn]:
    for _ in range(1000):
        turns = _conversation(rng, kind)
        key = json.dumps(turns, ensure_ascii=False)
        # `seen` spans both splits, so eval never repeats a training conversation.
        if turns is not None and key not in seen:
            seen.add(key)
            return turns
    raise RuntimeError(f"could not draw a new {kind} conversation")


def _split(rng: random.Random, size: int, prefix: str, seen: set[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for kind in _kind_schedule(rng, size):
        rows.append({"id": f"{prefix}-{len(rows):04d}", "conversations": _new_conversation(rng, kind, seen)})
    return rows


def _check(train: list[dict[str, Any]], eval_rows: list[dict[str, Any]]) -> None:
    # Explicit raises rather than `assert`, so the checks also run under `python -O`.
    if len(train) != TRAIN_SIZE or len(eval_rows) != EVAL_SIZE:
        raise AssertionError("unexpected split sizes")
    longest = max(conversation_chars(row["conversations"]) for row in [*train, *eval_rows])
    if longest > MAX_CHARS:
        raise AssertionError(f"a conversation has {longest} characters, more than {MAX_CHARS}")
    train_keys = {json.dumps(row["conversations"], ensure_ascii=False) for row in train}
    if any(json.dumps(row["conversations"], ensure_ascii=False) in train_keys for row in eval_rows):
        raise AssertionError("eval shares a conversation with train")


def generate(seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Build (train, eval) rows. The splits use separate random streams and never share a conversation."""
    seen: set[str] = set()
    train = _split(random.Random(f"fcloop-demo-train-{seed}"), TRAIN_SIZE, "demo-train", seen)
    eval_rows = _split(random.Random(f"fcloop-demo-eval-{seed}"), EVAL_SIZE, "demo-eval", seen)
    _check(train, eval_rows)
    return train, eval_rows


def conversation_kind(row: dict[str, Any]) -> str:
    """Recover a row's kind from its turns (rows carry no kind field, to keep the Hermes layout)."""
    tool_turns = [turn["value"] for turn in row["conversations"] if turn["from"] == "tool"]
    if not tool_turns:
        return "no_tool"
    responses = [re.findall(r"<tool_response>\n(.*?)\n</tool_response>", turn) for turn in tool_turns]
    if any("error" in json.loads(body) for bodies in responses for body in bodies):
        return "error"
    if len(tool_turns) > 1:
        return "multi_turn"
    return "parallel" if len(responses[0]) > 1 else "single"


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic function-calling demo data set.")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    train, eval_rows = generate(options.seed)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", eval_rows)):
        write_jsonl(rows, options.out_dir / name)
        print(f"wrote {len(rows)} conversations to {options.out_dir / name}")


if __name__ == "__main__":
    main()
