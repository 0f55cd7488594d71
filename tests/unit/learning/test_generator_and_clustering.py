"""The generator plants what it says it does; clustering recovers the families where exact strings fail."""

import numpy as np
import pytest

from gateway_pipelines.lib.learning.clustering import adjusted_rand, cluster_tasks
from gateway_pipelines.lib.learning.embedding import TaskEmbedder, task_hash
from gateway_pipelines.lib.learning.generator import GeneratorParams, generate_episodes, true_effect


def test_generator_is_deterministic_and_stores_its_truth():
    a, b = generate_episodes(seed=11, n_sessions=60), generate_episodes(seed=11, n_sessions=60)
    assert a.episodes.drop(columns=["metadata", "tags"]).equals(b.episodes.drop(columns=["metadata", "tags"]))
    assert a.set_id == b.set_id and a.set_id != generate_episodes(seed=12, n_sessions=60).set_id
    truth = a.truth
    assert len(truth["families"]) == 8 and truth["n_episodes"] == len(a.episodes)
    assert true_effect(truth, "fix_login_tests", "write_sql_migration") == 0.15
    assert truth["confounded_pair"]["effect"] == 0.0
    assert a.episodes["source_key"].is_unique
    # failures exist in every family, and rewards stay on [0, 1]
    assert a.episodes.groupby("family")["success"].agg(["min", "max"]).eq([False, True]).all().all()
    assert a.episodes["reward"].between(0, 1).all()


def test_each_family_has_many_task_strings():
    g = generate_episodes(seed=3, n_sessions=200)
    per_family = g.episodes.groupby("family")["task"].nunique()
    assert (per_family > 40).all()


def _cluster(g):
    tasks = g.episodes.groupby("task").size()
    emb = TaskEmbedder.fit(list(tasks.index))
    vec = emb.embed(list(tasks.index))
    res = cluster_tasks([task_hash(t) for t in tasks.index], vec, tasks.to_numpy())
    return dict(zip(tasks.index, res.labels)), emb


@pytest.mark.slow
@pytest.mark.parametrize("seed,n_families,n_sessions", [(1, 8, 400), (2, 8, 150), (3, 10, 400), (5, 6, 300)])
def test_clustering_recovers_families_where_exact_strings_do_not(seed, n_families, n_sessions):
    g = generate_episodes(seed=seed, n_sessions=n_sessions, n_families=n_families, effects=((0, 1, 0.15),),
                          confounded=(2, 3))
    labels, _ = _cluster(g)
    ari = adjusted_rand(g.episodes["family"], g.episodes["task"].map(labels))
    exact = adjusted_rand(g.episodes["family"], g.episodes["task"])
    assert ari >= 0.9, ari
    assert exact < 0.1, exact


def test_clustering_is_deterministic_whatever_the_input_order():
    g = generate_episodes(seed=4, n_sessions=120)
    tasks = g.episodes.groupby("task").size()
    emb = TaskEmbedder.fit(list(tasks.index))
    names = list(tasks.index)
    vec = emb.embed(names)
    first = cluster_tasks([task_hash(t) for t in names], vec, tasks.to_numpy())
    perm = np.random.default_rng(0).permutation(len(names))
    second = cluster_tasks([task_hash(names[i]) for i in perm], vec[perm], tasks.to_numpy()[perm])
    a = dict(zip(names, first.labels))
    b = {names[i]: lab for i, lab in zip(perm, second.labels)}
    assert a == b  # the same numbering, not just the same partition
    assert TaskEmbedder.fit(names[::-1]).model_id == emb.model_id


def test_large_inputs_are_clustered_on_a_core_and_assigned():
    g = generate_episodes(seed=6, n_sessions=300)
    tasks = g.episodes.groupby("task").size()
    names = list(tasks.index)
    vec = TaskEmbedder.fit(names).embed(names)
    full = cluster_tasks([task_hash(t) for t in names], vec, tasks.to_numpy())
    capped = cluster_tasks([task_hash(t) for t in names], vec, tasks.to_numpy(), max_points=300)
    assert adjusted_rand(full.labels, capped.labels) > 0.9


def test_fewer_families_plant_only_the_pairs_among_them():
    # `gateway simulate-episodes --families 3` used to end in a traceback: the default plan names families 0-7
    gen = generate_episodes(GeneratorParams(n_families=3, n_sessions=60, seed=5))
    assert [(e["from"], e["to"]) for e in gen.truth["planted_effects"]] == [("fix_login_tests", "write_sql_migration")]
    assert gen.truth["confounded_pair"] is None
    assert gen.episodes["family"].nunique() == 3
