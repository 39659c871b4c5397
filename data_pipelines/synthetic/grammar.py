"""Gloss vocabulary, sentence sampler and gloss->text translation rules of the synthetic corpus.

This is no part of SlowFastSign or HyperSign: it replaces the licensed PHOENIX/CSL-Daily annotations with an
invented weather-forecast sign language and an invented spoken language, so that recognition (video -> glosses)
and translation (glosses -> text) are real learning problems that run on a small CPU.

Sign order (glosses) is topic-first and verb-final: ``[TIME] [REGION] [QUANT] NOUN [ADJ] VERB [NOT]``, e.g.
``TOMORROW NORTH MANY CLOUD THICK COME``. The spoken language ("Velan", invented here) differs by rule:

* the time phrase moves to the end of the sentence and fixes the tense of every verb in it (past / present /
  future, e.g. ``YESTERDAY`` -> past, ``TOMORROW`` or a weekday -> future, no time sign -> present);
* the region moves behind the verb and takes a region-specific preposition and an article (``en lo nordo``);
* adjectives precede the noun and agree with its gender and number; a quantifier (``MANY``) makes the noun plural
  and replaces the article; the verb agrees with the subject's number;
* ``NOT`` after the verb becomes ``ne`` before it; a clause without a noun is a copula clause
  (``lo vetro esa kaldo``); ``TEMPERATURE MINUS FIVE TO TWO`` becomes ``la tempra atena pena sub nolo ad dua gradi``
  (minus -> "below zero" after the number; "degree" agrees with the number);
* ``AND`` joins two clauses; the second inherits the time (tense) of the first.

``translate`` parses the gloss sequence itself, so the text is a deterministic function of the glosses.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

# --- Lexicon (all words invented for this project) -------------------------------------------------------------

# gloss -> (time phrase in the text, tense)
TIMES: tuple[tuple[str, str, str], ...] = (
    ("TODAY", "hodi", "present"),
    ("TOMORROW", "morga", "future"),
    ("YESTERDAY", "jeri", "past"),
    ("NIGHT", "dum lo nokto", "present"),
    ("WEEKEND", "ye la semfina", "future"),
    ("MORNING", "dum lo mateno", "present"),
    ("LATER", "poste", "future"),
    ("BEFORE", "antae", "past"),
    ("MONDAY", "ye luno", "future"),
    ("FRIDAY", "ye venko", "future"),
    ("SUNDAY", "ye solgo", "future"),
    ("EVENING", "dum la vespa", "present"),
)

# gloss -> (noun, gender, preposition)
REGIONS: tuple[tuple[str, str, str, str], ...] = (
    ("NORTH", "nordo", "m", "en"),
    ("SOUTH", "suda", "f", "en"),
    ("EAST", "esto", "m", "en"),
    ("WEST", "vesta", "f", "en"),
    ("COAST", "riva", "f", "ce"),
    ("MOUNTAIN", "monto", "m", "sur"),
    ("VALLEY", "vala", "f", "en"),
    ("ISLAND", "insulo", "m", "sur"),
    ("LAKE", "lago", "m", "ce"),
    ("CITY", "urba", "f", "en"),
    ("COUNTRY", "landa", "f", "tra"),
    ("BORDER", "limo", "m", "ce"),
    ("RIVER", "flua", "f", "ce"),
    ("FOREST", "silvo", "m", "en"),
)

# gloss -> (stem, gender)
NOUNS: tuple[tuple[str, str, str], ...] = (
    ("RAIN", "plov", "f"),
    ("CLOUD", "nub", "f"),
    ("WIND", "vent", "m"),
    ("SNOW", "nev", "m"),
    ("SUN", "sol", "m"),
    ("FOG", "nebl", "f"),
    ("STORM", "tempest", "m"),
    ("THUNDER", "tondr", "m"),
    ("HAIL", "grel", "f"),
    ("FROST", "frost", "m"),
    ("SHOWER", "dush", "f"),
    ("BREEZE", "briz", "m"),
    ("HIGH", "altar", "m"),
    ("LOW", "basar", "m"),
    ("ICE", "glaci", "f"),
    ("SLEET", "slosh", "f"),
)

# gloss -> stem (endings: m sg -o, f sg -a, m pl -i, f pl -e)
ADJECTIVES: tuple[tuple[str, str], ...] = (
    ("STRONG", "fort"),
    ("WEAK", "febl"),
    ("COLD", "frid"),
    ("WARM", "kald"),
    ("HEAVY", "pez"),
    ("LIGHT", "lev"),
    ("DRY", "sek"),
    ("WET", "mol"),
    ("THICK", "dens"),
    ("LOCAL", "lok"),
    ("MILD", "mold"),
    ("GREY", "griz"),
    ("FRIENDLY", "amik"),
    ("FRESH", "fresk"),
)

# gloss -> stem (agree like adjectives, always plural)
QUANTIFIERS: tuple[tuple[str, str], ...] = (
    ("MANY", "mult"),
    ("FEW", "pauk"),
    ("SOME", "kelk"),
)

# gloss -> stem (present -a/-an, past -is/-isen, future -os/-osen for singular/plural subject)
VERBS: tuple[tuple[str, str], ...] = (
    ("COME", "ven"),
    ("STAY", "rest"),
    ("MOVE", "mov"),
    ("FALL", "fal"),
    ("SHINE", "bril"),
    ("DISAPPEAR", "forir"),
    ("INCREASE", "kresk"),
    ("DECREASE", "sink"),
    ("SPREAD", "sprad"),
    ("CHANGE", "shanj"),
    ("DEVELOP", "evolv"),
    ("PASS", "pas"),
    ("CLEAR", "klar"),
)

# gloss -> number word (value used for agreement)
NUMBERS: tuple[tuple[str, str, int], ...] = (
    ("ZERO", "nolo", 0),
    ("ONE", "ena", 1),
    ("TWO", "dua", 2),
    ("FIVE", "pena", 5),
    ("TEN", "deka", 10),
    ("THREE", "tria", 3),
    ("FIFTEEN", "dekpena", 15),
    ("TWENTY", "duadek", 20),
    ("EIGHT", "oka", 8),
    ("THIRTY", "triadek", 30),
)

NEGATION = ("NOT",)
CONJUNCTION = ("AND",)
TEMPERATURE = ("TEMPERATURE", "MINUS", "TO")

CATEGORY_GLOSSES: dict[str, tuple[str, ...]] = {
    "time": tuple(g for g, _, _ in TIMES),
    "region": tuple(g for g, _, _, _ in REGIONS),
    "quant": tuple(g for g, _ in QUANTIFIERS),
    "noun": tuple(g for g, _, _ in NOUNS),
    "adj": tuple(g for g, _ in ADJECTIVES),
    "verb": tuple(g for g, _ in VERBS),
    "neg": NEGATION,
    "conj": CONJUNCTION,
    "temp": TEMPERATURE,
    "num": tuple(g for g, _, _ in NUMBERS),
}
CATEGORIES = tuple(CATEGORY_GLOSSES)

# Every gloss of the full lexicon, in a fixed order: its index here seeds its motion.
LEXICON: tuple[str, ...] = tuple(g for c in CATEGORIES for g in CATEGORY_GLOSSES[c])
GLOSS_CATEGORY: dict[str, str] = {g: c for c in CATEGORIES for g in CATEGORY_GLOSSES[c]}

_TIME = {g: (w, t) for g, w, t in TIMES}
_REGION = {g: (w, gen, p) for g, w, gen, p in REGIONS}
_NOUN = {g: (s, gen) for g, s, gen in NOUNS}
_ADJ = dict(ADJECTIVES)
_QUANT = dict(QUANTIFIERS)
_VERB = dict(VERBS)
_NUM = {g: (w, v) for g, w, v in NUMBERS}

_ENDING = {("m", False): "o", ("f", False): "a", ("m", True): "i", ("f", True): "e"}
_ARTICLE = {("m", False): "lo", ("f", False): "la", ("m", True): "li", ("f", True): "le"}
_TENSE_ENDING = {("present", False): "a", ("present", True): "an", ("past", False): "is", ("past", True): "isen",
                 ("future", False): "os", ("future", True): "osen"}


# --- Vocabulary of a preset ------------------------------------------------------------------------------------


def build_vocabulary(category_sizes: Sequence[tuple[str, int]]) -> list[str]:
  """The first ``n`` glosses of each category, in lexicon order."""
  vocab = []
  for category, n in category_sizes:
    if category not in CATEGORY_GLOSSES:
      raise ValueError(f"unknown gloss category {category!r}; known: {CATEGORIES}")
    pool = CATEGORY_GLOSSES[category]
    if not 0 <= n <= len(pool):
      raise ValueError(f"category {category!r} has {len(pool)} glosses, {n} requested")
    vocab.extend(pool[:n])
  return vocab


# --- Sentence sampler ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Grammar:
  """A sentence sampler over one vocabulary."""
  vocabulary: tuple[str, ...]
  min_glosses: int = 2
  max_glosses: int = 9

  def of(self, category: str) -> list[str]:
    return [g for g in self.vocabulary if GLOSS_CATEGORY[g] == category]

  def _pick(self, rng: np.random.Generator, category: str) -> str:
    pool = self.of(category)
    return pool[int(rng.integers(len(pool)))]

  def _maybe(self, rng: np.random.Generator, category: str, p: float) -> list[str]:
    if self.of(category) and rng.random() < p:
      return [self._pick(rng, category)]
    return []

  def _event(self, rng: np.random.Generator) -> list[str]:
    out = self._maybe(rng, "region", 0.6)
    out += self._maybe(rng, "quant", 0.3)
    out.append(self._pick(rng, "noun"))
    out += self._maybe(rng, "adj", 0.5)
    out.append(self._pick(rng, "verb"))
    out += self._maybe(rng, "neg", 0.15)
    return out

  def _state(self, rng: np.random.Generator) -> list[str]:
    out = self._maybe(rng, "region", 0.8)
    out.append(self._pick(rng, "adj"))
    out += self._maybe(rng, "neg", 0.2)
    return out

  def _number(self, rng: np.random.Generator) -> list[str]:
    out = []
    if "MINUS" in self.vocabulary and rng.random() < 0.25:
      out.append("MINUS")
    out.append(self._pick(rng, "num"))
    return out

  def _temperature(self, rng: np.random.Generator) -> list[str]:
    out = self._maybe(rng, "region", 0.6)
    out += ["TEMPERATURE"] + self._number(rng)
    if "TO" in self.vocabulary and rng.random() < 0.4:
      out += ["TO"] + self._number(rng)
    return out

  def _clause(self, rng: np.random.Generator) -> list[str]:
    kinds, weights = ["event"], [0.7]
    if self.of("adj"):
      kinds.append("state")
      weights.append(0.15)
    if "TEMPERATURE" in self.vocabulary and self.of("num"):
      kinds.append("temperature")
      weights.append(0.15)
    p = np.asarray(weights) / sum(weights)
    kind = kinds[int(rng.choice(len(kinds), p=p))]
    return getattr(self, "_" + kind)(rng)

  def sample(self, rng: np.random.Generator) -> list[str]:
    """One gloss sentence with ``min_glosses <= len <= max_glosses`` (rejection sampling)."""
    if not self.of("noun") or not self.of("verb"):
      raise ValueError("a grammar needs at least one noun and one verb gloss")
    for _ in range(1000):
      glosses = self._maybe(rng, "time", 0.7)
      glosses += self._clause(rng)
      if self.of("conj") and rng.random() < 0.2:
        glosses += [self._pick(rng, "conj")] + self._clause(rng)
      if self.min_glosses <= len(glosses) <= self.max_glosses:
        return glosses
    raise ValueError(f"no sentence of {self.min_glosses}..{self.max_glosses} glosses after 1000 tries")


# --- Translation -----------------------------------------------------------------------------------------------


def _agree(stem: str, gender: str, plural: bool) -> str:
  return stem + _ENDING[(gender, plural)]


def _conjugate(stem: str, tense: str, plural: bool) -> str:
  return stem + _TENSE_ENDING[(tense, plural)]


def _locative(region: str | None) -> list[str]:
  if region is None:
    return []
  word, gender, prep = _REGION[region]
  return [prep, _ARTICLE[(gender, False)], word]


def _number_phrase(tokens: list[str]) -> tuple[list[str], int]:
  """``[MINUS] NUM`` -> words and value."""
  minus = tokens[0] == "MINUS"
  word, value = _NUM[tokens[-1]]
  if minus:
    return [word, "sub", "nolo"], -value
  return [word], value


def _clause_text(clause: list[str], tense: str, sentence: str) -> list[str]:
  by_cat: dict[str, list[str]] = {}
  for g in clause:
    by_cat.setdefault(GLOSS_CATEGORY[g], []).append(g)
  region = by_cat.get("region", [None])[0]
  negated = "neg" in by_cat
  neg = ["ne"] if negated else []
  if "TEMPERATURE" in clause:
    rest = clause[clause.index("TEMPERATURE") + 1:]
    if "TO" in rest:
      first, second = rest[:rest.index("TO")], rest[rest.index("TO") + 1:]
    else:
      first, second = rest, []
    if not first or GLOSS_CATEGORY[first[-1]] != "num":
      raise ValueError(f"sentence {sentence!r}: TEMPERATURE must be followed by a number")
    words, value = _number_phrase(first)
    if second:
      more, value = _number_phrase(second)
      words += ["ad"] + more
    degree = "grado" if abs(value) == 1 else "gradi"
    return ["la", "tempra"] + neg + [_conjugate("aten", tense, False)] + words + [degree] + _locative(region)
  if "noun" in by_cat:
    stem, gender = _NOUN[by_cat["noun"][0]]
    quant = by_cat.get("quant")
    plural = quant is not None
    head = [_agree(_QUANT[quant[0]], gender, True)] if plural else [_ARTICLE[(gender, False)]]
    adjs = [_agree(_ADJ[a], gender, plural) for a in by_cat.get("adj", [])]
    if "verb" not in by_cat:
      raise ValueError(f"sentence {sentence!r}: a clause with a noun needs a verb")
    verb = _conjugate(_VERB[by_cat["verb"][0]], tense, plural)
    return head + adjs + [_agree(stem, gender, plural)] + neg + [verb] + _locative(region)
  if "adj" in by_cat:
    adj = _agree(_ADJ[by_cat["adj"][0]], "m", False)
    return ["lo", "vetro"] + neg + [_conjugate("es", tense, False), adj] + _locative(region)
  raise ValueError(f"sentence {sentence!r}: clause {' '.join(clause)!r} has no noun, adjective or temperature")


def translate(glosses: Sequence[str] | str) -> str:
  """Gloss sequence -> spoken-language text (lower-case, space-separated tokens, no final period)."""
  if isinstance(glosses, str):
    glosses = glosses.split()
  glosses = list(glosses)
  sentence = " ".join(glosses)
  unknown = [g for g in glosses if g not in GLOSS_CATEGORY]
  if unknown:
    raise ValueError(f"sentence {sentence!r}: unknown glosses {unknown}")
  time_phrase: list[str] = []
  tense = "present"
  if glosses and GLOSS_CATEGORY[glosses[0]] == "time":
    phrase, tense = _TIME[glosses[0]]
    time_phrase = phrase.split()
    glosses = glosses[1:]
  clauses: list[list[str]] = [[]]
  for g in glosses:
    if GLOSS_CATEGORY[g] == "conj":
      clauses.append([])
    else:
      clauses[-1].append(g)
  words: list[str] = []
  for i, clause in enumerate(clauses):
    if i:
      words.append("e")
    words += _clause_text(clause, tense, sentence)
  return " ".join(words + time_phrase)
