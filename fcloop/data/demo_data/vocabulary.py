"""The demo data's vocabulary: parameter kinds and the tool concepts built from them.

A concept is one thing a tool can do (a domain, an action, an object, the parameters it takes and the ways a
user asks for it). `schemas.py` turns each concept into many different tool schemas (names, parameter names,
type spellings, optional parameters), so the model sees hundreds of tools and must read each one; `requests.py`
phrases a request from drawn values. Every word here was written for this demo.
"""

# The tables keep one entry per line or two, so a reader can scan them; some of those lines run past 120.
# ruff: noqa: E501

from __future__ import annotations

from dataclasses import dataclass

# Each city with its state (US cities only) and its country: a schema's description may ask for the bare city,
# "City, ST" or "City, Country", and the call must follow it whatever form the user said the city in.
PLACES = {
    "Lyon": ("", "", "France"), "Osaka": ("", "", "Japan"), "Porto": ("", "", "Portugal"),
    "Krakow": ("", "", "Poland"), "Nairobi": ("", "", "Kenya"), "Valencia": ("", "", "Spain"),
    "Hamburg": ("", "", "Germany"), "Quito": ("", "", "Ecuador"), "Perth": ("", "", "Australia"),
    "Tallinn": ("", "", "Estonia"), "Bergen": ("", "", "Norway"), "Calgary": ("", "", "Canada"),
    "Lima": ("", "", "Peru"), "Seville": ("", "", "Spain"), "Kyoto": ("", "", "Japan"),
    "Dublin": ("", "", "Ireland"), "Accra": ("", "", "Ghana"), "Zurich": ("", "", "Switzerland"),
    "Hanoi": ("", "", "Vietnam"), "Oslo": ("", "", "Norway"), "Bologna": ("", "", "Italy"),
    "Cork": ("", "", "Ireland"), "Graz": ("", "", "Austria"), "Leeds": ("", "", "United Kingdom"),
    "Malmo": ("", "", "Sweden"), "Melbourne": ("", "", "Australia"), "Munich": ("", "", "Germany"),
    "Denver": ("CO", "Colorado", "USA"), "Austin": ("TX", "Texas", "USA"), "Boise": ("ID", "Idaho", "USA"),
    "Tucson": ("AZ", "Arizona", "USA"), "Phoenix": ("AZ", "Arizona", "USA"), "Seattle": ("WA", "Washington", "USA"),
    "Chicago": ("IL", "Illinois", "USA"), "Boston": ("MA", "Massachusetts", "USA"), "Miami": ("FL", "Florida", "USA"),
    "Atlanta": ("GA", "Georgia", "USA"), "Nashville": ("TN", "Tennessee", "USA"), "Portland": ("OR", "Oregon", "USA"),
    "San Diego": ("CA", "California", "USA"), "Pittsburgh": ("PA", "Pennsylvania", "USA"),
    "Minneapolis": ("MN", "Minnesota", "USA"), "Omaha": ("NE", "Nebraska", "USA"), "Raleigh": ("NC", "North Carolina", "USA"),
    "Sacramento": ("CA", "California", "USA"), "Madison": ("WI", "Wisconsin", "USA"),
}  # fmt: skip
CITIES = tuple(PLACES)
US_CITIES = tuple(city for city, (state, _, _) in PLACES.items() if state)
COUNTRIES = (
    "Portugal", "Kenya", "Chile", "Norway", "Vietnam", "Peru", "Ghana", "Austria", "Ireland", "Canada",
    "Estonia", "Morocco", "Iceland", "Uruguay", "Nepal", "Finland", "Croatia", "Jordan",
)  # fmt: skip
PEOPLE = (
    "Maria Lopez", "Jonas Berg", "Aiko Tanaka", "Samuel Okoye", "Lena Novak", "Ravi Menon", "Clara Dubois",
    "Tomas Silva", "Nadia Haddad", "Owen Price", "Priya Shah", "Mateo Rossi", "Hannah Weiss", "Kofi Mensah",
)  # fmt: skip
EMAILS = ("lena@northwind.io", "ops@brightpath.org", "sam.k@example.com", "team@lumen.dev", "ravi@orchard.net")
FOODS = (
    "lentil curry", "mushroom risotto", "banana bread", "fish tacos", "pumpkin soup", "falafel wrap",
    "shrimp paella", "oat pancakes", "beef stew", "caprese salad", "chickpea burger", "apple crumble",
)  # fmt: skip
INGREDIENTS = ("spinach", "garlic", "tofu", "salmon", "quinoa", "basil", "eggs", "rice", "lemon", "chicken")
CUISINES = ("Thai", "Mexican", "Ethiopian", "Greek", "Korean", "Peruvian", "Lebanese", "Indian", "French")
GENRES = ("jazz", "techno", "folk", "blues", "hip hop", "classical", "reggae", "indie rock", "soul")
FILM_GENRES = ("comedy", "thriller", "documentary", "animation", "drama", "science fiction", "western")
ARTISTS = ("The Velvet Pines", "Nora Quill", "Midnight Harbor", "Ada Stone", "Blue Lantern", "Iris Vale")
TITLES = ("The Silent Orchard", "Paper Rivers", "Glass Mountain", "North of Ember", "The Last Ferry")
TEAMS = ("Riverside Falcons", "Harbor City Hawks", "Northfield Rovers", "Lakeside Comets", "Granite Bears")
SPORTS = ("basketball", "tennis", "cricket", "volleyball", "rugby", "hockey", "baseball", "soccer")
TICKERS = ("ACME", "GLBX", "NOVA", "ZENT", "PRSM", "KITE", "ORBT", "VRTX")
CRYPTO = ("bitcoin", "ethereum", "solana", "litecoin", "cardano")
CURRENCY_CODES = ("EUR", "USD", "GBP", "JPY", "CHF", "CAD", "SEK", "INR", "BRL")
LANGUAGES = ("Spanish", "German", "Japanese", "Portuguese", "Italian", "Korean", "Dutch", "Turkish", "Polish")
PHRASES = ("good morning", "where is the station", "thank you very much", "see you tomorrow", "how much is it")
ELEMENTS = ("carbon", "sodium", "iron", "helium", "copper", "oxygen", "zinc", "nitrogen")
COMPOUNDS = ("ethanol", "glucose", "methane", "ammonia", "sodium chloride", "benzene")
SPECIES = ("red fox", "snow leopard", "barn owl", "green turtle", "honey bee", "gray wolf", "koala")
PLANETS = ("Mars", "Jupiter", "Saturn", "Venus", "Neptune", "Mercury")
STARS = ("Vega", "Sirius", "Rigel", "Altair", "Deneb", "Polaris")
GENES = ("BRCA2", "TP53", "APOE", "CFTR", "MTHFR")
DISEASES = ("asthma", "migraine", "diabetes", "anemia", "arthritis")
EXERCISES = ("running", "cycling", "swimming", "rowing", "yoga", "hiking")
SUBJECTS = ("algebra", "biology", "world history", "chemistry", "economics", "geometry")
BOOK_AUTHORS = ("Elena Marsh", "Victor Hale", "Ines Calder", "Robert Finch", "Yuki Sato")
PRODUCTS = ("wireless earbuds", "standing desk", "espresso machine", "hiking boots", "desk lamp", "backpack")
CATEGORIES = ("electronics", "furniture", "kitchen", "outdoor", "books", "toys", "garden")
COLORS = ("red", "navy", "green", "black", "white", "gray")
CAR_MAKES = ("Toyota", "Volvo", "Kia", "Subaru", "Mazda", "Skoda")
PETS = ("dog", "cat", "rabbit", "parrot", "hamster")
PLANTS = ("tomatoes", "basil", "roses", "lavender", "peppers", "strawberries")
EVENTS = ("jazz festival", "book fair", "marathon", "food market", "film festival", "tech conference")
SHAPES = ("rectangle", "triangle", "circle", "square", "hexagon")
PROJECT_NAMES = ("Apollo", "Bluebird", "Cedar", "Delta", "Evergreen", "Falcon")
DEPARTMENTS = ("sales", "engineering", "marketing", "finance", "support")
AIRPORT_CODES = ("OPO", "KIX", "DEN", "NBO", "VLC", "HAM", "UIO", "PER", "DUB", "ZRH")
FILE_NAMES = ("report.pdf", "photos.zip", "budget.xlsx", "notes.txt", "slides.pptx")
HASHTAGS = ("#sustainability", "#remotework", "#marathon", "#foodie", "#openSource")
WORDS = ("serendipity", "ephemeral", "resilient", "ubiquitous", "meticulous", "candid")
# Lists of strings, many of them several words long or capitalized: the answer must close each list with `]`
# and quote every item, however the user said them.
AMENITIES = (
    "swimming pool", "free parking", "Gym", "Free WiFi", "airport shuttle", "Spa", "pet friendly", "breakfast included",
)  # fmt: skip
HOME_FEATURES = ("garage", "Garden", "balcony", "fireplace", "Home Office", "washer and dryer", "elevator")
FACILITIES = (
    "Playground", "Dog Run", "Basketball Court", "walking trail", "Public Restrooms", "Boat Launch", "Picnic Shelter",
)  # fmt: skip
ALLERGENS = ("peanuts", "gluten", "dairy", "shellfish", "soy", "tree nuts", "sesame")
SKILLS = ("Python", "SQL", "project management", "data analysis", "public speaking", "UX Design", "Kubernetes")
DOC_TAGS = ("urgent", "finance", "Q3 Review", "follow-up", "design", "Customer Feedback", "legal")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class Kind:
    """How a parameter's value is drawn, typed and said.

    `form` is one of: text (a string from `pool`), city (a city of `PLACES`, typed as the tool's description
    asks: bare, "City, ST" or "City, Country"), integer, number (from `low`..`high`, `decimals` places),
    money (a number said with a currency sign), percent (said as "4.5%", typed as 4.5 or as the fraction 0.045
    as the schema's description says), date (said as "March 3, 2025", typed "2025-03-03"), enum (one of
    `pool`, said as itself), flag (a boolean said by a phrase), list (2-3 strings from `pool`), numbers (a list
    of 3-5 integers), object (the `parts` parameters nested in one object)."""

    form: str
    pool: tuple[str, ...] = ()
    low: float = 0
    high: float = 0
    decimals: int = 0
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Param:
    """One parameter idea: its possible names, description, value kind and phrasings ({v}: the value as said).
    A flag's `phrases` say it is true, its `off_phrases` that it is false."""

    key: str
    names: tuple[str, ...]
    description: str
    kind: Kind
    phrases: tuple[str, ...]
    off_phrases: tuple[str, ...] = ()
    default: str = ""
    """For an optional parameter: the default its description states ("" for none)."""


def _text(*pool: str) -> Kind:
    return Kind("text", pool=pool)


def _int(low: int, high: int) -> Kind:
    return Kind("integer", low=low, high=high)


def _num(low: float, high: float, decimals: int = 1) -> Kind:
    return Kind("number", low=low, high=high, decimals=decimals)


P = Param
PARAMS: dict[str, Param] = {
    param.key: param
    for param in (
        # places and people
        P("city", ("city", "location", "city_name"), "The city", Kind("city", pool=CITIES),
          ("in {v}", "for {v}", "around {v}")),
        P("origin", ("origin", "from_city", "departure_city"), "The city of departure", Kind("city", pool=CITIES),
          ("from {v}", "leaving {v}")),
        P("destination", ("destination", "to_city", "arrival_city"), "The city of arrival", Kind("city", pool=CITIES),
          ("to {v}", "arriving in {v}")),
        P("country", ("country", "country_name", "nation"), "Name of the country", _text(*COUNTRIES),
          ("in {v}", "for {v}")),
        P("person", ("name", "person_name", "full_name"), "Full name of the person", _text(*PEOPLE),
          ("for {v}", "named {v}")),
        P("recipient", ("recipient", "to", "recipient_email"), "Email address of the recipient", _text(*EMAILS),
          ("to {v}",)),
        P("airport", ("airport_code", "airport", "iata_code"), "Three-letter IATA airport code",
          _text(*AIRPORT_CODES), ("at {v} airport", "at the {v} airport")),
        P("address", ("address", "location", "place"), "Street address and city", Kind("object", parts=("street", "city")),
          ("at {v}",)),
        P("street", ("street", "street_address", "line1"), "Street and house number",
          _text("12 Rua Nova", "48 Elm Street", "7 Harbour Road", "230 Oak Avenue", "5 Mill Lane"), ("{v}",)),
        # time
        P("date", ("date", "day", "on_date"), "Date in YYYY-MM-DD format", Kind("date"), ("on {v}", "for {v}")),
        P("start_date", ("start_date", "from_date", "check_in"), "First day, formatted YYYY-MM-DD", Kind("date"),
          ("from {v}", "starting {v}")),
        P("end_date", ("end_date", "to_date", "check_out"), "Last day, formatted YYYY-MM-DD", Kind("date"),
          ("until {v}", "to {v}")),
        P("year", ("year", "release_year", "season"), "The year, e.g. 2019", _int(1990, 2025), ("in {v}", "from {v}")),
        P("days", ("days", "num_days", "duration_days"), "Number of days", _int(2, 14), ("for {v} days", "over {v} days")),
        P("hours", ("hours", "duration_hours", "duration"), "Duration in hours", _int(2, 12), ("for {v} hours", "for {v}h")),
        P("minutes", ("minutes", "duration_minutes", "duration"), "Duration in minutes", _int(10, 90),
          ("for {v} minutes", "lasting {v} minutes", "for {v}min")),
        P("time", ("time", "start_time", "at_time"), "Time of day in 24-hour HH:MM format",
          _text("09:30", "14:00", "18:45", "07:15", "20:00", "11:00"), ("at {v}",)),
        P("month", ("month", "month_name"), "Month name, e.g. March", _text(*MONTHS), ("in {v}", "for {v}")),
        P("timezone", ("timezone", "tz", "time_zone"), "IANA time zone name",
          _text("Europe/Oslo", "Asia/Tokyo", "America/Denver", "Africa/Nairobi", "Australia/Perth"), ("in {v}",)),
        # money
        P("amount", ("amount", "value", "sum"), "The amount of money", Kind("money", low=20, high=5000),
          ("of {v}", "for {v}")),
        P("principal", ("principal", "loan_amount", "amount"), "The loan amount in dollars",
          Kind("money", low=5000, high=400000), ("for a loan of {v}", "on a {v} loan", "borrowing {v}")),
        P("investment", ("initial_investment", "principal", "deposit"), "Initial amount invested, in dollars",
          Kind("money", low=500, high=50000), ("investing {v}", "for an initial {v}", "starting with {v}")),
        P("annual_rate", ("interest_rate", "annual_rate", "rate"), "Annual interest rate", Kind("percent", low=1, high=9, decimals=1),
          ("at {v} a year", "at an annual rate of {v}", "with {v} interest")),
        P("tax_rate", ("tax_rate", "rate", "vat_rate"), "Tax rate", Kind("percent", low=5, high=25),
          ("with a tax rate of {v}", "at {v} tax")),
        P("discount", ("discount", "discount_rate", "percent_off"), "Discount", Kind("percent", low=5, high=40),
          ("with a {v} discount", "at {v} off")),
        P("loan_years", ("years", "term_years", "loan_term"), "Term in years", _int(2, 30),
          ("over {v} years", "for a term of {v} years")),
        P("currency_from", ("from_currency", "base_currency", "source"), "Three-letter code of the currency to convert from",
          _text(*CURRENCY_CODES), ("from {v}",)),
        P("currency_to", ("to_currency", "target_currency", "target"), "Three-letter code of the currency to convert to",
          _text(*CURRENCY_CODES), ("to {v}", "into {v}")),
        P("ticker", ("ticker", "symbol", "stock_symbol"), "Stock ticker symbol", _text(*TICKERS), ("for {v}", "of {v}")),
        P("tickers", ("tickers", "symbols", "stocks"), "List of stock ticker symbols", Kind("list", pool=TICKERS),
          ("for {v}",)),
        P("coin", ("coin", "cryptocurrency", "asset"), "Name of the cryptocurrency", _text(*CRYPTO), ("for {v}", "of {v}")),
        P("income", ("income", "annual_income", "salary"), "Yearly income in dollars", Kind("money", low=20000, high=250000),
          ("on an income of {v}", "earning {v} a year")),
        P("budget", ("budget", "max_price", "price_limit"), "Maximum price in dollars", Kind("money", low=50, high=3000),
          ("under {v}", "with a budget of {v}")),
        # quantities and measures
        P("count", ("count", "limit", "max_results"), "How many results to return", _int(2, 10),
          ("top {v}", "{v} results")),
        P("quantity", ("quantity", "qty", "units"), "Number of items", _int(1, 12), ("{v} of them", "a quantity of {v}")),
        P("people", ("guests", "party_size", "num_people"), "Number of people", _int(2, 10),
          ("for {v} people", "for a party of {v}")),
        P("rooms", ("rooms", "num_rooms", "room_count"), "Number of rooms", _int(1, 4), ("with {v} rooms", "{v} rooms")),
        P("weight_kg", ("weight", "weight_kg", "mass"), "Weight in kilograms", _num(2, 95),
          ("weighing {v} kg", "of {v} kilograms", "weighing {v}kg")),
        P("height_cm", ("height", "height_cm", "stature"), "Height in centimeters", _int(140, 200),
          ("{v} cm tall", "with a height of {v} cm", "{v}cm tall")),
        P("age", ("age", "age_years", "years_old"), "Age in years", _int(5, 80), ("aged {v}", "who is {v} years old")),
        P("distance_km", ("distance", "distance_km", "km"), "Distance in kilometers", _num(1, 300),
          ("of {v} km", "over {v} kilometers", "of {v}km")),
        P("speed", ("speed", "velocity", "speed_kmh"), "Speed in km/h", _int(10, 140), ("at {v} km/h", "at {v}km/h")),
        P("temperature_c", ("temperature", "temp_c", "celsius"), "Temperature in degrees Celsius", _int(-20, 45),
          ("at {v} degrees Celsius", "of {v}°C", "at {v}C")),
        P("length_m", ("length", "length_m", "side"), "Length in meters", _num(1, 50), ("{v} m long", "of {v} meters", "{v}m long")),
        P("width_m", ("width", "width_m", "breadth"), "Width in meters", _num(1, 30), ("{v} m wide", "a width of {v} meters", "{v}m wide")),
        P("radius", ("radius", "r", "radius_cm"), "Radius in centimeters", _num(1, 40), ("with a radius of {v} cm", "with a radius of {v}cm")),
        P("base", ("base", "base_length", "b"), "Length of the base", _int(2, 60), ("with a base of {v}",)),
        P("height", ("height", "h", "altitude"), "Height of the shape", _int(2, 60), ("and a height of {v}", "a height of {v}")),
        P("sides", ("sides", "num_sides", "n_sides"), "Number of sides", _int(3, 12), ("with {v} sides",)),
        P("number", ("number", "n", "value"), "The integer to use", _int(3, 40), ("of {v}", "for {v}")),
        P("numbers", ("numbers", "values", "data"), "The list of numbers", Kind("numbers"), ("of {v}", "for {v}")),
        P("x", ("x", "first", "a"), "First number", _int(-20, 90), ("{v}",)),
        P("y", ("y", "second", "b"), "Second number", _int(-20, 90), ("and {v}",)),
        P("mass_g", ("mass", "mass_g", "grams"), "Mass in grams", _num(1, 500), ("of {v} g", "for {v} grams", "of {v}g")),
        P("volume_l", ("volume", "volume_l", "liters"), "Volume in liters", _num(0.5, 20), ("in {v} liters", "of {v} L", "of {v}L")),
        P("velocity_ms", ("velocity", "initial_velocity", "v0"), "Velocity in meters per second", _int(2, 80),
          ("at {v} m/s", "moving at {v} meters per second", "at {v}m/s")),
        P("seconds", ("time", "seconds", "duration_s"), "Time in seconds", _int(2, 60), ("for {v} seconds", "after {v} s", "after {v}s")),
        P("power_kw", ("power", "power_kw", "capacity"), "Power in kilowatts", _num(1, 20), ("of {v} kW", "of {v}kW")),
        P("area_m2", ("area", "area_m2", "size"), "Area in square meters", _int(20, 400),
          ("of {v} square meters", "{v} m²", "{v}m²")),
        # text, names and choices
        P("query", ("query", "keywords", "search_term"), "Search words", _text(*FOODS, *PRODUCTS, *SUBJECTS),
          ("for {v}", "about {v}")),
        P("dish", ("dish", "recipe_name", "meal"), "Name of the dish", _text(*FOODS), ("for {v}",)),
        P("ingredients", ("ingredients", "include_ingredients", "items"), "Ingredients to use",
          Kind("list", pool=INGREDIENTS), ("with {v}", "using {v}")),
        P("cuisine", ("cuisine", "cuisine_type", "food_type"), "Type of cuisine", _text(*CUISINES), ("serving {v} food", "{v}")),
        P("genre", ("genre", "style", "music_genre"), "Music genre", _text(*GENRES), ("in {v}", "of {v} music")),
        P("film_genre", ("genre", "category", "film_genre"), "Film genre", _text(*FILM_GENRES), ("in the {v} genre", "{v}")),
        P("artist", ("artist", "artist_name", "performer"), "Name of the artist or band", _text(*ARTISTS), ("by {v}",)),
        P("title", ("title", "name", "work_title"), "The title", _text(*TITLES), ("called {v}", "titled {v}")),
        P("author", ("author", "writer", "author_name"), "Author's full name", _text(*BOOK_AUTHORS), ("by {v}",)),
        P("team", ("team", "team_name", "club"), "Name of the team", _text(*TEAMS), ("for the {v}", "of the {v}")),
        P("sport", ("sport", "sport_type", "discipline"), "Name of the sport", _text(*SPORTS), ("in {v}",)),
        P("language", ("target_language", "language", "to_lang"), "Language to translate into", _text(*LANGUAGES),
          ("into {v}", "to {v}")),
        P("text", ("text", "phrase", "source_text"), "The text", _text(*PHRASES), ("'{v}'", '"{v}"')),
        P("word", ("word", "term", "lemma"), "A single word", _text(*WORDS), ("'{v}'", "the word {v}")),
        P("element", ("element", "element_name", "chemical_element"), "Name of the chemical element", _text(*ELEMENTS),
          ("of {v}", "for {v}")),
        P("compound", ("compound", "substance", "molecule"), "Name of the compound", _text(*COMPOUNDS), ("of {v}", "for {v}")),
        P("species", ("species", "animal", "species_name"), "Common name of the species", _text(*SPECIES), ("of the {v}", "for the {v}")),
        P("planet", ("planet", "body", "planet_name"), "Name of the planet", _text(*PLANETS), ("of {v}", "on {v}")),
        P("star", ("star", "star_name", "object_name"), "Name of the star", _text(*STARS), ("to {v}", "of {v}")),
        P("gene", ("gene", "gene_symbol", "gene_id"), "Gene symbol", _text(*GENES), ("of {v}", "for {v}")),
        P("disease", ("condition", "disease", "illness"), "Name of the condition", _text(*DISEASES), ("for {v}", "about {v}")),
        P("exercise", ("activity", "exercise", "workout_type"), "Type of exercise", _text(*EXERCISES), ("{v}", "from {v}")),
        P("subject", ("subject", "topic", "course"), "Subject name", _text(*SUBJECTS), ("in {v}", "on {v}")),
        P("product", ("product", "item_name", "product_name"), "Name of the product", _text(*PRODUCTS), ("for a {v}", "for {v}")),
        P("category", ("category", "department", "product_category"), "Product category", _text(*CATEGORIES), ("in {v}",)),
        P("color", ("color", "colour", "shade"), "Color name", _text(*COLORS), ("in {v}",)),
        P("car_make", ("make", "brand", "manufacturer"), "Car manufacturer", _text(*CAR_MAKES), ("from {v}", "made by {v}")),
        P("pet", ("pet_type", "animal", "species"), "Kind of pet", _text(*PETS), ("for my {v}", "for a {v}")),
        P("plant", ("plant", "crop", "plant_name"), "Name of the plant", _text(*PLANTS), ("for {v}", "of {v}")),
        P("event", ("event", "event_type", "event_name"), "Kind of event", _text(*EVENTS), ("for the {v}", "a {v}")),
        P("shape", ("shape", "shape_type", "figure"), "Name of the shape", _text(*SHAPES), ("of a {v}", "for a {v}")),
        P("project", ("project", "project_name", "workspace"), "Project name", _text(*PROJECT_NAMES), ("in project {v}", "for the {v} project")),
        P("department", ("department", "team", "dept"), "Department name", _text(*DEPARTMENTS), ("in {v}", "for the {v} team")),
        P("file_name", ("file_name", "filename", "path"), "Name of the file", _text(*FILE_NAMES), ("{v}", "the file {v}")),
        P("hashtag", ("hashtag", "tag", "topic"), "Hashtag including the #", _text(*HASHTAGS), ("for {v}", "tagged {v}")),
        P("message", ("message", "body", "content"), "Text of the message",
          _text("running ten minutes late", "the meeting moved to Friday", "lunch is ready", "call me back"),
          ("saying '{v}'", 'that says "{v}"')),
        P("subject_line", ("subject", "title", "subject_line"), "Subject line",
          _text("Quarterly review", "Trip plans", "Invoice 4471", "Welcome aboard"), ("with the subject '{v}'",)),
        P("cities", ("cities", "locations", "places"), "List of city names", Kind("list", pool=CITIES), ("for {v}", "in {v}")),
        P("languages", ("languages", "target_languages", "langs"), "Languages to include", Kind("list", pool=LANGUAGES),
          ("in {v}",)),
        P("amenities", ("amenities", "required_amenities", "facilities"), "Amenities the place must have",
          Kind("list", pool=AMENITIES), ("with {v}", "that has {v}")),
        P("home_features", ("features", "must_have", "home_features"), "Features the home must have",
          Kind("list", pool=HOME_FEATURES), ("with {v}", "that has {v}")),
        P("park_facilities", ("facilities", "amenities", "features"), "Facilities the park must offer",
          Kind("list", pool=FACILITIES), ("with {v}", "that have {v}")),
        P("allergens", ("allergens", "avoid_ingredients", "exclude"), "Allergens to avoid",
          Kind("list", pool=ALLERGENS), ("without {v}", "free of {v}")),
        P("skills", ("skills", "required_skills", "expertise"), "Skills the person must have",
          Kind("list", pool=SKILLS), ("who know {v}", "with {v} skills")),
        P("doc_tags", ("tags", "labels", "keywords"), "Tags to attach",
          Kind("list", pool=DOC_TAGS), ("tagged {v}", "with the tags {v}")),
        P("attendees", ("attendees", "participants", "invitees"), "Full names of the people to invite",
          Kind("list", pool=PEOPLE), ("with {v}", "inviting {v}")),
        P("recipients", ("recipients", "to", "email_addresses"), "Email addresses of the recipients",
          Kind("list", pool=EMAILS), ("to {v}",)),
        P("products", ("products", "items", "product_names"), "Names of the products", Kind("list", pool=PRODUCTS),
          ("for {v}", "of {v}")),
        P("plants", ("plants", "crops", "plant_names"), "Names of the plants", Kind("list", pool=PLANTS),
          ("for {v}", "with {v}")),
        P("genres", ("genres", "styles", "music_genres"), "Music genres to include", Kind("list", pool=GENRES),
          ("with {v}", "mixing {v}")),
        P("teams", ("teams", "team_names", "clubs"), "Names of the teams", Kind("list", pool=TEAMS),
          ("for the {v}", "of the {v}")),
        # enums
        P("units", ("units", "unit_system", "unit"), "Unit system", Kind("enum", pool=("metric", "imperial")),
          ("in {v} units",)),
        P("sort", ("sort_by", "order_by", "sort"), "Field to sort results by", Kind("enum", pool=("price", "customer rating", "distance")),
          ("sorted by {v}", "ordered by {v}")),
        P("order", ("order", "sort_order", "direction"), "Sort direction", Kind("enum", pool=("ascending", "descending")),
          ("in {v} order",)),
        P("cabin", ("cabin_class", "seat_class", "cabin"), "Cabin class", Kind("enum", pool=("economy", "premium economy", "business class", "first class")),
          ("in {v}", "flying {v}")),
        P("difficulty", ("difficulty", "level", "skill_level"), "Difficulty level", Kind("enum", pool=("easy", "medium", "hard")),
          ("at {v} difficulty", "on {v} level")),
        P("period", ("period", "interval", "frequency"), "Time period", Kind("enum", pool=("daily", "weekly", "monthly", "yearly")),
          ("on a {v} basis", "{v}")),
        P("priority", ("priority", "urgency", "importance"), "Priority", Kind("enum", pool=("low", "normal", "high")),
          ("with {v} priority", "marked {v} priority")),
        P("mode", ("mode", "travel_mode", "transport"), "Way of travelling", Kind("enum", pool=("driving", "walking", "cycling", "public transit")),
          ("by {v}", "when {v}")),
        P("gender", ("sex", "gender", "biological_sex"), "Sex used by the formula", Kind("enum", pool=("female", "male")),
          ("for a {v}",)),
        P("format", ("format", "output_format", "file_type"), "Output format", Kind("enum", pool=("pdf", "csv", "json")),
          ("as {v}", "in {v} format")),
        # flags
        P("include_reviews", ("include_reviews", "with_reviews", "show_reviews"), "Whether to include reviews",
          Kind("flag"), ("with reviews", "including the reviews"), ("without reviews",)),
        P("vegetarian", ("vegetarian", "is_vegetarian", "veggie_only"), "Only vegetarian options", Kind("flag"),
          ("vegetarian only", "that are vegetarian"), ("not just vegetarian",)),
        P("refundable", ("refundable", "free_cancellation", "flexible"), "Only refundable options", Kind("flag"),
          ("that can be refunded", "refundable"), ("non-refundable is fine",)),
        P("direct", ("direct_only", "nonstop", "non_stop"), "Only direct routes", Kind("flag"),
          ("direct only", "with no stops"), ("stops are fine",)),
        P("include_tax", ("include_tax", "with_tax", "tax_included"), "Whether tax is included", Kind("flag"),
          ("including tax", "with tax"), ("before tax", "excluding tax")),
        P("notify", ("notify", "send_notification", "alert"), "Whether to notify people", Kind("flag"),
          ("and notify everyone", "with a notification"), ("without notifying anyone",)),
        P("detailed", ("detailed", "verbose", "include_details"), "Whether to return full details", Kind("flag"),
          ("with full details", "in detail"), ("just the summary",)),
        P("public", ("is_public", "public", "visible"), "Whether it is public", Kind("flag"),
          ("publicly", "as public"), ("privately", "as private")),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Concept:
    """One thing a tool does. `params` lists parameter keys; a trailing `?` marks one that may be optional.
    `asks` are ways to request it ("what is ..." ones become questions); `noun` is the object, named in
    thoughts and in answers that say no tool fits."""

    domain: str
    verb: str
    obj: str
    description: str
    params: tuple[str, ...]
    asks: tuple[str, ...]
    noun: str


def _concept(domain: str, verb: str, obj: str, description: str, params: str, asks: str, noun: str) -> Concept:
    return Concept(domain, verb, obj, description, tuple(params.split()), tuple(asks.split(" | ")), noun)


C = _concept
CONCEPTS: tuple[Concept, ...] = (
    C("finance", "calculate", "loan_payment", "Calculate the monthly payment of a fixed-rate loan.",
      "principal annual_rate loan_years", "calculate the monthly payment | work out the monthly repayment | what is the monthly payment", "a loan payment"),
    C("finance", "calculate", "compound_growth", "Compute the future value of an investment with compound interest.",
      "investment annual_rate loan_years period?", "calculate the compound interest | what will my savings grow to | project the investment value", "compound interest"),
    C("finance", "estimate", "income_tax", "Estimate the income tax owed for one year.",
      "income country tax_rate?", "estimate the income tax | how much tax do I owe | work out my income tax", "income tax"),
    C("finance", "convert", "money_amount", "Convert an amount of money from one currency to another.",
      "amount currency_from currency_to date?", "convert | change | how much is", "a currency conversion"),
    C("finance", "get", "fx_rate", "Get the exchange rate between two currencies.",
      "currency_from currency_to date?", "get the exchange rate | what is the exchange rate | look up the rate", "an exchange rate"),
    C("finance", "split", "bill", "Split a bill among several people, with an optional tip.",
      "amount people discount?", "split a bill | divide the check | how much does each person pay for a bill", "a bill split"),
    C("stocks", "get", "share_price", "Get the latest trading price of a stock.",
      "ticker date?", "get the stock price | what is the share price | look up the price", "a stock price"),
    C("stocks", "compare", "stock_performance", "Compare the performance of several stocks over a period.",
      "tickers days period?", "compare the performance | how did these stocks do | chart the returns", "stock performance"),
    C("stocks", "forecast", "share_price", "Forecast a stock's closing price for the coming days.",
      "ticker days", "forecast the price | predict the closing price | what will the price be", "a stock forecast"),
    C("crypto", "get", "coin_price", "Get the current price of a cryptocurrency in a currency.",
      "coin currency_to?", "get the price | what is the current price | check the price", "a cryptocurrency price"),
    C("banking", "open", "savings_account", "Open a savings account for a customer.",
      "person amount currency_to?", "open a savings account | set up a savings account", "a savings account"),
    C("insurance", "quote", "car_insurance", "Quote a yearly car insurance premium.",
      "car_make year age city", "quote car insurance | how much is car insurance | get an insurance quote", "a car insurance quote"),
    C("shopping", "search", "catalog_items", "Search the store's catalog for products.",
      "query category? budget? sort? count?", "search for products | find products | look for items", "a product search"),
    C("shopping", "calculate", "order_total", "Calculate the total of an order with tax and discount.",
      "amount tax_rate discount? quantity?", "calculate the order total | what is the total price | work out the checkout total", "an order total"),
    C("shopping", "track", "package", "Track a shipment by its tracking number.",
      "tracking_number carrier?", "track the package | where is my parcel | check the delivery status", "a package"),
    C("shopping", "add", "cart_item", "Add a product to the shopping cart.",
      "product quantity color?", "add to my cart | put in the basket", "a cart item"),
    C("weather", "get", "forecast", "Get the weather forecast for a city.",
      "city days units?", "get the weather forecast | what is the weather going to be | show the forecast", "a weather forecast"),
    C("weather", "get", "air_pollution_level", "Get the air quality index for a city.",
      "city date?", "check the air quality | what is the air quality index | get the pollution level", "air quality"),
    C("weather", "get", "historical_temperature", "Get the average temperature of a city in a past month.",
      "city month year", "get the average temperature | what was the mean temperature | look up the historical temperature", "a historical temperature"),
    C("travel", "search", "flight_options", "Search for flights between two cities.",
      "origin destination date cabin? direct?", "search for flights | find flights | look up flights", "a flight search"),
    C("travel", "book", "hotel_room", "Book a hotel room in a city.",
      "city start_date end_date rooms? refundable?", "book a hotel | reserve a hotel room | find me a room", "a hotel booking"),
    C("travel", "rent", "car", "Rent a car for some days.",
      "city start_date days car_make?", "rent a car | book a rental car | hire a car", "a car rental"),
    C("travel", "get", "visa_requirements", "Get the visa requirements for a trip to a country.",
      "country days?", "get the visa requirements | do I need a visa | check the entry rules", "visa requirements"),
    C("travel", "get", "airport_delays", "Get the current delays at an airport.",
      "airport", "check the delays | are there delays | get the departure delays", "airport delays"),
    C("maps", "get", "route_directions", "Get directions between two places.",
      "origin destination mode?", "get directions | how do I get | find the route", "directions"),
    C("maps", "find", "nearby_places", "Find places of a kind near a city.",
      "place_type city count? sort?", "find nearby | search for places | look for spots", "nearby places"),
    C("maps", "estimate", "travel_time", "Estimate the travel time for a distance at a speed.",
      "distance_km speed", "estimate the travel time | how long will it take to travel | work out the journey time", "a travel time"),
    C("transit", "get", "train_schedule", "Get the train departures between two cities on a date.",
      "origin destination date time?", "get the train schedule | when are the trains | show the train times", "a train schedule"),
    C("restaurants", "find", "dining_spot", "Find restaurants in a city by cuisine.",
      "city cuisine vegetarian? budget? count?", "find a restaurant | search for restaurants | recommend a place to eat", "a restaurant search"),
    C("restaurants", "book", "table", "Reserve a table at a restaurant.",
      "restaurant_name date time people", "book a table | reserve a table | make a reservation", "a table reservation"),
    C("recipes", "search", "recipe_ideas", "Search recipes by dish or ingredients.",
      "dish ingredients? vegetarian? difficulty?", "find a recipe | search for recipes | look up how to cook", "a recipe search"),
    C("recipes", "get", "nutrition", "Get the nutrition facts of a dish.",
      "dish quantity?", "get the nutrition facts | how many calories are in | check the nutrients", "nutrition facts"),
    C("recipes", "scale", "recipe", "Scale a recipe to a number of servings.",
      "dish people", "scale the recipe | adjust the recipe | resize the recipe", "a scaled recipe"),
    C("music", "search", "songs", "Search songs by artist or genre.",
      "artist genre? year? count?", "find songs | search for tracks | list songs", "a song search"),
    C("music", "create", "playlist", "Create a playlist of a genre.",
      "title genre count? public?", "create a playlist | make a playlist | build a playlist", "a playlist"),
    C("music", "find", "concerts", "Find upcoming concerts in a city.",
      "city genre? start_date? budget?", "find concerts | what concerts are on | look for live music", "concerts"),
    C("movies", "find", "showtimes", "Find cinema showtimes for a film in a city.",
      "title city date?", "find showtimes | when is playing | check the screenings", "showtimes"),
    C("movies", "recommend", "movies", "Recommend films of a genre.",
      "film_genre year? count?", "recommend movies | suggest films | what should I watch", "movie recommendations"),
    C("books", "search", "books", "Search the library catalog for books.",
      "author subject? year? count?", "find books | search for books | look up books", "a book search"),
    C("books", "reserve", "book", "Reserve a library book for a patron.",
      "title person days?", "reserve the book | put a hold on | borrow the book", "a book reservation"),
    C("sports", "get", "team_schedule", "Get the upcoming games of a team.",
      "team count? sport?", "get the schedule | when do they play next | show the next games", "a team schedule"),
    C("sports", "get", "league_standings", "Get the league table of a sport in a season.",
      "sport year country?", "get the standings | show the league table | who is top of the league", "league standings"),
    C("sports", "get", "player_stats", "Get a player's statistics for a season.",
      "person year sport?", "get the player stats | what were the statistics | show the numbers", "player statistics"),
    C("fitness", "calculate", "calories_burned", "Estimate the calories burned by an activity.",
      "exercise minutes weight_kg", "calculate the calories burned | how many calories do I burn | estimate the energy used", "calories burned"),
    C("health", "calculate", "body_mass_index", "Calculate the body mass index.",
      "weight_kg height_cm units?", "calculate the BMI | what is the body mass index | work out the BMI", "a BMI"),
    C("health", "calculate", "daily_calories", "Estimate the daily calorie needs of a person.",
      "age weight_kg height_cm gender", "calculate the daily calorie needs | how many calories should I eat | estimate the daily energy needs", "daily calories"),
    C("health", "find", "physician", "Find doctors for a condition in a city.",
      "disease city count?", "find a doctor | search for specialists | look for a clinic", "a doctor search"),
    C("health", "get", "symptoms", "Get the common symptoms of a condition.",
      "disease detailed?", "list the symptoms | what are the symptoms | describe the signs", "symptoms"),
    C("math", "calculate", "factorial_sum", "Sum the factorials of the integers up to n.",
      "number", "calculate the sum of factorials | add up the factorials | what is the factorial sum", "a factorial sum"),
    C("math", "compute", "greatest_common_divisor", "Compute the greatest common divisor of two integers.",
      "x y", "compute the greatest common divisor | find the GCD | what is the greatest common divisor", "a greatest common divisor"),
    C("math", "compute", "least_common_multiple", "Compute the least common multiple of two integers.",
      "x y", "compute the least common multiple | find the LCM | what is the least common multiple", "a least common multiple"),
    C("math", "check", "prime", "Check whether an integer is prime.",
      "number", "check if this is prime | is this number prime | test the primality", "a primality check"),
    C("math", "list", "divisors", "List the divisors of an integer.",
      "number", "list the divisors | what are the divisors | find all divisors", "a list of divisors"),
    C("math", "compute", "power", "Raise a number to an integer power.",
      "x y", "compute the power | raise a number | what is the power", "a power"),
    C("statistics", "calculate", "arithmetic_mean", "Calculate the arithmetic mean of numbers.",
      "numbers", "calculate the mean | what is the average | find the mean", "a mean"),
    C("statistics", "calculate", "spread_std_dev", "Calculate the standard deviation of numbers.",
      "numbers", "calculate the standard deviation | what is the standard deviation | measure the spread", "a standard deviation"),
    C("statistics", "calculate", "median", "Find the median of numbers.",
      "numbers", "find the median | what is the median | calculate the median", "a median"),
    C("geometry", "calculate", "shape_area", "Calculate the area of a shape from its base and height.",
      "shape base height", "calculate the area | what is the area | find the surface area", "an area"),
    C("geometry", "calculate", "circle_circumference", "Calculate the circumference of a circle.",
      "radius", "calculate the circumference | what is the circumference | find the perimeter of the circle", "a circumference"),
    C("geometry", "calculate", "polygon_angle", "Calculate the interior angle of a regular polygon.",
      "sides", "calculate the interior angle | what is each interior angle | find the angle", "a polygon angle"),
    C("geometry", "calculate", "room_area", "Calculate the floor area of a room.",
      "length_m width_m", "calculate the floor area | how big is the floor | what is the area of the room", "a floor area"),
    C("physics", "calculate", "kinetic_energy", "Calculate the kinetic energy of a moving mass.",
      "mass_g velocity_ms", "calculate the kinetic energy | what is the kinetic energy | find the energy", "kinetic energy"),
    C("physics", "calculate", "distance_travelled", "Calculate the distance travelled under constant acceleration.",
      "velocity_ms seconds acceleration?", "calculate the displacement | how far does it travel | find the distance covered", "a displacement"),
    C("physics", "calculate", "energy_use", "Calculate the energy used by a device.",
      "power_kw hours", "calculate the energy use | how much energy does it use | work out the consumption", "energy use"),
    C("chemistry", "get", "element_info", "Get the properties of a chemical element.",
      "element detailed?", "get the properties | tell me about | look up the element", "element properties"),
    C("chemistry", "calculate", "molar_mass", "Calculate the molar mass of a compound.",
      "compound", "calculate the molar mass | what is the molar mass | find the molecular weight", "a molar mass"),
    C("chemistry", "calculate", "moles", "Convert a mass of a compound to moles.",
      "compound mass_g", "calculate the moles | how many moles are in | convert the mass to moles", "moles"),
    C("chemistry", "calculate", "boiling_temperature", "Estimate the boiling point of a compound at a pressure.",
      "compound pressure_kpa", "estimate the boiling point | at what temperature does it boil | find the boiling point", "a boiling point"),
    C("biology", "get", "species_info", "Get facts about an animal species.",
      "species detailed?", "get facts | tell me about | look up the species", "species facts"),
    C("biology", "get", "population_trend", "Get the population trend of a species in a country.",
      "species country year?", "get the population trend | how is the population doing | track the population", "a population trend"),
    C("genetics", "get", "gene_variants", "List known variants of a gene.",
      "gene count? detailed?", "list the variants | what variants are known | find the mutations", "gene variants"),
    C("astronomy", "calculate", "star_distance", "Get the distance from Earth to a star in light years.",
      "star", "get the distance | how far away is | find the distance", "a star distance"),
    C("astronomy", "get", "planet_visibility", "Tell when a planet is visible from a city on a date.",
      "planet city date", "check when it is visible | when can I see | find the visibility", "planet visibility"),
    C("education", "find", "courses", "Find online courses on a subject.",
      "subject difficulty? budget? count?", "find courses | search for classes | look for a course", "a course search"),
    C("education", "calculate", "grade_average", "Calculate a student's grade average.",
      "numbers", "calculate the grade average | what is my average grade | average the scores", "a grade average"),
    C("language", "translate", "passage", "Translate text into another language.",
      "text language", "translate | say in another language | how do you say", "a translation"),
    C("language", "get", "definition", "Get the dictionary definition of a word.",
      "word language?", "define | what does this word mean | look up the meaning", "a definition"),
    C("language", "find", "synonyms", "Find synonyms of a word.",
      "word count?", "find synonyms | give me other words | list synonyms", "synonyms"),
    C("calendar", "create", "calendar_entry", "Create a calendar event.",
      "title_event date time minutes? notify?", "create an event | schedule | put on my calendar", "a calendar event"),
    C("calendar", "list", "calendar_entries", "List calendar events between two dates.",
      "start_date end_date count?", "list my events | what is on my calendar | show my schedule", "a list of events"),
    C("email", "send", "email_message", "Send an email.",
      "recipient subject_line message", "send an email | email | write an email", "an email"),
    C("messaging", "send", "text_message", "Send a text message to a contact.",
      "person message priority?", "send a text | message | text", "a text message"),
    C("social", "get", "trending_posts", "Get the trending posts for a hashtag.",
      "hashtag count? sort?", "get the trending posts | what is trending | show popular posts", "trending posts"),
    C("social", "schedule", "post", "Schedule a social media post.",
      "message date time public?", "schedule a post | post later | queue a post", "a scheduled post"),
    C("news", "get", "headlines", "Get the latest news headlines on a topic.",
      "topic country? count?", "get the headlines | what is the latest news | show the news", "news headlines"),
    C("real_estate", "estimate", "home_value", "Estimate the market value of a home.",
      "address area_m2 rooms?", "estimate the home value | what is the house worth | appraise the home", "a home value"),
    C("real_estate", "search", "rentals", "Search apartments for rent in a city.",
      "city rooms budget? sort?", "search rentals | find an apartment | look for a place to rent", "a rental search"),
    C("energy", "estimate", "solar_output", "Estimate the yearly output of a solar installation.",
      "power_kw city", "estimate the solar output | how much power will panels make | predict the solar yield", "a solar estimate"),
    C("energy", "calculate", "electricity_cost", "Calculate the cost of electricity use.",
      "power_kw hours price_kwh", "calculate the electricity cost | how much does it cost to run | work out the power bill", "an electricity cost"),
    C("agriculture", "get", "planting_calendar", "Tell when to plant a crop in a country.",
      "plant country", "get the planting dates | when should I plant | find the sowing season", "a planting calendar"),
    C("gardening", "calculate", "garden_water", "Calculate the weekly water needs of a garden bed.",
      "plant area_m2 temperature_c?", "calculate the water needs | how much water does it need | work out the irrigation", "water needs"),
    C("pets", "find", "vet", "Find a veterinarian near a city.",
      "pet city count?", "find a vet | search for a veterinarian | look for an animal clinic", "a vet search"),
    C("pets", "calculate", "pet_food", "Calculate a pet's daily food portion.",
      "pet weight_kg age?", "calculate the food portion | how much should I feed | work out the daily food", "a food portion"),
    C("vehicles", "calculate", "fuel_cost", "Calculate the fuel cost of a trip.",
      "distance_km fuel_economy price_liter", "calculate the fuel cost | how much will the fuel cost | estimate the gas money", "a fuel cost"),
    C("vehicles", "get", "car_specs", "Get the specifications of a car model.",
      "car_make model year?", "get the specs | what are the specifications | look up the car details", "car specifications"),
    C("events", "find", "tickets", "Find tickets for an event in a city.",
      "event city date? budget? count?", "find tickets | look for tickets | get tickets", "a ticket search"),
    C("hr", "get", "employee", "Look up an employee in the company directory.",
      "person department?", "look up the employee | find the colleague | get the staff record", "an employee record"),
    C("hr", "request", "leave", "Request paid leave for an employee.",
      "person start_date end_date", "request leave | book time off | ask for vacation", "a leave request"),
    C("projects", "create", "task", "Create a task in a project.",
      "title_task project date? priority?", "create a task | add a task | make a to-do", "a task"),
    C("files", "convert", "document", "Convert a document to another format.",
      "file_name format", "convert the document | change the file | export the document", "a document conversion"),
    C("files", "share", "file", "Share a file with a recipient.",
      "file_name recipient notify?", "share the file | send the file | give access to", "a shared file"),
    C("time", "get", "clock_time", "Get the current local time in a time zone.",
      "timezone", "get the local time | what time is it | tell me the time", "a local time"),
    C("time", "convert", "time_zone", "Convert a time from one time zone to another.",
      "time timezone target_timezone", "convert the time | what time will it be | change the time zone", "a time conversion"),
    C("history", "get", "historical_events", "List historical events in a country in a year.",
      "country year count?", "list the historical events | what happened | find historical events", "historical events"),
    C("games", "get", "gamer_record", "Get a player's statistics in an online game.",
      "username game_title?", "get the game stats | how is the player doing | show the player's record", "game statistics"),
    C("games", "find", "board_games", "Recommend board games for a number of players.",
      "people difficulty? minutes?", "recommend board games | find a board game | suggest a game", "board games"),
    C("units", "convert", "celsius_reading", "Convert a temperature from Celsius to Fahrenheit.",
      "temperature_c", "convert to Fahrenheit | what is in Fahrenheit | change to Fahrenheit", "a temperature conversion"),
    C("units", "convert", "distance", "Convert a distance from kilometers to miles.",
      "distance_km", "convert to miles | how many miles is | change to miles", "a distance conversion"),
    C("inventory", "check", "stock_level", "Check the stock level of a product in a warehouse.",
      "product city?", "check the stock level | how many are in stock | look up the inventory", "a stock level"),
    C("shipping", "calculate", "shipping_cost", "Calculate the cost of shipping a parcel.",
      "weight_kg origin destination", "calculate the shipping cost | how much to ship | quote the shipping", "a shipping cost"),
    # Tools taking lists of strings, the list most often last: each item quoted, the list closed before the call.
    C("travel", "search", "hotels", "Search hotels in a city that have all the amenities asked for.",
      "city budget? amenities", "search for hotels | find a hotel | look for places to stay", "a hotel search"),
    C("real_estate", "search", "homes_for_sale", "Search homes for sale in a city with the features asked for.",
      "city budget? rooms? home_features", "search homes for sale | find a house to buy | look for homes on the market", "a home search"),
    C("parks", "find", "parks", "Find public parks in a city that offer the facilities asked for.",
      "city count? park_facilities", "find parks | search for a park | look for parks", "a park search"),
    C("food", "find", "allergy_safe_restaurants", "Find restaurants in a city that can avoid the allergens given.",
      "city cuisine? allergens", "find restaurants | search for places to eat | look for restaurants", "a restaurant search"),
    C("hr", "search", "candidates", "Search the talent pool for candidates with all the skills given.",
      "department? count? skills", "search for candidates | find people to hire | look for applicants", "a candidate search"),
    C("files", "tag", "document", "Attach tags to a document.",
      "file_name doc_tags", "tag the document | label the file | add tags to", "document tags"),
    C("calendar", "schedule", "meeting", "Schedule a meeting and invite people to it.",
      "title_event date time? attendees", "schedule a meeting | set up a meeting | book a meeting", "a meeting"),
    C("email", "send", "group_email", "Send one email to several recipients.",
      "subject_line message recipients", "send an email | email | write one email", "a group email"),
    C("shopping", "compare", "product_prices", "Compare the current prices of several products.",
      "budget? products", "compare the prices | which is cheapest | price-check", "a price comparison"),
    C("gardening", "check", "companion_plants", "Check whether plants grow well together in one bed.",
      "area_m2? plants", "check if these plants grow well together | can I plant together | check the companion planting", "a companion planting check"),
    C("music", "create", "playlist", "Create a playlist that mixes the genres given.",
      "title minutes? genres", "create a playlist | make a playlist | put together a playlist", "a playlist"),
    C("sports", "get", "fixtures", "Get the upcoming matches of several teams.",
      "days? teams", "get the upcoming matches | when do they play next | show the fixtures", "match fixtures"),
    C("weather", "compare", "city_weather", "Compare today's weather across several cities.",
      "units? cities", "compare the weather | where is it warmest | check the weather", "a weather comparison"),
    C("language", "translate", "phrase_many", "Translate a text into several languages at once.",
      "text languages", "translate | say in several languages | how do you say", "translations"),
)  # fmt: skip

# Parameters only one or two concepts use.
PARAMS.update(
    {
        param.key: param
        for param in (
            P("tracking_number", ("tracking_number", "tracking_id", "shipment_id"), "The carrier's tracking number",
              _text("1Z999AA10123456784", "JD0142345678", "LX551230987US", "RR447812399CN"), ("with tracking number {v}", "{v}")),
            P("carrier", ("carrier", "courier", "shipper"), "Shipping company", Kind("enum", pool=("ups", "dhl", "fedex", "usps")),
              ("via {v}", "with {v}")),
            P("place_type", ("place_type", "category", "kind"), "Kind of place",
              _text("pharmacy", "coffee shop", "museum", "park", "bakery", "gas station"), ("{v}", "a {v}")),
            P("restaurant_name", ("restaurant", "restaurant_name", "venue"), "Name of the restaurant",
              _text("Casa Verde", "The Copper Pot", "Sakura House", "Blue Olive", "Le Petit Four"), ("at {v}",)),
            P("acceleration", ("acceleration", "accel", "a"), "Acceleration in meters per second squared", _num(0.5, 9.8),
              ("accelerating at {v} m/s²",)),
            P("pressure_kpa", ("pressure", "pressure_kpa", "ambient_pressure"), "Pressure in kilopascals", _int(50, 200),
              ("at {v} kPa",)),
            P("topic", ("topic", "category", "subject"), "News topic",
              _text("science", "elections", "climate", "technology", "football", "markets"), ("about {v}", "on {v}")),
            P("price_kwh", ("price_per_kwh", "rate", "tariff"), "Electricity price per kilowatt-hour in dollars",
              Kind("money", low=0.1, high=0.6, decimals=2), ("at {v} per kWh",)),
            P("fuel_economy", ("fuel_economy", "consumption", "liters_per_100km"), "Fuel use in liters per 100 km",
              _num(4, 12), ("using {v} liters per 100 km",)),
            P("price_liter", ("fuel_price", "price_per_liter", "price"), "Fuel price per liter in dollars",
              Kind("money", low=1, high=2.5, decimals=2), ("with fuel at {v} a liter",)),
            P("model", ("model", "model_name", "car_model"), "Model name",
              _text("Corolla", "XC60", "Sportage", "Outback", "CX-5", "Octavia"), ("{v}",)),
            P("title_event", ("title", "event_title", "summary"), "Title of the event",
              _text("dentist", "team standup", "yoga class", "parents' evening", "budget review"), ("for '{v}'", "called {v}")),
            P("title_task", ("title", "task_name", "summary"), "Title of the task",
              _text("update the roadmap", "fix the login bug", "draft the newsletter", "order supplies"), ("to {v}", "'{v}'")),
            P("target_timezone", ("target_timezone", "to_tz", "destination_timezone"), "IANA time zone to convert to",
              _text("Europe/Lisbon", "Asia/Seoul", "America/Chicago", "Pacific/Auckland"), ("to {v}", "into {v}")),
            P("username", ("username", "player", "gamer_tag"), "The player's user name",
              _text("pixelfox", "nightowl77", "quietstorm", "lumen_ace"), ("for {v}", "of {v}")),
            P("game_title", ("game", "game_title", "title"), "Name of the game",
              _text("Star Harbor", "Crystal Depths", "Iron Valley"), ("in {v}",)),
        )
    }
)  # fmt: skip

# Kinds of questions that need no tool at all: answers the model knows or can write itself.
CHAT = (
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Write a haiku about autumn rain.", "Soft rain on red leaves,\nthe gutters hum a low tune,\nsummer slips away."),
    ("What does HTTP stand for?", "HTTP stands for Hypertext Transfer Protocol."),
    ("Thanks, that's all I needed!", "You're welcome! Let me know if anything else comes up."),
    ("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by Jane Austen."),
    ("Give me a synonym for happy.", "A synonym for happy is joyful."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 °C (212 °F) at sea level."),
    ("Hi there!", "Hello! How can I help you today?"),
    ("Can you explain what a noun is?", "A noun is a word that names a person, place, thing or idea, like 'river'."),
    ("What's 12 times 12?", "12 times 12 is 144."),
    ("Which planet is known as the red planet?", "Mars is known as the red planet."),
    ("Tell me a fun fact about octopuses.", "Octopuses have three hearts and blue blood."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What language is spoken in Brazil?", "Portuguese is the official language of Brazil."),
    ("Suggest a name for a golden retriever puppy.", "How about Maple? It suits a golden coat."),
)

# What users say around a request that no tool needs: context, asides, politeness. Some hold numbers and
# places that are not arguments, so the call must come from the request, not from every value in the message.
CHATTER_BEFORE = (
    "Hi!", "Hey there.", "Good morning!", "Quick question.", "I'm sorting out a few things today.",
    "My sister and I are planning something for next month.", "This is for a work report due on Friday.",
    "I've been meaning to ask this for two weeks.", "I'm on my phone, so sorry for typos.",
    "Okay, so here is what I need.", "Hope you can help me out.", "I'm new to all of this.",
    "My manager asked me this morning.", "I have 3 kids and zero free time, so:",
    "We just got back from a long weekend.", "Hello again!", "So, random thing.",
    "I tried doing this myself but gave up.", "For a school project:", "Before my meeting at 4,",
)  # fmt: skip
CHATTER_AFTER = (
    "Thanks!", "Thanks a lot.", "No rush.", "Appreciate it!", "That would help a ton.",
    "Cheers.", "It's kind of urgent.", "Let me know what you find.", "Much appreciated, really.",
    "My friend recommended asking you.", "I need it for a spreadsheet later.", "Thank you so much!",
)  # fmt: skip
