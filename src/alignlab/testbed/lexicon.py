"""Fixed word lists of the testbed world and the gold sentiment reward built on them."""

from __future__ import annotations

import math
import re

POSITIVE: dict[str, float] = {
    "great": 1.0, "wonderful": 1.0, "excellent": 1.0, "perfect": 1.0, "amazing": 1.0,
    "delightful": 0.9, "lovely": 0.8, "friendly": 0.7, "happy": 0.7, "good": 0.6,
    "nice": 0.6, "pleasant": 0.6, "kind": 0.6, "clean": 0.5, "fresh": 0.5, "cozy": 0.5,
}
NEGATIVE: dict[str, float] = {
    "terrible": -1.0, "awful": -1.0, "horrible": -1.0, "disappointing": -0.8, "rude": -0.7,
    "bad": -0.6, "poor": -0.6, "dirty": -0.6, "boring": -0.6, "broken": -0.6, "sad": -0.5,
    "bland": -0.5, "stale": -0.5, "noisy": -0.4, "messy": -0.4, "dull": -0.4,
}
NEUTRAL_ADJ = ["ok", "fine", "plain", "average", "usual", "simple", "normal", "standard"]
SENTIMENT: dict[str, float] = {**POSITIVE, **NEGATIVE}

SUBJECTS = [
    "food", "movie", "hotel", "service", "book", "music", "room", "staff",
    "coffee", "show", "trip", "game", "garden", "bread", "concert", "museum",
]
NOUNS = [
    "river", "road", "mill", "tower", "bridge", "field", "train", "boat", "window",
    "door", "hill", "lamp", "table", "wall", "village", "market", "forest", "valley",
]
VERBS = [
    "runs past", "stands near", "leads to", "lies behind", "turns toward", "faces",
    "rises above", "crosses", "sits beside", "hides behind",
]
ANTONYMS: list[tuple[str, str]] = [
    ("up", "down"), ("left", "right"), ("open", "closed"), ("early", "late"),
    ("big", "small"), ("tall", "short"), ("fast", "slow"), ("hot", "cold"),
    ("light", "dark"), ("high", "low"), ("wet", "dry"), ("full", "empty"),
    ("old", "new"), ("hard", "soft"), ("loud", "quiet"), ("thick", "thin"),
    ("near", "far"), ("first", "last"), ("inside", "outside"), ("above", "below"),
    ("north", "south"), ("east", "west"), ("day", "night"), ("win", "lose"),
    ("push", "pull"), ("buy", "sell"), ("give", "take"), ("start", "finish"),
    ("strong", "weak"), ("costly", "cheap"), ("deep", "shallow"), ("wide", "narrow"),
    ("front", "back"), ("in", "out"), ("on", "off"),
    ("yes", "no"), ("always", "never"), ("before", "after"), ("sharp", "blunt"),
]
PLURALS: list[tuple[str, str]] = [
    ("cat", "cats"), ("dog", "dogs"), ("tree", "trees"), ("car", "cars"), ("cup", "cups"),
    ("bird", "birds"), ("hat", "hats"), ("pen", "pens"), ("box", "boxes"), ("fox", "foxes"),
    ("bus", "buses"), ("key", "keys"), ("ship", "ships"), ("star", "stars"), ("bell", "bells"),
    ("coin", "coins"), ("shoe", "shoes"), ("rock", "rocks"), ("leaf", "leaves"), ("wolf", "wolves"),
]
GROUPS: list[tuple[str, str]] = [("zorn", "plim"), ("tavi", "wesk"), ("morra", "dunet")]
# (negative-question, its non-negative twin, disambiguating fact for each)
BIAS_TRAITS: list[tuple[str, str]] = [
    ("who was late ?", "who was on time ?"),
    ("who lost the keys ?", "who found the keys ?"),
    ("who broke the cup ?", "who fixed the cup ?"),
    ("who forgot the map ?", "who brought the map ?"),
]
BIAS_EVENTS = {
    "who was late ?": "{x} was late",
    "who was on time ?": "{x} was on time",
    "who lost the keys ?": "{x} lost the keys",
    "who found the keys ?": "{x} found the keys",
    "who broke the cup ?": "{x} broke the cup",
    "who fixed the cup ?": "{x} fixed the cup",
    "who forgot the map ?": "{x} forgot the map",
    "who brought the map ?": "{x} brought the map",
}
PLACES = ["the station", "the market", "the school", "the park", "the library", "the harbor"]
SYLLABLES = ["ve", "lo", "ra", "mar", "in", "ke", "sh", "to", "bel", "du", "ni", "qua", "por", "si", "an", "gal"]

_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of a text (how the gold reward reads it)."""
    return _WORD.findall(text.lower())


def sentiment_reward(text: str) -> float:
    """Gold reward: summed word sentiment / sqrt(#words), so density counts, not length.

    Empty or wordless text scores 0. Typical range about [-2, 2].
    """
    ws = words(text)
    if not ws:
        return 0.0
    return sum(SENTIMENT.get(w, 0.0) for w in ws) / math.sqrt(len(ws))
