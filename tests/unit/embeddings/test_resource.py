from __future__ import annotations

import numpy as np
import pydantic
import pytest

from gateway_pipelines.lib.embeddings import LocalLSAProvider, OpenAIProvider
from gateway_pipelines.lib.embeddings.local_provider import LATEST_POINTER
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from tests.unit.embeddings import plots


def test_fields_are_the_whole_configuration():
    fields = EmbeddingResource.model_fields
    assert list(fields) == ["provider", "openai_api_key", "openai_base_url", "openai_model", "models_dir",
                            "plot_weight", "genre_weight", "mood_weight", "metadata_weight", "min_coverage",
                            "max_growth", "auto_refit", "coverage_sample", "fit_max_docs"]
    defaults = {name: f.default for name, f in fields.items() if not f.is_required()}
    assert defaults == {"provider": "auto", "openai_api_key": None, "openai_base_url": None,
                        "openai_model": "text-embedding-3-small", "plot_weight": 1.0, "genre_weight": 0.45,
                        "mood_weight": 0.3, "metadata_weight": 0.25, "min_coverage": 0.9, "max_growth": 2.0,
                        "auto_refit": True, "coverage_sample": 4000, "fit_max_docs": 20000}
    with pytest.raises(pydantic.ValidationError, match="models_dir"):
        EmbeddingResource()


@pytest.mark.parametrize("provider,key,expected", [
    ("auto", None, "local"), ("auto", "", "local"), ("auto", "   ", "local"), ("auto", "sk-x", "openai"),
    ("local", "sk-x", "local"), ("openai", None, "openai"), ("OpenAI", None, "openai"),
])
def test_describe_resolves_the_provider_without_building_it(tmp_path, provider, key, expected):
    res = EmbeddingResource(provider=provider, openai_api_key=key, models_dir=str(tmp_path / "models"))
    assert res.describe() == {"provider": expected, "openai_model": "text-embedding-3-small",
                              "models_dir": str(tmp_path / "models"), "min_coverage": 0.9, "max_growth": 2.0,
                              "auto_refit": True}
    assert not (tmp_path / "models").exists()  # nothing loaded, fitted or created


def test_describe_never_shows_the_key(tmp_path):
    res = EmbeddingResource(openai_api_key="sk-secret-1234", openai_model="text-embedding-3-large",
                            models_dir=str(tmp_path))
    described = res.describe()
    assert described["provider"] == "openai" and described["openai_model"] == "text-embedding-3-large"
    assert "sk-secret-1234" not in repr(described)


def test_describe_rejects_an_unknown_provider(tmp_path):
    with pytest.raises(ValueError, match="unknown embedding provider"):
        EmbeddingResource(provider="bert", models_dir=str(tmp_path)).describe()


def test_open_local_keeps_the_model_in_models_dir(tmp_path):
    models = tmp_path / "models"
    res = EmbeddingResource(models_dir=str(models))
    first = res.open(plots.corpus)
    assert isinstance(first, LocalLSAProvider)
    assert (models / LATEST_POINTER).is_file() and first.path.parent == models
    again = res.open()  # no corpus needed once fitted
    assert again.model_id == first.model_id
    refitted = res.open(lambda: plots.corpus()[:30], refit=True)
    assert refitted.version != first.version
    assert res.open().version == refitted.version


def test_open_openai_uses_the_explicit_settings(fake_openai, tmp_path):
    res = EmbeddingResource(openai_api_key=fake_openai.api_key, openai_base_url=fake_openai.base_url,
                            openai_model="text-embedding-3-large", models_dir=str(tmp_path / "models"))
    prov = res.open(plots.corpus, refit=True)  # refit is a local option: ignored here
    assert isinstance(prov, OpenAIProvider) and prov.model_id == "openai:text-embedding-3-large@dim512"
    out = prov.embed(["a heist in space"])
    assert out.shape == (1, 512) and np.isclose(np.linalg.norm(out[0]), 1.0)
    (req,) = fake_openai.embedding_requests
    assert req.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert req.body["model"] == "text-embedding-3-large"
    assert not (tmp_path / "models").exists()
    assert res.describe()["provider"] == prov.kind


def test_weights_follow_the_fields(tmp_path):
    w = EmbeddingResource(models_dir=str(tmp_path), genre_weight=0.9, metadata_weight=0.0).weights()
    assert w.as_dict() == {"plot": 1.0, "genre": 0.9, "mood": 0.3, "metadata": 0.0}
