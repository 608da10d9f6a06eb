"""Who a request acts as: bearer tokens mapped to database URLs, and a connection pool per URL.

Without a token file the server acts as its own database URL (it then
listens on 127.0.0.1 only). With one, every API request must carry
``Authorization: Bearer TOKEN``; the token picks the database URL, a login
role granted one of goalrt's group roles, so PostgreSQL itself refuses what
that role may not do (docs/security.md).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import stat
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from goalrt.db.connect import asyncpg_dsn, describe_target, setup_async_connection
from goalrt.db.schemas import schema_for_async
from goalrt.errors import ConfigError, DatabaseUnavailableError

if TYPE_CHECKING:
    import asyncpg

# A token shorter than this is refused: it could be guessed.
MIN_TOKEN_CHARS = 16


class AuthError(Exception):
    """The request has no token, or one the server does not know (HTTP 401)."""


def load_tokens(path: str | Path, warn: Callable[[str], None]) -> dict[str, str]:
    """Return token -> database URL from a TOML or JSON file (a flat table of strings).

    A file others may read is refused; one its group may read is passed to ``warn``.
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {file}: {exc.strerror or exc}") from None
    if mode & stat.S_IROTH:
        raise ConfigError(f"the token file {file} is readable by others: run `chmod 600 {file}`")
    if mode & stat.S_IRGRP:
        warn(f"the token file {file} is readable by its group; `chmod 600 {file}` keeps it to its owner")
    try:
        data: Any = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if file.suffix == ".json" else "TOML"
        raise ConfigError(f"the token file {file} is not valid {kind}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"the token file {file} must map each token to a database URL")
    for token, url in data.items():
        if not isinstance(url, str) or not url:
            raise ConfigError(f"the token file {file}: the value of each token must be a database URL")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"the token file {file}: a token is shorter than {MIN_TOKEN_CHARS} characters")
    return dict(data)


def find_token(tokens: Mapping[str, str], given: str) -> str | None:
    """Return the URL of token ``given``, comparing it with every token in constant time."""
    found = None
    candidate = given.encode()
    for token, url in tokens.items():
        if hmac.compare_digest(token.encode(), candidate):
            found = url
    return found


def url_of(tokens: Mapping[str, str] | None, default_url: str, authorization: str | None) -> str:
    """Return the database URL a request acts as; raise ``AuthError`` without a known bearer token."""
    if tokens is None:
        return default_url
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("this server needs a bearer token: send `Authorization: Bearer TOKEN`")
    url = find_token(tokens, token.strip())
    if url is None:
        raise AuthError("unknown token")
    return url


@dataclass
class Pools:
    """One asyncpg pool per database URL, opened on first use and closed with the server."""

    max_size: int = 10

    def __post_init__(self) -> None:
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    async def pool(self, url: str) -> asyncpg.Pool:
        if url in self._pools:
            return self._pools[url]
        async with self._lock:
            if url not in self._pools:
                self._pools[url] = await _open_pool(url, self.max_size)
        return self._pools[url]

    @asynccontextmanager
    async def connection(self, url: str, fork: str | None = None) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
        """Lend a connection of ``url``'s pool, with the schema to act on (the main line's or ``fork``'s)."""
        pool = await self.pool(url)
        async with pool.acquire() as conn:
            yield conn, await schema_for_async(conn, fork)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


async def _open_pool(url: str, max_size: int) -> asyncpg.Pool:
    import asyncpg

    try:
        return await asyncpg.create_pool(
            asyncpg_dsn(url), min_size=1, max_size=max_size, init=setup_async_connection, timeout=10
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL at {describe_target(url)}: {line}") from exc
    except (ValueError, asyncpg.InterfaceError) as exc:
        raise ConfigError(f"invalid database URL: {str(exc).splitlines()[0]}") from exc
