"""A simulator of users over the catalogue, with planted causal effects and known confounding.

The structural model (docs/personalization.md has the same, with the reasoning):

* **Users.** Taste ``t_u`` = normalised mix of 1-3 random "anchor" titles' content vectors plus
  noise; affinity ``a_ui = cos(t_u, x_i)``, standardised per user to ``az_ui`` (clipped to ±2.5). A
  primary device (tv 45 %, mobile 35 %, web 20 %; 80 % of sessions), a peak viewing hour, a
  preferred rating level ``r_u ~ N(7, 0.8)``, preferred genres = the anchors' genres, and an
  activity rate (Poisson sessions a day, mean ≈ 0.9).
* **Serving (the logging policy).** Each session shows a slate of 12: 6 drawn from the user's 60
  closest titles, 6 drawn with probability ∝ TMDB popularity, none already finished. The slate is
  ranked by ``0.8·pop_z + 0.4·az + N(0, 0.5)``: popular titles are ranked higher. ``pop_z`` is the
  standardised log popularity (clipped to ±3). A session ends once the user has watched a budget
  of U(1, 3) hours; the rest of its slate is never shown (nor logged).
* **Serve-time features** (recorded in learning.impressions): genre_match_score = share of the
  title's genres among the user's preferred genres; platform_availability ~ Bernoulli(0.3 + 0.5·pop
  percentile) (binary); release_recency_score = exp(−(2026 − year)/10); rating_alignment =
  1 − |vote_average − r_u|/10; time_of_day = hour/24; device_type; recommendation_rank 1-12;
  content_duration = runtime in hours; user_session_length = hours already watched in the session.
* **Click**: ``P = σ(−2.2 + 1.2·az + 0.4·pop_z − 0.06·(rank − 1) + 0.3·platform)``, with its own
  independent noise; completion is observed only after a click.
* **Completion** (clicked impressions), linear with rare clipping to [0, 1]:
  ``0.25 + Σ_f β_f(segment)·f + 0.05·pop_z + 0.05·az + N(0, 0.05)``, with the planted β in
  ``EFFECTS`` below. pop_z drives both rank and completion: the confounder of recommendation_rank;
  az (recorded as features.affinity_z, the serve-time similarity) is the other.
* **Heterogeneity**: genre_match_score by device (tv 0.20, web 0.15, mobile 0.10); content_duration
  by user type (new −0.08, returning −0.04; "new" = fewer than 3 earlier sessions);
  user_session_length by time of day (night −0.08, else −0.03).
* **Ratings**: 40 % of watches with completion ≥ 0.5 are rated,
  ``round(r_u + 1.25·az + 3·(completion − 0.65) + N(0, 0.8))`` clipped to 0-10.

The ground truth stored per run (learning.simulation_truth) is β for every feature and segment:
per segment of the dimension an effect varies along, that segment's β; elsewhere the mix of β over
the clicked impressions of the segment (so globally the clicked-impression average). device_type's
effect is that of a TV session against mobile or web, so it has no per-device rows.

Deterministic: one numpy Generator seeded by ``seed``; the same seed, size and end date give the
same data, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd

from .catalogue import Catalogue

SIM_END_DATE = date(2026, 11, 30)  # fixed by default, so that `make run` is repeatable
SLATE = 12
AFFINE_POOL = 60
DEVICES = ("tv", "mobile", "web")
DEVICE_P = (0.45, 0.35, 0.20)
TIME_SEGMENTS = ("morning", "afternoon", "evening", "night")
USER_TYPES = ("new", "returning")
FEATURES = ("genre_match_score", "platform_availability", "release_recency_score", "rating_alignment",
            "time_of_day", "device_type", "recommendation_rank", "content_duration", "user_session_length")
BASE = 0.25
NOISE_SD = 0.05
POP_EFFECT, AFFINITY_EFFECT = 0.05, 0.05
CLICK_INTERCEPT = -2.2
# feature -> (dimension it varies along or None, {segment value: effect} or the constant effect)
EFFECTS: dict[str, tuple[str | None, dict[str, float] | float]] = {
    "genre_match_score": ("device", {"tv": 0.20, "mobile": 0.10, "web": 0.15}),
    "platform_availability": (None, 0.08),
    "release_recency_score": (None, 0.06),
    "rating_alignment": (None, 0.15),
    "time_of_day": (None, 0.05),
    "device_type": (None, 0.04),
    "recommendation_rank": (None, -0.008),
    "content_duration": ("user_type", {"new": -0.08, "returning": -0.04}),
    "user_session_length": ("time_of_day", {"morning": -0.03, "afternoon": -0.03, "evening": -0.03, "night": -0.08}),
}
DESCRIPTIONS = {
    "genre_match_score": "completion per unit of genre match (share of the title's genres the user prefers); "
                         "varies by device",
    "platform_availability": "completion when the title is on the user's platform (binary 0/1)",
    "release_recency_score": "completion per unit of recency score exp(-(2026-year)/10)",
    "rating_alignment": "completion per unit of 1-|vote_average-user's preferred rating|/10",
    "time_of_day": "completion per unit of hour/24",
    "device_type": "completion on a TV session relative to the mobile/web mix (binary is_tv): 0.04 plus "
                   "TV's steeper genre slope at the mean genre match",
    "recommendation_rank": "completion per rank position (1 = top); confounded: popular titles are ranked "
                           "higher and watched longer",
    "content_duration": "completion per hour of runtime; varies by new vs returning user",
    "user_session_length": "completion per hour already watched in the session; varies by time of day",
}


@dataclass(frozen=True)
class SimulationParams:
    n_users: int = 200
    n_days: int = 14
    seed: int = 7
    end_date: date = SIM_END_DATE

    @property
    def run_id(self) -> str:
        return f"sim-s{self.seed}-u{self.n_users}-d{self.n_days}-{self.end_date:%Y%m%d}"

    def validate(self) -> None:
        if not 1 <= self.n_users <= 1_000_000:
            raise ValueError(f"users={self.n_users}: must be 1..1,000,000")
        if not 1 <= self.n_days <= 3650:
            raise ValueError(f"days={self.n_days}: must be 1..3650")


@dataclass
class Simulation:
    params: SimulationParams
    events: list[dict]
    impressions: pd.DataFrame
    outcomes: pd.DataFrame
    truth: list[tuple[str, str, float, str]]  # (feature, segment, true_effect, description)
    stats: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.params.run_id

    def jsonl(self) -> bytes:
        return "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in self.events).encode()

    @property
    def data_hash(self) -> str:
        return hashlib.sha256(self.jsonl()).hexdigest()


def time_segment(hour: float) -> str:
    if 6 <= hour < 12:
        return "morning"
    if 12 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 22:
        return "evening"
    return "night"


def effect(feature: str, device: str, time_seg: str, user_type: str) -> float:
    dim, spec = EFFECTS[feature]
    if dim is None:
        return float(spec)
    return float(spec[{"device": device, "time_of_day": time_seg, "user_type": user_type}[dim]])


@dataclass
class SimUsers:
    ids: list[str]
    taste: np.ndarray  # (U, dim)
    affinity_z: np.ndarray  # (U, n)
    affinity: np.ndarray
    preferred_genres: list[frozenset[int]]
    preferred_rating: np.ndarray
    device: np.ndarray
    peak_hour: np.ndarray
    activity: np.ndarray


def make_users(catalogue: Catalogue, n_users: int, rng: np.random.Generator, prefix: str = "sim-u",
               eligible: np.ndarray | None = None) -> SimUsers:
    n, dim = len(catalogue), catalogue.dim
    pool = np.arange(n) if eligible is None else eligible
    tastes, genres = [], []
    for _ in range(n_users):
        m = int(rng.integers(1, 4))
        anchors = rng.choice(pool, size=m, replace=False)
        weights = rng.dirichlet(np.ones(m))
        t = (weights[:, None] * catalogue.vectors[anchors]).sum(axis=0)
        t = t + 0.3 * rng.normal(0, 1 / math.sqrt(dim), dim)
        tastes.append(t / np.linalg.norm(t))
        genres.append(frozenset(g for a in anchors for g in catalogue.genres[int(a)]))
    taste = np.asarray(tastes, dtype=np.float32)
    affinity = taste @ catalogue.vectors.T
    sd = affinity.std(axis=1, keepdims=True)
    az = np.clip((affinity - affinity.mean(axis=1, keepdims=True)) / np.where(sd == 0, 1, sd), -2.5, 2.5)
    width = max(5, len(str(n_users)))
    return SimUsers(
        ids=[f"{prefix}{u:0{width}d}" for u in range(1, n_users + 1)],
        taste=taste, affinity_z=az, affinity=affinity, preferred_genres=genres,
        preferred_rating=np.clip(rng.normal(7.0, 0.8, n_users), 4.0, 9.5),
        device=rng.choice(len(DEVICES), size=n_users, p=DEVICE_P),
        peak_hour=rng.choice([8.0, 13.0, 19.0, 20.5, 21.5, 23.0], size=n_users, p=[0.1, 0.1, 0.2, 0.25, 0.2, 0.15]),
        activity=np.minimum(rng.gamma(2.0, 0.45, n_users), 3.0),
    )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def simulate(catalogue: Catalogue, params: SimulationParams = SimulationParams()) -> Simulation:
    params.validate()
    if len(catalogue) < 2 * SLATE:
        raise ValueError(f"the catalogue has {len(catalogue)} titles; the simulator needs at least {2 * SLATE}")
    rng = np.random.default_rng(params.seed)
    users = make_users(catalogue, params.n_users, rng)
    n = len(catalogue)
    log_pop = np.log1p(np.maximum(catalogue.popularity, 0))
    pop_z = np.clip((log_pop - log_pop.mean()) / (log_pop.std() or 1.0), -3, 3)
    pop_pct = pd.Series(log_pop).rank(pct=True).to_numpy()
    pop_p = np.maximum(catalogue.popularity, 1e-6)
    pop_cdf = np.cumsum(pop_p / pop_p.sum())
    recency = np.where(catalogue.years > 0, np.exp(-np.maximum(2026 - catalogue.years, 0) / 10.0), 0.0)
    duration_h = np.where(catalogue.runtime > 0, catalogue.runtime, 90.0) / 60.0
    top_affine = np.argsort(-users.affinity, axis=1)[:, : AFFINE_POOL + 40]
    start = params.end_date - timedelta(days=params.n_days - 1)
    run = params.run_id

    events: list[dict] = []
    imp_rows: list[tuple] = []
    out_rows: list[tuple] = []
    clicked_segments: list[tuple[str, str, str, float]] = []
    clipped = 0
    for u in range(params.n_users):
        uid = users.ids[u]
        finished: set[int] = set()
        sessions_before = 0
        az_u = users.affinity_z[u]
        for day in range(params.n_days):
            n_sessions = min(int(rng.poisson(users.activity[u])), 3)
            for s in range(n_sessions):
                hour = float((users.peak_hour[u] + rng.normal(0, 2.5)) % 24)
                device = DEVICES[users.device[u]] if rng.random() < 0.8 else DEVICES[int(rng.integers(0, 3))]
                time_seg = time_segment(hour)
                user_type = "new" if sessions_before < 3 else "returning"
                day_start = datetime.combine(start + timedelta(days=day), time(0), tzinfo=timezone.utc)
                session_start = day_start + timedelta(hours=hour)
                session_id = f"{run}:{uid}:{day}:{s}"
                # the slate: 6 close to the taste, 6 by popularity, nothing finished, no repeats
                near = [i for i in top_affine[u].tolist() if i not in finished][:AFFINE_POOL]
                picks = list(rng.choice(near, size=min(SLATE // 2, len(near)), replace=False))
                chosen = set(picks)
                while len(picks) < SLATE:
                    i = min(int(np.searchsorted(pop_cdf, rng.random(), side="right")), n - 1)
                    if i not in chosen and i not in finished:
                        picks.append(i)
                        chosen.add(i)
                picks = np.array(picks, dtype=np.int64)
                policy = 0.8 * pop_z[picks] + 0.4 * az_u[picks] + rng.normal(0, 0.5, len(picks))
                slate = picks[np.argsort(-policy, kind="stable")]
                watched_h = 0.0
                budget_h = float(rng.uniform(1.0, 3.0))  # the session ends once this much is watched
                for rank0, i in enumerate(slate.tolist()):
                    if watched_h >= budget_h:
                        break  # the rest of the slate is never shown
                    rank = rank0 + 1
                    genres = catalogue.genres[i]
                    gmatch = (len(users.preferred_genres[u] & set(genres)) / len(genres)) if genres else 0.0
                    platform = float(rng.random() < 0.3 + 0.5 * pop_pct[i])
                    align = 1 - abs(catalogue.vote_average[i] - users.preferred_rating[u]) / 10.0
                    feats = {
                        "genre_match_score": gmatch, "platform_availability": platform,
                        "release_recency_score": float(recency[i]), "rating_alignment": float(align),
                        "time_of_day": hour / 24.0, "device_type": 1.0 if device == "tv" else 0.0,
                        "recommendation_rank": float(rank), "content_duration": float(duration_h[i]),
                        "user_session_length": watched_h,
                    }
                    ts = session_start + timedelta(seconds=3 * rank)
                    imp_id = f"{run}:{uid}:{day}:{s}:{rank}"
                    key = catalogue.keys[i]
                    imp_rows.append((
                        imp_id, uid, key, rank, ts, gmatch, platform, feats["release_recency_score"], float(align),
                        feats["time_of_day"], device, rank, feats["content_duration"], watched_h, json.dumps({
                            "pop_z": round(float(pop_z[i]), 6), "affinity_z": round(float(az_u[i]), 6),
                            "time_segment": time_seg, "user_type": user_type, "is_tv": device == "tv",
                        }, sort_keys=True),
                        run, "simulator", "simulated_policy", float(catalogue.popularity[i]),
                        float(users.affinity[u, i]), session_id,
                    ))
                    events.append(_event(uid, key, "impression", ts, device, imp_id))
                    click_p = _sigmoid(CLICK_INTERCEPT + 1.2 * az_u[i] + 0.4 * pop_z[i] - 0.06 * (rank - 1) + 0.3 * platform)
                    clicked = bool(rng.random() < click_p)
                    if not clicked:
                        if rng.random() < 0.03:
                            events.append(_event(uid, key, "dismiss", ts + timedelta(seconds=1), device, imp_id))
                        out_rows.append((imp_id, False, None, None, ts))
                        continue
                    y = BASE + sum(effect(f, device, time_seg, user_type) * feats[f] for f in FEATURES)
                    y += POP_EFFECT * pop_z[i] + AFFINITY_EFFECT * az_u[i] + rng.normal(0, NOISE_SD)
                    if not 0 <= y <= 1:
                        clipped += 1
                    y = float(min(max(y, 0.0), 1.0))
                    clicked_segments.append((device, time_seg, user_type, gmatch))
                    rating = None
                    if y >= 0.5 and rng.random() < 0.4:
                        rating = float(np.clip(round(users.preferred_rating[u] + 1.25 * az_u[i] + 3 * (y - 0.65)
                                                     + rng.normal(0, 0.8)), 0, 10))
                    total_s = float(duration_h[i] * 3600)
                    watched_s = round(y * total_s, 1)
                    events.append(_event(uid, key, "click", ts + timedelta(seconds=5), device, imp_id))
                    events.append(_event(uid, key, "complete" if y >= 0.9 else "play",
                                         ts + timedelta(seconds=10 + watched_s), device, imp_id,
                                         completion=round(y, 4), rating=rating, duration_s=watched_s,
                                         total_duration_s=round(total_s, 1)))
                    out_rows.append((imp_id, True, round(y, 6), rating, ts + timedelta(seconds=10 + watched_s)))
                    watched_h += y * duration_h[i]
                    if y >= 0.7:
                        finished.add(i)
                sessions_before += 1
    impressions = pd.DataFrame(imp_rows, columns=list(IMPRESSION_COLUMNS))
    outcomes = pd.DataFrame(out_rows, columns=["impression_id", "clicked", "watch_completion", "rating", "observed_at"])
    truth = ground_truth(clicked_segments)
    stats = {"impressions": len(impressions), "clicks": int(outcomes["clicked"].sum()), "events": len(events),
             "clipped_completions": clipped, "users": params.n_users, "days": params.n_days}
    return Simulation(params, events, impressions, outcomes, truth, stats)


IMPRESSION_COLUMNS = ("impression_id", "user_id", "content_id", "rank", "served_at", "genre_match_score",
                      "platform_availability", "release_recency_score", "rating_alignment", "time_of_day",
                      "device_type", "recommendation_rank", "content_duration", "user_session_length", "features",
                      "run_id", "source", "strategy", "popularity", "similarity", "session_id")


def _event(user: str, key: str, event_type: str, ts: datetime, device: str, impression_id: str, **extra) -> dict:
    event = {"user_id": user, "content_key": key, "event_type": event_type,
             "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "device": device,
             "is_rewatch": False, "impression_id": impression_id}
    event.update({k: v for k, v in extra.items() if v is not None})
    return event


def ground_truth(clicked_segments: list[tuple]) -> list[tuple[str, str, float, str]]:
    """β per feature, globally and per segment, mixed over the clicked impressions where it varies.

    device_type's truth is the average effect of a TV session against the non-TV mix, so it includes
    the steeper genre slope on TV: 0.04 + mean genre match × (β_genre(tv) − β_genre of the non-TV
    sessions); the tuples carry each clicked impression's genre match for it (older 3-tuples: 0.04)."""
    width = len(clicked_segments[0]) if clicked_segments else 3
    columns = ["device", "time_of_day", "user_type", "genre_match"][:width]
    frame = pd.DataFrame(clicked_segments, columns=columns)
    segments = [("all", None, None)] + [(f"{dim}={v}", dim, v) for dim, values in
                                         (("device", DEVICES), ("time_of_day", TIME_SEGMENTS),
                                          ("user_type", USER_TYPES)) for v in values]
    rows = []
    for feature in FEATURES:
        dim, spec = EFFECTS[feature]
        for name, seg_dim, seg_value in segments:
            if feature == "device_type" and seg_dim == "device":
                continue  # the TV effect is not defined within one device
            if feature == "device_type" and "genre_match" in frame:
                sub = frame if seg_dim is None else frame[frame[seg_dim] == seg_value]
                slopes = EFFECTS["genre_match_score"][1]
                other = sub.loc[sub["device"] != "tv", "device"].map(slopes)
                if sub.empty or other.empty:
                    continue
                value = float(spec) + float(sub["genre_match"].mean()) * (slopes["tv"] - float(other.mean()))
            elif dim is None:
                value = float(spec)
            elif seg_dim == dim:
                value = float(spec[seg_value])
            else:
                sub = frame if seg_dim is None else frame[frame[seg_dim] == seg_value]
                if sub.empty:
                    continue
                value = float(sub[dim].map(spec).mean())
            rows.append((feature, name, round(value, 8), DESCRIPTIONS[feature]))
    return rows


# =========================================================================== strategy log (bandits)
# A separate simulation for the strategy bandits (docs/bandits.md): sessions served by one of four
# recommendation strategies drawn from a known logging policy, with a planted best strategy per
# context. It writes its own run (learning.bandit_simulations / bandit_truth) and nothing of the above
# changes: `simulate` and its defaults are untouched.
#
# * Context of a session: device × daypart × new/returning user (the same user model as above).
# * Strategy ~ LOGGING_POLICY[user type] (the logged propensity), then a slate of STRATEGY_SLATE titles
#   that strategy would pick (which titles is cosmetic: the outcome depends on context, strategy, rank).
# * Click ~ Bernoulli(σ(L(c, a) − RANK_DECAY·(rank − 1))), L = device + daypart + user-type baselines +
#   a small per-strategy offset + BEST_BOOST for the context's planted best strategy (``best_strategy``).
# * Completion | click ~ Beta with mean STRATEGY_COMPLETION[a] (concentration 6); a rating on 40 % of
#   clicks, rating/10 ~ Beta with mean STRATEGY_RATING[a] (concentration 12).
# * Truth per context × strategy: the expected reward per impression,
#   mean over ranks of P(click)·(0.2 + 0.5·completion mean + 0.3·0.4·rating mean) — exact.

STRATEGY_SLATE = 6
STRATEGY_RANK_DECAY = 0.1
STRATEGY_BEST_BOOST = 1.0
STRATEGY_DEVICE_BASE = {"tv": -0.9, "mobile": -1.2, "web": -1.1}
STRATEGY_DAYPART_BASE = {"morning": -0.1, "afternoon": 0.0, "evening": 0.15, "night": 0.05}
STRATEGY_USER_BASE = {"new": -0.15, "returning": 0.1}
STRATEGY_OFFSET = {"content_similarity": 0.05, "popularity": 0.0, "causal_rerank": 0.05, "diversity_heavy": -0.05}
STRATEGY_COMPLETION = {"content_similarity": 0.55, "popularity": 0.5, "causal_rerank": 0.6, "diversity_heavy": 0.5}
STRATEGY_RATING = {"content_similarity": 0.72, "popularity": 0.68, "causal_rerank": 0.74, "diversity_heavy": 0.7}
STRATEGY_RATE_P = 0.4
# the logging policy: P(strategy | user type), in the order of lib.learning.bandits.ARMS
LOGGING_POLICY = {"new": (0.2, 0.4, 0.2, 0.2), "returning": (0.3, 0.2, 0.3, 0.2)}


def best_strategy(device: str, part: str, user_type: str) -> str:
    """The planted best strategy of a context: popularity for new users (no taste to go on yet; browsing
    on the web in the morning: diversity); for returning users, the causal re-rank on the TV and web in
    the evening (and TV at night), content similarity on the TV by day and on mobile (but popularity on
    mobile in the afternoon), diversity on the web otherwise."""
    if user_type == "new":
        return "diversity_heavy" if (device, part) == ("web", "morning") else "popularity"
    if device == "tv":
        return "causal_rerank" if part in ("evening", "night") else "content_similarity"
    if device == "mobile":
        return "popularity" if part == "afternoon" else "content_similarity"
    return "causal_rerank" if part == "evening" else "diversity_heavy"


def strategy_click_logit(device: str, part: str, user_type: str, strategy: str) -> float:
    return (STRATEGY_DEVICE_BASE[device] + STRATEGY_DAYPART_BASE[part] + STRATEGY_USER_BASE[user_type]
            + STRATEGY_OFFSET[strategy] + (STRATEGY_BEST_BOOST if strategy == best_strategy(device, part, user_type)
                                           else 0.0))


def strategy_value(device: str, part: str, user_type: str, strategy: str) -> float:
    """The planted expected reward of one impression of ``strategy`` in the context."""
    logit = strategy_click_logit(device, part, user_type, strategy)
    p_click = float(np.mean([_sigmoid(logit - STRATEGY_RANK_DECAY * r) for r in range(STRATEGY_SLATE)]))
    return p_click * (0.2 + 0.5 * STRATEGY_COMPLETION[strategy] + 0.3 * STRATEGY_RATE_P * STRATEGY_RATING[strategy])


def strategy_outcomes(device: str, part: str, user_type: str, strategy: str, rng: np.random.Generator,
                      k: int = STRATEGY_SLATE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clicked, completion, rating) of one served slate of ``k``: NaN where there was no watch or rating."""
    logit = strategy_click_logit(device, part, user_type, strategy)
    clicked = rng.random(k) < 1 / (1 + np.exp(-(logit - STRATEGY_RANK_DECAY * np.arange(k))))
    m, q = STRATEGY_COMPLETION[strategy], STRATEGY_RATING[strategy]
    completion = np.where(clicked, np.round(rng.beta(6 * m, 6 * (1 - m), k), 6), np.nan)
    rated = clicked & (rng.random(k) < STRATEGY_RATE_P)
    rating = np.where(rated, np.round(10 * rng.beta(12 * q, 12 * (1 - q), k), 4), np.nan)
    return clicked, completion, rating


@dataclass(frozen=True)
class StrategyLogParams:
    n_users: int = 400
    n_days: int = 14
    seed: int = 11
    end_date: date = SIM_END_DATE

    @property
    def run_id(self) -> str:
        return f"strat-s{self.seed}-u{self.n_users}-d{self.n_days}-{self.end_date:%Y%m%d}"

    def validate(self) -> None:
        SimulationParams(self.n_users, self.n_days, self.seed, self.end_date).validate()


STRATEGY_LOG_COLUMNS = ("impression_id", "user_id", "content_id", "rank", "served_at", "genre_match_score",
                        "platform_availability", "release_recency_score", "rating_alignment", "time_of_day",
                        "device_type", "recommendation_rank", "content_duration", "user_session_length", "features",
                        "run_id", "source", "strategy", "popularity", "similarity", "session_id", "propensity")


@dataclass
class StrategyLog:
    params: StrategyLogParams
    impressions: pd.DataFrame  # STRATEGY_LOG_COLUMNS
    outcomes: pd.DataFrame  # impression_id, clicked, watch_completion, rating, observed_at
    truth: list[tuple[str, str, float, float]]  # (context, strategy, true value, logging propensity)
    stats: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.params.run_id

    @property
    def data_hash(self) -> str:
        digest = hashlib.sha256()
        for frame in (self.impressions, self.outcomes):
            digest.update(",".join(frame.columns).encode())
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()


def simulate_strategy_log(catalogue: Catalogue, params: StrategyLogParams = StrategyLogParams()) -> StrategyLog:
    from gateway_pipelines.lib.learning.bandits import ARMS, NEW_USER_SESSIONS

    params.validate()
    if len(catalogue) < 4 * STRATEGY_SLATE:
        raise ValueError(f"the catalogue has {len(catalogue)} titles; the strategy log needs at least "
                         f"{4 * STRATEGY_SLATE}")
    rng = np.random.default_rng(params.seed)
    users = make_users(catalogue, params.n_users, rng, prefix="strat-u")
    log_pop = np.log1p(np.maximum(catalogue.popularity, 0))
    pop_pct = pd.Series(log_pop).rank(pct=True).to_numpy()
    popular = np.argsort(-log_pop, kind="stable")[:50]
    recency = np.where(catalogue.years > 0, np.exp(-np.maximum(2026 - catalogue.years, 0) / 10.0), 0.0)
    duration_h = np.where(catalogue.runtime > 0, catalogue.runtime, 90.0) / 60.0
    top_affine = np.argsort(-users.affinity, axis=1)[:, :60]
    first_genre = [g[0] if g else -1 for g in catalogue.genres]
    start = params.end_date - timedelta(days=params.n_days - 1)
    t0 = datetime.combine(start, time(0), tzinfo=timezone.utc)
    run = params.run_id
    gm = catalogue.genre_matrix.astype(np.float64)
    n_genres = np.maximum(gm.sum(axis=1), 1)
    col = {g: j for j, g in enumerate(catalogue.genre_ids)}
    # columns, one list entry per session (arrays of its slate) or per impression
    c_item, c_rank, c_start, c_user, c_sess, c_dev, c_hour, c_strat, c_prop, c_feat = ([] for _ in range(10))
    c_platform, c_click, c_comp, c_rating, c_gmatch, c_align, c_session_len = ([] for _ in range(7))
    for u in range(params.n_users):
        uid = users.ids[u]
        sessions_before = 0
        az_u = users.affinity_z[u]
        mask = np.zeros(gm.shape[1])
        mask[[col[g] for g in users.preferred_genres[u] if g in col]] = 1.0
        gmatch_u = np.where(gm.sum(axis=1) > 0, (gm @ mask) / n_genres, 0.0)
        for day in range(params.n_days):
            for s in range(min(int(rng.poisson(users.activity[u])), 3)):
                hour = float((users.peak_hour[u] + rng.normal(0, 2.5)) % 24)
                device = DEVICES[users.device[u]] if rng.random() < 0.8 else DEVICES[int(rng.integers(0, 3))]
                part = time_segment(hour)
                user_type = "new" if sessions_before < NEW_USER_SESSIONS else "returning"
                policy = LOGGING_POLICY[user_type]
                a = int(rng.choice(len(ARMS), p=policy))
                strategy = ARMS[a]
                slate = _strategy_slate(strategy, top_affine[u], popular, az_u, first_genre, catalogue, rng)
                k = len(slate)
                c_platform.append(rng.random(k) < 0.3 + 0.5 * pop_pct[slate])
                clicked, completion, rating = strategy_outcomes(device, part, user_type, strategy, rng, k)
                c_rating.append(rating)
                watched = np.nan_to_num(completion) * duration_h[slate]
                c_session_len.append(np.r_[0.0, np.cumsum(watched)[:-1]])
                c_click.append(clicked)
                c_comp.append(completion)
                c_item.append(slate)
                c_gmatch.append(gmatch_u[slate])
                c_align.append(1 - np.abs(catalogue.vote_average[slate] - users.preferred_rating[u]) / 10)
                c_rank.append(np.arange(1, k + 1))
                c_start.append(np.full(k, (day * 24 + hour) * 3600.0))
                c_user.append(np.full(k, u))
                sid = f"{run}:{uid}:{day}:{s}"
                c_sess += [sid] * k
                c_dev += [device] * k
                c_hour.append(np.full(k, hour))
                c_strat += [strategy] * k
                c_prop.append(np.full(k, policy[a]))
                c_feat += [json.dumps({"time_segment": part, "user_type": user_type,
                                       "context": f"{device}|{part}|{user_type}"}, sort_keys=True)] * k
                sessions_before += 1
    cat = (lambda parts, dtype=None: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype))
    item, rank = cat(c_item, np.int64), cat(c_rank, np.int64)
    served = (pd.to_datetime(t0) + pd.to_timedelta(cat(c_start, float) + 3 * rank, unit="s")).floor("us")
    completion = cat(c_comp, float)
    ids = [f"{sid}:{r}" for sid, r in zip(c_sess, rank.tolist())]
    user_idx = cat(c_user, np.int64)
    impressions = pd.DataFrame({
        "impression_id": ids, "user_id": [users.ids[i] for i in user_idx.tolist()],
        "content_id": [catalogue.keys[i] for i in item.tolist()], "rank": rank, "served_at": served,
        "genre_match_score": cat(c_gmatch, float), "platform_availability": cat(c_platform, float),
        "release_recency_score": recency[item].astype(float), "rating_alignment": cat(c_align, float),
        "time_of_day": cat(c_hour, float) / 24.0, "device_type": c_dev, "recommendation_rank": rank,
        "content_duration": duration_h[item].astype(float), "user_session_length": cat(c_session_len, float),
        "features": c_feat, "run_id": run, "source": "strategy_simulator", "strategy": c_strat,
        "popularity": catalogue.popularity[item].astype(float),
        "similarity": users.affinity[user_idx, item].astype(float), "session_id": c_sess,
        "propensity": cat(c_prop, float),
    }, columns=list(STRATEGY_LOG_COLUMNS))
    clicked = cat(c_click, bool)
    observed = served + pd.to_timedelta(np.where(clicked, 10 + np.nan_to_num(completion) * duration_h[item] * 3600, 0),
                                        unit="s").floor("us")
    outcomes = pd.DataFrame({"impression_id": ids, "clicked": clicked, "watch_completion": completion,
                             "rating": cat(c_rating, float), "observed_at": observed})
    truth = [(f"{d}|{t}|{ut}", arm, round(strategy_value(d, t, ut, arm), 10), LOGGING_POLICY[ut][k])
             for d in DEVICES for t in TIME_SEGMENTS for ut in USER_TYPES for k, arm in enumerate(ARMS)]
    stats = {"impressions": len(impressions), "sessions": len(c_start), "clicks": int(clicked.sum()),
             "users": params.n_users, "days": params.n_days}
    return StrategyLog(params, impressions, outcomes, truth, stats)


def _strategy_slate(strategy: str, near: np.ndarray, popular: np.ndarray, az_u: np.ndarray, first_genre: list[int],
                    catalogue: Catalogue, rng: np.random.Generator) -> np.ndarray:
    """The titles a strategy would show (cosmetic: outcomes depend on context, strategy and rank only)."""
    k = STRATEGY_SLATE
    if strategy == "popularity":
        return rng.choice(popular, size=k, replace=False)
    if strategy == "diversity_heavy":
        picks, seen = [], set()
        for i in rng.permutation(near).tolist():
            if first_genre[i] not in seen or len(picks) + (len(near) - len(seen)) <= k:
                picks.append(i)
                seen.add(first_genre[i])
            if len(picks) == k:
                break
        rest = [i for i in near.tolist() if i not in picks]
        return np.array(picks + rest[: k - len(picks)], dtype=np.int64)
    pool = near[:20] if strategy == "content_similarity" else near[:30]
    chosen = rng.choice(pool, size=k, replace=False)
    key = az_u[chosen] if strategy == "content_similarity" else az_u[chosen] + 2 * catalogue.vote_average[chosen] / 10
    return chosen[np.argsort(-key, kind="stable")]
