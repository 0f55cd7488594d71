from __future__ import annotations

import logging

import numpy as np
import openai
import pytest

from gateway_pipelines.lib.embeddings import (
    EmbeddingDimensionError,
    OpenAIProvider,
    estimate_tokens,
    make_provider,
)
from tests.fakes.openai_server import FakeOpenAIServer


def _provider(srv: FakeOpenAIServer, **kw) -> OpenAIProvider:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 30.0)
    return OpenAIProvider(api_key=srv.api_key, base_url=srv.base_url, **kw)


def test_order_preserved_when_server_scrambles_data():
    texts = [f"plot number {i}: a story about thing {i}" for i in range(40)]
    with FakeOpenAIServer(shuffle=True) as srv:
        prov = _provider(srv)
        out = prov.embed(texts)
        # the server really did scramble the order it answered in
        assert srv.request_count == 1
    assert out.shape == (40, 512) and out.dtype == np.float32
    expected = np.stack([srv.vector_for(t, 512) for t in texts])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_request_wire_format(fake_openai):
    prov = _provider(fake_openai)
    prov.embed(["hello world"])
    (req,) = fake_openai.embedding_requests
    assert req.path == "/v1/embeddings"
    assert req.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert req.body["model"] == "text-embedding-3-small"
    assert req.body["dimensions"] == 512
    assert req.body["encoding_format"] == "float"
    assert req.body["input"] == ["hello world"]
    assert prov.model_id == "openai:text-embedding-3-small@dim512"
    assert prov.prompt_tokens == estimate_tokens("hello world")


def test_batching_by_input_count(fake_openai):
    # small vectors: this is about request packing, not payload size
    prov = _provider(fake_openai, dimensions=8)
    texts = [f"t{i}" for i in range(5000)]
    out = prov.embed(texts)
    assert fake_openai.inputs_per_request == [2048, 2048, 904]
    assert prov.calls == 3
    assert out.shape == (5000, 8)
    # order holds across batch boundaries
    for i in (0, 2047, 2048, 4095, 4096, 4999):
        np.testing.assert_allclose(out[i], fake_openai.vector_for(texts[i], 8), atol=1e-6)
    sent = [t for body in fake_openai.bodies for t in body["input"]]
    assert sent == texts


def test_batching_by_token_budget(fake_openai):
    prov = _provider(fake_openai, dimensions=8, max_tokens_per_request=100)
    texts = ["x" * 36] * 25  # ceil(36/4)+1 = 10 tokens each
    prov.embed(texts)
    assert fake_openai.inputs_per_request == [10, 10, 5]
    # uneven lengths: every request stays within the budget, nothing lost
    fake_openai.reset()
    texts = ["y" * (4 * k) for k in (30, 50, 10, 60, 5, 5, 90, 1)]
    prov.embed(texts)
    for body in fake_openai.bodies:
        assert sum(estimate_tokens(t) for t in body["input"]) <= 100
    assert [t for b in fake_openai.bodies for t in b["input"]] == texts
    assert len(fake_openai.bodies) == prov.calls - 3


def test_default_limits_pack_by_tokens(fake_openai):
    # ~8k tokens each: the 300k-token budget, not the 2048-input cap, splits the requests
    prov = _provider(fake_openai, dimensions=8)
    texts = [f"{i:05d}" + "z" * 32_000 for i in range(90)]
    per = estimate_tokens(texts[0])  # ceil(32005/4) + 1 = 8003
    assert per == 8003
    prov.embed(texts)
    fit = 300_000 // per  # 37
    assert fake_openai.inputs_per_request == [fit, fit, 90 - 2 * fit]
    assert all(r.status == 200 for r in fake_openai.embedding_requests)


def test_overlong_input_truncated_with_warning(fake_openai, caplog):
    prov = _provider(fake_openai, dimensions=8)
    long = "word " * 10_000  # 50,000 chars ~ 12,501 tokens
    with caplog.at_level(logging.WARNING, logger="gateway_pipelines.lib.embeddings.openai_provider"):
        out = prov.embed(["short", long])
    assert out.shape == (2, 8)
    assert any("truncat" in r.getMessage() for r in caplog.records)
    sent = fake_openai.bodies[0]["input"]
    assert sent[0] == "short"
    assert estimate_tokens(sent[1]) <= 8191 and long.startswith(sent[1])
    assert prov.truncated == 1


def test_rate_limit_then_success_uses_client_retries(fake_openai):
    fake_openai.fail_next(429, headers={"retry-after": "0", "retry-after-ms": "5",
                                        "x-ratelimit-remaining-requests": "0"})
    prov = _provider(fake_openai, max_retries=3)
    out = prov.embed(["a", "b"])
    assert [r.status for r in fake_openai.embedding_requests] == [429, 200]
    assert prov.calls == 1  # one batch; the retry happened inside the client
    np.testing.assert_allclose(out[1], fake_openai.vector_for("b", 512), atol=1e-6)


def test_rate_limit_exhausted_raises(fake_openai):
    fake_openai.fail_next(429, times=5)
    prov = _provider(fake_openai, max_retries=1)
    with pytest.raises(openai.RateLimitError):
        prov.embed(["a"])
    assert fake_openai.request_count == 2  # first try + one retry


def test_dimension_mismatch_raises_clear_error(fake_openai):
    fake_openai.force_dimensions(1536)
    prov = _provider(fake_openai)
    with pytest.raises(EmbeddingDimensionError) as ei:
        prov.embed(["a"])
    msg = str(ei.value)
    assert "text-embedding-3-small" in msg and "512" in msg and "1536" in msg
    assert "dimensions" in msg
    assert isinstance(ei.value, ValueError)
    assert (ei.value.expected, ei.value.got) == (512, 1536)


def test_empty_input_makes_no_call(fake_openai):
    prov = _provider(fake_openai)
    out = prov.embed([])
    assert out.shape == (0, 512) and out.dtype == np.float32
    assert prov.calls == 0
    assert fake_openai.request_count == 0


def test_blank_texts_are_zero_rows_and_not_sent(fake_openai):
    prov = _provider(fake_openai)
    out = prov.embed(["", "real text", "   "])
    assert fake_openai.bodies[0]["input"] == ["real text"]
    assert not out[0].any() and not out[2].any()
    assert np.isclose(np.linalg.norm(out[1]), 1.0)
    fake_openai.reset()
    assert not prov.embed(["", " "]).any()
    assert fake_openai.request_count == 0


def test_missing_or_wrong_key_is_401():
    with FakeOpenAIServer(api_key="sk-right") as srv:
        prov = OpenAIProvider(api_key="sk-wrong", base_url=srv.base_url, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            prov.embed(["a"])
        import httpx

        r = httpx.post(srv.base_url + "/embeddings", json={"model": "m", "input": ["a"]})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_make_provider_auto_with_a_key_builds_openai(fake_openai, tmp_path):
    # local-only options (refit) are ignored when 'auto' resolves to OpenAI
    prov = make_provider("auto", models_dir=tmp_path, openai_api_key=fake_openai.api_key,
                         openai_base_url=fake_openai.base_url, max_retries=0, refit=True)
    assert isinstance(prov, OpenAIProvider) and prov.kind == "openai"
    assert prov.embed(["x"]).shape == (1, 512)
    assert fake_openai.request_count == 1
    assert fake_openai.embedding_requests[0].headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert not any(tmp_path.iterdir())  # no local model was fitted or saved
    prov2 = make_provider("openai", models_dir=tmp_path, openai_api_key=fake_openai.api_key,
                          openai_base_url=fake_openai.base_url, openai_model="text-embedding-3-large",
                          dimensions=16, max_retries=0)
    assert prov2.embed(["x"]).shape == (1, 16)
    assert prov2.model_id == "openai:text-embedding-3-large@dim16"
    assert fake_openai.bodies[-1]["model"] == "text-embedding-3-large"


def test_openai_needs_an_explicit_key_even_when_the_environment_has_one(fake_openai, tmp_path, monkeypatch):
    # the official client would fall back to these variables; the provider must not let it
    for key, value in fake_openai.env().items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="needs an OpenAI API key"):
        make_provider("openai", models_dir=tmp_path)
    with pytest.raises(ValueError, match="api_key"):
        OpenAIProvider(base_url=fake_openai.base_url)
    assert fake_openai.request_count == 0


def test_base_url_defaults_to_the_public_api_not_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    prov = OpenAIProvider(api_key="sk-test", max_retries=0)
    assert str(prov.client.base_url).rstrip("/") == "https://api.openai.com/v1"
