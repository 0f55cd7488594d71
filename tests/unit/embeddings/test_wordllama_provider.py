"""The wordllama plot provider on the real installed wheel (the `test` extra installs it): it loads and
embeds with the network refused, gives (n, 512) unit float32 rows that do not depend on the batch,
names its weights in its model id, equals wordllama's own embedding, beats the TF-IDF/SVD model on the
labelled plots, and is what the factory and the resource build for provider="wordllama"."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import socket
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import BlockWeights, QueryIntent, build_content_vectors, build_query_vector
from gateway_pipelines.lib.embeddings.factory import make_provider, resolve_provider_kind
from gateway_pipelines.lib.embeddings.hashing import embedding_hash
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.embeddings.wordllama_provider import (
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    WordLlamaProvider,
    WordLlamaUnavailableError,
    locate_model_files,
    package_dir,
    pool_tokens,
    to_plot_block,
)
from tests.unit.embeddings import plots

P = plots.PLOTS


@contextlib.contextmanager
def network_refused(home: Path):
    """Any connection attempt from Python raises, Hugging Face clients are told to stay offline, proxies
    point at a closed port (for clients outside Python's socket module), and HOME / the cache folder
    are `home`, so a download or a cache write would show up there."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex"):
            mp.setattr(socket.socket, name, refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(var, "1")
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            mp.setenv(var, "http://127.0.0.1:9")
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        mp.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
        yield


@pytest.fixture(scope="module")
def wl(tmp_path_factory) -> WordLlamaProvider:
    with network_refused(tmp_path_factory.mktemp("home")):
        return WordLlamaProvider.load()


def share_of_k_nearest(queries: np.ndarray, q_labels: list[str], corpus: np.ndarray, c_labels: list[str], *,
                       k: int = 5, same_set: bool = False) -> float:
    """Mean share of each query's k nearest corpus rows (cosine) that have the query's label; with
    `same_set` the queries are the corpus and a row is not its own neighbour."""
    sims = queries @ corpus.T
    if same_set:
        np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return float(np.mean([[c_labels[j] == q_labels[i] for j in row] for i, row in enumerate(nearest)]))


# ------------------------------------------------------------------------------ offline, shape, identity


def test_loads_and_embeds_with_the_network_refused_and_writes_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with network_refused(home):
        with pytest.raises(OSError, match="network access"):  # the guard does refuse
            socket.create_connection(("huggingface.co", 443), timeout=1)
        prov = WordLlamaProvider.load()
        out = prov.embed(plots.corpus()[:5])
    assert out.shape == (5, 512) and np.isfinite(out).all()
    assert list(home.iterdir()) == []  # no cache folder, no download
    # the files read are the ones inside the installed package
    assert Path(prov.meta["weights_file"]).is_relative_to(package_dir())
    assert prov.meta["package_version"] == metadata.version("wordllama") == "0.4.0.post1"


def test_shape_dtype_unit_rows_and_zero_padding(wl):
    out = wl.embed(plots.corpus())
    assert out.shape == (60, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert not out[:, 256:].any()  # the padded half: zero, so cosines are wordllama's own
    assert wl.calls >= 1


def test_deterministic_and_independent_of_the_batch(wl, tmp_path):
    texts = plots.corpus()
    whole = wl.embed(texts)
    np.testing.assert_array_equal(wl.embed(texts), whole)
    # one at a time and in another order: the same bits, so streamed batches equal one build
    np.testing.assert_array_equal(np.vstack([wl.embed([t]) for t in texts]), whole)
    np.testing.assert_array_equal(wl.embed(texts[::-1])[::-1], whole)
    with network_refused(tmp_path):
        again = WordLlamaProvider.load()
    assert again.model_id == wl.model_id
    np.testing.assert_array_equal(again.embed(texts), whole)


def test_model_id_names_the_weights_file(wl):
    # the sha of the weights file the installed distribution records, computed here independently
    dist = metadata.distribution("wordllama")
    [weights] = [f for f in dist.files or [] if str(f).endswith("l2_supercat_256.safetensors")]
    sha = hashlib.sha256(Path(dist.locate_file(weights)).read_bytes()).hexdigest()
    assert wl.kind == "wordllama" and wl.model == "l2_supercat-256" and wl.dim == 512
    assert wl.model_id == f"wordllama:l2_supercat-256@{wl.version}"
    assert wl.version.startswith(sha[:12]) and wl.meta["weights_sha256"] == sha
    # and the hash machinery sees another model: switching provider re-embeds the catalogue
    row = {"title": "Heist", "overview": P["heist"][0], "genre_ids": [80]}
    assert embedding_hash(row, wl.model_id, BlockWeights()) != embedding_hash(row, "local:tfidf-lsa@x", BlockWeights())


def test_other_weights_are_another_model_version(wl, tmp_path):
    # a copy of the packaged files with one weight changed stands for another wheel
    root = tmp_path / "wordllama"
    weights, tokenizer = locate_model_files()
    for src, rel in ((weights, WEIGHTS_FILE), (tokenizer, TOKENIZER_FILE)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    same = WordLlamaProvider.load(root)
    assert same.model_id == wl.model_id
    data = bytearray((root / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0x01  # last byte of the last float of the table
    (root / WEIGHTS_FILE).write_bytes(bytes(data))
    other = WordLlamaProvider.load(root)
    assert other.model_id != wl.model_id
    assert other.version.split("-")[1:] == wl.version.split("-")[1:]  # same tokenizer and recipe


def test_equals_wordllamas_own_embedding(wl, tmp_path):
    texts = plots.corpus() + [t for ts in plots.HELD_OUT.values() for t in ts] + ["a", "Ünïcödé 東京 ok?"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with network_refused(tmp_path):
            from wordllama import WordLlama

            # its offline form: the package folder as cache_dir (its own lookup misses the tokenizer)
            reference = WordLlama.load(cache_dir=package_dir(), disable_download=True).embed(texts, norm=True)
    finally:  # importing wordllama calls logging.basicConfig(level=INFO); give the root logger back
        root.handlers[:], root.level = handlers, level
    np.testing.assert_allclose(wl.embed(texts)[:, :256], reference, atol=2e-6)


def test_blank_and_empty_inputs_and_type_errors(wl):
    calls = wl.calls
    assert wl.embed([]).shape == (0, 512) and wl.calls == calls  # no call for nothing
    out = wl.embed(["", "   ", "a haunted house"])
    assert not out[:2].any() and np.isclose(np.linalg.norm(out[2]), 1.0)
    with pytest.raises(TypeError, match="single string"):
        wl.embed("a haunted house")
    with pytest.raises(TypeError, match="input 1"):
        wl.embed(["ok", None])


def test_pool_and_padding_helpers():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    pooled = pool_tokens([[0, 2], [], [3, 3, 9]], table)  # 9 is past the table: clipped to its last row
    np.testing.assert_allclose(pooled, [[3, 4, 5], [0, 0, 0], [9, 10, 11]])
    block = to_plot_block(np.array([[3.0, 4.0], [0.0, 0.0]]), dim=4)
    np.testing.assert_allclose(block, [[0.6, 0.8, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError):
        to_plot_block(np.ones((1, 5)), dim=4)


# ------------------------------------------------------------------------------ missing install


def test_missing_package_or_files_say_how_to_install(tmp_path):
    hint = r"pip install -e '\.\[wordllama\]'"
    with pytest.raises(WordLlamaUnavailableError, match=hint):
        package_dir("wordllama_not_installed_here")
    with pytest.raises(WordLlamaUnavailableError, match=hint):
        locate_model_files(tmp_path)  # a package folder without its weights
    with pytest.raises(WordLlamaUnavailableError, match="never downloads"):
        WordLlamaProvider.load(tmp_path)


# ------------------------------------------------------------------------------ neighbour quality


def test_neighbours_share_their_subject_more_often_than_with_tfidf_svd(wl, lsa_model):
    labels = [s for s, _ in plots.labelled()]
    texts = [p for _, p in plots.labelled()]
    held_labels = [s for s, ts in plots.HELD_OUT.items() for _ in ts]
    held = [t for ts in plots.HELD_OUT.values() for t in ts]
    scores = {}
    for name, prov in (("wordllama", wl), ("tfidf_svd", lsa_model)):  # TF-IDF/SVD fitted on these 60 plots
        corpus = prov.embed(texts)
        scores[name] = (share_of_k_nearest(corpus, labels, corpus, labels, same_set=True),
                        share_of_k_nearest(prov.embed(held), held_labels, corpus, labels))
    chance = 9 / 59
    assert scores["wordllama"][0] > scores["tfidf_svd"][0] > 3 * chance, scores
    assert scores["wordllama"][1] >= scores["tfidf_svd"][1], scores


# ------------------------------------------------------------------------------ selection and use


def test_factory_and_resource_build_it_by_name_only(tmp_path):
    models = tmp_path / "models"
    prov = make_provider("wordllama", models_dir=models, corpus=plots.corpus, refit=True, seed=3)
    assert isinstance(prov, WordLlamaProvider)
    assert make_provider("WordLlama ", models_dir=models).model_id == prov.model_id
    res = EmbeddingResource(provider="wordllama", models_dir=str(models))
    assert res.describe()["provider"] == "wordllama"
    opened = res.open(plots.corpus, refit=True, catalogue_titles=60)  # local-model options do not apply
    assert isinstance(opened, WordLlamaProvider) and opened.model_id == prov.model_id
    assert not models.exists()  # nothing fitted, saved or cached
    # auto never picks it
    assert resolve_provider_kind("auto") == "local" and resolve_provider_kind("auto", "sk-x") == "openai"
    assert resolve_provider_kind("wordllama", "sk-x") == "wordllama"


def test_hybrid_vectors_and_queries_with_it(wl):
    rows = [{"content_key": f"movie-{i}", "title": f"T{i}", "overview": text, "genre_ids": []}
            for i, text in enumerate(plots.corpus())]
    vectors = build_content_vectors(rows, wl, BlockWeights())
    assert vectors.shape == (60, 768) and np.isclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5).all()
    q = build_query_vector(QueryIntent(text="a ghost haunts the family's new house"), wl)
    top = np.argsort(-(vectors @ q))[:5]
    assert all(plots.labelled()[i][0] == "horror" for i in top)
