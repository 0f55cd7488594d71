"""Offline plot embeddings from wordllama's ``l2_supercat`` token table (256-d), which its wheel ships.

``pip install -e '.[wordllama]'`` installs the package with its weights
(``weights/l2_supercat_256.safetensors``, 32,000 x 256) and its tokenizer
(``tokenizers/l2_supercat_tokenizer_config.json``, the Llama 2 BPE) inside the package folder, so
nothing is downloaded, ever: the files are found with :func:`importlib.util.find_spec` and read with
``safetensors`` and ``tokenizers`` directly. When the package or a file is missing this module fails
with :class:`WordLlamaUnavailableError`, saying how to install it; there is no download path here.

Why not ``WordLlama.load()``: its default lookup misses the packaged tokenizer (it looks in
``wordllama/tokenizer/``, the folder is ``tokenizers/``) and then downloads from Hugging Face, and
importing ``wordllama`` calls ``logging.basicConfig(level=INFO)`` on the root logger of whatever
process imports it (here: a Dagster run). What it computes is small and is done the same way here: a
text's vector is the mean of its tokens' rows of the table (no special tokens, no truncation, ids
clipped to the table). The unit tests check the vectors against ``WordLlama.load(...).embed``.

* No fit, so no vocabulary of ours that can go stale: ``kind`` is ``"wordllama"``, not ``"local"``,
  and content_embeddings skips the coverage/refit path (its check says "not a fitted local model").
* ``model_id`` is ``wordllama:l2_supercat-256@<weights sha>-<tokenizer sha>-r<RECIPE>``: another wheel
  with other weights, or another pooling recipe here, is another model version, so the hashes of every
  stored vector change and the catalogue is re-embedded by the usual machinery.
* Each text is pooled on its own (a sparse row of token counts times the table), so a title's vector
  does not depend on the batch it is embedded in: streamed batches give the same vectors as one build.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import PLOT_DIM, l2_normalize_rows, model_id_of, texts_of

__all__ = ["WordLlamaProvider", "WordLlamaUnavailableError", "INSTALL_HINT", "RECIPE", "locate_model_files",
           "file_sha256", "pool_tokens", "to_plot_block"]

log = logging.getLogger(__name__)

PACKAGE = "wordllama"
CONFIG = "l2_supercat"
NATIVE_DIM = 256
WEIGHTS_FILE = f"weights/{CONFIG}_{NATIVE_DIM}.safetensors"
TOKENIZER_FILE = f"tokenizers/{CONFIG}_tokenizer_config.json"
TENSOR_KEY = "embedding.weight"
# how token rows become a plot block (mean pool, zero-pad to 512, L2): part of the version, so a change
# to this recipe re-embeds the catalogue even with the same weights
RECIPE = 1
INSTALL_HINT = "pip install -e '.[wordllama]'"


class WordLlamaUnavailableError(RuntimeError):
    """The wordllama package, or its packaged weights or tokenizer, is not installed."""


def package_dir(package: str = PACKAGE) -> Path:
    """The installed package's folder, found without importing it (see the module docstring)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise WordLlamaUnavailableError(
            f"embedding provider 'wordllama' needs the {package!r} package, which is not installed. "
            f"Install it with its weights: {INSTALL_HINT} (nothing is downloaded at run time), "
            "or use provider 'local'."
        )
    return Path(locations[0])


def locate_model_files(root: str | Path | None = None) -> tuple[Path, Path]:
    """(weights, tokenizer) inside the package folder ``root`` (default: the installed package)."""
    folder = Path(root) if root is not None else package_dir()
    weights, tokenizer = folder / WEIGHTS_FILE, folder / TOKENIZER_FILE
    missing = [str(p) for p in (weights, tokenizer) if not p.is_file()]
    if missing:
        raise WordLlamaUnavailableError(
            f"wordllama's packaged model files are missing: {', '.join(missing)}. They come with the wheel; "
            f"reinstall it ({INSTALL_HINT}, or pip install --force-reinstall wordllama==0.4.0.post1). "
            "This provider never downloads them."
        )
    return weights, tokenizer


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_version(weights_sha256: str, tokenizer_sha256: str, recipe: int = RECIPE) -> str:
    """The weights' short sha first, so a stored model id names the exact weights file it came from."""
    return f"{weights_sha256[:12]}-{tokenizer_sha256[:8]}-r{int(recipe)}"


def pool_tokens(token_ids: Sequence[Sequence[int]], table: np.ndarray) -> np.ndarray:
    """(n, table width) float32: each text's mean token row; a text without tokens gives a zero row.

    A CSR matrix of token occurrences times the table: each output row reads only its own tokens (in
    their order), so it is the same whatever else is in the batch, and no (n, tokens, 256) block is
    materialised as a padded batch would be."""
    from scipy.sparse import csr_matrix

    n = len(token_ids)
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(indptr[-1]))
    np.clip(indices, 0, table.shape[0] - 1, out=indices)  # as wordllama does with ids past its table
    occurrences = csr_matrix((np.ones(indices.shape[0], dtype=np.float32), indices, indptr),
                             shape=(n, table.shape[0]))
    sums = np.asarray(occurrences @ table, dtype=np.float32)
    return sums / np.maximum(lengths, 1).astype(np.float32)[:, None]


def to_plot_block(x: np.ndarray, dim: int = PLOT_DIM) -> np.ndarray:
    """(n, dim) unit rows: ``x`` zero-padded on the right, then L2-normalised.

    Zero padding is the isometry R^256 -> R^512 chosen here: norms and dot products are unchanged, so
    the cosine of two plot blocks (and the plot block's share of the hybrid cosine) is exactly
    wordllama's. A fixed orthonormal projection would be an isometry too but buys nothing for cosine or
    HNSW, costs a matmul per batch, and its matrix (a seeded QR, whose last bits depend on the BLAS)
    would have to be pinned as part of the model. The cost of padding: the 256 padded dimensions are
    zero for every title, so the `bit` index kind gets 256 informative bits from the plot block instead
    of 512 (it re-ranks its candidates by exact cosine, so that is recall, not ordering)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] > dim:
        raise ValueError(f"cannot map vectors of shape {x.shape} into {dim} dimensions")
    out = np.zeros((x.shape[0], dim), dtype=np.float32)
    out[:, : x.shape[1]] = x
    return l2_normalize_rows(out)


class WordLlamaProvider:
    kind = "wordllama"
    model = f"{CONFIG}-{NATIVE_DIM}"

    def __init__(self, table: np.ndarray, tokenizer: Any, *, version: str, dim: int = PLOT_DIM,
                 meta: dict | None = None) -> None:
        table = np.ascontiguousarray(table, dtype=np.float32)  # stored as float16; wordllama pools in float32
        if table.ndim != 2 or table.shape[1] > int(dim):
            raise ValueError(f"wordllama table of shape {table.shape} does not fit a {dim}-d plot block")
        self.table = table
        self.tokenizer = tokenizer
        self.version = version
        self.dim = int(dim)
        self.meta = dict(meta or {})
        self.calls = 0

    @classmethod
    def load(cls, root: str | Path | None = None) -> "WordLlamaProvider":
        """The packaged model of the installed wordllama (or of the package folder ``root``); offline."""
        weights, tokenizer_file = locate_model_files(root)
        try:
            from safetensors import safe_open
            from tokenizers import Tokenizer
        except ImportError as e:  # wordllama's own dependencies: absent only in a broken install
            raise WordLlamaUnavailableError(f"wordllama's dependencies are missing ({e}); {INSTALL_HINT}") from e
        weights_sha, tokenizer_sha = file_sha256(weights), file_sha256(tokenizer_file)
        with safe_open(str(weights), framework="np", device="cpu") as f:
            table = f.get_tensor(TENSOR_KEY)
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # each text is pooled on its own (pool_tokens), so no padding; and no truncation, as wordllama
        tokenizer.no_padding()
        tokenizer.no_truncation()
        meta = {"package_dir": str(weights.parents[1]), "weights_file": str(weights),
                "weights_sha256": weights_sha, "tokenizer_sha256": tokenizer_sha, "recipe": RECIPE,
                "native_dim": int(table.shape[1]), "vocabulary": int(table.shape[0]),
                "package_version": _installed_version()}
        prov = cls(table, tokenizer, version=model_version(weights_sha, tokenizer_sha), meta=meta)
        log.info("loaded wordllama %s from %s", prov.model_id, weights)
        return prov

    @property
    def model_id(self) -> str:
        return model_id_of(self.kind, self.model, self.version)

    def __repr__(self) -> str:
        return f"WordLlamaProvider(model_id={self.model_id!r}, calls={self.calls})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit rows in input order; blank texts (no words to pool) give zero rows."""
        texts = texts_of(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.calls += 1
        filled = [i for i, t in enumerate(texts) if t.strip()]
        pooled = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        if filled:
            encoded = self.tokenizer.encode_batch([texts[i] for i in filled], add_special_tokens=False)
            pooled[filled] = pool_tokens([e.ids for e in encoded], self.table)
        return to_plot_block(pooled, self.dim)


def _installed_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # a package folder given as `root`, not installed
        return None
