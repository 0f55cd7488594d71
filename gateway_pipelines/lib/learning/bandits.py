"""Strategy bandits: which recommendation strategy to serve in which coarse context (docs/bandits.md).

* **Arms**: the recommender's four strategies (``ARMS``); **contexts**: device × daypart × new or
  returning user (24 of them, ``CONTEXTS``).
* **Reward** of an impression: ``0.2·click + 0.5·completion + 0.3·rating/10``, clipped to [0, 1]
  (completion and rating count 0 when absent, as for an impression nobody clicked).
* **Posteriors**: Beta(α, β) per context × arm from a Beta(1, 1) prior, with fractional rewards:
  ``α += r``, ``β += 1 − r`` per impression. The sums are exact (``math.fsum``), so the state is a
  function of the set of logged rows, whatever order they are read in: recomputing gives identical state.
* **Serving** (Thompson sampling as probability matching): P(arm is best) under the posterior by
  seeded Monte Carlo, mixed with ε = 0.05 uniform exploration, and the arm drawn from that; the
  probability it was drawn with is the logged propensity, exact for the policy that ran, and never below
  ε/4, so inverse-propensity weights stay ≤ 80.
* **Off-policy evaluation** of "always serve arm a" from logged propensities: IPS and doubly robust
  (cross-fitted per-context means as the outcome model), standard errors clustered by session (the
  impressions of one served list share one choice), normal 95 % intervals.

The pure functions here do the work; the last section reads and writes the warehouse.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

ARMS = ("content_similarity", "popularity", "causal_rerank", "diversity_heavy")
DEVICES = ("tv", "mobile", "web")
DAYPARTS = ("morning", "afternoon", "evening", "night")
USER_TYPES = ("new", "returning")
CONTEXTS = tuple(f"{d}|{t}|{u}" for d in DEVICES for t in DAYPARTS for u in USER_TYPES)
NEW_USER_SESSIONS = 3  # "new" = fewer than this many earlier sessions (the simulator's rule)
PRIOR = (1.0, 1.0)
EPSILON = 0.05
DRAWS = 4000
STATE_SEED = 20261201  # the Monte Carlo seed of the persisted P(best): a recompute gives the same numbers
W_CLICK, W_WATCH, W_RATING = 0.2, 0.5, 0.3
Z95 = 1.959963984540054

# skip reasons, in the order they are tested (a row gets the first that applies)
SKIP_REASONS = ("strategy not an arm", "no outcome recorded", "unknown device", "time_of_day outside 0-1",
                "no user type", "completion is NaN", "completion outside 0-1", "rating is NaN",
                "rating outside 0-10")


def daypart(hour: float) -> str:
    """The simulator's time segments: morning 6-12, afternoon 12-18, evening 18-22, night 22-6."""
    if 6 <= hour < 12:
        return "morning"
    if 12 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 22:
        return "evening"
    return "night"


def context_key(device: str, part: str, user_type: str) -> str:
    if device not in DEVICES or part not in DAYPARTS or user_type not in USER_TYPES:
        raise ValueError(f"no context for device={device!r}, daypart={part!r}, user_type={user_type!r}")
    return f"{device}|{part}|{user_type}"


def reward(clicked, completion, rating) -> np.ndarray:
    """The composite reward per impression; NaN completion/rating count as absent (0)."""
    c = np.asarray(clicked, dtype=float)
    w = np.nan_to_num(np.asarray(completion, dtype=float), nan=0.0)
    r = np.nan_to_num(np.asarray(rating, dtype=float), nan=0.0)
    return np.clip(W_CLICK * c + W_WATCH * w + W_RATING * r / 10.0, 0.0, 1.0)


# --------------------------------------------------------------------------- the log


@dataclass
class PreparedLog:
    """The usable rows (context, arm, reward, propensity, session) and what happened to every other row."""

    rows: pd.DataFrame
    read: int
    skipped: dict[str, int]
    unknown_strategies: dict[str, int] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return len(self.rows)

    @property
    def adds_up(self) -> bool:
        return self.read == self.used + sum(self.skipped.values())


def prepare_log(frame: pd.DataFrame) -> PreparedLog:
    """Rows of learning.impressions joined with their outcomes → usable bandit rows.

    Expected columns: impression_id, session_id, served_at, strategy, device_type, time_of_day (hour/24,
    may be NaN: then served_at's UTC hour), user_type, propensity (NaN when not randomised), has_outcome,
    clicked, completion, rating (NaN when absent), and optionally completion_nan / rating_nan (True where
    the stored value itself was NaN, which a float column cannot tell from NULL). Every row read is used or
    skipped with one reason (``SKIP_REASONS``)."""
    n = len(frame)
    f = frame.reset_index(drop=True)
    reason = pd.Series([None] * n, dtype=object)

    def mark(mask, text):
        mask = pd.Series(np.asarray(mask, dtype=bool))
        reason[mask & reason.isna()] = text

    strategy = f["strategy"] if n else pd.Series([], dtype=object)
    unknown = ~strategy.isin(ARMS)
    mark(unknown, SKIP_REASONS[0])
    mark(~f["has_outcome"].fillna(False).astype(bool), SKIP_REASONS[1])
    mark(~f["device_type"].isin(DEVICES), SKIP_REASONS[2])
    tod = pd.to_numeric(f["time_of_day"], errors="coerce").astype(float)
    mark(tod.notna() & ((tod < 0) | (tod > 1)), SKIP_REASONS[3])
    mark(~f["user_type"].isin(USER_TYPES), SKIP_REASONS[4])
    completion = pd.to_numeric(f["completion"], errors="coerce").astype(float)
    rating = pd.to_numeric(f["rating"], errors="coerce").astype(float)
    comp_nan = f["completion_nan"].fillna(False).astype(bool) if "completion_nan" in f else pd.Series(False, index=f.index)
    rate_nan = f["rating_nan"].fillna(False).astype(bool) if "rating_nan" in f else pd.Series(False, index=f.index)
    mark(comp_nan, SKIP_REASONS[5])
    mark(completion.notna() & ((completion < 0) | (completion > 1)), SKIP_REASONS[6])
    mark(rate_nan, SKIP_REASONS[7])
    mark(rating.notna() & ((rating < 0) | (rating > 10)), SKIP_REASONS[8])
    ok = reason.isna().to_numpy()
    skipped = {r: int((reason == r).sum()) for r in SKIP_REASONS if (reason == r).any()}
    unknown_labels = f.loc[unknown.to_numpy() & (reason == SKIP_REASONS[0]).to_numpy(), "strategy"]
    unknown_counts = {str(k): int(v) for k, v in unknown_labels.fillna("<none>").value_counts().sort_index().items()}
    u = f.loc[ok]
    served = pd.to_datetime(u["served_at"], utc=True)
    hours = (tod[ok] * 24.0).where(tod[ok].notna(), served.dt.hour + served.dt.minute / 60.0)
    parts = [daypart(float(h)) for h in hours]
    rows = pd.DataFrame({
        "impression_id": u["impression_id"].astype(str).to_numpy(),
        "session_id": u["session_id"].fillna(u["impression_id"]).astype(str).to_numpy(),
        "served_at": served.to_numpy(),
        "context": [f"{d}|{p}|{t}" for d, p, t in zip(u["device_type"], parts, u["user_type"])],
        "arm": u["strategy"].astype(str).to_numpy(),
        "reward": reward(u["clicked"].fillna(False).astype(bool), completion[ok], rating[ok]),
        "propensity": pd.to_numeric(u["propensity"], errors="coerce").astype(float).to_numpy(),
    })
    if "run_id" in u:
        rows["run_id"] = u["run_id"].to_numpy()
    rows = rows.sort_values(["served_at", "impression_id"], kind="stable").reset_index(drop=True)
    return PreparedLog(rows, n, skipped, unknown_counts)


# --------------------------------------------------------------------------- posteriors


def posteriors(rows: pd.DataFrame, prior: tuple[float, float] = PRIOR) -> pd.DataFrame:
    """Beta posterior of every context × arm (all 96, unseen ones at the prior), exact sums."""
    a0, b0 = prior
    if a0 <= 0 or b0 <= 0:
        raise ValueError(f"prior {prior}: both parameters must be positive")
    sums: dict[tuple[str, str], tuple[float, float, int]] = {}
    if len(rows):
        for (ctx, arm), g in rows.groupby(["context", "arm"], sort=True):
            r = g["reward"].to_numpy(dtype=float)
            sums[(ctx, arm)] = (math.fsum(r), math.fsum(1.0 - r), len(r))
    out = []
    for ctx in CONTEXTS:
        for arm in ARMS:
            s, f, n = sums.get((ctx, arm), (0.0, 0.0, 0))
            alpha, beta = a0 + s, b0 + f
            out.append((ctx, arm, alpha, beta, n, alpha / (alpha + beta)))
    state = pd.DataFrame(out, columns=["context", "arm", "alpha", "beta", "n", "mean"])
    state["p_best"] = thompson_table(state)
    return state


def thompson_probabilities(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator,
                           draws: int = DRAWS) -> np.ndarray:
    """P(each arm has the largest draw) per row of (..., arms) Beta parameters, by Monte Carlo."""
    alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    samples = rng.beta(alpha, beta, size=(draws, *alpha.shape))
    best = samples.argmax(axis=-1)
    arms = alpha.shape[-1]
    return np.stack([(best == a).mean(axis=0) for a in range(arms)], axis=-1)


def thompson_table(state: pd.DataFrame, seed: int = STATE_SEED, draws: int = DRAWS) -> np.ndarray:
    """P(best) for a state frame ordered context-major over ``ARMS`` (as ``posteriors`` builds it)."""
    a = state["alpha"].to_numpy().reshape(-1, len(ARMS))
    b = state["beta"].to_numpy().reshape(-1, len(ARMS))
    return thompson_probabilities(a, b, np.random.default_rng(seed), draws).reshape(-1)


def state_hash(state: pd.DataFrame) -> str:
    """Of the state's values to 12 significant digits: equal states, equal hashes."""
    payload = [(r.context, r.arm, f"{r.alpha:.12g}", f"{r.beta:.12g}", int(r.n)) for r in state.itertuples()]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def serving_probabilities(alpha, beta, rng: np.random.Generator, epsilon: float = EPSILON,
                          draws: int = DRAWS) -> np.ndarray:
    """The serving policy for one context: Thompson probabilities mixed with ε uniform exploration."""
    if not 0 < epsilon <= 1:
        raise ValueError(f"epsilon={epsilon}: must be in (0, 1] (the propensities must stay positive)")
    ts = thompson_probabilities(np.asarray(alpha)[None, :], np.asarray(beta)[None, :], rng, draws)[0]
    return (1 - epsilon) * ts + epsilon / len(ts)


def choose_arm(alpha, beta, rng: np.random.Generator, epsilon: float = EPSILON,
               draws: int = DRAWS) -> tuple[str, float, np.ndarray]:
    """(arm, the probability it was chosen with, every arm's probability)."""
    p = serving_probabilities(alpha, beta, rng, epsilon, draws)
    i = int(rng.choice(len(p), p=p / p.sum()))
    return ARMS[i], float(p[i]), p


# What each arm changes in the recommender's config (fields of RecommenderConfig; docs/bandits.md).
# causal_rerank is the default score: fused rank, similarity, the causal weights and the popularity prior.
STRATEGY_OVERRIDES: dict[str, dict[str, float]] = {
    "content_similarity": {"w_cooc": 0.0, "w_pop": 0.0, "causal_scale": 0.0},
    "popularity": {"w_fused": 0.0, "w_sim": 0.0, "causal_scale": 0.0, "w_pop": 1.0},
    "causal_rerank": {},
    "diversity_heavy": {"mmr_lambda": 0.5, "max_genre_share": 0.3},
}


def strategy_config(arm: str, base):
    """``base`` (a RecommenderConfig) as the arm serves it."""
    import dataclasses

    if arm not in STRATEGY_OVERRIDES:
        raise ValueError(f"unknown strategy {arm!r}; use one of {', '.join(ARMS)}")
    return dataclasses.replace(base, **STRATEGY_OVERRIDES[arm])


# --------------------------------------------------------------------------- off-policy evaluation


@dataclass
class ArmValue:
    arm: str
    n: int  # impressions with a propensity
    n_played: int  # of which served this arm
    ips: float
    ips_se: float
    dr: float
    dr_se: float

    def interval(self, which: str) -> tuple[float, float]:
        est, se = (self.ips, self.ips_se) if which == "ips" else (self.dr, self.dr_se)
        return est - Z95 * se, est + Z95 * se


def _fold(sessions: pd.Series, k: int) -> np.ndarray:
    return np.array([int(hashlib.sha256(s.encode()).hexdigest()[:8], 16) % k for s in sessions], dtype=np.int64)


def _clustered_se(phi: np.ndarray, value: float, sessions: np.ndarray) -> float:
    n = len(phi)
    codes, inverse = np.unique(sessions, return_inverse=True)
    s = len(codes)
    if s < 2:
        return float("nan")
    totals = np.bincount(inverse, weights=phi - value, minlength=s)
    return float(math.sqrt(s / (s - 1) * float(np.sum(totals ** 2))) / n)


def off_policy_values(rows: pd.DataFrame, folds: int = 2) -> tuple[list[ArmValue], str | None]:
    """IPS and doubly robust values of "always serve arm a" from the rows with a logged propensity.

    The outcome model q(context, arm) is the mean reward of that context × arm on the other folds
    (sessions split by a hash, so it never sees the impression it predicts), shrunk to the arm's mean
    with a weight of 5 impressions. Returns (values, None), or ([], reason) when not estimable."""
    r = rows[rows["propensity"].notna()] if len(rows) else rows
    if len(r) == 0:
        return [], "not estimable: no impression with a logged propensity"
    if r["session_id"].nunique() < 2 * folds:
        return [], f"not estimable: {r['session_id'].nunique()} sessions with propensities (need {2 * folds})"
    fold = _fold(r["session_id"], folds)
    ctx = r["context"].to_numpy()
    arm = r["arm"].to_numpy()
    y = r["reward"].to_numpy(dtype=float)
    p = r["propensity"].to_numpy(dtype=float)
    sessions = r["session_id"].to_numpy()
    values = []
    for a in ARMS:
        played = arm == a
        q = np.empty(len(r))
        for k in range(folds):
            train = (fold != k) & played
            arm_mean = y[train].mean() if train.any() else float(y[fold != k].mean())
            frame = pd.DataFrame({"c": ctx[train], "y": y[train]}).groupby("c")["y"].agg(["sum", "count"])
            means = ((frame["sum"] + 5 * arm_mean) / (frame["count"] + 5)).to_dict()
            test = fold == k
            q[test] = [means.get(c, arm_mean) for c in ctx[test]]
        w = played / p
        ips_phi = w * y
        dr_phi = q + w * (y - q)
        ips, dr = float(ips_phi.mean()), float(dr_phi.mean())
        values.append(ArmValue(a, len(r), int(played.sum()), ips, _clustered_se(ips_phi, ips, sessions),
                               dr, _clustered_se(dr_phi, dr, sessions)))
    return values, None


def true_arm_values(rows: pd.DataFrame, truth: dict[tuple[str, str], float]) -> dict[str, float] | None:
    """The value of always serving each arm over the logged contexts (what OPE estimates), from the
    planted per-context values; None when a row's context has no truth."""
    r = rows[rows["propensity"].notna()]
    if len(r) == 0:
        return None
    out = {}
    for a in ARMS:
        vals = [truth.get((c, a)) for c in r["context"]]
        if any(v is None for v in vals):
            return None
        out[a] = float(np.mean(vals))
    return out


# --------------------------------------------------------------------------- convergence


def convergence(rows: pd.DataFrame, best: dict[str, str] | None = None, threshold: float = 0.95,
                prior: tuple[float, float] = PRIOR, seed: int = STATE_SEED, draws: int = 2000) -> pd.DataFrame:
    """Per context, replaying its rows in serve order: after how many impressions the Thompson
    probability of the best arm (the planted one when ``best`` is given, else the final posterior's)
    reached ``threshold`` and stayed there. Checkpoints every max(10, n/60) impressions; the figure is
    the first checkpoint after the last one below (NaN: not yet)."""
    rng = np.random.default_rng(seed)
    out = []
    for ctx, g in rows.groupby("context", sort=True):
        n = len(g)
        step = max(10, n // 60)
        marks = np.unique(np.r_[np.arange(step, n + 1, step), n])
        arm_idx = g["arm"].map({a: i for i, a in enumerate(ARMS)}).to_numpy()
        y = g["reward"].to_numpy(dtype=float)
        hit = np.zeros((n, len(ARMS)))
        hit[np.arange(n), arm_idx] = y
        miss = np.zeros((n, len(ARMS)))
        miss[np.arange(n), arm_idx] = 1.0 - y
        alpha = prior[0] + np.cumsum(hit, axis=0)[marks - 1]
        beta = prior[1] + np.cumsum(miss, axis=0)[marks - 1]
        target = best.get(ctx) if best else ARMS[int(np.argmax(alpha[-1] / (alpha[-1] + beta[-1])))]
        if target is None:
            continue
        p = thompson_probabilities(alpha, beta, rng, draws)[:, ARMS.index(target)]
        below = np.flatnonzero(p < threshold)
        if len(below) == 0:
            reached = int(marks[0])
        elif below[-1] == len(marks) - 1:
            reached = None
        else:
            reached = int(marks[below[-1] + 1])
        out.append((ctx, target, n, reached, float(p[-1])))
    return pd.DataFrame(out, columns=["context", "best_arm", "impressions", "impressions_to_threshold", "p_best_final"])


# --------------------------------------------------------------------------- online


def online_thompson(serve, contexts, weights, n_sessions: int, rng: np.random.Generator,
                    prior: tuple[float, float] = PRIOR) -> pd.DataFrame:
    """Thompson sampling run online against an environment: each session a context drawn with
    ``weights``, one Beta draw per arm from the context's posterior, the largest served; ``serve(context,
    arm, rng)`` returns the rewards of the served slate, which update the posterior before the next
    session. One row per session: context, arm, reward (sum over the slate), impressions."""
    contexts = list(contexts)
    w = np.asarray(weights, dtype=float)
    alpha = np.full((len(contexts), len(ARMS)), prior[0])
    beta = np.full((len(contexts), len(ARMS)), prior[1])
    out = []
    for c in rng.choice(len(contexts), size=n_sessions, p=w / w.sum()).tolist():
        a = int(np.argmax(rng.beta(alpha[c], beta[c])))
        r = np.asarray(serve(contexts[c], ARMS[a], rng), dtype=float)
        alpha[c, a] += math.fsum(r)
        beta[c, a] += math.fsum(1.0 - r)
        out.append((contexts[c], ARMS[a], float(r.sum()), len(r)))
    return pd.DataFrame(out, columns=["context", "arm", "reward", "impressions"])


def best_share_by_block(sessions: pd.DataFrame, best: dict[str, str], block: int) -> list[float]:
    """The share of sessions served their context's best arm, per block of ``block`` sessions."""
    hit = (sessions["arm"] == sessions["context"].map(best)).to_numpy(dtype=float)
    return [float(hit[i:i + block].mean()) for i in range(0, len(hit), block)]


# --------------------------------------------------------------------------- markdown


def posterior_markdown(state: pd.DataFrame, truth_best: dict[str, str] | None = None) -> str:
    lines = ["| context | " + " | ".join(ARMS) + " | best (P) |" + (" planted best |" if truth_best else ""),
             "|---|" + "---|" * (len(ARMS) + 1) + ("---|" if truth_best else "")]
    for ctx, g in state.groupby("context", sort=False):
        g = g.set_index("arm").loc[list(ARMS)]
        cells = [f"{m:.3f} (n {int(k)})" for m, k in zip(g["mean"], g["n"])]
        top = g["p_best"].idxmax()
        line = f"| {ctx} | " + " | ".join(cells) + f" | {top} ({g['p_best'].max():.2f}) |"
        if truth_best:
            line += f" {truth_best.get(ctx, '-')} |"
        lines.append(line)
    return "\n".join(lines)


def ope_markdown(values: list[ArmValue], truth: dict[str, float] | None) -> str:
    head = "| arm | served | IPS [95% CI] | DR [95% CI] |" + (" true value | covered (IPS, DR) |" if truth else "")
    lines = [head, "|---|---|---|---|" + ("---|---|" if truth else "")]
    for v in values:
        il, ih = v.interval("ips")
        dl, dh = v.interval("dr")
        line = f"| {v.arm} | {v.n_played} | {v.ips:.4f} [{il:.4f}, {ih:.4f}] | {v.dr:.4f} [{dl:.4f}, {dh:.4f}] |"
        if truth:
            t = truth[v.arm]
            line += f" {t:.4f} | {'yes' if il <= t <= ih else 'no'}, {'yes' if dl <= t <= dh else 'no'} |"
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------- warehouse

LOG_SQL = """
SELECT i.impression_id, i.session_id, i.served_at, i.strategy, i.device_type, i.time_of_day,
       i.features ->> 'user_type' AS user_type, i.propensity, i.run_id,
       o.impression_id IS NOT NULL AS has_outcome, o.clicked,
       CASE WHEN o.watch_completion = 'NaN' THEN NULL ELSE o.watch_completion END AS completion,
       CASE WHEN o.rating = 'NaN' THEN NULL ELSE o.rating END AS rating,
       coalesce(o.watch_completion = 'NaN', false) AS completion_nan,
       coalesce(o.rating = 'NaN', false) AS rating_nan
FROM learning.impressions i LEFT JOIN learning.outcomes o USING (impression_id)
WHERE i.served_at < %s
ORDER BY i.impression_id
"""


def read_log(conn, before: datetime) -> pd.DataFrame:
    """Every impression served before ``before`` with its outcome, as ``prepare_log`` takes it.

    Outcomes count whenever they were observed: the state of a day is a function of the log's
    impressions of that day and before, and of what is known about them."""
    cur = conn.execute(LOG_SQL, (before,))
    frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    for col in ("time_of_day", "propensity", "completion", "rating"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def write_strategy_log(conn, log) -> bool:
    """A simulated strategy log (``simulator.StrategyLog``) into learning.impressions / outcomes and its
    truth into learning.bandit_truth; False (nothing written) when the same run with the same data is
    there already."""
    from psycopg import sql

    digest = log.data_hash
    with conn.transaction():
        row = conn.execute("SELECT data_hash FROM learning.bandit_simulations WHERE run_id = %s",
                           (log.run_id,)).fetchone()
        if row and row[0] == digest:
            return False
        conn.execute("DELETE FROM learning.impressions WHERE run_id = %s", (log.run_id,))
        conn.execute("DELETE FROM learning.bandit_simulations WHERE run_id = %s", (log.run_id,))
        p = log.params
        conn.execute(
            "INSERT INTO learning.bandit_simulations (run_id, seed, n_users, n_days, end_date, n_impressions, "
            "data_hash, params) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (log.run_id, p.seed, p.n_users, p.n_days, p.end_date, len(log.impressions), digest,
             json.dumps({**log.stats, "end_date": p.end_date.isoformat()})))
        cols = list(log.impressions.columns)
        query = sql.SQL("COPY learning.impressions ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, cols)))
        with conn.cursor().copy(query) as copy:
            for r in log.impressions.itertuples(index=False):
                copy.write_row(r)
        with conn.cursor().copy("COPY learning.outcomes (impression_id, clicked, watch_completion, rating, "
                                "observed_at) FROM STDIN") as copy:
            for r in log.outcomes.itertuples(index=False):
                copy.write_row(tuple(None if (isinstance(v, float) and math.isnan(v)) else v for v in r))
        with conn.cursor().copy("COPY learning.bandit_truth (run_id, context, arm, true_value, logging_propensity) "
                                "FROM STDIN") as copy:
            for ctx, arm, value, prop in log.truth:
                copy.write_row((log.run_id, ctx, arm, value, prop))
    return True


def read_truth(conn, run_ids) -> tuple[dict[tuple[str, str], float] | None, set[str]]:
    """(planted values, simulated runs) for the simulated runs among ``run_ids``; the values are None when
    there is no such run, or when two runs disagree (then no single truth describes the log)."""
    wanted = sorted({str(r) for r in run_ids if not pd.isna(r)})
    rows = conn.execute("SELECT run_id, context, arm, true_value FROM learning.bandit_truth WHERE run_id = ANY(%s)",
                        (wanted,)).fetchall()
    truth: dict[tuple[str, str], float] = {}
    for _, ctx, arm, value in rows:
        if (ctx, arm) in truth and abs(truth[(ctx, arm)] - value) > 1e-9:
            return None, {r[0] for r in rows}
        truth[(ctx, arm)] = float(value)
    return (truth or None), {r[0] for r in rows}


def write_state(conn, as_of, state: pd.DataFrame, digest: str, run_id: str) -> bool:
    """Replace the day's version in one transaction; False (nothing touched) when it already holds this state."""
    with conn.transaction():
        row = conn.execute("SELECT min(state_hash), max(state_hash), count(*) FROM learning.bandit_arms "
                           "WHERE as_of = %s", (as_of,)).fetchone()
        if row[2] == len(state) and row[0] == row[1] == digest:
            return False
        conn.execute("DELETE FROM learning.bandit_arms WHERE as_of = %s", (as_of,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO learning.bandit_arms (as_of, context, arm, alpha, beta, n, mean, p_best, state_hash, "
                "run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(as_of, r.context, r.arm, float(r.alpha), float(r.beta), int(r.n), float(r.mean), float(r.p_best),
                  digest, run_id) for r in state.itertuples()])
    return True


def latest_state(conn, on_or_before=None) -> tuple[object, pd.DataFrame] | None:
    """(as_of, state) of the newest version (on or before a date when given); None when there is none."""
    row = conn.execute("SELECT max(as_of) FROM learning.bandit_arms WHERE %s::date IS NULL OR as_of <= %s::date",
                       (on_or_before, on_or_before)).fetchone()
    if row[0] is None:
        return None
    cur = conn.execute("SELECT context, arm, alpha, beta, n, mean, p_best FROM learning.bandit_arms "
                       "WHERE as_of = %s ORDER BY context, arm", (row[0],))
    return row[0], pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


@dataclass
class StrategyChoice:
    arm: str
    propensity: float
    context: str
    probabilities: dict[str, float]
    state_as_of: object  # the date of the posteriors drawn from; None: none stored yet (the prior)


def choose_strategy(conn, user_id: str, device: str, hour: float, rng: np.random.Generator,
                    epsilon: float = EPSILON) -> StrategyChoice:
    """Draw the strategy for one served list from the newest stored posteriors of the user's context."""
    user_type = "new" if earlier_sessions(conn, user_id) < NEW_USER_SESSIONS else "returning"
    ctx = context_key(device, daypart(hour), user_type)
    latest = latest_state(conn)
    if latest is None:
        alpha, beta, as_of = np.full(len(ARMS), PRIOR[0]), np.full(len(ARMS), PRIOR[1]), None
    else:
        as_of, state = latest
        g = state[state["context"] == ctx].set_index("arm").reindex(list(ARMS))
        alpha = g["alpha"].fillna(PRIOR[0]).to_numpy(dtype=float)
        beta = g["beta"].fillna(PRIOR[1]).to_numpy(dtype=float)
    arm, propensity, p = choose_arm(alpha, beta, rng, epsilon)
    return StrategyChoice(arm, propensity, ctx, {a: round(float(x), 6) for a, x in zip(ARMS, p)}, as_of)


def earlier_sessions(conn, user_id: str) -> int:
    """Sessions the user was served before (a served list without a session id counts once)."""
    return int(conn.execute("SELECT count(DISTINCT coalesce(session_id, served_at::text)) FROM learning.impressions "
                            "WHERE user_id = %s", (user_id,)).fetchone()[0])


def record_choice(conn, impression_ids: list[str], arm: str, propensity: float, context: str,
                  probabilities: dict[str, float]) -> int:
    """Mark served impressions with the strategy the bandit drew, its propensity and the context."""
    user_type = context.split("|")[2]
    extra = json.dumps({"context": context, "user_type": user_type, "bandit_probabilities": probabilities},
                       sort_keys=True)
    cur = conn.execute("UPDATE learning.impressions SET strategy = %s, propensity = %s, features = features || "
                       "%s::jsonb WHERE impression_id = ANY(%s)", (arm, propensity, extra, impression_ids))
    return cur.rowcount
