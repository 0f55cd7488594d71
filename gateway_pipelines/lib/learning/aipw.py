"""Two-arm AIPW (augmented inverse-propensity weighting, "doubly robust") effects between task clusters.

The question for a pair of clusters A -> B: how much does having done A earlier in the session (at
most ``window`` before) change the reward of an episode of B?

* Unit: an episode of B. Treatment ``T = 1`` when its session had an episode of A in the window before
  it (strictly earlier). Outcome ``Y`` = the B episode's reward. Covariates ``X``: the session
  covariates (numeric metadata present on the episodes, e.g. ``agent_level``) and the B episode's
  position in its session (``log1p`` of the episodes before it).
* Nuisance models, scikit-learn: the propensity ``e(x) = P(T=1 | x)`` by standardised logistic
  regression, and the outcome regressions ``mu_t(x) = E[Y | T=t, x]`` by least squares (LinearRegression's model, solved with numpy) fitted on
  each arm. **Cross-fitted**: sessions are split into ``folds`` by a hash of the session id (never at
  random, so it is deterministic and a session's episodes stay together); each unit's nuisances come
  from models fitted on the other folds (at most ``MAX_TRAIN`` rows of them, evenly spread).
* Score per unit: ``psi = mu1 - mu0 + T (Y - mu1) / e - (1 - T) (Y - mu0) / (1 - e)``, with ``e``
  clipped to [0.01, 0.99]. The estimate is ``mean(psi)``, on the reward scale; its standard error is
  the influence-function one, ``sd(psi) / sqrt(n)``, and the 95% interval is ``tau +- 1.96 se``.
* The scores are kept as sufficient statistics ``(n, sum psi, sum psi^2)`` so that evidence from a
  later batch (cross-fitted within that batch) is pooled with the earlier ones: the learner stays
  incremental and one edge per pair grows with its sample size.

AgentDB's "doubly robust" formula uses the treated term only, per-task constants for mu and e, and
the destination reward, so its tau is a rescaled reward (AGENTDB.md section 3.3). The naive
difference of means is computed beside AIPW for comparison: under confounding it is biased.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["PairEvidence", "PairStats", "estimate_pairs", "prior_exposure", "session_folds"]

Z95 = 1.959963984540054
CLIP = 0.01
MAX_TRAIN = 20_000  # rows per nuisance fit; more changes a 15-parameter model by nothing measurable


@dataclass
class PairStats:
    """Sufficient statistics of one pair's AIPW scores and of the naive comparison (poolable)."""

    n: int = 0
    n_treated: int = 0
    sum_psi: float = 0.0
    sum_psi2: float = 0.0
    sum_y1: float = 0.0
    sum_y1sq: float = 0.0
    sum_y0: float = 0.0
    sum_y0sq: float = 0.0
    # session-clustered sums (S_s = sum of psi over a session's units, n_s its units), for the
    # cluster-robust standard error: units of one session share the agent and its exposures
    sum_s2: float = 0.0
    sum_ns_s: float = 0.0
    sum_ns2: float = 0.0
    n_sessions: int = 0
    batches: int = 0

    def add(self, other: "PairStats") -> "PairStats":
        return PairStats(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, d: dict | None) -> "PairStats":
        d = d or {}
        return cls(**{f: type(getattr(cls(), f))(d.get(f, 0)) for f in cls.__dataclass_fields__})

    # ------------------------------------------------------------ estimates
    @property
    def n_control(self) -> int:
        return self.n - self.n_treated

    @property
    def tau(self) -> float:
        return self.sum_psi / self.n if self.n else float("nan")

    @property
    def se(self) -> float:
        """Influence-function standard error, clustered by session (CR1 small-sample factor)."""
        if self.n < 2:
            return float("nan")
        tau = self.tau
        if self.n_sessions >= 2:
            ss = max(self.sum_s2 - 2 * tau * self.sum_ns_s + tau * tau * self.sum_ns2, 0.0)
            g = self.n_sessions
            return math.sqrt(ss * g / (g - 1)) / self.n
        var = max(self.sum_psi2 - self.n * tau ** 2, 0.0) / (self.n - 1)
        return math.sqrt(var / self.n)

    @property
    def ci(self) -> tuple[float, float]:
        return self.tau - Z95 * self.se, self.tau + Z95 * self.se

    @property
    def p_value(self) -> float:
        se = self.se
        if not se or math.isnan(se):
            return 1.0
        return float(math.erfc(abs(self.tau / se) / math.sqrt(2)))

    def naive(self) -> dict:
        """Difference of means between treated and control units (Welch standard error)."""
        n1, n0 = self.n_treated, self.n_control
        if n1 < 2 or n0 < 2:
            return {"uplift": None, "se": None, "ci_low": None, "ci_high": None, "p_value": None}
        m1, m0 = self.sum_y1 / n1, self.sum_y0 / n0
        v1 = max(self.sum_y1sq - n1 * m1 * m1, 0.0) / (n1 - 1)
        v0 = max(self.sum_y0sq - n0 * m0 * m0, 0.0) / (n0 - 1)
        se = math.sqrt(v1 / n1 + v0 / n0)
        d = m1 - m0
        p = float(math.erfc(abs(d / se) / math.sqrt(2))) if se > 0 else 1.0
        return {"uplift": d, "se": se, "ci_low": d - Z95 * se, "ci_high": d + Z95 * se, "p_value": p}


@dataclass
class PairEvidence:
    from_cluster: int
    to_cluster: int
    stats: PairStats
    n_pairs: int  # (A episode, B episode) pairs inside the window: what AgentDB's LIMIT 1000 counted
    evidence_ids: list[int]  # a few B episode ids (treated), for provenance


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since the epoch, whatever the datetime resolution (ns, us, ms)."""
    return (pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def session_folds(session_ids: pd.Series, folds: int) -> np.ndarray:
    """Fold of each row from a hash of its session id: deterministic, sessions kept whole."""
    codes, uniques = pd.factorize(session_ids, sort=False)
    fold_of = np.array([int(hashlib.blake2b(str(s).encode(), digest_size=4).hexdigest(), 16) % folds
                        for s in uniques], dtype=int)
    return fold_of[codes]


def prior_exposure(session_codes: np.ndarray, ts_seconds: np.ndarray, clusters: np.ndarray, n_clusters: int,
                   window_seconds: float, max_lag: int = 500, count_mask: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For rows sorted by (session, ts): ``exposed[i, a]`` = an episode of cluster a in i's session at
    most ``window`` before i (strictly earlier); ``pair_counts[a, b]`` = (a-episode, b-episode) pairs
    in the window; ``position[i]`` = episodes before i in its session; ``in_window[i]`` = episodes of
    any cluster in the window before i. Vectorised by lag."""
    n = len(clusters)
    exposed = np.zeros((n, n_clusters), dtype=bool)
    pair_counts = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    position = np.zeros(n, dtype=np.int64)
    in_window = np.zeros(n, dtype=np.int64)
    for lag in range(1, max_lag + 1):
        if lag >= n:
            break
        same = session_codes[lag:] == session_codes[:-lag]
        if not same.any():
            break
        position[lag:] += same
        gap = ts_seconds[lag:] - ts_seconds[:-lag]
        ok = same & (gap <= window_seconds) & (gap > 0)
        if ok.any():
            idx = np.nonzero(ok)[0]
            later, earlier = idx + lag, idx
            in_window[later] += 1
            exposed[later, clusters[earlier]] = True
            if count_mask is not None:
                keep = count_mask[later]
                later, earlier = later[keep], earlier[keep]
            np.add.at(pair_counts, (clusters[earlier], clusters[later]), 1)
    return exposed, pair_counts, position, in_window


def _fit_predict(x_tr, t_tr, y_tr, x_te, min_arm: int):
    from sklearn.linear_model import LogisticRegression

    n_te = len(x_te)
    share = float(t_tr.mean()) if len(t_tr) else 0.5
    if 0 < t_tr.sum() < len(t_tr) and x_tr.shape[1] > 0:
        # x is standardised by the caller; newton-cholesky is exact and fast for a few columns
        prop = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=100)
        prop.fit(x_tr, t_tr)
        e = prop.predict_proba(x_te)[:, 1]
    else:
        e = np.full(n_te, share)
    mus = []
    for arm in (0, 1):
        sel = t_tr == arm
        if sel.sum() >= max(min_arm, x_tr.shape[1] + 2):
            # ordinary least squares with an intercept (what LinearRegression fits), solved directly
            design = np.column_stack([np.ones(int(sel.sum())), x_tr[sel]])
            coef = np.linalg.lstsq(design, y_tr[sel], rcond=None)[0]
            mus.append(coef[0] + x_te @ coef[1:])
        else:
            mus.append(np.full(n_te, float(y_tr[sel].mean()) if sel.any() else float(y_tr.mean())))
    return np.clip(e, CLIP, 1 - CLIP), mus[0], mus[1]


def aipw_scores(x: np.ndarray, t: np.ndarray, y: np.ndarray, folds: np.ndarray, n_folds: int,
                min_arm: int = 5) -> np.ndarray:
    """Cross-fitted AIPW scores psi_i."""
    import sklearn

    psi = np.empty(len(y))
    # small fits: sklearn's per-call validation would cost more than the fit (inputs are checked here)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        _crossfit(x, t, y, folds, n_folds, min_arm, psi)
    return psi


def _crossfit(x, t, y, folds, n_folds, min_arm, psi) -> None:
    for k in range(n_folds):
        te = folds == k
        if not te.any():
            continue
        tr = ~te
        if tr.sum() < 4:
            tr = np.ones_like(te)  # a single-fold batch: no cross-fitting possible, fit on all
        train = np.nonzero(tr)[0]
        if len(train) > MAX_TRAIN:  # a deterministic, evenly spread subsample: nuisance fits stay O(1)
            train = train[:: -(-len(train) // MAX_TRAIN)]
        e, mu0, mu1 = _fit_predict(x[train], t[train], y[train], x[te], min_arm)
        tt, yy = t[te], y[te]
        psi[te] = mu1 - mu0 + tt * (yy - mu1) / e - (1 - tt) * (yy - mu0) / (1 - e)


def estimate_pairs(frame: pd.DataFrame, covariates: list[str], *, window_minutes: float = 60.0, folds: int = 5,
                   min_arm: int = 20, units_mask: np.ndarray | None = None,
                   include_self: bool = True, to_clusters: set[int] | None = None,
                   n_clusters: int | None = None) -> tuple[list[PairEvidence], dict]:
    """AIPW evidence for every ordered pair of clusters.

    ``frame``: one row per episode with ``id, session_id, ts`` (datetime), ``cluster`` (int, -1 for
    unclustered), ``reward`` and the covariate columns. Rows are exposures for every unit in their
    session; ``units_mask`` picks which rows are units (the learner's new episodes), default all.
    Pairs need ``min_arm`` treated and control units; the others are counted as skipped.
    ``to_clusters`` limits the evaluation to pairs (*, B) of those B (the learner's re-opened pairs);
    ``n_clusters`` fixes the number of clusters (columns keep their order whatever the frame holds).
    A pair's result depends on B's units and their sessions only (imputation included), so
    re-evaluating one B after a late episode elsewhere gives bit-identical figures for the others.
    """
    df = frame.sort_values(["session_id", "ts", "id"], kind="stable").reset_index(drop=True)
    if units_mask is not None:
        mask = pd.Series(units_mask, index=frame.index).loc[
            frame.sort_values(["session_id", "ts", "id"], kind="stable").index].to_numpy()
    else:
        mask = np.ones(len(df), dtype=bool)
    clusters = df["cluster"].to_numpy(dtype=np.int64)
    valid = clusters >= 0
    if n_clusters is None:
        n_clusters = int(clusters.max()) + 1 if valid.any() else 0
    info = {"units": 0, "pairs_evaluated": 0, "episode_pairs": 0,
            "pairs_skipped": 0, "cluster_pairs": n_clusters * n_clusters}
    if n_clusters == 0:
        return [], info
    codes = pd.factorize(df["session_id"], sort=False)[0]
    ts = epoch_seconds(df["ts"])
    # unclustered rows get an extra column, dropped afterwards: they expose nothing and are no unit
    cl = np.where(valid, clusters, n_clusters)
    exposed, pair_counts, position, _ = prior_exposure(codes, ts, cl, n_clusters + 1, window_minutes * 60,
                                                    count_mask=mask)
    exposed, pair_counts = exposed[:, :n_clusters], pair_counts[:n_clusters, :n_clusters]
    # units: B episodes with at least one earlier episode in their session (the first episode of a
    # session cannot have been preceded by anything: no positivity)
    mask = mask & (position >= 1)
    # session covariates with their squares (a propensity that is not linear in the agent's skill)
    session_cols = [df[c].astype(float).to_numpy() for c in covariates]
    base_cols = session_cols + [v ** 2 for v in session_cols] + [np.log1p(position)]
    base = np.column_stack(base_cols)
    other = exposed.astype(float)
    info["units"] = int((mask & valid).sum())
    y_all = df["reward"].astype(float).to_numpy()
    fold_all = session_folds(df["session_id"], folds)
    ids = df["id"].to_numpy()
    out: list[PairEvidence] = []
    for b in range(n_clusters):
        if to_clusters is not None and b not in to_clusters:
            continue
        units = np.nonzero(mask & valid & (clusters == b))[0]
        if len(units) == 0:
            continue
        x_base = base[units]
        if np.isnan(x_base).any():  # impute from B's own units: other clusters' episodes do not matter
            fill = np.nanmean(x_base, axis=0)
            x_base = np.where(np.isnan(x_base), np.where(np.isnan(fill), 0.0, fill), x_base)
        y, f = y_all[units], fold_all[units]
        sess_codes, sess_uniques = pd.factorize(codes[units])
        sess, n_sess = sess_codes, len(sess_uniques)
        for a in range(n_clusters):
            if a == b and not include_self:
                continue
            t = exposed[units, a].astype(float)
            n1 = int(t.sum())
            n0 = len(t) - n1
            if n1 < min_arm or n0 < min_arm:
                info["pairs_skipped"] += 1
                continue
            # covariates: the session's, the position, and which *other* clusters were in the window
            # (so the effect is A's own, not "A instead of another task that has an effect on B")
            x = np.column_stack([x_base, np.delete(other[units], a, axis=1)])
            sd = x.std(axis=0)
            keep = sd > 0
            x = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
            psi = aipw_scores(x, t, y, f, folds)
            s_sum = np.bincount(sess, weights=psi, minlength=n_sess)
            n_s = np.bincount(sess, minlength=n_sess).astype(float)
            stats = PairStats(n=len(t), n_treated=n1, sum_psi=float(psi.sum()), sum_psi2=float((psi ** 2).sum()),
                              sum_y1=float(y[t == 1].sum()), sum_y1sq=float((y[t == 1] ** 2).sum()),
                              sum_y0=float(y[t == 0].sum()), sum_y0sq=float((y[t == 0] ** 2).sum()),
                              sum_s2=float((s_sum ** 2).sum()), sum_ns_s=float((n_s * s_sum).sum()),
                              sum_ns2=float((n_s ** 2).sum()), n_sessions=int((n_s > 0).sum()), batches=1)
            info["pairs_evaluated"] += 1
            info["episode_pairs"] += int(pair_counts[a, b])
            out.append(PairEvidence(a, b, stats, int(pair_counts[a, b]),
                                    [int(v) for v in ids[units][t == 1][:20]]))
    return out, info
