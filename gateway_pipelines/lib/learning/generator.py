"""Synthetic agent episodes with planted ground truth (AgentDB's episode shape).

What the generator plants, and stores beside every set (`GeneratedSet.truth`):

* **Task families.** K families (default 8, at most ``len(FAMILIES)``), each with paraphrase templates
  (verb synonyms x object phrasings x shared context phrases), so one family has dozens of distinct
  task strings: exact-string grouping splits it, a semantic clustering should not.
* **Success and failure mixes.** Each family has a success probability ``p_success``; ``success`` is
  Bernoulli(p_success), independent of everything else, so a consolidation that counts failures must
  recover ``p_success`` within sampling error (AgentDB's row filter ``reward >= 0.7`` does not).
* **Latency and tokens.** Log-normal per family (median ``latency_ms`` / ``tokens``).
* **Causal effects within sessions.** For each planted pair (A, B, delta): an episode of B whose session
  had an episode of A earlier, at most ``window_minutes`` before, gets ``delta`` added to its reward.
  Every other ordered pair of families has effect 0.
* **Confounding.** Each session has an agent skill ``s ~ N(0, 1)``, recorded as the session covariate
  ``metadata.agent_level``. Skill raises every reward by ``skill_reward * s`` and makes the two
  confounded families more frequent (weight ``exp(confounding * s)``), so "C before D" is more common
  in sessions of skilled agents, whose rewards are higher anyway: a naive difference of means reports a
  C -> D effect that is not there; an estimator that adjusts for the session covariate does not.
* **Experiments honoured (optional).** ``interventions = ((experiment_id, A, B[, task]), ...)``: the simulated
  agents follow the platform's A/B assignment (:func:`~gateway_pipelines.lib.learning.experiments.assigned_treatment`
  of the experiment and the session). In a treatment session that has an episode of B, an episode of A is
  inserted just before its first B (30 s, or halfway to the episode before); in a control session, the episodes of A before its first B are dropped.
  Nothing else changes, so the difference between the arms is A's effect on B (the planted delta, or 0).
  The inserted episode's task is ``task`` when given (the skill's own wording: a family that the
  consolidation split in two is still one family here), else a paraphrase of A.
  Without interventions the output is exactly what it was before this option existed.

Rewards: ``mu + 0.15 (success - p) + skill_reward * s + sum(effects) + N(0, noise)``, clipped to [0, 1]
(the means are kept inside [0.3, 0.8] so clipping is rare and the planted deltas are the effects on the
reward scale). Everything is a function of the seed and the parameters: the same call gives the same
episodes, ids (``source_key``) and timestamps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd

__all__ = ["FAMILIES", "Family", "GeneratedSet", "GeneratorParams", "generate_episodes"]


@dataclass(frozen=True)
class Family:
    key: str
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    p_success: float
    mu_reward: float
    latency_ms: float
    tokens: int
    techniques: tuple[str, ...]  # words of successful outputs / critiques
    pitfalls: tuple[str, ...]  # failure critiques


FAMILIES: tuple[Family, ...] = (
    Family("fix_login_tests", ("fix", "repair", "debug", "make green"),
           ("the failing login unit tests", "broken login test cases", "flaky login tests in the auth suite",
            "login tests that fail on CI"),
           0.72, 0.55, 4200, 1800, ("pytest", "fixtures", "mocking", "session", "token"),
           ("forgot to mock the token service", "fixture leaked state between tests",
            "patched the wrong login module")),
    Family("write_sql_migration", ("write", "draft", "author", "create"),
           ("a database schema migration", "an sql migration for the orders table",
            "the migration adding an index to the database", "a reversible database migration script"),
           0.58, 0.50, 6100, 2600, ("alter", "index", "transaction", "rollback", "constraint"),
           ("migration locked the orders table", "no down migration provided",
            "index built without concurrently")),
    Family("summarize_document", ("summarize", "condense", "write a summary of", "give an abstract of"),
           ("the quarterly report pdf", "a long research paper document", "the meeting transcript document",
            "this policy document report"),
           0.86, 0.62, 2500, 3200, ("bullet", "abstract", "sections", "highlights", "concise"),
           ("summary missed the key figures", "summary was longer than the report section",
            "hallucinated a quote")),
    Family("deploy_kubernetes", ("deploy", "roll out", "ship", "release"),
           ("the api service to kubernetes", "a new kubernetes deployment for the worker",
            "the helm chart to the kubernetes cluster", "the container image to the staging kubernetes cluster"),
           0.45, 0.42, 9800, 2100, ("helm", "manifest", "replicas", "probe", "rollout"),
           ("readiness probe misconfigured", "image tag not pushed to the registry",
            "forgot the namespace in the manifest")),
    Family("translate_text", ("translate", "convert", "render", "localize"),
           ("the product page into french", "user interface strings into french and german",
            "the help text into spanish", "marketing copy into german"),
           0.80, 0.60, 1900, 900, ("glossary", "locale", "tone", "plural", "idiom"),
           ("kept english idioms untranslated", "broke the placeholder variables",
            "used the wrong formality level")),
    Family("optimize_query", ("optimize", "speed up", "tune", "improve the performance of"),
           ("the slow dashboard sql query", "a slow postgres query with joins", "the report query that times out",
            "the slow search query plan"),
           0.52, 0.47, 7300, 2400, ("explain", "index", "join", "plan", "cardinality"),
           ("added an index that the planner ignores", "rewrote the query but changed its result",
            "tested only on a tiny dataset")),
    Family("review_pull_request", ("review", "check", "give feedback on", "audit"),
           ("the open pull request for the parser", "a pull request changing the billing code",
            "the pull request with the new cache layer", "a large refactoring pull request"),
           0.77, 0.58, 3600, 2000, ("diff", "naming", "tests", "edge", "complexity"),
           ("approved a change without tests", "missed the race condition in the diff",
            "nitpicked style and missed the bug")),
    Family("classify_support_tickets", ("classify", "triage", "label", "categorize"),
           ("incoming customer support tickets", "the backlog of support tickets by urgency",
            "support tickets into billing and technical", "new support tickets from the helpdesk"),
           0.68, 0.53, 1500, 700, ("labels", "urgency", "routing", "taxonomy", "confidence"),
           ("confused billing with refunds", "labelled angry customers as urgent regardless",
            "ignored the ticket language")),
    Family("generate_unit_tests", ("generate", "add", "write", "create"),
           ("unit tests for the date parser", "missing unit tests for the payment module",
            "property based unit tests for the tokenizer", "unit tests covering the csv exporter"),
           0.63, 0.51, 5200, 2900, ("coverage", "assertions", "parametrize", "boundaries", "hypothesis"),
           ("tests asserted the implementation not the behaviour", "no boundary cases covered",
            "tests depend on the wall clock")),
    Family("extract_invoice_fields", ("extract", "pull out", "parse", "read"),
           ("fields from the scanned invoice", "totals and dates from invoice pdfs",
            "the vendor name and amount from an invoice", "line items from supplier invoices"),
           0.74, 0.56, 2800, 1500, ("ocr", "regex", "currency", "validation", "schema"),
           ("mixed up the invoice date and due date", "dropped the currency symbol",
            "misread a comma as a decimal point")),
)

CONTEXTS = ("", "", "", " for the team", " before the release", " today", " as soon as possible",
            " in the main repository", " for the new customer", " please")
FILLER_OUTPUT = ("done", "completed the change", "finished", "result attached")


@dataclass(frozen=True)
class GeneratorParams:
    seed: int = 7
    n_sessions: int = 400
    n_families: int = 8
    days: int = 30
    end_date: str = "2026-06-30"  # sessions start within the `days` days ending on this date (UTC)
    min_session_len: int = 4
    max_session_len: int = 9
    mean_gap_minutes: float = 7.0
    window_minutes: float = 60.0
    noise: float = 0.08
    skill_reward: float = 0.12
    confounding: float = 1.5
    # planted effects (from family index, to family index, delta on the reward)
    effects: tuple[tuple[int, int, float], ...] = ((0, 1, 0.15), (2, 3, 0.12), (4, 5, 0.10))
    confounded: tuple[int, int] = (6, 7)  # both more frequent for skilled agents; no effect between them
    session_prefix: str = "sim"
    session_offset: int = 0  # session numbering starts here (a second batch of the same seed family)
    interventions: tuple[tuple, ...] = ()  # (experiment id, family A, family B[, task of A]) honoured
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["effects"] = [list(e) for e in self.effects]
        d["confounded"] = list(self.confounded)
        if self.interventions:
            d["interventions"] = [list(i) for i in self.interventions]
        else:
            d.pop("interventions")  # sets generated without them keep their set ids
        return d

    @property
    def set_id(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return f"{self.session_prefix}-{self.seed}-{hashlib.sha256(blob).hexdigest()[:10]}"


@dataclass
class GeneratedSet:
    params: GeneratorParams
    episodes: pd.DataFrame  # one row per episode, AgentDB's columns plus source_key and family
    truth: dict  # families, success rates, planted / null / confounded pairs

    @property
    def set_id(self) -> str:
        return self.params.set_id


def _task_strings(fam: Family) -> list[str]:
    return [f"{v} {o}{c}" for v in fam.verbs for o in fam.objects for c in CONTEXTS]


def generate_episodes(params: GeneratorParams | None = None, **overrides) -> GeneratedSet:
    """Episodes over ``n_families`` task families in ``n_sessions`` sessions, with stored truth."""
    p = params or GeneratorParams()
    if overrides:
        p = GeneratorParams(**{**asdict(p), **overrides})
    if not 2 <= p.n_families <= len(FAMILIES):
        raise ValueError(f"n_families must be between 2 and {len(FAMILIES)}, got {p.n_families}")
    # Fewer families than the default plan: plant only the pairs among them (the truth lists what was
    # planted), as the confounded pair below already does.
    in_range = tuple((a, b, d) for a, b, d in p.effects if 0 <= a < p.n_families and 0 <= b < p.n_families)
    if in_range != p.effects:
        p = replace(p, effects=in_range)
    ivs = tuple(tuple(i) for i in p.interventions if 0 <= i[1] < p.n_families and 0 <= i[2] < p.n_families)
    if ivs != tuple(tuple(i) for i in p.interventions):
        p = replace(p, interventions=ivs)
    conf = tuple(c for c in p.confounded if c < p.n_families)
    rng = np.random.default_rng(p.seed)
    fams = FAMILIES[: p.n_families]
    K = len(fams)
    strings = [_task_strings(f) for f in fams]
    effect = np.zeros((K, K))
    for a, b, d in p.effects:
        effect[a, b] = d

    n = p.n_sessions
    skill = rng.standard_normal(n)
    lengths = rng.integers(p.min_session_len, p.max_session_len + 1, size=n)
    end = datetime.combine(date.fromisoformat(p.end_date), time(18, 0), tzinfo=timezone.utc)
    start_offsets = rng.uniform(0, p.days * 86400 - 3 * 3600, size=n)  # seconds before `end`
    total = int(lengths.sum())
    sess_idx = np.repeat(np.arange(n), lengths)
    pos = np.concatenate([np.arange(k) for k in lengths])
    # family choice: base weights, confounded families tilted by skill
    logits = np.zeros((total, K))
    if len(conf) == 2:
        logits[:, list(conf)] = p.confounding * skill[sess_idx, None]
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    u = rng.random(total)
    fam_idx = (probs.cumsum(axis=1) < u[:, None]).sum(axis=1).clip(0, K - 1)
    gaps = rng.exponential(p.mean_gap_minutes * 60, size=total)
    gaps[pos == 0] = 0
    # cumulative gap within each session
    csum = np.cumsum(gaps)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    within = csum - csum[first] + 0.0
    ts_seconds = (-start_offsets[sess_idx]) + within  # relative to `end`
    ts_seconds = np.round(ts_seconds, 3)
    if p.interventions:
        sess_idx, pos, fam_idx, ts_seconds, lengths, forced = _honour(p, sess_idx, fam_idx, ts_seconds, n)
        total = int(lengths.sum())

    p_succ = np.array([f.p_success for f in fams])
    success = rng.random(total) < p_succ[fam_idx]
    # treatment indicators per (A, episode): an A episode earlier in the session within the window
    planted_add = np.zeros(total)
    window = p.window_minutes * 60
    starts = np.cumsum(lengths) - lengths
    for s_i in range(n):
        lo, hi = starts[s_i], starts[s_i] + lengths[s_i]
        f = fam_idx[lo:hi]
        t = ts_seconds[lo:hi]
        for j in range(1, hi - lo):
            prev = (t[:j] >= t[j] - window)
            seen = np.unique(f[:j][prev])
            if seen.size:
                planted_add[lo + j] = effect[seen, f[j]].sum()
    mu = np.array([f.mu_reward for f in fams])
    reward = (mu[fam_idx] + 0.15 * (success - p_succ[fam_idx]) + p.skill_reward * skill[sess_idx]
              + planted_add + rng.normal(0, p.noise, size=total))
    reward = np.clip(reward, 0.0, 1.0).round(4)
    lat_med = np.array([f.latency_ms for f in fams])
    tok_med = np.array([f.tokens for f in fams])
    latency = np.round(lat_med[fam_idx] * np.exp(rng.normal(0, 0.35, size=total)), 1)
    tokens = np.round(tok_med[fam_idx] * np.exp(rng.normal(0, 0.3, size=total))).astype(int)
    pick_task = rng.random(total)
    pick_tech = rng.integers(0, 1 << 30, size=(total, 3))
    pick_pit = rng.integers(0, 3, size=total)

    rows = []
    set_id = p.set_id
    for i in range(total):
        fi = int(fam_idx[i])
        fam = fams[fi]
        ss = strings[fi]
        task = (forced[i] if p.interventions else None) or ss[int(pick_task[i] * len(ss))]
        techs = [fam.techniques[int(k) % len(fam.techniques)] for k in pick_tech[i]]
        ok = bool(success[i])
        if ok:
            output = f"{FILLER_OUTPUT[int(pick_tech[i, 0]) % 4]} using {techs[0]} and {techs[1]}"
            critique = f"worked well: {techs[2]} and {techs[0]} were the key"
        else:
            output = f"attempted with {techs[0]}, did not pass"
            critique = fam.pitfalls[int(pick_pit[i])]
        s_i = int(sess_idx[i])
        session = f"{p.session_prefix}-{p.seed}-{p.session_offset + s_i:06d}"
        rows.append((
            f"gen:{set_id}:{session}:{int(pos[i])}", session, task, f"input for: {task}", output, critique,
            float(reward[i]), ok, float(latency[i]), int(tokens[i]),
            end + timedelta(seconds=float(ts_seconds[i])), fam.key, round(float(skill[s_i]), 4),
        ))
    df = pd.DataFrame(rows, columns=["source_key", "session_id", "task", "input", "output", "critique", "reward",
                                     "success", "latency_ms", "tokens_used", "ts", "family", "agent_level"])
    df["metadata"] = [
        {"agent_level": lvl, "generator": {"set_id": set_id, "family": fam}}
        for lvl, fam in zip(df["agent_level"], df["family"])
    ]
    df["tags"] = [["generated", fam] for fam in df["family"]]
    df = df.sort_values(["ts", "source_key"], kind="stable").reset_index(drop=True)

    keys = [f.key for f in fams]
    planted = [{"from": keys[a], "to": keys[b], "effect": float(d)} for a, b, d in p.effects]
    truth = {
        "set_id": set_id,
        "families": {
            f.key: {"p_success": f.p_success, "mu_reward": f.mu_reward, "n_task_strings": len(strings[i]),
                    "latency_ms_median": f.latency_ms, "tokens_median": f.tokens}
            for i, f in enumerate(fams)
        },
        "planted_effects": planted,
        "confounded_pair": {"from": keys[conf[0]], "to": keys[conf[1]], "effect": 0.0} if len(conf) == 2 else None,
        "null_effect": 0.0,
        "window_minutes": p.window_minutes,
        "session_covariates": ["agent_level"],
        "n_episodes": int(total),
        "n_sessions": int(n),
        "n_distinct_tasks": int(df["task"].nunique()),
    }
    return GeneratedSet(p, df, truth)


def _honour(p: GeneratorParams, sess_idx, fam_idx, ts_seconds, n_sessions):
    """Apply the experiments' assignments session by session (see the module docstring)."""
    from gateway_pipelines.lib.learning.experiments import assigned_treatment

    fams = [list(fam_idx[sess_idx == s]) for s in range(n_sessions)]
    times = [list(ts_seconds[sess_idx == s]) for s in range(n_sessions)]
    tasks = [[None] * len(f) for f in fams]
    for exp_id, a, b, *task in p.interventions:
        for s in range(n_sessions):
            f, t, k = fams[s], times[s], tasks[s]
            if b not in f:
                continue
            first_b = f.index(b)
            if assigned_treatment(exp_id, f"{p.session_prefix}-{p.seed}-{p.session_offset + s:06d}"):
                # 30 s before B, or halfway when the episode before B is closer: times stay in order
                lead = min(30.0, (t[first_b] - t[first_b - 1]) / 2) if first_b else 30.0
                f.insert(first_b, a)
                t.insert(first_b, round(t[first_b] - lead, 3))
                k.insert(first_b, task[0] if task else None)
            else:
                keep = [i for i in range(len(f)) if not (i < first_b and f[i] == a)]
                fams[s], times[s], tasks[s] = [f[i] for i in keep], [t[i] for i in keep], [k[i] for i in keep]
    lengths = np.array([len(f) for f in fams])
    sess = np.repeat(np.arange(n_sessions), lengths)
    pos = np.concatenate([np.arange(k) for k in lengths])
    return (sess, pos, np.array([x for f in fams for x in f], dtype=int),
            np.array([x for t in times for x in t], dtype=float), lengths, [x for k in tasks for x in k])


def true_effect(truth: dict, from_family: str, to_family: str) -> float:
    for e in truth["planted_effects"]:
        if e["from"] == from_family and e["to"] == to_family:
            return float(e["effect"])
    return 0.0
