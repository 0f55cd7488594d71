"""Hand-built, interpretable feature blocks of the hybrid content vector.

* :func:`genre_block` -- 64 dims: one slot per TMDB genre (27 ids, movie and TV,
  sorted id -> slots 0..26, see :data:`GENRE_SLOTS`); TV compound genres also
  light their movie counterparts at :data:`GENRE_ALIAS_WEIGHT` so movie and TV
  queries meet.  Slots 27..63 are reserved (always 0).
* :func:`mood_block` -- 64 dims: four 16-wide bands, ``energy``, ``tone``,
  ``intensity`` and ``era`` (era/setting).  Each slot is a named feature in [0, 1]
  (see :data:`MOOD_FEATURES`) scored from genres (:data:`MOOD_GENRES`) and words
  in the overview/tagline/keywords (:data:`MOOD_WORDS`), combined as a
  probabilistic OR: ``1 - (1 - genre_score) * (1 - word_score)``.
* :func:`metadata_block` -- 128 dims of normalised metadata, layout in
  :data:`METADATA_LAYOUT`.  Numeric fields are encoded with Gaussian radial basis
  functions over fixed centres (so the dot product measures *closeness* of e.g.
  two years, rather than favouring large values); each field group is
  L2-normalised to unit length and multiplied by :data:`METADATA_GROUP_WEIGHTS`.
  Missing fields leave their group at zero.
* :func:`query_metadata_block` -- the same layout filled from a search intent
  (year, minimum rating, media type, language).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "GENRE_BLOCK_DIM",
    "MOOD_BLOCK_DIM",
    "METADATA_BLOCK_DIM",
    "GENRE_NAMES",
    "GENRE_IDS",
    "GENRE_SLOTS",
    "GENRE_ALIASES",
    "GENRE_ALIAS_WEIGHT",
    "MOOD_BANDS",
    "MOOD_BAND_WIDTH",
    "MOOD_FEATURES",
    "MOOD_WORDS",
    "MOOD_GENRES",
    "MOOD_LEVEL_GENRES",
    "METADATA_FIELDS",
    "METADATA_LAYOUT",
    "METADATA_GROUP_WEIGHTS",
    "LANGUAGES",
    "as_genre_ids",
    "expand_genres",
    "genre_block",
    "mood_slot",
    "mood_block",
    "explain_mood",
    "metadata_block",
    "query_metadata_block",
    "row_year",
    "tokenize",
]

GENRE_BLOCK_DIM = 64
MOOD_BLOCK_DIM = 64
METADATA_BLOCK_DIM = 128

# ---------------------------------------------------------------------------------------------
# Genres
# ---------------------------------------------------------------------------------------------

GENRE_NAMES: dict[int, str] = {
    28: "Action", 12: "Adventure", 16: "Animation", 35: "Comedy", 80: "Crime", 99: "Documentary",
    18: "Drama", 10751: "Family", 14: "Fantasy", 36: "History", 27: "Horror", 10402: "Music",
    9648: "Mystery", 10749: "Romance", 878: "Science Fiction", 10770: "TV Movie", 53: "Thriller",
    10752: "War", 37: "Western",
    # TV-only
    10759: "Action & Adventure", 10762: "Kids", 10763: "News", 10764: "Reality",
    10765: "Sci-Fi & Fantasy", 10766: "Soap", 10767: "Talk", 10768: "War & Politics",
}
GENRE_IDS: tuple[int, ...] = tuple(sorted(GENRE_NAMES))
#: genre id -> slot (0..26) inside the 64-wide genre block
GENRE_SLOTS: dict[int, int] = {gid: i for i, gid in enumerate(GENRE_IDS)}

GENRE_ALIAS_WEIGHT = 0.5
#: TV compound / TV-only genres -> movie counterparts they also light (at the given weight)
GENRE_ALIASES: dict[int, dict[int, float]] = {
    10759: {28: GENRE_ALIAS_WEIGHT, 12: GENRE_ALIAS_WEIGHT},  # Action & Adventure -> Action, Adventure
    10765: {878: GENRE_ALIAS_WEIGHT, 14: GENRE_ALIAS_WEIGHT},  # Sci-Fi & Fantasy -> Science Fiction, Fantasy
    10768: {10752: GENRE_ALIAS_WEIGHT},  # War & Politics -> War
    10762: {10751: GENRE_ALIAS_WEIGHT},  # Kids -> Family
    10766: {18: GENRE_ALIAS_WEIGHT},  # Soap -> Drama
}


def as_genre_ids(value: Any) -> list[int]:
    """Coerce a genre-id field (list/tuple/ndarray, JSON '[28, 12]', Postgres '{28,12}', None) to ints."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        if s.startswith("{") and s.endswith("}"):
            s = "[" + s[1:-1] + "]"
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            value = re.findall(r"-?\d+", s)
        if isinstance(value, (int, float)):
            value = [value]
    if isinstance(value, (int, np.integer)):
        value = [value]
    out: list[int] = []
    for v in value:
        if v is None:
            continue
        if isinstance(v, Mapping):  # TMDB style {"id": 28, "name": "Action"}
            v = v.get("id")
            if v is None:
                continue
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            continue
    return out


def expand_genres(genre_ids: Any) -> dict[int, float]:
    """Genre id -> weight: 1.0 for listed ids, alias weight for counterparts of TV compound genres.

    Unknown ids are dropped."""
    weights: dict[int, float] = {}
    for gid in as_genre_ids(genre_ids):
        if gid not in GENRE_SLOTS:
            continue
        weights[gid] = 1.0
    for gid in list(weights):
        for alias, w in GENRE_ALIASES.get(gid, {}).items():
            weights[alias] = max(weights.get(alias, 0.0), w)
    return weights


def genre_block(genre_ids: Any) -> np.ndarray:
    """(64,) float32: 1.0 in each listed genre's slot, alias weight in movie counterparts of TV genres."""
    out = np.zeros(GENRE_BLOCK_DIM, dtype=np.float32)
    for gid, w in expand_genres(genre_ids).items():
        out[GENRE_SLOTS[gid]] = w
    return out


# ---------------------------------------------------------------------------------------------
# Mood
# ---------------------------------------------------------------------------------------------

MOOD_BANDS: tuple[str, ...] = ("energy", "tone", "intensity", "era")
MOOD_BAND_WIDTH = 16

#: band -> 16 feature names (slot order).  ``level`` slots are band-wide scalars.
MOOD_FEATURES: dict[str, tuple[str, ...]] = {
    "energy": (
        "level", "calm", "chase", "explosion", "race", "fight", "heist", "mission",
        "survival", "sport", "dance", "journey", "monster", "rescue", "gunplay", "everyday",
    ),
    "tone": (
        "comedic", "dark", "romantic", "heartwarming", "melancholic", "whimsical", "satirical", "suspenseful",
        "uplifting", "gritty", "eerie", "nostalgic", "cerebral", "musical", "factual", "playful",
    ),
    "intensity": (
        "level", "violence", "fear", "stakes", "emotional", "light", "psychological", "gore",
        "revenge", "epic", "intimate", "crime", "rebellion", "survival", "mature", "moral",
    ),
    "era": (
        "future", "space", "medieval", "ancient", "early_modern", "early_20th", "mid_century", "late_20th",
        "contemporary", "western", "war_front", "post_apocalyptic", "urban", "rural", "sea", "school",
    ),
}

#: "band.feature" -> words / phrases.  A word also matches its simple inflections
#: (+s, +es, +ed, +ing, +er, +ers; final -e dropped before -ing/-ed); a trailing ``*`` is a
#: prefix match; entries with spaces are phrases matched on the token sequence.
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    # energy
    "energy.calm": ("quiet", "calm", "gentle", "peaceful", "slow", "tranquil", "contemplative", "meditative",
                    "reflective", "serene", "languid", "unhurried"),
    "energy.chase": ("chase", "pursuit", "pursue", "flee", "fugitive", "manhunt", "hunted", "escape", "outrun",
                     "on the run", "getaway", "run for"),
    "energy.explosion": ("explosion", "explode", "explosive", "bomb", "blast", "blow up", "detonate", "inferno",
                         "destruction", "firefight", "demolition"),
    "energy.race": ("race", "racing", "racer", "speed", "driver", "street race", "formula", "rally", "motorcycle",
                    "drag race", "getaway driver", "nascar", "car chase"),
    "energy.fight": ("fight", "fighter", "battle", "combat", "brawl", "martial arts", "kung fu", "boxing", "boxer",
                     "duel", "showdown", "warrior", "tournament", "cage"),
    "energy.heist": ("heist", "robbery", "robber", "robbed", "steal", "thief", "thieves", "vault", "bank job", "con artist",
                     "swindle", "loot", "burglar*"),
    "energy.mission": ("mission", "agent", "spy", "spies", "espionage", "assassin", "operative", "commando",
                       "special forces", "undercover", "secret agent", "covert", "infiltrate"),
    "energy.survival": ("survive", "survival", "survivor", "stranded", "disaster", "catastrophe", "trapped",
                        "storm", "earthquake", "wilderness", "shipwreck", "avalanche", "tsunami"),
    "energy.sport": ("sport", "sports", "team", "championship", "coach", "football", "soccer", "baseball",
                     "basketball", "hockey", "olympic*", "athlete", "league", "playoff*", "match"),
    "energy.dance": ("dance", "dancer", "concert", "rock", "tour", "rap", "rapper", "hip hop", "festival",
                     "nightclub", "rave", "ballet"),
    "energy.journey": ("journey", "quest", "adventure", "road trip", "voyage", "expedition", "travel", "explore",
                       "treasure", "trek", "odyssey"),
    "energy.monster": ("monster", "creature", "beast", "predator", "shark", "dinosaur", "alien", "invasion",
                       "kaiju", "giant", "werewolf", "vampire"),
    "energy.rescue": ("rescue", "hostage", "kidnap*", "abduct*", "ransom", "countdown", "deadline",
                      "race against time", "save the world", "save her", "save his"),
    "energy.gunplay": ("gun", "guns", "shootout", "sniper", "gunfight", "firefight", "weapon", "armed",
                       "mercenary", "mercenaries", "bullet", "hitman", "gunman"),
    "energy.everyday": ("everyday", "routine", "daily life", "ordinary", "conversation", "talk", "interview",
                        "chat", "dinner", "neighbour", "neighbor", "chores"),
    # tone
    "tone.comedic": ("comedy", "comedic", "funny", "hilarious", "hilarity", "laugh", "joke", "wacky", "goofy",
                     "prank", "mishap", "misadventure", "antics", "slacker", "awkward", "zany", "quirky"),
    "tone.dark": ("dark", "darkness", "sinister", "evil", "grim", "bleak", "twisted", "murder", "death", "killer",
                  "corrupt", "nihilistic", "descent"),
    "tone.romantic": ("love", "romance", "romantic", "fall in love", "falls in love", "lover", "wedding", "marry",
                      "marriage", "kiss", "first date", "boyfriend", "girlfriend", "soulmate", "heartbreak", "sweetheart",
                      "affair", "crush"),
    "tone.heartwarming": ("friendship", "friend", "heartwarming", "together", "bond", "home", "kindness", "hope",
                          "reunite", "reunion", "adopt*", "found family", "touching"),
    "tone.melancholic": ("grief", "grieving", "loss", "lonely", "loneliness", "tragedy", "tragic", "mourning",
                         "dying", "terminal", "regret", "widow", "widower", "sorrow", "funeral", "bereave*"),
    "tone.whimsical": ("magic", "magical", "fairy", "fairy tale", "enchanted", "wonder", "whimsical", "wizard",
                       "witch", "dragon", "spell", "talking animal", "sorcerer", "elf", "elves"),
    "tone.satirical": ("satire", "satirical", "parody", "spoof", "mockumentary", "absurd", "absurdist", "farce",
                       "lampoon*", "send up"),
    "tone.suspenseful": ("suspense", "mystery", "mysterious", "secret", "suspect", "clue", "twist", "conspiracy",
                         "investigate", "investigation", "disappearance", "vanish", "missing", "whodunit",
                         "cat and mouse"),
    "tone.uplifting": ("inspiring", "inspirational", "triumph", "dream", "overcome", "underdog", "true story",
                       "courage", "determination", "redemption", "second chance", "against all odds"),
    "tone.gritty": ("gritty", "gang", "drug", "drugs", "cartel", "mob", "mafia", "prison", "criminal", "dealer",
                    "brutal", "underworld", "hustler", "ghetto", "junkie"),
    "tone.eerie": ("ghost", "haunted", "haunting", "haunt", "demon", "demonic", "possessed", "possession", "curse",
                   "cursed", "supernatural", "spirit", "occult", "exorcism", "paranormal", "eerie", "poltergeist"),
    "tone.nostalgic": ("nostalgia", "nostalgic", "childhood", "memories", "memory", "remember", "coming of age",
                       "summer", "youth", "first love", "hometown", "growing up"),
    "tone.cerebral": ("mind", "consciousness", "reality", "identity", "philosophy", "philosophical", "existential",
                      "simulation", "time loop", "paradox", "artificial intelligence", "sentient", "perception",
                      "time travel"),
    "tone.musical": ("musical", "song", "sing", "singer", "songwriter", "band", "music", "musician", "composer",
                     "broadway", "orchestra", "choir", "album"),
    "tone.factual": ("documentary", "true story", "real life", "interviews", "archival", "footage", "based on",
                     "biopic", "history of", "investigates", "journalist"),
    "tone.playful": ("kids", "children", "child", "toy", "toys", "puppy", "cartoon", "animated", "playful",
                     "preschool", "pet", "bunny", "silly"),
    # intensity
    "intensity.violence": ("kill", "killing", "murder", "murderer", "massacre", "blood", "bloody", "violent",
                           "violence", "slaughter", "brutal", "execution", "bloodshed", "carnage"),
    "intensity.fear": ("terror", "terrifying", "fear", "nightmare", "scream", "horror", "dread", "panic",
                       "terroriz*", "terroris*", "frighten*", "scary", "stalk*"),
    "intensity.stakes": ("deadline", "countdown", "hostage", "threat", "deadly", "danger", "dangerous",
                         "catastrophe", "doomsday", "apocalypse", "end of the world", "life or death",
                         "race against time"),
    "intensity.emotional": ("grief", "abuse", "illness", "cancer", "addiction", "trauma", "depression", "suicide",
                            "divorce", "dying", "terminal", "loss", "alzheimer*", "disease"),
    "intensity.light": ("fun", "holiday", "christmas", "vacation", "silly", "cheerful", "lighthearted", "playful",
                        "party", "feel good", "comedy", "goofy"),
    "intensity.psychological": ("psychological", "obsession", "obsessed", "paranoia", "paranoid", "madness",
                                "insane", "insanity", "delusion", "manipulation", "psychopath", "sanity",
                                "hallucination", "gaslight*"),
    "intensity.gore": ("gore", "gory", "slasher", "zombie", "zombies", "cannibal", "dismember*", "chainsaw",
                       "mutilat*", "torture"),
    "intensity.revenge": ("revenge", "vengeance", "avenge", "betrayal", "betray", "retribution", "vendetta",
                          "payback", "settle the score"),
    "intensity.epic": ("empire", "kingdom", "army", "armies", "war", "world", "galaxy", "civilization", "epic",
                       "legendary", "nation", "throne", "realm", "saga"),
    "intensity.intimate": ("relationship", "couple", "family", "mother", "father", "daughter", "son", "sister",
                           "brother", "small town", "roommate", "husband", "wife", "parents"),
    "intensity.crime": ("detective", "cop", "police", "fbi", "criminal", "crime", "case", "serial killer", "mafia",
                        "gangster", "cartel", "homicide", "investigator", "sheriff"),
    "intensity.rebellion": ("rebel", "rebellion", "revolution", "revolutionary", "resistance", "uprising",
                            "overthrow", "regime", "tyrant", "dictator", "protest", "insurgent*"),
    "intensity.survival": ("survive", "survival", "survivor", "stranded", "trapped", "starving", "outbreak",
                           "virus", "pandemic", "infected", "plague", "epidemic"),
    "intensity.mature": ("sex", "sexual", "drug", "drugs", "addiction", "affair", "prostitute", "stripper",
                         "erotic", "seduce", "adultery", "heroin", "cocaine"),
    "intensity.moral": ("corruption", "corrupt", "dilemma", "conscience", "guilt", "moral", "justice",
                        "injustice", "scandal", "cover up", "whistleblower", "politics", "political"),
    # era / setting
    "era.future": ("future", "futuristic", "dystopia", "dystopian", "cyberpunk", "android", "robot", "cyborg",
                   "ai", "artificial intelligence", "clone", "utopia", "year 3000", "space age"),
    "era.space": ("space", "outer space", "spaceship", "starship", "space station", "astronaut", "cosmonaut",
                  "planet", "galaxy", "orbit", "mars", "moon", "alien", "cosmos", "interstellar", "spacecraft",
                  "asteroid", "star system"),
    "era.medieval": ("medieval", "knight", "castle", "king", "queen", "kingdom", "sword", "dragon", "middle ages",
                     "realm", "throne", "crusade*", "lord", "peasant"),
    "era.ancient": ("ancient", "rome", "roman", "egypt", "egyptian", "greek", "gladiator", "pharaoh", "biblical",
                    "viking", "samurai", "spartan", "prehistoric", "caveman", "troy"),
    "era.early_modern": ("victorian", "18th century", "19th century", "regency", "colonial", "pirate", "napoleon*",
                         "duke", "duchess", "aristocrat*", "1700s", "1800s", "civil war", "edwardian", "renaissance"),
    "era.early_20th": ("prohibition", "jazz age", "great depression", "world war", "wwi", "wwii", "ww1", "ww2",
                       "nazi", "nazis", "world war ii", "world war i", "holocaust", "roaring twenties"),
    "era.mid_century": ("cold war", "vietnam", "hippie", "civil rights", "swinging sixties", "woodstock",
                        "mccarthy*", "disco", "post war"),
    "era.late_20th": ("eighties", "nineties", "vhs", "arcade", "mixtape", "walkman", "grunge", "fall of the wall"),
    "era.contemporary": ("today", "modern", "internet", "social media", "smartphone", "online", "startup",
                         "influencer", "present day", "app", "viral", "streaming", "tech"),
    "era.western": ("western", "frontier", "cowboy", "outlaw", "sheriff", "ranch", "wild west", "gunslinger",
                    "bounty hunter", "saloon", "homestead*", "cattle"),
    "era.war_front": ("soldier", "battlefield", "front line", "troops", "platoon", "trenches", "army", "war",
                      "invasion", "occupied", "regiment", "marines", "wartime"),
    "era.post_apocalyptic": ("post apocalyptic", "apocalypse", "apocalyptic", "wasteland", "zombie", "nuclear",
                             "fallout", "collapse of", "end of the world", "after the fall", "survivors"),
    "era.urban": ("city", "new york", "los angeles", "london", "paris", "tokyo", "downtown", "streets",
                  "neighborhood", "neighbourhood", "apartment", "metropolis", "urban", "manhattan", "brooklyn"),
    "era.rural": ("small town", "village", "farm", "farmer", "countryside", "rural", "ranch", "remote",
                  "backwoods", "hamlet", "prairie"),
    "era.sea": ("ocean", "sea", "ship", "submarine", "island", "pirate", "sail", "sailor", "navy", "shipwreck",
                "underwater", "boat", "captain"),
    "era.school": ("school", "high school", "student", "teacher", "college", "university", "campus",
                   "classmate", "teen", "teenager", "prom", "dorm", "boarding school"),
}

#: "band.feature" -> {genre id: score}; genre scores combine by max (after alias expansion).
MOOD_GENRES: dict[str, dict[int, float]] = {
    "energy.calm": {18: 0.5, 10749: 0.4, 99: 0.6, 36: 0.3, 10767: 0.4, 10766: 0.4},
    "energy.fight": {28: 0.4, 10752: 0.4},
    "energy.mission": {53: 0.2},
    "energy.journey": {12: 0.6},
    "energy.monster": {27: 0.2},
    "energy.gunplay": {28: 0.3, 37: 0.4},
    "energy.everyday": {10767: 0.6, 10763: 0.4, 10764: 0.3},
    "energy.sport": {},
    "energy.dance": {10402: 0.5},
    "tone.comedic": {35: 1.0, 10767: 0.3},
    "tone.dark": {27: 0.6, 80: 0.5, 53: 0.4, 9648: 0.3},
    "tone.romantic": {10749: 1.0, 10766: 0.4},
    "tone.heartwarming": {10751: 0.7, 16: 0.4, 10762: 0.6},
    "tone.melancholic": {18: 0.5},
    "tone.whimsical": {14: 0.6, 16: 0.5, 10765: 0.3},
    "tone.suspenseful": {53: 0.8, 9648: 0.8},
    "tone.gritty": {80: 0.6, 10752: 0.3},
    "tone.eerie": {27: 0.8},
    "tone.cerebral": {878: 0.4, 9648: 0.3},
    "tone.musical": {10402: 1.0},
    "tone.factual": {99: 1.0, 10763: 1.0, 36: 0.5, 10764: 0.5},
    "tone.playful": {10762: 1.0, 16: 0.6, 10751: 0.6},
    "intensity.light": {35: 0.7, 10751: 0.8, 10762: 1.0, 16: 0.6, 10767: 0.4, 10764: 0.3},
    "intensity.fear": {27: 0.7},
    "intensity.violence": {10752: 0.4, 28: 0.3},
    "intensity.psychological": {53: 0.3},
    "intensity.epic": {10752: 0.4, 36: 0.4, 12: 0.3},
    "intensity.intimate": {18: 0.3, 10749: 0.3, 10766: 0.3},
    "intensity.crime": {80: 0.7},
    "intensity.moral": {18: 0.3, 10768: 0.5},
    "era.future": {878: 0.4},
    "era.space": {878: 0.2},
    "era.medieval": {14: 0.2},
    "era.western": {37: 1.0},
    "era.war_front": {10752: 0.8, 10768: 0.4},
}

#: band-wide ``level`` slots: genre scores (words feed them through the band's other features).
MOOD_LEVEL_GENRES: dict[str, dict[int, float]] = {
    "energy": {28: 1.0, 10759: 1.0, 12: 0.8, 53: 0.7, 10752: 0.7, 37: 0.6, 27: 0.5, 80: 0.5, 878: 0.5,
               10765: 0.5, 10402: 0.4, 16: 0.3, 35: 0.3, 10764: 0.3, 14: 0.3, 10762: 0.3},
    "intensity": {27: 0.9, 53: 0.9, 10752: 0.9, 28: 0.7, 80: 0.7, 10768: 0.6, 10759: 0.6, 9648: 0.5, 37: 0.5,
                  18: 0.4, 878: 0.3},
}

# word hits in other features of the band lift the ``level`` slot at most this much
_LEVEL_WORD_SHARE = 0.8
# features that do not raise the band level (they mean *low* energy/intensity)
_LEVEL_EXCLUDE = {"energy.calm", "energy.everyday", "intensity.light", "intensity.intimate"}

_TOKEN_RE = re.compile(r"[a-z0-9]+")
_SLOT_OF: dict[str, int] = {}
for _b, _band in enumerate(MOOD_BANDS):
    for _i, _name in enumerate(MOOD_FEATURES[_band]):
        _SLOT_OF[f"{_band}.{_name}"] = _b * MOOD_BAND_WIDTH + _i
assert len(_SLOT_OF) == MOOD_BLOCK_DIM
assert all(k in _SLOT_OF for k in MOOD_WORDS) and all(k in _SLOT_OF for k in MOOD_GENRES)


def tokenize(text: str | None) -> list[str]:
    if not text:
        return []
    import unicodedata

    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
    return _TOKEN_RE.findall(t.replace("'", ""))


def _inflections(word: str) -> set[str]:
    forms = {word, word + "s", word + "es", word + "ed", word + "ing", word + "er", word + "ers"}
    if word.endswith("e"):
        forms |= {word + "d", word[:-1] + "ing", word + "r", word + "rs"}
    if word.endswith("y") and len(word) > 2:
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    return forms


class _Matcher:
    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        self.phrases: list[str] = []
        for e in entries:
            e = e.lower().strip()
            if e.endswith("*"):
                self.prefixes.append(e[:-1])
            elif " " in e or "-" in e:
                self.phrases.append(" " + " ".join(_TOKEN_RE.findall(e)) + " ")
            else:
                self.exact |= _inflections(e)

    def hits(self, tokens: Sequence[str], joined: str) -> int:
        n = sum(1 for t in tokens if t in self.exact or any(t.startswith(p) for p in self.prefixes))
        n += sum(joined.count(p) for p in self.phrases)
        return n


_MATCHERS: dict[str, _Matcher] = {k: _Matcher(v) for k, v in MOOD_WORDS.items()}

# explicit years / decades in text -> era feature
_YEAR_RE = re.compile(r"^(1[6-9][0-9]{2}|20[0-9]{2}|21[0-9]{2})s?$")  # 1600..2199, or a decade like 1920s


def _era_of_year(y: int) -> str:
    if y < 500:
        return "era.ancient"
    if y < 1600:
        return "era.medieval"
    if y < 1900:
        return "era.early_modern"
    if y < 1946:
        return "era.early_20th"
    if y < 1980:
        return "era.mid_century"
    if y < 2000:
        return "era.late_20th"
    if y < 2040:
        return "era.contemporary"
    return "era.future"


def _word_score(hits: float) -> float:
    """Saturating: 1 hit -> 0.5, 2 -> 0.75, 3 -> 0.875."""
    return 1.0 - 0.5 ** hits if hits > 0 else 0.0


def mood_slot(name: str) -> int:
    """Slot (0..63) of a mood feature: ``"band.feature"``, a unique ``"feature"`` or a band name (its
    ``level`` slot, for ``energy`` and ``intensity``)."""
    key = name.strip().lower()
    if key in _SLOT_OF:
        return _SLOT_OF[key]
    if key in MOOD_BANDS:
        if f"{key}.level" in _SLOT_OF:
            return _SLOT_OF[f"{key}.level"]
        raise KeyError(f"mood band {key!r} has no single level; name one of its features: "
                       f"{', '.join(key + '.' + f for f in MOOD_FEATURES[key])}")
    matches = [k for k in _SLOT_OF if k.split(".", 1)[1] == key]
    if len(matches) == 1:
        return _SLOT_OF[matches[0]]
    if matches:
        raise KeyError(f"ambiguous mood feature {name!r}: use one of {matches}")
    raise KeyError(f"unknown mood feature {name!r}; valid: {sorted(_SLOT_OF)} or band names {MOOD_BANDS}")


def mood_block(genre_ids: Any, text: str | None) -> np.ndarray:
    """(64,) float32 in [0, 1]: energy | tone | intensity | era bands, 16 named features each."""
    out = np.zeros(MOOD_BLOCK_DIM, dtype=np.float64)
    genres = expand_genres(genre_ids)
    tokens = tokenize(text)
    joined = " " + " ".join(tokens) + " "
    word: dict[str, float] = {}
    if tokens:
        for key, m in _MATCHERS.items():
            h = m.hits(tokens, joined)
            if h:
                word[key] = _word_score(h)
        era_hits: dict[str, int] = {}
        for t in tokens:
            mm = _YEAR_RE.match(t)
            if mm:
                era = _era_of_year(int(mm.group(1)))
                era_hits[era] = era_hits.get(era, 0) + 1
        for era, h in era_hits.items():
            word[era] = 1.0 - (1.0 - word.get(era, 0.0)) * (1.0 - _word_score(h))
    for key, slot in _SLOT_OF.items():
        if key.endswith(".level"):
            continue
        g = max((genres.get(gid, 0.0) * s for gid, s in MOOD_GENRES.get(key, {}).items()), default=0.0)
        w = word.get(key, 0.0)
        out[slot] = 1.0 - (1.0 - g) * (1.0 - w)
    for band, gmap in MOOD_LEVEL_GENRES.items():
        g = max((genres.get(gid, 0.0) * s for gid, s in gmap.items()), default=0.0)
        w = max((v for k, v in word.items() if k.startswith(band + ".") and k not in _LEVEL_EXCLUDE), default=0.0)
        out[_SLOT_OF[f"{band}.level"]] = 1.0 - (1.0 - g) * (1.0 - _LEVEL_WORD_SHARE * w)
    return out.astype(np.float32)


def explain_mood(vec: np.ndarray, *, threshold: float = 0.05) -> dict[str, float]:
    """Named non-trivial features of a mood block (or of a full 768-d vector's mood slice)."""
    v = np.asarray(vec, dtype=np.float32).ravel()
    if v.shape[0] == 768:
        v = v[576:640]
    if v.shape[0] != MOOD_BLOCK_DIM:
        raise ValueError(f"expected a 64-d mood block or a 768-d vector, got {v.shape[0]}")
    return {k: round(float(v[s]), 3) for k, s in sorted(_SLOT_OF.items(), key=lambda kv: -v[kv[1]])
            if abs(v[s]) >= threshold}


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------

#: the row keys :func:`metadata_block` reads (``release_date`` only when ``year`` is missing)
METADATA_FIELDS: tuple[str, ...] = ("year", "release_date", "vote_average", "vote_count", "popularity", "runtime",
                                    "media_type", "original_language")

#: 30 common TMDB ``original_language`` codes with their own slot ("cn" is TMDB's Cantonese)
LANGUAGES: tuple[str, ...] = (
    "en", "fr", "es", "de", "it", "ja", "ko", "zh", "cn", "hi", "ru", "pt", "sv", "da", "no",
    "nl", "pl", "tr", "th", "fa", "ar", "he", "id", "tl", "te", "ta", "ml", "fi", "el", "hu",
)
MEDIA_TYPES: tuple[str, ...] = ("movie", "tv")

#: slot layout of the 128-d metadata block: name -> (start, stop)
METADATA_LAYOUT: dict[str, tuple[int, int]] = {
    "year": (0, 16),  # RBF, 16 centres 1900..2035 (9-year spacing); year < 1900 / > 2035 clipped
    "vote_average": (16, 28),  # RBF, 12 centres 1..10; only when vote_count > 0; scaled by vote confidence
    "log_vote_count": (28, 40),  # RBF over log1p(vote_count), 12 centres 0..log1p(50_000)
    "log_popularity": (40, 52),  # RBF over log1p(popularity), 12 centres 0..log1p(2_000)
    "runtime": (52, 64),  # RBF over minutes, 12 centres 0..240; missing/0 -> zero
    "media_type": (64, 66),  # one-hot: movie, tv
    "language": (66, 96),  # one-hot over LANGUAGES
    "language_other": (96, 97),  # any other (non-empty) language code
    "reserved": (97, 128),  # always 0
}
#: each group is unit-normalised then multiplied by its weight
METADATA_GROUP_WEIGHTS: dict[str, float] = {
    "year": 1.0, "vote_average": 0.8, "log_vote_count": 0.5, "log_popularity": 0.5, "runtime": 0.5,
    "media_type": 0.7, "language": 0.8, "language_other": 0.8,
}

_RBF_CENTRES: dict[str, np.ndarray] = {
    "year": np.linspace(1900.0, 2035.0, 16),
    "vote_average": np.linspace(1.0, 10.0, 12),
    "log_vote_count": np.linspace(0.0, math.log1p(50_000), 12),
    "log_popularity": np.linspace(0.0, math.log1p(2_000), 12),
    "runtime": np.linspace(0.0, 240.0, 12),
}
_RATING_CONFIDENCE_VOTES = 50  # vote_average at full weight from this many votes
_YEAR_FROM_DATE = re.compile(r"^\s*(\d{4})")


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def row_year(row: Mapping[str, Any]) -> int | None:
    """``row['year']``, else the year of ``row['release_date']`` (date or 'YYYY-MM-DD')."""
    y = _num(row.get("year"))
    if y is not None and y > 0:
        return int(y)
    rd = row.get("release_date")
    if rd is None:
        return None
    if hasattr(rd, "year"):
        return int(rd.year)
    m = _YEAR_FROM_DATE.match(str(rd))
    return int(m.group(1)) if m else None


def _rbf(name: str, x: float) -> np.ndarray:
    c = _RBF_CENTRES[name]
    sigma = float(c[1] - c[0])
    x = min(max(x, float(c[0])), float(c[-1]))
    v = np.exp(-0.5 * ((c - x) / sigma) ** 2)
    return v / np.linalg.norm(v)


def _at_least(name: str, threshold: float) -> np.ndarray:
    """Soft step over the RBF centres: high for centres >= threshold (for 'minimum rating' queries)."""
    c = _RBF_CENTRES[name]
    sigma = float(c[1] - c[0])
    v = 1.0 / (1.0 + np.exp(-(c - threshold) / (0.5 * sigma)))
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _put(out: np.ndarray, group: str, values: np.ndarray, scale: float = 1.0) -> None:
    a, b = METADATA_LAYOUT[group]
    out[a:b] = values * METADATA_GROUP_WEIGHTS[group] * scale


def _norm_code(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _put_media_and_language(out: np.ndarray, media_type: Any, language: Any) -> None:
    mt = _norm_code(media_type)
    if mt in MEDIA_TYPES:
        v = np.zeros(2)
        v[MEDIA_TYPES.index(mt)] = 1.0
        _put(out, "media_type", v)
    lang = _norm_code(language)
    if lang in LANGUAGES:
        v = np.zeros(len(LANGUAGES))
        v[LANGUAGES.index(lang)] = 1.0
        _put(out, "language", v)
    elif lang and lang not in {"xx", "none", "null"}:
        _put(out, "language_other", np.ones(1))


def metadata_block(row: Mapping[str, Any]) -> np.ndarray:
    """(128,) float32 metadata features of a ``dim_content`` row; None-safe. Layout: :data:`METADATA_LAYOUT`."""
    out = np.zeros(METADATA_BLOCK_DIM, dtype=np.float64)
    year = row_year(row)
    if year is not None:
        _put(out, "year", _rbf("year", float(year)))
    votes = _num(row.get("vote_count"))
    avg = _num(row.get("vote_average"))
    if avg is not None and avg > 0 and (votes is None or votes > 0):
        conf = 1.0 if votes is None else min(1.0, math.log1p(votes) / math.log1p(_RATING_CONFIDENCE_VOTES))
        _put(out, "vote_average", _rbf("vote_average", avg), conf)
    if votes is not None and votes >= 0:
        _put(out, "log_vote_count", _rbf("log_vote_count", math.log1p(votes)))
    pop = _num(row.get("popularity"))
    if pop is not None and pop >= 0:
        _put(out, "log_popularity", _rbf("log_popularity", math.log1p(pop)))
    runtime = _num(row.get("runtime"))
    if runtime is not None and runtime > 0:
        _put(out, "runtime", _rbf("runtime", runtime))
    _put_media_and_language(out, row.get("media_type"), row.get("original_language"))
    return out.astype(np.float32)


def query_metadata_block(*, year: int | None = None, min_rating: float | None = None,
                         media_type: str | None = None, language: str | None = None) -> np.ndarray:
    """(128,) float32 metadata block for a search intent; unspecified groups stay zero."""
    out = np.zeros(METADATA_BLOCK_DIM, dtype=np.float64)
    y = _num(year)
    if y is not None and y > 0:
        _put(out, "year", _rbf("year", y))
    r = _num(min_rating)
    if r is not None and r > 0:
        _put(out, "vote_average", _at_least("vote_average", r))
    _put_media_and_language(out, media_type, language)
    return out.astype(np.float32)
