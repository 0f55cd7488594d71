"""Causal weights of serve-time features on watch completion, by double machine learning (DoubleML).

docs/causal.md has the reasoning; in short:

* **Sample**: clicked impressions with an observed completion (completion exists only after a click;
  the click depends on the features and the recorded confounders only, so conditioning on it leaves
  E[completion | features, confounders] unbiased). Every impression read is either used or skipped
  with a reason (not clicked, no outcome recorded, a missing value in a named column).
* **Per feature and segment** (all; device=tv|mobile|web; time_of_day=morning|...; user_type=new|
  returning) the feature is the treatment D and the controls X are: the other eight features, the
  recorded confounders pop_z and affinity_z (and their squares), the daypart, device and user-type
  dummies, and the other features times those dummies (so the nuisance models can follow effects
  that differ by segment). Columns that are functions of D are left out of its own X (the device
  dummies for device_type), except the daypart of time_of_day: its effect is the slope within a
  daypart, the dayparts' levels being controls.
* **Models**: the partially linear model (DoubleMLPLR, partialling out) for continuous features, the
  interactive model (DoubleMLIRM, ATE, propensities truncated at 0.01) for the binary ones
  (platform_availability, device_type = is_tv), cross-fitted over ``n_folds`` seeded folds; the
  nuisance learners are scikit-learn ridge (and logistic) regressions after scaling — the structural
  model is linear in these columns, and they take seconds on a million rows where boosted trees take
  minutes on two cores.
* **Segments** (``segment_fit="pooled"``, the default): the nuisances of a feature are cross-fitted once
  on every row; each segment's effect is the orthogonal score solved over the segment's rows
  (``solve_score``; DoubleML's gate() of the segment indicator), so ten segments cost one fit, not
  four. ``per_segment`` refits within each segment (the former way). ``n_rep`` repeats the
  cross-fitting with DoubleML's median aggregation.
* **Naive**: OLS of completion on the feature alone (HC1 standard error), beside each estimate.
* **Refutations** (segment all): a placebo (a permuted copy of a feature as the treatment; its
  interval must cover 0) and a random common cause (a N(0, 1) column added to every X, same folds;
  each estimate must move by less than ``rcc_tolerance`` of its standard error).
* **Not estimable** is an outcome, not an exception: a day with no usable impressions, too few rows
  in a segment, a feature constant in a segment, a binary feature with too few of either value, a
  propensity model that separates the treated perfectly. Each is a row with status
  ``not_estimable``, a reason, and no number.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from gateway_pipelines.lib.personalization.simulator import DEVICES, FEATURES, TIME_SEGMENTS, USER_TYPES, time_segment

BINARY = ("platform_availability", "device_type")
CONTINUOUS = tuple(f for f in FEATURES if f not in BINARY)
CONFOUNDERS = ("pop_z", "affinity_z")
SEGMENT_DIMS = (("device", DEVICES), ("time_of_day", TIME_SEGMENTS), ("user_type", USER_TYPES))
SEGMENTS = ("all",) + tuple(f"{dim}={v}" for dim, values in SEGMENT_DIMS for v in values)
METHOD_PLR, METHOD_IRM, METHOD_NAIVE = "dml_plr", "dml_irm", "naive_ols"
METHOD_PLACEBO, METHOD_RCC = "refute_placebo", "refute_random_common_cause"
DML_METHODS = (METHOD_PLR, METHOD_IRM)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class CausalParams:
    n_folds: int = 3
    seed: int = 0
    min_rows: int = 60  # fewer clicked impressions in a segment: not estimable
    min_arm: int = 15  # a binary feature needs this many of each value
    ridge_alpha: float = 1.0
    logistic_c: float = 1.0
    trimming: float = 0.01  # IRM propensities truncated to [trimming, 1 - trimming]
    separation_share: float = 0.5  # this share of propensities outside the trimming bounds: separation
    placebo_feature: str = "genre_match_score"
    rcc_tolerance: float = 0.25  # random common cause: |shift| / std_error must stay below this
    segments: tuple[str, ...] = SEGMENTS
    threads: int = 1  # BLAS threads: one is faster on two busy cores, and the same on every machine
    # repeated cross-fitting: n_rep fold draws, DoubleML's median aggregation of estimates and upper bounds
    n_rep: int = 1
    # pooled: the nuisances are fitted once per feature on every row (the segment dummies are controls) and
    # each segment's effect is the orthogonal score solved over its rows; per_segment: refit within each
    # segment (the former way: four times the work, and ~60 controls on a few hundred rows)
    segment_fit: str = "pooled"

    def validate(self) -> None:
        if not 2 <= self.n_folds <= 10:
            raise ValueError(f"n_folds={self.n_folds}: must be 2..10")
        if not 1 <= self.n_rep <= 25:
            raise ValueError(f"n_rep={self.n_rep}: must be 1..25")
        if self.segment_fit not in ("pooled", "per_segment"):
            raise ValueError(f"segment_fit={self.segment_fit!r}: must be 'pooled' or 'per_segment'")
        if self.placebo_feature not in FEATURES:
            raise ValueError(f"placebo_feature={self.placebo_feature!r}: not one of {', '.join(FEATURES)}")
        unknown = [s for s in self.segments if s not in SEGMENTS]
        if unknown:
            raise ValueError(f"unknown segments {unknown}; known: {', '.join(SEGMENTS)}")


@dataclass
class Estimate:
    feature: str
    segment: str
    method: str
    effect: float | None
    std_error: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    status: str = "ok"  # ok | not_estimable
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def covers(self, value: float) -> bool:
        return self.ok and self.ci_low <= value <= self.ci_high


@dataclass
class PreparedSample:
    frame: pd.DataFrame  # the clicked impressions used: features, confounders, segments, completion
    read: int
    skipped: dict[str, int]  # reason -> impressions
    runs: dict[str, int] = field(default_factory=dict)  # simulation run_id -> rows used

    @property
    def used(self) -> int:
        return len(self.frame)

    @property
    def adds_up(self) -> bool:
        return self.read == self.used + sum(self.skipped.values())

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        if len(self.frame):
            digest.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        digest.update(json.dumps([self.read, sorted(self.skipped.items())]).encode())
        return digest.hexdigest()


@dataclass
class CausalResult:
    estimates: list[Estimate]
    sample: PreparedSample
    params: CausalParams
    seconds: float = 0.0
    refutations: dict = field(default_factory=dict)

    def get(self, feature: str, segment: str = "all", method: str | None = None) -> Estimate | None:
        for e in self.estimates:
            if e.feature == feature and e.segment == segment and (
                    e.method == method if method else e.method in DML_METHODS):
                return e
        return None

    def dml(self) -> list[Estimate]:
        return [e for e in self.estimates if e.method in DML_METHODS]

    def not_estimable(self) -> list[Estimate]:
        return [e for e in self.estimates if not e.ok]


# --------------------------------------------------------------------------- the sample


def prepare_sample(rows: pd.DataFrame) -> PreparedSample:
    """``rows``: learning.impressions joined with learning.outcomes (outcome columns NULL when none);
    ``features`` as dicts or JSON text. Returns the estimation sample and why every other row is out."""
    read = len(rows)
    skipped: dict[str, int] = {}
    if read == 0:
        return PreparedSample(_empty_frame(), 0, {})
    frame = rows.copy()
    extras = frame["features"].map(lambda v: v if isinstance(v, dict) else (json.loads(v) if v else {}))
    no_outcome = frame["clicked"].isna()
    not_clicked = ~no_outcome & ~frame["clicked"].fillna(False).astype(bool)
    _count(skipped, "no outcome recorded", int(no_outcome.sum()))
    _count(skipped, "not clicked: no completion observed", int(not_clicked.sum()))
    keep = ~no_outcome & ~not_clicked
    no_completion = keep & frame["watch_completion"].isna()
    _count(skipped, "clicked but completion missing", int(no_completion.sum()))
    keep &= ~no_completion
    out = pd.DataFrame(index=frame.index)
    for f in FEATURES:
        out[f] = pd.to_numeric(frame[f], errors="coerce") if f != "device_type" else np.nan
    device = frame["device_type"].astype("string")
    out["device_type"] = np.where(device.isna(), np.nan, (device == "tv").astype(float))
    out["device"] = device
    for name in CONFOUNDERS:
        out[name] = pd.to_numeric(extras.map(lambda d, k=name: d.get(k)), errors="coerce")
    hour = out["time_of_day"] * 24
    out["time_segment"] = extras.map(lambda d: d.get("time_segment"))
    guess = hour.map(lambda h: time_segment(h) if pd.notna(h) else None)
    out["time_segment"] = out["time_segment"].where(out["time_segment"].notna(), guess)
    out["user_type"] = extras.map(lambda d: d.get("user_type"))
    out["watch_completion"] = pd.to_numeric(frame["watch_completion"], errors="coerce")
    out["run_id"] = frame["run_id"] if "run_id" in frame else None
    # a missing value in any column the models use takes the row out, named after its first such column
    needed = list(FEATURES) + list(CONFOUNDERS)
    for col in needed + ["device", "time_segment", "user_type"]:
        bad = keep & (out[col].isna() if col in needed else ~out[col].isin(
            {"device": DEVICES, "time_segment": TIME_SEGMENTS, "user_type": USER_TYPES}[col]))
        if col in needed:
            bad |= keep & ~np.isfinite(out[col].fillna(np.nan).astype(float))
        _count(skipped, f"missing or invalid {col}", int(bad.sum()))
        keep &= ~bad
    used = out[keep].reset_index(drop=True)
    runs = used["run_id"].value_counts().to_dict() if used["run_id"].notna().any() else {}
    return PreparedSample(used, read, skipped, {str(k): int(v) for k, v in runs.items()})


def _count(skipped: dict[str, int], reason: str, n: int) -> None:
    if n:
        skipped[reason] = skipped.get(reason, 0) + n


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=list(FEATURES) + ["device"] + list(CONFOUNDERS)
                        + ["time_segment", "user_type", "watch_completion", "run_id"])


def segment_mask(frame: pd.DataFrame, segment: str) -> np.ndarray:
    if segment == "all":
        return np.ones(len(frame), dtype=bool)
    dim, value = segment.split("=", 1)
    column = {"device": "device", "time_of_day": "time_segment", "user_type": "user_type"}[dim]
    return (frame[column] == value).to_numpy()


# --------------------------------------------------------------------------- design


def _dummies(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    d = {f"is_{v}": (frame["device"] == v).to_numpy(float) for v in DEVICES[1:]}
    d.update({f"part_{v}": (frame["time_segment"] == v).to_numpy(float) for v in TIME_SEGMENTS[1:]})
    d["is_new"] = (frame["user_type"] == "new").to_numpy(float)
    return d


def controls(frame: pd.DataFrame, feature: str, extra: np.ndarray | None = None) -> np.ndarray:
    """X of ``feature``: the other features, the confounders, segment dummies and interactions."""
    cols: list[np.ndarray] = []
    dummies = _dummies(frame)
    if feature == "device_type":  # is_mobile and is_web are functions of is_tv
        dummies = {k: v for k, v in dummies.items() if k not in ("is_mobile", "is_web")}
    others = [f for f in FEATURES if f != feature]
    cols += [frame[f].to_numpy(float) for f in others]
    for c in CONFOUNDERS:
        v = frame[c].to_numpy(float)
        cols += [v, v * v]
    cols += list(dummies.values())
    for f in others:
        if f not in BINARY:
            v = frame[f].to_numpy(float)
            cols += [v * d for d in dummies.values()]
    if extra is not None:
        cols.append(extra)
    x = np.column_stack(cols)
    sd = x.std(axis=0)
    return x[:, sd > 1e-12]  # columns constant in the segment carry nothing


# --------------------------------------------------------------------------- estimators


def _learners(params: CausalParams):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reg = make_pipeline(StandardScaler(), Ridge(alpha=params.ridge_alpha))
    # newton-cholesky: a few Newton steps, twice as fast as lbfgs when rows far outnumber columns
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=params.logistic_c, max_iter=200,
                                                             solver="newton-cholesky"))
    return reg, clf


def _folds(n: int, params: CausalParams, salt: str) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    from sklearn.model_selection import KFold

    seed = (params.seed * 1_000_003 + int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16)) % (2 ** 32)
    # repetition 0 is the split of n_rep = 1, so that one more repetition only adds draws
    return [[(train, test) for train, test in
             KFold(n_splits=params.n_folds, shuffle=True, random_state=(seed + 7919 * r) % (2 ** 32)).split(
                 np.zeros(n))] for r in range(params.n_rep)]


def naive_ols(y: np.ndarray, d: np.ndarray, feature: str, segment: str) -> Estimate:
    n = len(y)
    dc = d - d.mean()
    sxx = float(dc @ dc)
    beta = float(dc @ (y - y.mean())) / sxx
    resid = y - y.mean() - beta * dc
    se = math.sqrt(float(np.sum(dc * dc * resid * resid)) / sxx ** 2 * n / max(n - 2, 1))  # HC1
    return Estimate(feature, segment, METHOD_NAIVE, beta, se, beta - Z95 * se, beta + Z95 * se, n)


def _not(feature: str, segment: str, method: str, n: int, reason: str) -> Estimate:
    return Estimate(feature, segment, method, None, None, None, None, n, "not_estimable", reason)


def _cell_check(n: int, d: np.ndarray, feature: str, name: str, segment: str, method: str, binary: bool,
                params: CausalParams) -> Estimate | None:
    """The not-estimable outcomes a cell's own rows decide (None: estimable)."""
    if n == 0:
        return _not(name, segment, method, 0, f"not estimable: no clicked impressions in segment {segment}")
    if n < params.min_rows:
        return _not(name, segment, method, n, f"not estimable: {n} clicked impressions in segment {segment} "
                    f"(need ≥ {params.min_rows})")
    if np.ptp(d) <= 1e-12:
        return _not(name, segment, method, n, f"not estimable: {feature} is constant in segment {segment}")
    if binary and not np.isin(d, (0.0, 1.0)).all():
        return _not(name, segment, method, n, f"not estimable: {feature} takes values other than 0 and 1 in "
                    f"segment {segment}")
    if binary:
        ones = int(d.sum())
        if min(ones, n - ones) < params.min_arm:
            return _not(name, segment, method, n, f"not estimable: {feature} is {1 if ones < n - ones else 0} in "
                        f"only {min(ones, n - ones)} impressions of segment {segment} (need ≥ {params.min_arm})")
    return None


def _fit(frame: pd.DataFrame, feature: str, d: np.ndarray, binary: bool, params: CausalParams, salt: str,
         extra: np.ndarray | None = None):
    import doubleml as dml

    y = frame["watch_completion"].to_numpy(float)
    x = controls(frame, feature, extra)
    reg, clf = _learners(params)
    data = dml.DoubleMLData.from_arrays(x, y, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DoubleML's notes on trimming and learner types
        if binary:
            model = dml.DoubleMLIRM(data, reg, clf, n_folds=params.n_folds, n_rep=params.n_rep,
                                    trimming_threshold=params.trimming, draw_sample_splitting=False)
        else:
            model = dml.DoubleMLPLR(data, reg, reg, n_folds=params.n_folds, n_rep=params.n_rep,
                                    draw_sample_splitting=False)
        model.set_sample_splitting(_folds(len(frame), params, salt))
        model.fit()
    return model


def solve_score(psi_a: np.ndarray, psi_b: np.ndarray) -> tuple[float, float]:
    """θ and its standard error from the linear orthogonal score ψ = ψ_a·θ + ψ_b over the rows given
    (shape rows × n_rep): per repetition θ_r = −Σψ_b / Σψ_a and σ_r² = mean(ψ²) / mean(ψ_a)² / n, as
    DoubleML computes them; over repetitions the median θ and the median upper bound, DoubleML's
    aggregation. On every row it is DoubleML's own coefficient and standard error; on a segment's rows it
    is the segment's effect from the same cross-fitted nuisances (the GATE of a segment indicator)."""
    n = psi_a.shape[0]
    theta = -psi_b.sum(axis=0) / psi_a.sum(axis=0)
    psi = psi_a * theta + psi_b
    se = np.sqrt(np.mean(psi * psi, axis=0) / np.mean(psi_a, axis=0) ** 2 / n)
    coef = float(np.median(theta))
    return coef, float((np.median(theta + Z95 * se) - coef) / Z95)


def _from_model(model, mask: np.ndarray | None, feature: str, name: str, segment: str, method: str,
                binary: bool, params: CausalParams) -> Estimate:
    n = int(mask.sum()) if mask is not None else model.psi_elements["psi_a"].shape[0]
    rows = slice(None) if mask is None else mask
    if binary:
        separated = _separation(model.predictions["ml_m"][rows].ravel(), params)
        if separated:
            return _not(name, segment, method, n, f"not estimable: perfect separation in the propensity model of "
                        f"{feature} in segment {segment} ({separated})")
    effect, se = solve_score(model.psi_elements["psi_a"][rows, :, 0], model.psi_elements["psi_b"][rows, :, 0])
    if not (math.isfinite(effect) and math.isfinite(se)) or se <= 0:
        return _not(name, segment, method, n, f"not estimable: the fit of {feature} in segment {segment} gave "
                    f"no finite estimate")
    return Estimate(name, segment, method, effect, se, effect - Z95 * se, effect + Z95 * se, n)


def dml_estimate(frame: pd.DataFrame, feature: str, segment: str, params: CausalParams, *,
                 treatment: np.ndarray | None = None, extra: np.ndarray | None = None,
                 label: str | None = None) -> Estimate:
    """One DML fit on ``frame`` (all its rows are the segment). ``treatment`` replaces the feature's values
    (the placebo); ``extra`` is one more control column (the random common cause)."""
    name = label or feature
    binary = feature in BINARY and treatment is None
    method = METHOD_IRM if binary else METHOD_PLR
    n = len(frame)
    d = np.zeros(0) if n == 0 else (frame[feature].to_numpy(float) if treatment is None else treatment)
    refused = _cell_check(n, d, feature, name, segment, method, binary, params)
    if refused:
        return refused
    model = _fit(frame, feature, d, binary, params, f"{name}|{segment}", extra)
    return _from_model(model, None, feature, name, segment, method, binary, params)


def dml_by_segment(frame: pd.DataFrame, feature: str, segments: tuple[str, ...], params: CausalParams,
                   masks: dict[str, np.ndarray] | None = None) -> list[Estimate]:
    """The pooled estimate: one cross-fitted nuisance fit of ``feature`` on every row of ``frame`` (its
    controls hold the device, daypart and new-user dummies and the other features' interactions with
    them), then each segment's effect from the orthogonal score over the segment's rows. The segment is
    a function of the controls, so E[ψ(θ_s) | segment s] = 0 holds with the same nuisances; only the
    final stage is the segment's. Segment ``all`` is DoubleML's own estimate, on the folds of
    ``dml_estimate(frame, feature, "all", ...)`` (the random-common-cause refit compares like with like)."""
    binary = feature in BINARY
    method = METHOD_IRM if binary else METHOD_PLR
    d_all = frame[feature].to_numpy(float) if len(frame) else np.zeros(0)
    global_refused = _cell_check(len(frame), d_all, feature, feature, "all", method, binary, params)
    model = None if global_refused else _fit(frame, feature, d_all, binary, params, f"{feature}|all")
    out = []
    for segment in segments:
        mask = (masks or {}).get(segment)
        mask = segment_mask(frame, segment) if mask is None else mask
        d = d_all[mask]
        refused = _cell_check(len(d), d, feature, feature, segment, method, binary, params)
        if refused is None and model is None:
            refused = _not(feature, segment, method, len(d), global_refused.reason)
        out.append(refused or _from_model(model, None if segment == "all" else mask, feature, feature, segment,
                                          method, binary, params))
    return out


def _separation(p: np.ndarray, params: CausalParams) -> str | None:
    """A reason when the cross-fitted propensities say the controls (nearly) determine the binary
    treatment, else None: the IRM's inverse weights would then rest on a handful of rows, and its
    truncated propensities would give a number that is not an estimate of anything."""
    extreme = float(((p <= params.trimming + 1e-9) | (p >= 1 - params.trimming - 1e-9)).mean())
    if extreme > params.separation_share:
        return f"{extreme:.0%} of cross-fitted propensities outside [{params.trimming}, {1 - params.trimming}]"
    return None


# --------------------------------------------------------------------------- the whole run


def estimate_all(sample: PreparedSample, params: CausalParams = CausalParams(), *,
                 features: tuple[str, ...] = FEATURES, refutations: bool = True) -> CausalResult:
    """``refutations=False`` only for the coverage benchmark, which scores the estimates themselves."""
    from threadpoolctl import threadpool_limits

    params.validate()
    with threadpool_limits(limits=params.threads):
        return _estimate_all(sample, params, features, refutations)


def _estimate_all(sample: PreparedSample, params: CausalParams, features: tuple[str, ...],
                  refutations: bool = True) -> CausalResult:
    started = time.perf_counter()
    frame = sample.frame
    estimates: list[Estimate] = []
    masks = {s: segment_mask(frame, s) for s in params.segments} if len(frame) else {}
    pooled: dict[tuple[str, str], Estimate] = {}
    if sample.used and params.segment_fit == "pooled":
        for feature in features:
            cells = tuple(s for s in params.segments if not (feature == "device_type" and s.startswith("device=")))
            pooled.update({(e.feature, e.segment): e for e in dml_by_segment(frame, feature, cells, params, masks)})
    for segment in params.segments:
        sub = frame[masks[segment]].reset_index(drop=True) if len(frame) else frame
        for feature in features:
            if feature == "device_type" and segment.startswith("device="):
                continue  # the TV effect is not defined within one device
            method = METHOD_IRM if feature in BINARY else METHOD_PLR
            if sample.used == 0:
                reason = ("not estimable: no impressions on this day" if sample.read == 0 else
                          f"not estimable: none of the {sample.read} impressions is usable "
                          f"({', '.join(f'{k}: {v}' for k, v in sample.skipped.items())})")
                estimates.append(_not(feature, segment, method, 0, reason))
                estimates.append(_not(feature, segment, METHOD_NAIVE, 0, reason))
                continue
            est = pooled.get((feature, segment)) or dml_estimate(sub, feature, segment, params)
            estimates.append(est)
            if est.ok or len(sub) >= 3 and np.ptp(sub[feature].to_numpy(float)) > 1e-12:
                estimates.append(naive_ols(sub["watch_completion"].to_numpy(float),
                                           sub[feature].to_numpy(float), feature, segment))
            else:
                estimates.append(_not(feature, segment, METHOD_NAIVE, est.n, est.reason))
    result = CausalResult(estimates, sample, params)
    if refutations and sample.used >= params.min_rows:
        result.refutations = refute(frame, result, params)
        estimates += result.refutations.pop("_rows")
    result.seconds = time.perf_counter() - started
    return result


def refute(frame: pd.DataFrame, result: CausalResult, params: CausalParams) -> dict:
    rng = np.random.default_rng(params.seed + 99)
    f = params.placebo_feature
    placebo = dml_estimate(frame, f, "all", params, treatment=rng.permutation(frame[f].to_numpy(float)),
                           label=f"placebo:{f}")
    placebo.method = METHOD_PLACEBO
    common = rng.normal(size=len(frame))
    shifts, rows = {}, [placebo]
    for base in result.dml():
        if base.segment != "all" or not base.ok:
            continue
        again = dml_estimate(frame, base.feature, "all", params, extra=common)
        if not again.ok:
            continue
        shift = abs(again.effect - base.effect) / base.std_error
        shifts[base.feature] = round(shift, 4)
        again.method = METHOD_RCC
        again.reason = f"shift {shift:.3f} standard errors from {base.effect:+.5f}"
        rows.append(again)
    placebo_ok = placebo.ok and placebo.ci_low <= 0 <= placebo.ci_high
    if placebo.ok:
        placebo.reason = f"interval {'covers' if placebo_ok else 'excludes'} 0"
    return {
        "placebo_feature": f,
        "placebo_effect": placebo.effect, "placebo_ci": [placebo.ci_low, placebo.ci_high],
        "placebo_covers_zero": placebo_ok,
        "random_common_cause_max_shift_se": max(shifts.values()) if shifts else None,
        "random_common_cause_stable": bool(shifts) and max(shifts.values()) < params.rcc_tolerance,
        "random_common_cause_shift_se": shifts,
        "_rows": rows,
    }


# --------------------------------------------------------------------------- against ground truth


def score_against_truth(result: CausalResult, truth: dict[tuple[str, str], float]) -> dict:
    """Coverage of the planted effects by the DML and the naive intervals, and their bias."""
    pairs = []
    for e in result.dml():
        t = truth.get((e.feature, e.segment))
        if t is None or not e.ok:
            continue
        naive = result.get(e.feature, e.segment, METHOD_NAIVE)
        pairs.append((e, naive, t))
    if not pairs:
        return {}
    covered = [e.covers(t) for e, _, t in pairs]
    naive_covered = [n.covers(t) for _, n, t in pairs if n is not None and n.ok]
    out = {
        "intervals": len(pairs),
        "dml_coverage": round(float(np.mean(covered)), 4),
        "naive_coverage": round(float(np.mean(naive_covered)), 4) if naive_covered else None,
        "dml_mean_abs_bias": round(float(np.mean([abs(e.effect - t) for e, _, t in pairs])), 6),
        "missed": [f"{e.feature}/{e.segment}" for (e, _, t), c in zip(pairs, covered) if not c],
        "per_feature_coverage": {f: round(float(np.mean([c for (e, _, _), c in zip(pairs, covered)
                                                         if e.feature == f])), 4)
                                 for f in FEATURES if any(e.feature == f for e, _, _ in pairs)},
    }
    rank = next(((e, nv, t) for e, nv, t in pairs if e.feature == "recommendation_rank" and e.segment == "all"), None)
    if rank:
        e, nv, t = rank
        out.update({"rank_truth": t, "rank_dml": e.effect, "rank_dml_covers": e.covers(t),
                    "rank_naive": nv.effect if nv else None, "rank_naive_covers": nv.covers(t) if nv else None})
    return out


def estimates_frame(estimates: list[Estimate]) -> pd.DataFrame:
    return pd.DataFrame([asdict(e) for e in estimates])


def forest_plot_png(result: CausalResult, truth: dict[tuple[str, str], float] | None = None) -> bytes:
    """Segment all: naive OLS against DML, 95 % intervals, one panel a feature (their scales differ)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = [f for f in FEATURES if result.get(f) is not None]
    fig, axes = plt.subplots(len(feats), 1, figsize=(7, 0.62 * len(feats) + 0.8), dpi=100, squeeze=False)
    for ax, f in zip(axes[:, 0], feats):
        for y, (method, colour, label) in enumerate(((METHOD_NAIVE, "tab:orange", "naive OLS"),
                                                     (None, "tab:blue", "DML"))):
            e = result.get(f, "all", method)
            if e is None or not e.ok:
                ax.text(0.5, y, "not estimable", transform=ax.get_yaxis_transform(), fontsize=6, va="center")
                continue
            ax.errorbar([e.effect], [y], xerr=[[e.effect - e.ci_low], [e.ci_high - e.effect]], fmt="o",
                        color=colour, ms=3, capsize=2, label=label)
        if truth and (f, "all") in truth:
            ax.axvline(truth[(f, "all")], color="green", lw=1, ls="--", label="planted")
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_yticks([])
        ax.set_ylim(-0.8, 1.8)
        ax.set_ylabel(f, rotation=0, ha="right", va="center", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
    axes[0, 0].legend(fontsize=6, ncol=3, loc="upper right")
    fig.suptitle("Effect on watch completion, segment all (95% intervals)", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the warehouse

SAMPLE_SQL = """
SELECT i.impression_id, i.served_at, i.genre_match_score, i.platform_availability, i.release_recency_score,
       i.rating_alignment, i.time_of_day, i.device_type, i.recommendation_rank, i.content_duration,
       i.user_session_length, i.features, i.run_id, i.source, o.clicked, o.watch_completion
FROM learning.impressions i LEFT JOIN learning.outcomes o USING (impression_id)
WHERE i.served_at >= %(start)s AND i.served_at < %(end)s AND (%(source)s::text IS NULL OR i.source = %(source)s)
ORDER BY i.impression_id
"""


def read_sample(conn, start, end, source: str | None) -> pd.DataFrame:
    cur = conn.execute(SAMPLE_SQL, {"start": start, "end": end, "source": source})
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def read_truth(conn, run_id: str) -> dict[tuple[str, str], float]:
    rows = conn.execute("SELECT feature, segment, true_effect FROM learning.simulation_truth WHERE run_id = %s",
                        (run_id,)).fetchall()
    return {(f, s): float(v) for f, s, v in rows}


def run_id_for(serve_date, sample: PreparedSample, params: CausalParams, window_days: int) -> str:
    settings = json.dumps([asdict(params), window_days], sort_keys=True, default=str)
    digest = hashlib.sha256((sample.fingerprint() + settings).encode()).hexdigest()[:12]
    return f"cw-{serve_date}-{digest}"


def write_result(conn, run_id: str, serve_date, window_days: int, result: CausalResult, *,
                 ground_truth: dict | None, dagster_run_id: str | None) -> bool:
    """One transaction: the run's row and its estimates; False (nothing written) when the run is stored."""
    s = result.sample
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO learning.causal_runs (run_id, serve_date, window_days, impressions, used, skipped, params, "
            "refutations, ground_truth, dagster_run_id, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
            (run_id, serve_date, window_days, s.read, s.used, json.dumps(s.skipped),
             json.dumps(asdict(result.params), default=str), json.dumps(result.refutations, default=str),
             json.dumps(ground_truth) if ground_truth else None, dagster_run_id, round(result.seconds, 3)),
        ).fetchone()
        if inserted is None:
            return False
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO learning.causal_weights (feature, segment, effect, std_error, ci_low, ci_high, n, method, "
                "run_id, status, reason, serve_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(e.feature, e.segment, e.effect, e.std_error, e.ci_low, e.ci_high, e.n, e.method, run_id, e.status,
                  e.reason, serve_date) for e in result.estimates],
            )
    return True


def estimates_markdown(result: CausalResult, truth: dict[tuple[str, str], float] | None = None,
                       segment: str = "all") -> str:
    head = "| feature | method | effect | 95% CI | naive OLS | naive 95% CI | n |" + (" planted |" if truth else "")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for f in FEATURES:
        e, nv = result.get(f, segment), result.get(f, segment, METHOD_NAIVE)
        if e is None:
            continue
        cell = (f"{e.effect:+.4f} | [{e.ci_low:+.4f}, {e.ci_high:+.4f}]" if e.ok else f"{e.reason} | -")
        naive = (f"{nv.effect:+.4f} | [{nv.ci_low:+.4f}, {nv.ci_high:+.4f}]" if nv is not None and nv.ok else "- | -")
        row = f"| {f} | {e.method} | {cell} | {naive} | {e.n} |"
        if truth:
            t = truth.get((f, segment))
            row += f" {t:+.4f} |" if t is not None else " - |"
        lines.append(row)
    return "\n".join(lines)
