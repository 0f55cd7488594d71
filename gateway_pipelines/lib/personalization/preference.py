"""User preference vectors: the media gateway's EMA rule (AGENTDB.md §6.3), recomputed from events.

The rule, per watch event e of a user, in time order (ts, then event_id):

* signal ``s = min(1, 0.4·completion + (rating ? 0.3·rating/10 : completion > 0.8 ? 0.15 : 0)
  + (rewatch ? 0.2 : 0) + 0.1·min(duration/total_duration, 1))``;
* learning rate ``α = clamp(0.3·(1 + (1 − c))·(0.5 + 0.5·s), 0.1, 0.7)`` with the confidence c
  before the event;
* vector ``v ← normalize((1 − α)·v + α·x)`` with x the title's content vector; the first event sets
  ``v = x``;
* confidence ``c ← c + 0.1·(1 − c)`` when s > 0.5, else ``c ← c − 0.05·c``, clamped to [0.1, 0.95],
  starting at 0.1;
* genre affinity, for each genre of the title: ``a ← a + (target − a)·0.1·s`` with target 1 when
  s > 0.5, else 0, clamped to [0, 1], starting at 0.5.

Which events count: ``play``, ``progress``, ``complete`` and ``rate`` are watches. A missing
completion is 1 for ``complete`` and ``rate`` (a rating says the title was watched) and 0 otherwise;
a missing duration ratio is the completion. ``impression`` and ``click`` carry no outcome and change
nothing. ``dismiss`` leaves the vector alone, lowers confidence (as a signal ≤ 0.5 does) and pulls
the title's genres toward 0 with weight 0.1·0.5.

What is fixed against the media gateway: the vector has the content vectors' dimension (768, not
384); x is the title's real content vector (not an embedding of numeric genre ids, nor a hash of
"content_<id>"); confidence starts at 0.1 everywhere (0 in one code path, 0.1 in the other);
ratings are 0-10 everywhere (MovieLens stars x 2; the gateway mixes /10, (r−1)/4 and /5); a dismiss
or a 0 % watch no longer pulls the vector toward the title; and the state is recomputed from all of
a user's events in time order, so a rerun is identical and a late event lands in its place (the
gateway applies updates in arrival order, once, in memory).

Time decay (``half_life_days``, off by default), the batch rebuild's idea (Rust SONA: 0.95^(days/30)):
over the gap Δ since the user's previous watch event, the old state keeps the weight
``δ = 0.5^(Δ / half_life)``: α becomes ``1 − (1 − α)·δ``, confidence decays toward 0.1 and each
genre affinity toward 0.5. It depends only on the events, so it is as deterministic as the rule.

The computation is vectorised across users: step j applies every user's j-th event at once, so a
rebuild costs O(events x dim) in numpy, not a Python loop per event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalogue import Catalogue

MIN_CONFIDENCE, MAX_CONFIDENCE = 0.1, 0.95
BASE_ALPHA, MIN_ALPHA, MAX_ALPHA = 0.3, 0.1, 0.7
GENRE_RATE = 0.1
DISMISS_WEIGHT = 0.5
WATCH_TYPES = ("play", "progress", "complete", "rate")
UPDATE_TYPES = WATCH_TYPES + ("dismiss",)
FINISHED_COMPLETION = 0.7  # the media gateway's own success line (completionRate > 0.7)

EVENT_COLUMNS = ("event_id", "user_id", "content_key", "event_type", "completion", "rating", "duration_s",
                 "total_duration_s", "is_rewatch", "ts")


def signal(event_type: np.ndarray, completion: np.ndarray, rating: np.ndarray, duration_s: np.ndarray,
           total_duration_s: np.ndarray, is_rewatch: np.ndarray) -> np.ndarray:
    """§6.3's signal for each event (NaN marks a missing value); 0 for non-watch events."""
    event_type = np.asarray(event_type)
    completion = np.asarray(completion, dtype=np.float64)
    rating = np.asarray(rating, dtype=np.float64)
    watched_without = np.isin(event_type, ("complete", "rate"))
    comp = np.where(np.isnan(completion), np.where(watched_without, 1.0, 0.0), completion)
    dur = np.asarray(duration_s, dtype=np.float64)
    total = np.asarray(total_duration_s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isnan(dur) | np.isnan(total) | (total <= 0), comp, dur / total)
    ratio = np.minimum(ratio, 1.0)
    rating_part = np.where(~np.isnan(rating), 0.3 * rating / 10.0, np.where(comp > 0.8, 0.15, 0.0))
    s = 0.4 * comp + rating_part + 0.2 * np.asarray(is_rewatch, dtype=np.float64) + 0.1 * ratio
    s = np.minimum(s, 1.0)
    return np.where(np.isin(event_type, WATCH_TYPES), s, 0.0)


def is_finished(event_type, completion) -> np.ndarray:
    """Finished: completion ≥ 0.7, a `complete` event, or a rating (a rated title was watched)."""
    event_type = np.asarray(event_type)
    completion = np.asarray(completion, dtype=np.float64)
    return np.isin(event_type, ("complete", "rate")) | (np.nan_to_num(completion, nan=0.0) >= FINISHED_COMPLETION) & (
        np.isin(event_type, WATCH_TYPES))


@dataclass
class Preferences:
    """One row per user (users sorted)."""

    users: list[str]
    vectors: np.ndarray  # (U, dim) float32; rows of users without a watch event are zero
    has_vector: np.ndarray  # (U,) bool
    confidence: np.ndarray  # (U,)
    genre_ids: list[int]
    affinity: np.ndarray  # (U, G)
    touched: np.ndarray  # (U, G) bool: genres the user's events touched
    event_count: np.ndarray  # all events of the user, watch or not
    last_event_at: np.ndarray  # epoch seconds of the user's last event

    def index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    def genre_affinities(self, row: int) -> dict[str, float]:
        return {str(g): round(float(self.affinity[row, j]), 6) for j, g in enumerate(self.genre_ids)
                if self.touched[row, j]}


def prepare(events: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Events with the catalogue row of each title, sorted by (user, ts, event_id); unknown titles dropped
    (ingestion already quarantines them)."""
    frame = events.copy()
    frame["item"] = frame["content_key"].map(catalogue.index)
    frame = frame[frame["item"].notna()].copy()
    frame["item"] = frame["item"].astype(np.int64)
    ts = frame["ts"]
    if not pd.api.types.is_numeric_dtype(ts):
        ts = (pd.to_datetime(ts, utc=True) - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
    frame["t"] = ts.astype(np.float64)
    for column in ("completion", "rating", "duration_s", "total_duration_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    frame["is_rewatch"] = frame["is_rewatch"].fillna(False).astype(bool)
    return frame.sort_values(["user_id", "t", "event_id"], kind="mergesort").reset_index(drop=True)


def compute_preferences(events: pd.DataFrame, catalogue: Catalogue, *, half_life_days: float | None = None,
                        prepared: bool = False) -> Preferences:
    """The §6.3 state of every user in ``events`` (columns EVENT_COLUMNS; ts as datetimes or epoch s)."""
    if half_life_days is not None and half_life_days <= 0:
        raise ValueError(f"half_life_days={half_life_days}: must be positive (or None for no decay)")
    frame = events if prepared else prepare(events, catalogue)
    user_codes, users = pd.factorize(frame["user_id"], sort=True)
    users = np.asarray(users, dtype=object)
    n_users, dim = len(users), catalogue.dim
    genre_ids = catalogue.genre_ids
    gm = catalogue.genre_matrix
    vectors = np.zeros((n_users, dim), dtype=np.float32)
    has = np.zeros(n_users, dtype=bool)
    conf = np.full(n_users, MIN_CONFIDENCE)
    aff = np.full((n_users, len(genre_ids)), 0.5)
    touched = np.zeros((n_users, len(genre_ids)), dtype=bool)
    counts = np.bincount(user_codes, minlength=n_users)
    t_all = frame["t"].to_numpy()
    last = np.full(n_users, -np.inf)
    np.maximum.at(last, user_codes, t_all)

    types = frame["event_type"].to_numpy(dtype=object)
    mask = np.isin(types, UPDATE_TYPES)
    if mask.any():
        s_all = signal(types[mask], frame["completion"].to_numpy()[mask], frame["rating"].to_numpy()[mask],
                       frame["duration_s"].to_numpy()[mask], frame["total_duration_s"].to_numpy()[mask],
                       frame["is_rewatch"].to_numpy()[mask])
        codes = user_codes[mask]
        items = frame["item"].to_numpy()[mask]
        t = t_all[mask]
        dismiss = types[mask] == "dismiss"
        # events are sorted by user then time: position of each event within its user's run
        starts = np.searchsorted(codes, np.arange(n_users), side="left")
        n_upd = np.bincount(codes, minlength=n_users)
        prev_t = np.full(n_users, np.nan)
        order = np.argsort(-n_upd, kind="stable")  # users with most events first: step j uses a prefix
        sorted_counts = n_upd[order]
        for j in range(int(n_upd.max()) if len(n_upd) else 0):
            active = order[: int(np.searchsorted(-sorted_counts, -(j + 1), side="right"))]
            idx = starts[active] + j
            s = s_all[idx]
            x = catalogue.vectors[items[idx]]
            dis = dismiss[idx]
            if half_life_days is not None:
                gap = np.where(np.isnan(prev_t[active]), 0.0, t[idx] - prev_t[active])
                delta = np.power(0.5, np.maximum(gap, 0.0) / (half_life_days * 86400.0))
                conf[active] = MIN_CONFIDENCE + (conf[active] - MIN_CONFIDENCE) * delta
                aff[active] = 0.5 + (aff[active] - 0.5) * delta[:, None]
            else:
                delta = np.ones(len(active))
            c = conf[active]
            alpha = np.clip(BASE_ALPHA * (1 + (1 - c)) * (0.5 + 0.5 * s), MIN_ALPHA, MAX_ALPHA)
            alpha = 1 - (1 - alpha) * delta
            watch = ~dis
            # the first watch sets v = x (alpha 1); a dismiss leaves v (alpha 0)
            alpha = np.where(dis, 0.0, np.where(has[active], alpha, 1.0)).astype(np.float32)
            new = vectors[active]
            new += alpha[:, None] * (x - new)
            norms = np.sqrt(np.einsum("ij,ij->i", new, new))
            new /= np.where(norms == 0, 1, norms)[:, None]
            vectors[active] = new
            has[active] = has[active] | watch
            up = (s > 0.5) & watch
            conf[active] = np.clip(np.where(up, c + 0.1 * (1 - c), c - 0.05 * c), MIN_CONFIDENCE, MAX_CONFIDENCE)
            g = gm[items[idx]]
            weight = np.where(dis, DISMISS_WEIGHT, s)
            target = up.astype(np.float64)
            a = aff[active]
            aff[active] = np.clip(a + g * (target[:, None] - a) * GENRE_RATE * weight[:, None], 0.0, 1.0)
            touched[active] |= g.astype(bool)
            prev_t[active] = t[idx]
    return Preferences(list(users), vectors, has, conf, genre_ids, aff, touched, counts, last)
