"""``file.upload`` / ``file.delete``: local file storage under one root, each stored file's identity in the state.

Arguments (gdl/builtin/file.gdl). ``file.upload``: ``key`` (the state path
under ``files.``: ``"invoices.{o}"``), ``path`` (relative to the root) and
the content, exactly one of ``text``, ``base64`` or ``source`` (a file to
copy, inside a folder of ``[actions.file] sources``). ``file.delete``:
``key``.

The root is ``[actions.file] root`` (``$GOALRT_FILE_ROOT``; relative to the
goalrt.toml). A path is confined to it: an absolute path, a ``..`` segment or
an empty one is refused, and the folders are walked one at a time without
following a symbolic link (``O_NOFOLLOW``), so no link, wherever it points,
leads out of the root; missing folders (the root too) are made. An upload writes a
temporary file in the target's folder, syncs it and renames it over the
target, so a reader sees the old file or the new one, never a part. Its
result, ``{"path", "size", "sha256"}``, is also set at ``files.<key>`` with
the step's completion. A delete removes the file ``files.<key>`` names (a
file already gone is no error, so a re-run after a crash completes) and the
state entry. ``verify`` checks every recorded file against the disk
(``goalrt replay --verify --files``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import secrets as random_names
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goalrt.actions.config import ActionsConfig
from goalrt.errors import ActionFailedError, ConfigError, InvalidStateChangeError, PermanentError
from goalrt.goals.registry import Result
from goalrt.state.model import Change, check_path

PREFIX = "files"
DEFAULT_MAX_SIZE = 100 * 1024 * 1024
_CHUNK = 1 << 16
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def storage_root(config: ActionsConfig) -> Path:
    """Return the configured root folder, resolved (the root itself may be a link: the operator chose it)."""
    root = config.section("file").get("root")
    if not root:
        raise ConfigError("file storage has no root: set [actions.file] root or GOALRT_FILE_ROOT")
    return config.path(str(root)).resolve()


def _parts(path: Any) -> list[str]:
    """Return the segments of a relative path, refusing what could leave the root."""
    if not isinstance(path, str) or not path:
        raise PermanentError(f"file: path must be a relative path, got {path!r}")
    if path.startswith(("/", "\\")) or "\\" in path or "\0" in path or (len(path) > 1 and path[1] == ":"):
        raise PermanentError(f"file: path {path!r} must be relative to the storage root, with / between folders")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise PermanentError(f"file: path {path!r} may not hold an empty, . or .. segment")
    return parts


@contextlib.contextmanager
def _folder(root: Path, parts: Sequence[str], *, create: bool) -> Iterator[int]:
    """Yield a descriptor of the folder holding ``parts[-1]``, walked from the root without following links."""
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PermanentError(f"file: {'/'.join(parts)}: a segment is a link or not a folder (refused)") from None
        raise
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Stored:
    path: str
    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def _chunks(args: dict[str, Any], sources: Sequence[Path]) -> Iterator[bytes]:
    given = [k for k in ("text", "base64", "source") if args.get(k) is not None]
    if len(given) != 1:
        raise PermanentError("file.upload: give exactly one of text, base64 and source")
    if given == ["text"]:
        if not isinstance(args["text"], str):
            raise PermanentError("file.upload: text must be a string")
        yield args["text"].encode()
    elif given == ["base64"]:
        try:
            yield base64.b64decode(str(args["base64"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PermanentError(f"file.upload: base64 is not valid base64: {exc}") from None
    else:
        source = Path(str(args["source"])).resolve()
        if not any(source.is_relative_to(folder) for folder in sources):
            allowed = ", ".join(str(s) for s in sources) or "none"
            raise PermanentError(
                f"file.upload: source {args['source']} is not inside an allowed folder "
                f"(allowed: {allowed}; [actions.file] sources)"
            )
        try:
            with open(source, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise PermanentError(f"file.upload: source {args['source']}: {exc.strerror}") from None


def write(root: Path, path: str, chunks: Iterator[bytes], max_size: int) -> Stored:
    """Write the file at ``path`` under ``root`` atomically (temporary file, fsync, rename); return its identity."""
    parts = _parts(path)
    digest, size = hashlib.sha256(), 0
    with _folder(root, parts, create=True) as folder:
        temp = f".{parts[-1]}.{random_names.token_hex(6)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise PermanentError(
                            f"file.upload: {path} is larger than {max_size} bytes ([actions.file] max_size)"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, parts[-1], src_dir_fd=folder, dst_dir_fd=folder)
            os.fsync(folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
            raise
    return Stored(path, size, digest.hexdigest())


def remove(root: Path, path: str) -> bool:
    """Remove the file at ``path`` under ``root``; return whether it was there."""
    parts = _parts(path)
    try:
        with _folder(root, parts, create=False) as folder:
            os.unlink(parts[-1], dir_fd=folder)
            os.fsync(folder)
    except FileNotFoundError:
        return False
    return True


def digest(root: Path, path: str) -> Stored | None:
    """Return the identity of the file at ``path`` as it is on disk (None: there is none)."""
    parts = _parts(path)
    sha, size = hashlib.sha256(), 0
    try:
        with _folder(root, parts, create=False) as folder:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            with os.fdopen(fd, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
    except FileNotFoundError:
        return None
    return Stored(path, size, sha.hexdigest())


def _key(args: dict[str, Any], action: str) -> str:
    key = args.get("key")
    if not isinstance(key, str) or not key:
        raise PermanentError(f"{action}: key (the state path under {PREFIX}.) is required")
    try:
        return check_path(f"{PREFIX}.{key}")
    except InvalidStateChangeError as exc:
        raise PermanentError(f"{action}: key {key!r}: {exc}") from None


def _root(config: Any) -> Path:
    try:
        return storage_root(config)
    except ConfigError as exc:
        raise PermanentError(str(exc)) from None


def _os_error(action: str, exc: OSError) -> Exception:
    # A full disk or a permission may be fixed by an operator: worth the retry policy.
    return ActionFailedError(f"{action}: {type(exc).__name__}: {exc.strerror or exc}")


async def file_upload(args: dict[str, Any], ctx: Any, call: Any) -> Result:
    """Run one ``file.upload`` step (see the module's docstring)."""
    unknown = sorted(set(args) - {"key", "path", "text", "base64", "source"})
    if unknown:
        raise PermanentError(f"file.upload: unknown argument {unknown[0]}")
    state_path = _key(args, "file.upload")
    settings = call.config.section("file")
    sources = [call.config.path(str(s)).resolve() for s in settings.get("sources", [])]
    try:
        stored = write(
            _root(call.config),
            args.get("path"),  # type: ignore[arg-type]  # checked by _parts
            _chunks(args, sources),
            int(settings.get("max_size", DEFAULT_MAX_SIZE)),
        )
    except OSError as exc:
        raise _os_error("file.upload", exc) from None
    identity = stored.as_json()
    return Result(identity, [Change.set(state_path, identity)])


async def file_delete(args: dict[str, Any], ctx: Any, call: Any) -> Result:
    """Run one ``file.delete`` step (see the module's docstring)."""
    unknown = sorted(set(args) - {"key"})
    if unknown:
        raise PermanentError(f"file.delete: unknown argument {unknown[0]}")
    state_path = _key(args, "file.delete")
    recorded = await ctx.state.value(state_path)
    if recorded is None:
        return Result({"key": args["key"], "deleted": False, "recorded": False})
    if not isinstance(recorded, dict) or not isinstance(recorded.get("path"), str):
        raise PermanentError(f"file.delete: {state_path} does not hold a stored file's identity")
    try:
        deleted = remove(_root(call.config), recorded["path"])
    except OSError as exc:
        raise _os_error("file.delete", exc) from None
    return Result({"key": args["key"], "path": recorded["path"], "deleted": deleted}, [Change.delete(state_path)])


def verify(entries: Sequence[Any], root: Path) -> tuple[int, list[str]]:
    """Check each recorded file (state entries under ``files``) against the disk: (files checked, problems)."""
    checked, problems = 0, []
    for entry in entries:
        value = entry.value
        if not (isinstance(value, dict) and isinstance(value.get("path"), str) and "sha256" in value):
            continue
        checked += 1
        try:
            found = digest(root, value["path"])
        except (PermanentError, OSError) as exc:
            problems.append(f"{entry.path}: {value['path']}: cannot be read: {exc}")
            continue
        if found is None:
            problems.append(f"{entry.path}: {value['path']}: missing")
        elif found.sha256 != value["sha256"] or found.size != value.get("size"):
            problems.append(
                f"{entry.path}: {value['path']}: differs (recorded {value.get('size')} bytes sha256 "
                f"{str(value['sha256'])[:12]}..., stored {found.size} bytes sha256 {found.sha256[:12]}...)"
            )
    return checked, problems


__all__ = ["PREFIX", "Stored", "digest", "file_delete", "file_upload", "remove", "storage_root", "verify", "write"]
