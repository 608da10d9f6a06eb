"""Embedders: text to vectors for memory search (docs/memory.md, "Embedders").

An embedder has a ``name`` (stored with the index: vectors of two embedders
are never compared), ``dims`` (256: the memory table's vector column) and
two methods, ``embed`` (sync) and ``aembed`` (async), each turning a list
of texts into one vector per text. Two ship with goalrt:

- ``WordLlamaEmbedder``: wordllama's l2_supercat model, whose 256-dimension
  weights and tokenizer ship inside the wordllama wheel (the ``memory``
  extra): offline, CPU only, tens of thousands of texts a second.
- ``OpenAIEmbedder``: any endpoint speaking OpenAI's ``POST /embeddings``,
  asked for 256 dimensions.

``embedder_from_env`` picks one from ``GOALRT_MEMORY_EMBEDDER``: ``wordllama``
(the default, when installed), ``openai`` (with ``GOALRT_MEMORY_EMBEDDINGS_URL``,
``_MODEL`` and ``_API_KEY``) or ``none`` (search by words alone).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from goalrt.errors import ConfigError

# The memory table's vector column (sql/schema/65_memory.sql).
DIMS = 256
# The most texts sent in one request to an embeddings endpoint.
_REQUEST_BATCH = 256


class Embedder(Protocol):
    """Turns texts into vectors of ``dims`` numbers; ``name`` identifies the model."""

    name: str
    dims: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]: ...


class WordLlamaEmbedder:
    """wordllama's l2_supercat model (256 dimensions), loaded from the files in its wheel, never the network."""

    name = "wordllama:l2_supercat_256"
    dims = DIMS

    def __init__(self) -> None:
        try:
            import wordllama
        except ImportError as exc:
            raise ConfigError(
                "the wordllama embedder is not installed: pip install 'goalrt[memory]' "
                "(or set GOALRT_MEMORY_EMBEDDER=none or openai)"
            ) from exc
        self._package = Path(wordllama.__file__).parent
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        # wordllama 0.4's own WordLlama.load() looks for the tokenizer in a
        # folder named "tokenizer", but the wheel ships it in "tokenizers", so
        # it goes to the network (Hugging Face) for a file it has: load the
        # shipped files directly instead.
        with self._lock:
            if self._model is None:
                from safetensors import safe_open
                from wordllama import WordLlama
                from wordllama.inference import WordLlamaInference

                tokenizer = WordLlama.load_tokenizer(self._package / "tokenizers" / "l2_supercat_tokenizer_config.json")
                weights = self._package / "weights" / f"l2_supercat_{DIMS}.safetensors"
                with safe_open(str(weights), framework="np", device="cpu") as f:
                    table = f.get_tensor("embedding.weight")
                self._model = WordLlamaInference(table, tokenizer)
            return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._load().embed(list(texts), norm=True)
        return [[float(x) for x in row] for row in vectors]

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed, texts)


class OpenAIEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings`` endpoint, asked for ``dimensions: 256``."""

    dims = DIMS

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"embeddings URL {base_url!r} must start with http:// or https://")
        if not model:
            raise ConfigError("the embeddings model must not be empty (GOALRT_MEMORY_EMBEDDINGS_MODEL)")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.name = f"openai:{model}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout

    def _request(self, texts: Sequence[str]) -> dict[str, Any]:
        return {"model": self.model, "input": list(texts), "dimensions": self.dims, "encoding_format": "float"}

    def _vectors(self, status: int, body: Any, count: int) -> list[list[float]]:
        if status != 200:
            raise ConfigError(f"embeddings endpoint {self.url} answered {status}")
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(items) != count:
            raise ConfigError(f"embeddings endpoint {self.url} did not answer one vector per text")
        out: list[list[float]] = [[] for _ in range(count)]
        for i, item in enumerate(items):
            index = item.get("index", i) if isinstance(item, dict) else None
            vector = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or not isinstance(vector, list):
                raise ConfigError(f"embeddings endpoint {self.url} answered a malformed item")
            if len(vector) != self.dims:
                raise ConfigError(
                    f"embeddings endpoint {self.url} answered {len(vector)} dimensions; memory needs {self.dims}"
                )
            out[index] = [float(x) for x in vector]
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import httpx

        out: list[list[float]] = []
        with httpx.Client(timeout=self._timeout, headers=self._headers) as client:
            for i in range(0, len(texts), _REQUEST_BATCH):
                part = texts[i : i + _REQUEST_BATCH]
                response = client.post(self.url, json=self._request(part))
                out += self._vectors(response.status_code, _json(response), len(part))
        return out

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        import httpx

        out: list[list[float]] = []
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            for i in range(0, len(texts), _REQUEST_BATCH):
                part = texts[i : i + _REQUEST_BATCH]
                response = await client.post(self.url, json=self._request(part))
                out += self._vectors(response.status_code, _json(response), len(part))
        return out


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


_default: list[Embedder | None] = []
_default_lock = threading.Lock()


def embedder_from_env() -> Embedder | None:
    """Return the embedder ``GOALRT_MEMORY_EMBEDDER`` names (one per process), or None for words alone."""
    choice = os.environ.get("GOALRT_MEMORY_EMBEDDER", "").strip().lower()
    if choice == "none":
        return None
    if choice == "openai":
        return OpenAIEmbedder(
            os.environ.get("GOALRT_MEMORY_EMBEDDINGS_URL", ""),
            os.environ.get("GOALRT_MEMORY_EMBEDDINGS_MODEL", ""),
            os.environ.get("GOALRT_MEMORY_EMBEDDINGS_API_KEY") or None,
        )
    if choice not in ("", "wordllama"):
        raise ConfigError(f"GOALRT_MEMORY_EMBEDDER={choice!r}: expected wordllama, openai or none")
    with _default_lock:
        if not _default:
            try:
                _default.append(WordLlamaEmbedder())
            except ConfigError:
                if choice:  # asked for by name: say it is missing
                    raise
                _default.append(None)  # not installed, not asked for: words alone (search says so)
        return _default[0]


__all__ = ["DIMS", "Embedder", "OpenAIEmbedder", "WordLlamaEmbedder", "embedder_from_env"]
