from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import LocalLSAProvider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.embeddings import plots


class StubProvider:
    """Deterministic in-memory provider (hash-seeded unit vectors) that counts calls."""

    kind = "stub"
    model = "hash"
    version = "v1"
    dim = 512

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return f"{self.kind}:{self.model}@{self.version}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.calls += 1
        self.seen.append(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture
def stub_provider() -> StubProvider:
    return StubProvider()


@pytest.fixture
def fake_openai():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def lsa_model() -> LocalLSAProvider:
    return LocalLSAProvider.fit(plots.corpus(), seed=0)
