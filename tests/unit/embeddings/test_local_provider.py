from __future__ import annotations

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import LocalLSAProvider, make_provider
from gateway_pipelines.lib.embeddings.local_provider import LATEST_POINTER
from tests.unit.embeddings import plots

P = plots.PLOTS


def test_shape_padding_and_normalisation(lsa_model):
    # 60 docs -> 59 SVD components, padded with zeros up to 512
    assert lsa_model.n_components == 59
    out = lsa_model.embed(plots.corpus()[:7])
    assert out.shape == (7, 512) and out.dtype == np.float32
    assert not out[:, 59:].any()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert lsa_model.dim == 512 and lsa_model.kind == "local" and lsa_model.model == "tfidf-lsa"
    assert lsa_model.model_id == f"local:tfidf-lsa@{lsa_model.version}"
    assert len(lsa_model.version) == 12


def test_empty_and_unknown_inputs():
    m = LocalLSAProvider.fit(plots.corpus())
    out = m.embed([])
    assert out.shape == (0, 512) and m.calls == 0
    out = m.embed(["qwxzy blorptastic", "the and of"])  # unknown words / stop words only
    assert out.shape == (2, 512) and not out.any()
    assert m.calls == 1


def test_save_load_round_trip(tmp_path, lsa_model):
    texts = plots.corpus()[::5] + ["an astronaut and a haunted bank vault"]
    before = lsa_model.embed(texts)
    path = lsa_model.save(tmp_path / "models")
    assert path.is_file() and lsa_model.version in path.name
    assert (tmp_path / "models" / LATEST_POINTER).read_text().strip() == path.name
    for src in (tmp_path / "models", path):  # via the pointer and via the file
        loaded = LocalLSAProvider.load(src)
        assert loaded.version == lsa_model.version
        assert loaded.model_id == lsa_model.model_id
        np.testing.assert_array_equal(loaded.embed(texts), before)


def test_load_missing_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no local embedding model"):
        LocalLSAProvider.load(tmp_path)


def test_version_tracks_fitted_state(lsa_model):
    corpus = plots.corpus()
    assert LocalLSAProvider.fit(corpus).version == lsa_model.version  # deterministic
    assert LocalLSAProvider.fit(corpus[:-1]).version != lsa_model.version
    for old, new in (("Europe", "Asia"), ("Paratroopers", "Soldiers")):  # new word / only known words
        assert old in corpus[-1]
        changed = corpus[:-1] + [corpus[-1].replace(old, new)]
        assert LocalLSAProvider.fit(changed).version != lsa_model.version
    assert LocalLSAProvider.fit(corpus, seed=1).version != lsa_model.version


def test_too_small_corpus_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        LocalLSAProvider.fit(["only one document"])
    with pytest.raises(ValueError):
        LocalLSAProvider.fit(["the and", "of the"])  # nothing but stop words


# -------------------------------------------------------------------------------- semantics

# (subject, i, j): two plots about the same thing, compared against every plot of `against`
PAIRS = [
    ("space", 0, 2, "romance"),  # rogue AI on a space station
    ("space", 1, 9, "romance"),  # stranded astronaut vs. the ship's computer
    ("space", 3, 8, "romance"),  # ship's AI steering a deep-space mission
    ("horror", 0, 9, "romance"),  # family in a house where someone was murdered, ghosts
    ("horror", 1, 7, "romance"),  # paranormal investigators and demons
    ("heist", 0, 3, "romance"),  # crew of thieves robbing a vault
    ("sports", 0, 3, "romance"),  # boxer training for a title fight
    ("sports", 1, 5, "romance"),  # high-school football team and championship
    ("war", 0, 9, "romance"),  # Normandy landings
    ("war", 1, 7, "romance"),  # behind enemy lines in World War II
    ("romance", 2, 7, "space"),  # love at / around weddings
]


@pytest.mark.parametrize("subject,i,j,against", PAIRS)
def test_same_subject_plots_are_nearer_than_other_subjects(lsa_model, subject, i, j, against):
    a, b = lsa_model.embed([P[subject][i], P[subject][j]])
    others = lsa_model.embed(P[against])
    assert float(a @ b) > float((others @ a).max())


def test_nearest_neighbours_mostly_share_subject(lsa_model):
    labels = [s for s, _ in plots.labelled()]
    v = lsa_model.embed([p for _, p in plots.labelled()])
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nn = sims.argmax(axis=1)
    same = np.mean([labels[i] == labels[j] for i, j in enumerate(nn)])
    chance = 9 / 59
    assert same >= 0.8 > 3 * chance


def test_unseen_plots_land_near_their_subject(lsa_model):
    subjects = list(P)
    centroids = np.stack([lsa_model.embed(P[s]).mean(axis=0) for s in subjects])
    for subject, texts in plots.HELD_OUT.items():
        scores = lsa_model.embed(texts) @ centroids.T
        for text, row in zip(texts, scores):
            assert subjects[int(row.argmax())] == subject, (text, dict(zip(subjects, row.round(3))))


# -------------------------------------------------------------------------------- make_provider


def test_make_provider_local_fits_once_then_loads(tmp_path):
    calls = {"n": 0}

    def corpus():
        calls["n"] += 1
        return plots.corpus()

    models = tmp_path / "models"
    p1 = make_provider("auto", models_dir=models, corpus=corpus)
    assert isinstance(p1, LocalLSAProvider) and calls["n"] == 1
    # models_dir is the folder itself: nothing is nested below it
    assert (models / LATEST_POINTER).is_file() and p1.path.parent == models
    p2 = make_provider("local", models_dir=models, corpus=corpus)
    assert calls["n"] == 1  # loaded, not refitted
    assert p2.model_id == p1.model_id
    text = [P["space"][0]]
    np.testing.assert_array_equal(p2.embed(text), p1.embed(text))
    # refit on a different catalogue -> a new version becomes the latest
    p3 = make_provider("local", models_dir=str(models), corpus=lambda: plots.corpus()[:30], refit=True)
    assert p3.version != p1.version
    assert make_provider("local", models_dir=models).version == p3.version


def test_load_or_fit_passes_fit_options_and_refit_needs_a_corpus(tmp_path, lsa_model):
    prov = LocalLSAProvider.load_or_fit(tmp_path, plots.corpus, seed=0)
    assert prov.version == lsa_model.version  # same corpus, same seed: the same model
    assert LocalLSAProvider.load_or_fit(tmp_path, plots.corpus, refit=True, seed=1).version != lsa_model.version
    with pytest.raises(FileNotFoundError, match="refit requested"):
        LocalLSAProvider.load_or_fit(tmp_path, refit=True)


def test_make_provider_local_without_model_or_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="no corpus"):
        make_provider("local", models_dir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        make_provider("local", models_dir=tmp_path, corpus=lambda: ["", "  "])


def test_make_provider_auto_ignores_blank_key_and_rejects_unknown_kind(tmp_path):
    prov = make_provider("auto", models_dir=tmp_path, openai_api_key="  ", corpus=plots.corpus,
                         max_retries=3, dimensions=512)  # OpenAI-only options are ignored offline
    assert prov.kind == "local"
    with pytest.raises(TypeError, match="colour"):
        make_provider("auto", models_dir=tmp_path, colour="blue")
    with pytest.raises(TypeError, match="api_key"):  # the key is `openai_api_key`, not an OpenAI passthrough
        make_provider("auto", models_dir=tmp_path, api_key="sk-x")
    with pytest.raises(ValueError, match="unknown embedding provider"):
        make_provider("bert", models_dir=tmp_path)


def test_make_provider_reads_no_environment(tmp_path, monkeypatch):
    # a key or state folder in the environment must not change what an explicit call builds
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("GATEWAY_HOME", str(tmp_path / "elsewhere"))
    prov = make_provider("auto", models_dir=tmp_path / "models", corpus=plots.corpus)
    assert prov.kind == "local"
    assert (tmp_path / "models" / LATEST_POINTER).is_file() and not (tmp_path / "elsewhere").exists()
