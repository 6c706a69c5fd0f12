"""Model hashes: whole-file sha256 (A1111's model hash, used in the merge metadata) computed beside
the merge, and A1111's legacy short hash (the one definition merge, trainer and nodes use).

Hashing both inputs costs more CPU than the merge arithmetic, so it runs on its own threads:
`QueuedSha256` hashes the very buffers the merge read (each file is read once, and only copied
into memory once), `BackgroundSha256` hashes a file on its own (pickled checkpoints). Like A1111, hashes are
remembered per (path, size, modification time), so merging the same inputs again skips hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Callable

try:  # POSIX; on Windows the cache is only replaced atomically
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

BLOCK = 8 * 1024 * 1024
LEGACY_HASH_OFFSET = 0x100000  # A1111's legacy "model hash": sha256 of 64 KiB at offset 1 MiB, 8 hex digits
LEGACY_HASH_BYTES = 0x10000


def legacy_hash_from(read_at: Callable[[int, int], bytes]) -> str:
    """A1111 / kohya's legacy short model hash, reading through `read_at(offset, nbytes)` (fewer
    bytes at the end of the file, as a plain read gives)."""
    return hashlib.sha256(read_at(LEGACY_HASH_OFFSET, LEGACY_HASH_BYTES)).hexdigest()[:8]


def legacy_model_hash(path: str | os.PathLike) -> str:
    """The legacy short hash of a file (A1111's `model_hash`, kohya's `ss_sd_model_hash`)."""
    with open(path, "rb") as handle:

        def read_at(offset: int, nbytes: int) -> bytes:
            handle.seek(offset)
            return handle.read(nbytes)

        return legacy_hash_from(read_at)


class BackgroundSha256:
    """Start hashing `path` now; `hexdigest()` waits for the result (and re-raises a read error)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sha256-{self.path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            buffer = bytearray(BLOCK)
            view = memoryview(buffer)
            with open(self.path, "rb", buffering=0) as handle:
                while not self._stop.is_set():
                    n = handle.readinto(buffer)
                    if not n:
                        break
                    digest.update(view[:n])
            if not self._stop.is_set():
                self._digest = digest.hexdigest()
        except BaseException as exc:  # reported by hexdigest()
            self._error = exc

    def hexdigest(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise RuntimeError(f"hashing {self.path.name} was cancelled")
        return self._digest

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


def sha256_file(path: str | os.PathLike) -> str:
    return BackgroundSha256(path).hexdigest()


class QueuedSha256:
    """sha256 of a file, computed on its own thread from the byte ranges the merge read anyway.

    `submit(offset, data, done)` queues bytes the merge just read (`done()` is called once they are
    hashed, so the merge can reuse the buffer). Ranges arrive in file order in practice; a range
    past the hashed position first has the gap read here, one behind it is ignored, so the hash is
    right whatever the order. `hexdigest()` reads whatever is left (ranges the merge skipped).
    """

    def __init__(self, size: int, read_into: Callable[[memoryview, int], None], name: str = "input"):
        self._size = size
        self._read_into = read_into
        self._hash = hashlib.sha256()
        self._pos = 0
        self._gap: bytearray | None = None
        self._error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"sha256-{name}", daemon=True)
        self._thread.start()

    def submit(self, offset: int, data: memoryview, done: Callable[[], None]) -> None:
        self._queue.put((offset, data, done))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            offset, data, done = item
            try:
                if self._error is None:
                    self._feed(offset, data)
            except BaseException as exc:  # reported by hexdigest()
                self._error = exc
            finally:
                done()

    def _feed(self, offset: int, data: memoryview) -> None:
        if offset > self._pos:
            self._catch_up(offset)
        end = offset + len(data)
        if offset <= self._pos < end:
            self._hash.update(data[self._pos - offset:])
            self._pos = end

    def _catch_up(self, upto: int) -> None:
        if self._gap is None:
            self._gap = bytearray(BLOCK)
        view = memoryview(self._gap)
        while self._pos < upto:
            n = min(BLOCK, upto - self._pos)
            self._read_into(view[:n], self._pos)
            self._hash.update(view[:n])
            self._pos += n

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._catch_up(self._size)
        return self._hash.hexdigest()

    def cancel(self) -> None:
        self._error = self._error or RuntimeError("hashing was cancelled")
        self._queue.put(None)
        self._thread.join()


# --- remembered hashes ----------------------------------------------------------------------------

HASH_CACHE_ENV = "ANIMEKIT_HASH_CACHE"
# What the user is told about the cache (`animekit merge --help`, the README): where, what, how to clear it.
HASH_CACHE_HELP = (
    "Input hashes: the sha256 of each input file (written into the merge metadata, as A1111 does) is "
    "remembered per (absolute path, size, modification time) in $XDG_CACHE_HOME/animekit/sha256.json "
    "(default ~/.cache/animekit/sha256.json; inside ComfyUI <user dir>/animekit/sha256.json), so merging "
    f"the same files again skips hashing. {HASH_CACHE_ENV}=FILE keeps it elsewhere, {HASH_CACHE_ENV}=off "
    "turns it off; delete the file (and its .lock) to clear it."
)


def hash_cache_path(default: str | os.PathLike | None = None) -> Path | None:
    """Where remembered hashes live: $ANIMEKIT_HASH_CACHE ('off' for nowhere), else `default`
    (ComfyUI passes its user folder), else the user cache dir."""
    setting = os.environ.get(HASH_CACHE_ENV, "")
    if setting.lower() in ("off", "0", "none"):
        return None
    if setting:
        return Path(setting)
    if default is not None:
        return Path(default)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "animekit" / "sha256.json"


def _identity(path: Path) -> tuple[str, dict]:
    stat = path.stat()
    return str(path.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _load_cache(cache: Path) -> dict:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_sha256(path: str | os.PathLike, cache_file: str | os.PathLike | None = None) -> str | None:
    """The remembered sha256 of `path`, if its size and modification time are unchanged (as A1111 does)."""
    cache = hash_cache_path(cache_file)
    if cache is None:
        return None
    key, identity = _identity(Path(path))
    entry = _load_cache(cache).get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in identity.items()):
        digest = entry.get("sha256")
        return digest if isinstance(digest, str) and len(digest) == 64 else None
    return None


def remember_sha256(path: str | os.PathLike, digest: str, cache_file: str | os.PathLike | None = None) -> None:
    """Best effort: a cache that cannot be written only costs a re-hash next time.

    Two merges at once (two queued prompts, two CLI processes) share this file: the read-modify-write
    runs under an exclusive lock and replaces the file atomically, so neither corrupts it nor drops
    the other's entry."""
    cache = hash_cache_path(cache_file)
    if cache is None:
        return
    try:
        key, identity = _identity(Path(path))
        cache.parent.mkdir(parents=True, exist_ok=True)
        with _locked(cache):
            entries = _load_cache(cache)
            entries[key] = {**identity, "sha256": digest}
            fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(entries, handle, indent=0, sort_keys=True)
                os.replace(tmp, cache)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    except OSError:
        pass


@contextlib.contextmanager
def _locked(cache: Path):
    """An exclusive lock beside the cache (flock: released by the kernel if the process dies)."""
    with open(cache.with_name(cache.name + ".lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        with _THREAD_LOCK:
            yield


_THREAD_LOCK = threading.Lock()  # flock is per open file; threads of one process also take this
