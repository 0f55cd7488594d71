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


def _type_masks(event_type, *groups: tuple[str, ...]) -> list[np.ndarray]:
    """For each group of names, whether each event's type is in it: one hash pass over the column and
    a lookup per group (np.isin on a million-row object array sorts it, once per call)."""
    codes, uniques = pd.factorize(np.asarray(event_type, dtype=object), use_na_sentinel=False)
    uniques = np.asarray(uniques, dtype=object)
    return [np.isin(uniques, names)[codes] for names in groups]


def signal(event_type: np.ndarray, completion: np.ndarray, rating: np.ndarray, duration_s: np.ndarray,
           total_duration_s: np.ndarray, is_rewatch: np.ndarray) -> np.ndarray:
    """§6.3's signal for each event (NaN marks a missing value); 0 for non-watch events."""
    watched_without, watch = _type_masks(event_type, ("complete", "rate"), WATCH_TYPES)
    return _signal(watched_without, watch, completion, rating, duration_s, total_duration_s, is_rewatch)


def _signal(watched_without: np.ndarray, watch: np.ndarray, completion, rating, duration_s, total_duration_s,
            is_rewatch) -> np.ndarray:
    completion = np.asarray(completion, dtype=np.float64)
    rating = np.asarray(rating, dtype=np.float64)
    comp = np.where(np.isnan(completion), np.where(watched_without, 1.0, 0.0), completion)
    dur = np.asarray(duration_s, dtype=np.float64)
    total = np.asarray(total_duration_s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isnan(dur) | np.isnan(total) | (total <= 0), comp, dur / total)
    ratio = np.minimum(ratio, 1.0)
    rating_part = np.where(~np.isnan(rating), 0.3 * rating / 10.0, np.where(comp > 0.8, 0.15, 0.0))
    s = 0.4 * comp + rating_part + 0.2 * np.asarray(is_rewatch, dtype=np.float64) + 0.1 * ratio
    s = np.minimum(s, 1.0)
    return np.where(watch, s, 0.0)


def is_finished(event_type, completion) -> np.ndarray:
    """Finished: completion ≥ 0.7, a `complete` event, or a rating (a rated title was watched)."""
    completion = np.asarray(completion, dtype=np.float64)
    rated, watch = _type_masks(event_type, ("complete", "rate"), WATCH_TYPES)
    return rated | (np.nan_to_num(completion, nan=0.0) >= FINISHED_COMPLETION) & watch


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


def _columns(events: pd.DataFrame, catalogue: Catalogue) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The events of catalogue titles (unknown titles dropped: ingestion already quarantines them) and
    their typed columns, in input order."""
    item = pd.Index(catalogue.keys).get_indexer(events["content_key"])
    keep = item >= 0
    sub = events if keep.all() else events.loc[keep]
    ts = sub["ts"]
    if not pd.api.types.is_numeric_dtype(ts):
        ts = (pd.to_datetime(ts, utc=True) - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
    cols = {"item": item[keep].astype(np.int64), "t": np.asarray(ts.astype(np.float64))}
    for column in ("completion", "rating", "duration_s", "total_duration_s"):
        cols[column] = np.asarray(pd.to_numeric(sub[column], errors="coerce").astype(np.float64))
    cols["is_rewatch"] = np.asarray(sub["is_rewatch"].fillna(False).astype(bool))
    return sub, cols


def _time_order(user_codes: np.ndarray, t: np.ndarray, event_id: pd.Series) -> np.ndarray:
    """The permutation that sorts events by (user, t, event_id), stably. Only events that tie on
    (user, t) are compared by event_id: sorting a million id strings costs more than the rest."""
    order = np.lexsort((t, user_codes))
    u, tt = user_codes[order], t[order]
    tie = (u[1:] == u[:-1]) & ((tt[1:] == tt[:-1]) | (np.isnan(tt[1:]) & np.isnan(tt[:-1])))
    if tie.any():
        group = np.concatenate(([0], np.cumsum(~tie)))
        tied = np.zeros(len(order), dtype=bool)
        tied[1:] |= tie
        tied[:-1] |= tie
        pos = np.flatnonzero(tied)
        ids = np.asarray(event_id, dtype=object)[order[pos]]
        within = pd.DataFrame({"g": group[pos], "e": ids}).sort_values(["g", "e"], kind="mergesort").index
        order[pos] = order[pos][np.asarray(within)]
    return order


def prepare(events: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Events with the catalogue row of each title, sorted by (user, ts, event_id); unknown titles dropped
    (ingestion already quarantines them)."""
    sub, cols = _columns(events, catalogue)
    frame = sub.copy()
    for name, values in cols.items():
        frame[name] = values
    user_codes, _ = pd.factorize(frame["user_id"], sort=True)
    order = _time_order(user_codes, cols["t"], frame["event_id"])
    return frame.take(order).reset_index(drop=True)


# users replayed together: a block's vectors and the titles of one step (512 x 768 float32 = 1.5 MiB
# each) stay in cache, so a step's numpy passes do not go to memory; smaller blocks pay more in
# per-call overhead than they win (1M events: 128 users 12.5 s, 512 8.2 s, all at once 10.3 s, side by side)
BLOCK_USERS = 512


def compute_preferences(events: pd.DataFrame, catalogue: Catalogue, *, half_life_days: float | None = None,
                        prepared: bool = False) -> Preferences:
    """The §6.3 state of every user in ``events`` (columns EVENT_COLUMNS; ts as datetimes or epoch s).

    ``prepared``: ``events`` is the output of :func:`prepare` (or a row subset of it, still sorted)."""
    if half_life_days is not None and half_life_days <= 0:
        raise ValueError(f"half_life_days={half_life_days}: must be positive (or None for no decay)")
    if prepared:
        sub = events
        cols = {c: sub[c].to_numpy() for c in ("item", "t", "completion", "rating", "duration_s",
                                                 "total_duration_s", "is_rewatch")}
    else:
        sub, cols = _columns(events, catalogue)
    user_codes, users = pd.factorize(sub["user_id"], sort=True)
    type_codes, type_names = pd.factorize(sub["event_type"], use_na_sentinel=False)
    if not prepared:
        order = _time_order(user_codes, cols["t"], sub["event_id"])
        user_codes, type_codes = user_codes[order], type_codes[order]
        cols = {name: values[order] for name, values in cols.items()}
    type_names = np.asarray(type_names, dtype=object)
    watched_without, watch, dismiss = (np.isin(type_names, names)[type_codes]
                                       for names in (("complete", "rate"), WATCH_TYPES, ("dismiss",)))
    users = np.asarray(users, dtype=object)
    n_users, dim = len(users), catalogue.dim
    genre_ids = catalogue.genre_ids
    vectors = np.zeros((n_users, dim), dtype=np.float32)
    has = np.zeros(n_users, dtype=bool)
    conf = np.full(n_users, MIN_CONFIDENCE)
    aff = np.full((n_users, len(genre_ids)), 0.5)
    touched = np.zeros((n_users, len(genre_ids)), dtype=bool)
    counts = np.bincount(user_codes, minlength=n_users)
    t_all = np.asarray(cols["t"], dtype=np.float64)
    last = np.full(n_users, -np.inf)
    np.maximum.at(last, user_codes, t_all)
    mask = watch | dismiss
    if mask.any():
        s_all = _signal(watched_without[mask], watch[mask], cols["completion"][mask], cols["rating"][mask],
                        cols["duration_s"][mask], cols["total_duration_s"][mask], cols["is_rewatch"][mask])
        _replay(catalogue, user_codes[mask], np.asarray(cols["item"][mask], dtype=np.int64), t_all[mask],
                dismiss[mask], s_all, half_life_days, vectors, has, conf, aff, touched)
    return Preferences(list(users), vectors, has, conf, genre_ids, aff, touched, counts, last)


def _replay(catalogue: Catalogue, codes: np.ndarray, items: np.ndarray, t: np.ndarray, dismiss: np.ndarray,
            s_all: np.ndarray, half_life_days: float | None, vectors: np.ndarray, has: np.ndarray, conf: np.ndarray,
            aff: np.ndarray, touched: np.ndarray) -> None:
    """Apply the update events (sorted by user, then time) to the state arrays, in place.

    The rule is sequential per user, so step j applies the j-th event of every user at once; users
    are taken in blocks of BLOCK_USERS, most events first, so the users still active at step j are a
    prefix of the block and every step works on views of the block's arrays."""
    n_users, dim = vectors.shape
    n_genres = aff.shape[1]
    gm = catalogue.genre_matrix
    cat_vectors = catalogue.vectors
    starts = np.searchsorted(codes, np.arange(n_users), side="left")
    n_upd = np.bincount(codes, minlength=n_users)
    order = np.argsort(-n_upd, kind="stable")
    n_active = int(np.count_nonzero(n_upd))
    block = np.zeros((min(BLOCK_USERS, max(n_active, 1)), dim), dtype=np.float32)
    x_buf = np.empty_like(block)
    for b0 in range(0, n_active, BLOCK_USERS):
        ub = order[b0: min(b0 + BLOCK_USERS, n_active)]
        size = len(ub)
        cnt = n_upd[ub]
        neg = -cnt
        first = starts[ub]
        v_all = block[:size]
        v_all[:] = 0.0
        has_b = np.zeros(size, dtype=bool)
        conf_b = np.full(size, MIN_CONFIDENCE)
        aff_b = np.full((size, n_genres), 0.5)
        touched_b = np.zeros((size, n_genres), dtype=bool)
        prev_t = np.full(size, np.nan)
        for j in range(int(cnt[0])):
            m = int(np.searchsorted(neg, -(j + 1), side="right"))
            idx = first[:m] + j
            s = s_all[idx]
            dis = dismiss[idx]
            it = items[idx]
            if half_life_days is not None:
                gap = np.where(np.isnan(prev_t[:m]), 0.0, t[idx] - prev_t[:m])
                delta = np.power(0.5, np.maximum(gap, 0.0) / (half_life_days * 86400.0))
                conf_b[:m] = MIN_CONFIDENCE + (conf_b[:m] - MIN_CONFIDENCE) * delta
                aff_b[:m] = 0.5 + (aff_b[:m] - 0.5) * delta[:, None]
            else:
                delta = np.ones(m)
            c = conf_b[:m].copy()
            alpha = np.clip(BASE_ALPHA * (1 + (1 - c)) * (0.5 + 0.5 * s), MIN_ALPHA, MAX_ALPHA)
            alpha = 1 - (1 - alpha) * delta
            watched = ~dis
            # the first watch sets v = x (alpha 1); a dismiss leaves v (alpha 0)
            alpha = np.where(dis, 0.0, np.where(has_b[:m], alpha, 1.0)).astype(np.float32)
            v = v_all[:m]
            x = x_buf[:m]
            np.take(cat_vectors, it, axis=0, out=x, mode="clip")
            x -= v
            x *= alpha[:, None]
            v += x
            norms = np.sqrt(np.einsum("ij,ij->i", v, v))
            v /= np.where(norms == 0, 1, norms)[:, None]
            has_b[:m] |= watched
            up = (s > 0.5) & watched
            conf_b[:m] = np.clip(np.where(up, c + 0.1 * (1 - c), c - 0.05 * c), MIN_CONFIDENCE, MAX_CONFIDENCE)
            g = gm[it]
            weight = np.where(dis, DISMISS_WEIGHT, s)
            target = up.astype(np.float64)
            a = aff_b[:m]
            aff_b[:m] = np.clip(a + g * (target[:, None] - a) * GENRE_RATE * weight[:, None], 0.0, 1.0)
            touched_b[:m] |= g.astype(bool)
            prev_t[:m] = t[idx]
        vectors[ub] = v_all
        has[ub] = has_b
        conf[ub] = conf_b
        aff[ub] = aff_b
        touched[ub] = touched_b
