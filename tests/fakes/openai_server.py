"""A local HTTP server that speaks OpenAI's ``/v1/embeddings`` wire format.

It is a real server (``ThreadingHTTPServer`` on ``127.0.0.1``, free port, daemon
thread) so the official ``openai`` client can be pointed at it unchanged::

    with FakeOpenAIServer() as srv:
        client = openai.OpenAI(api_key=srv.api_key, base_url=srv.base_url)
        client.embeddings.create(model="text-embedding-3-small", input=["hi"], dimensions=512)
        assert srv.request_count == 1

Behaviour, modelled on the real API:

* ``POST /v1/embeddings`` with ``{"model", "input", "dimensions"?, "encoding_format"?}``.
  ``input`` may be a string, a list of strings, a token array or a list of token
  arrays.  Vectors are deterministic (seeded by sha256 of model + input), unit
  length, of the requested ``dimensions`` (default 1536), or of the length set by
  :meth:`force_dimensions`.  ``encoding_format="base64"`` returns little-endian
  float32 bytes, as the real API does.
* Validation the real API enforces: non-empty input, no empty strings, at most
  2,048 inputs, at most 8,192 tokens per input and 300,000 tokens per request
  (tokens are estimated as ``ceil(len(text)/4) + 1``, the same estimate the
  provider uses).  Violations answer 400 with an OpenAI error body.
* ``Authorization: Bearer <key>`` is required (401 otherwise); if ``api_key`` was
  given, it must match.
* Response headers: ``x-request-id``, ``openai-model``, ``openai-processing-ms``,
  ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
  ``x-ratelimit-limit-tokens``, ``x-ratelimit-remaining-tokens``.
* Scriptable faults: :meth:`fail_next` queues canned error responses (e.g. a 429
  with ``retry-after``), :meth:`force_dimensions` returns wrong-sized vectors,
  ``shuffle=True`` returns ``data`` in a scrambled order (clients must sort by
  ``index``).
* Every request is logged (:attr:`requests`, :attr:`inputs_per_request`).
* ``GET /v1/models`` lists the served model; anything else is a 404.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Mapping, Sequence

import numpy as np

from tests.fakes.loopback import LoopbackServer

__all__ = ["FakeOpenAIServer", "RecordedRequest", "estimate_tokens", "fake_vector", "openai_error"]

MAX_INPUTS = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000
DEFAULT_DIMENSIONS = 1536


def estimate_tokens(text: str) -> int:
    """Same estimate the provider uses when tiktoken is unavailable."""
    return math.ceil(len(text) / 4) + 1


def fake_vector(text: str, dimensions: int, model: str = "text-embedding-3-small") -> np.ndarray:
    """The deterministic unit vector the server returns for ``text``."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{text}".encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dimensions)
    n = float(np.linalg.norm(v))
    return (v / n if n else v).astype(np.float32)


def openai_error(message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    n_inputs: int = 0


@dataclass
class _Fault:
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    forced_dimensions: int | None = None
    served: int = 0


class FakeOpenAIServer(LoopbackServer):
    def __init__(self, api_key: str | None = "sk-test-fake", *, model: str = "text-embedding-3-small",
                 shuffle: bool = False, rate_limit_requests: int = 10_000,
                 rate_limit_tokens: int = 10_000_000) -> None:
        self.api_key = api_key or "sk-test-fake"
        self._check_key = api_key is not None
        self.model = model
        self.shuffle = shuffle
        self.rate_limit_requests = rate_limit_requests
        self.rate_limit_tokens = rate_limit_tokens
        self._state = _State()
        LoopbackServer.__init__(self)

    # ------------------------------------------------------------------ lifecycle
    thread_name = "fake-openai"

    def handler_class(self):
        return _make_handler(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """Environment mapping that points an OpenAI client at this server."""
        return {"OPENAI_API_KEY": self.api_key, "OPENAI_BASE_URL": self.base_url}

    # ------------------------------------------------------------------ scripting
    def fail_next(self, status: int = 429, body: Any = None, headers: Mapping[str, str] | None = None,
                  times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``body``/``headers``).

        Defaults for 429: an OpenAI ``rate_limit_exceeded`` body and
        ``retry-after: 0`` / ``retry-after-ms: 1`` so clients retry at once.
        """
        if body is None:
            if status == 429:
                body = openai_error("Rate limit reached for text-embedding-3-small on requests per min (RPM).",
                                    "requests", None, "rate_limit_exceeded")
            elif status >= 500:
                body = openai_error("The server had an error while processing your request.", "server_error")
            else:
                body = openai_error(f"Fake failure {status}.", "invalid_request_error")
        hdrs = {k.lower(): str(v) for k, v in (headers or {}).items()}
        if status == 429 and headers is None:
            hdrs = {"retry-after": "0", "retry-after-ms": "1", "x-ratelimit-remaining-requests": "0"}
        with self._state.lock:
            self._state.faults.append(_Fault(status, body, hdrs, times))

    def force_dimensions(self, n: int | None) -> None:
        """Return vectors of length ``n`` whatever was requested (None: back to normal)."""
        with self._state.lock:
            self._state.forced_dimensions = n

    def reset(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
            self._state.faults.clear()
            self._state.forced_dimensions = None

    # ------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.rstrip("/").endswith("/embeddings")]

    @property
    def request_count(self) -> int:
        return len(self.embedding_requests)

    @property
    def inputs_per_request(self) -> list[int]:
        return [r.n_inputs for r in self.embedding_requests]

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.embedding_requests]

    def vector_for(self, text: str, dimensions: int) -> np.ndarray:
        return fake_vector(text, dimensions, self.model)

    # ------------------------------------------------------------------ internals
    def _next_fault(self) -> _Fault | None:
        with self._state.lock:
            if not self._state.faults:
                return None
            fault = self._state.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._state.faults.pop(0)
            return fault

    def _record(self, rec: RecordedRequest) -> None:
        with self._state.lock:
            self._state.requests.append(rec)

    def _handle_embeddings(self, body: Any) -> tuple[int, Any, dict[str, str], int]:
        """Returns (status, json body, extra headers, number of inputs)."""
        if not isinstance(body, dict):
            return 400, openai_error("We could not parse the JSON body of your request."), {}, 0
        model = body.get("model")
        if not model:
            return 400, openai_error("you must provide a model parameter", param="model"), {}, 0
        raw = body.get("input")
        if isinstance(raw, str):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [raw]  # a single token array
        elif isinstance(raw, list):
            inputs = list(raw)
        else:
            return 400, openai_error("'input' is a required property", param="input"), {}, 0
        n = len(inputs)
        if n == 0:
            return 400, openai_error("'input' : input must be a non-empty list", param="input"), {}, 0
        if n > MAX_INPUTS:
            return 400, openai_error(f"'input' : maximum {MAX_INPUTS} inputs, got {n}", param="input"), {}, n
        tokens: list[int] = []
        for item in inputs:
            if isinstance(item, str):
                if item == "":
                    return 400, openai_error("'input' : input must be non-empty", param="input"), {}, n
                tokens.append(estimate_tokens(item))
            elif isinstance(item, list) and all(isinstance(t, int) for t in item):
                tokens.append(len(item))
            else:
                return 400, openai_error("'input' : invalid input item", param="input"), {}, n
        if max(tokens) > MAX_TOKENS_PER_INPUT:
            return 400, openai_error(
                f"This model's maximum context length is {MAX_TOKENS_PER_INPUT} tokens, however you requested "
                f"{max(tokens)} tokens in your input.", param="input"), {}, n
        total = sum(tokens)
        if total > MAX_TOKENS_PER_REQUEST:
            return 400, openai_error(
                f"Requested {total} tokens, max {MAX_TOKENS_PER_REQUEST} tokens per request",
                param="input", code="max_tokens_per_request"), {}, n
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or dims < 1 or dims > DEFAULT_DIMENSIONS):
            return 400, openai_error(f"Invalid value for 'dimensions' = {dims}.", param="dimensions"), {}, n
        with self._state.lock:
            forced = self._state.forced_dimensions
            self._state.served += 1
            served = self._state.served
        out_dims = forced or dims or DEFAULT_DIMENSIONS
        fmt = body.get("encoding_format") or "float"
        data = []
        for i, item in enumerate(inputs):
            key = item if isinstance(item, str) else " ".join(map(str, item))
            vec = fake_vector(key, out_dims, str(model))
            emb: Any = base64.b64encode(vec.astype("<f4").tobytes()).decode() if fmt == "base64" else vec.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if self.shuffle:
            random.Random(served).shuffle(data)
        resp = {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": total, "total_tokens": total}}
        headers = {
            "openai-model": str(model),
            "x-ratelimit-limit-requests": str(self.rate_limit_requests),
            "x-ratelimit-remaining-requests": str(max(0, self.rate_limit_requests - served)),
            "x-ratelimit-limit-tokens": str(self.rate_limit_tokens),
            "x-ratelimit-remaining-tokens": str(max(0, self.rate_limit_tokens - total)),
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-reset-tokens": "0s",
        }
        return 200, resp, headers, n


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeOpenAI/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
            pass

        def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            payload = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
            self.send_header("openai-processing-ms", "1")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _read_body(self) -> Any:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw.decode("utf-8", "replace")

        def _authorised(self) -> bool:
            auth = self.headers.get("authorization") or ""
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return False
            return not server._check_key or auth[7:].strip() == server.api_key

        def _dispatch(self, method: str) -> None:
            body = self._read_body() if method == "POST" else None
            rec = RecordedRequest(method, self.path.split("?")[0], {k.lower(): v for k, v in self.headers.items()},
                                  body)
            if isinstance(body, dict):
                raw = body.get("input")
                if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
                    rec.n_inputs = 1
                else:
                    rec.n_inputs = len(raw) if isinstance(raw, list) else 0
            status, resp, headers = self._respond(method, rec, body)
            rec.status = status
            server._record(rec)  # record before answering so callers see it once they have the reply
            self._send(status, resp, headers)

        def _respond(self, method: str, rec: RecordedRequest, body: Any) -> tuple[int, Any, Mapping[str, str]]:
            if not self._authorised():
                return 401, openai_error(
                    "You didn't provide an API key. You need to provide your API key in an Authorization "
                    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error", None,
                    "invalid_api_key" if self.headers.get("authorization") else None), {}
            fault = server._next_fault()
            if fault is not None:
                return fault.status, fault.body, fault.headers
            path = rec.path.rstrip("/")
            if method == "POST" and path.endswith("/v1/embeddings"):
                status, resp, headers, _n = server._handle_embeddings(body)
                return status, resp, headers
            if method == "GET" and path.endswith("/v1/models"):
                return 200, {"object": "list", "data": [
                    {"id": server.model, "object": "model", "created": 1705948997, "owned_by": "system"}]}, {}
            return 404, openai_error(f"Invalid URL ({method} {self.path})", "invalid_request_error"), {}

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch("GET")

    return Handler


def _selfcheck(texts: Sequence[str] = ("hello", "world")) -> None:  # pragma: no cover - manual smoke test
    import openai

    with FakeOpenAIServer() as srv:
        client = openai.OpenAI(api_key=srv.api_key, base_url=srv.base_url, max_retries=0)
        r = client.embeddings.create(model="text-embedding-3-small", input=list(texts), dimensions=8)
        print(len(r.data), len(r.data[0].embedding), srv.inputs_per_request)


if __name__ == "__main__":  # pragma: no cover
    _selfcheck()
