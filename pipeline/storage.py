"""Output storage on a local path or any fsspec URL (``s3://``, ``gs://``…), with atomic commits.

A file is committed by writing it completely under a temporary name and then making it visible in one
step: ``os.replace`` on a local filesystem, a single object PUT on an object store (objects appear only
once complete). Nothing is ever half-visible under its final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import InputError

log = logging.getLogger("rldf.storage")

TMP_SUFFIX = ".tmp"
#: errors a retry cannot fix: the answer is the answer
PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, InputError,
             ValueError, TypeError, KeyError, AttributeError, NotImplementedError)
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 15.0  # back-off between tries: doubling from the first to the most
#: where fsspec stores report the checksum they keep for an object (S3 and compatibles, GCS, others)
STORE_CHECKSUMS = ("ETag", "etag", "md5Hash", "crc32c", "checksum")


def store_problem(exc: BaseException) -> str:
    """What an object store's exception means, in words a user acts on."""
    name, text = type(exc).__name__, str(exc)
    if name == "NoCredentialsError" or "Unable to locate credentials" in text:
        return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError") or isinstance(exc, (ConnectionError, TimeoutError)):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        return f"the object store does not answer{f' at {endpoint}' if endpoint else ''} ({text.splitlines()[0] if text else name})"
    if isinstance(exc, FileNotFoundError):
        return f"the bucket does not exist ({text})"
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return f"no permission to list and write there ({text})"
    return f"{name}: {text.splitlines()[0] if text else ''}"


class Storage:
    """A root folder (local path or fsspec URL) and atomic operations below it.

    On an object store every operation that fails with a transient error (HTTP 5xx, throttling, a reset or refused
    connection, a timeout) is retried with exponential back-off for up to ``retry_s`` seconds in all, so a store that
    goes away for a minute costs a pause; one that stays away raises its last error. Local disks never retry."""

    def __init__(self, url: str | Path, retry_s: float = 0.0) -> None:
        self.url = str(url)
        self.retry_s = float(retry_s)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if not self.is_local:  # an object store has no folders to make (and a missing bucket is not created)
            # and no listings cache: other processes (the workers, another run) write to the store, and a cached
            # listing (s3fs's dircache, shared by every client of the same store in a process) would hide their files
            self.fs, self.root = fsspec.core.url_to_fs(self.url, use_listings_cache=False)
            return
        self.root = str(Path(self.root).resolve())
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create the output folder '{self.url}': {e.strerror or e}") from None

    def probe(self, timeout_s: float = 10.0) -> None:
        """Check, within about ``timeout_s``, that the store can be listed and written (an object store: a small
        probe object is written and removed); raise :class:`InputError` in one line saying what is wrong (no
        credentials, an endpoint that does not answer, a missing bucket, no permission). Local folders were
        checked when the folder was made."""
        if self.is_local:
            return
        fs = self.fs
        if self.is_s3:  # short timeouts, few retries
            fs = fsspec.filesystem("s3", skip_instance_cache=True, **{**fs.storage_options, "config_kwargs": {
                **fs.storage_options.get("config_kwargs", {}), "connect_timeout": timeout_s, "read_timeout": timeout_s,
                "retries": {"max_attempts": 2, "mode": "standard"}}})
            fs.retries = 1
        probe = f"{self.root.rstrip('/')}/.probe-{uuid.uuid4().hex[:8]}"
        try:
            fs.ls(self.root.split("/", 1)[0], detail=False)  # the bucket
            fs.pipe_file(probe, b"")
            fs.rm(probe)
        except Exception as e:  # noqa: BLE001 - every failure becomes one line naming its cause
            raise InputError(f"cannot use the output folder '{self.url}': {store_problem(e)}") from None

    def _retrying(self, what: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, retried on transient object-store errors within :attr:`retry_s`."""
        if self.is_local or self.retry_s <= 0:
            return fn(*args, **kwargs)
        deadline, wait, tries = time.monotonic() + self.retry_s, RETRY_FIRST_S, 0
        while True:
            try:
                result = fn(*args, **kwargs)
                if tries:
                    log.warning("%s on %s succeeded after %d retries", what, self.url, tries)
                return result
            except PERMANENT:
                raise
            except Exception as e:  # noqa: BLE001 - transient until the budget says otherwise
                if time.monotonic() + wait > deadline:
                    raise
                if tries == 0:
                    log.warning("%s on %s failed (%s); retrying for up to %g s", what, self.url,
                                f"{type(e).__name__}: {e}".splitlines()[0], self.retry_s)
                tries += 1
                time.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)

    def path(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}"

    def exists(self, rel: str) -> bool:
        return self._retrying(f"checking '{rel}'", self.fs.exists, self.path(rel))

    def stat(self, rel: str) -> tuple[int, str | None] | None:
        """(size, stamp) of a committed file without reading it, or None if it does not exist. The stamp is the
        checksum the store keeps (an object store's ETag, GCS's md5Hash or crc32c) or, on a local disk, the
        modification time in ns: it changes whenever the content is rewritten. None where the store has none."""
        if self.is_local:
            try:
                st = os.stat(self.path(rel))
            except FileNotFoundError:
                return None
            return st.st_size, f"mtime_ns:{st.st_mtime_ns}"
        try:
            info = self._retrying(f"reading the size of '{rel}'", self.fs.info, self.path(rel))
        except FileNotFoundError:
            return None
        for key in STORE_CHECKSUMS:
            if info.get(key):
                return int(info["size"]), f"{key}:{str(info[key]).strip(chr(34))}"
        return int(info["size"]), None

    def read_bytes(self, rel: str) -> bytes:
        def read() -> bytes:
            with self.fs.open(self.path(rel), "rb") as f:
                return f.read()

        return self._retrying(f"reading '{rel}'", read)

    def read_range(self, rel: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``rel`` from ``start`` (an object store sends only those: a ranged GET)."""
        return self._retrying(f"reading '{rel}'", self.fs.cat_file, self.path(rel), start=start, end=start + length)

    def list(self, folder: str = "", suffix: str = "") -> list[str]:
        """Relative paths of the files directly in ``folder`` whose names end with ``suffix``."""
        base = self.path(folder) if folder else self.root

        def ls() -> list[str]:
            if not self.fs.exists(base):
                return []
            return self.fs.ls(base, detail=False)

        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self._retrying(f"listing '{folder or '.'}'", ls)]
        return sorted(f"{folder}/{n}" if folder else n for n in names if n.endswith(suffix))

    def remove(self, rel: str) -> None:
        if self.exists(rel):
            try:
                self._retrying(f"removing '{rel}'", self.fs.rm, self.path(rel))
            except FileNotFoundError:  # a retried remove whose first try went through
                pass

    def local_tmp(self, rel: str) -> str:
        """A temporary local file to write ``rel``'s content into before :meth:`commit`."""
        if self.is_local:  # same filesystem as the target, so the commit is an atomic rename
            folder = Path(self.path(rel)).parent
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder / f".{Path(rel).name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
        fd, tmp = tempfile.mkstemp(suffix=TMP_SUFFIX)
        os.close(fd)
        return tmp

    def commit(self, tmp: str, rel: str) -> None:
        """Make the finished temporary file ``tmp`` visible as ``rel`` in one step."""
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if self.is_local:
            os.replace(tmp, self.path(rel))
        else:
            if not self.is_s3:  # (s3fs would create a missing bucket)
                self.fs.makedirs(self.path(rel).rsplit("/", 1)[0], exist_ok=True)
            self._retrying(f"writing '{rel}'", self.fs.put_file, tmp, self.path(rel))
            os.remove(tmp)

    @contextlib.contextmanager
    def staged(self, rel: str) -> Iterator[str]:
        """A temporary local path to write ``rel``'s content into; committed when the block ends. A write that
        fails (a full disk, no permission) leaves nothing under ``rel`` and no temporary file, and raises
        :class:`InputError` naming the file and the reason."""
        tmp = None
        try:
            tmp = self.local_tmp(rel)
            yield tmp
            self.commit(tmp, rel)
        except OSError as e:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
            raise InputError(f"cannot write '{rel}' to the output folder '{self.url}': {e.strerror or e}") from None

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Atomically write ``data`` to ``rel``."""
        with self.staged(rel) as tmp, open(tmp, "wb") as f:
            f.write(data)

    def create_bytes(self, rel: str, data: bytes) -> bool:
        """Write ``data`` to ``rel`` only if nothing is there yet, in one step that two writers cannot both win:
        a hard link of a finished temporary file on a local disk, a conditional PUT (``If-None-Match: *``) on S3
        and compatibles. Returns whether this call created it. A store without a conditional create (fsspec
        backends other than local and s3) falls back to check-then-write, which a writer racing within the
        same instant can both pass (:attr:`exclusive` says which applies)."""
        if self.is_local:
            tmp = self.local_tmp(rel)
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, self.path(rel))
                return True
            except FileExistsError:
                return False
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        if self.exclusive:
            try:
                self._retrying(f"creating '{rel}'", self.fs.pipe_file, self.path(rel), data, mode="create")
                return True
            except FileExistsError:  # (also when a retried create's first try went through: the caller reads it back)
                return False
        if self.exists(rel):
            return False
        self.write_bytes(rel, data)
        return True

    @property
    def is_s3(self) -> bool:
        return "s3" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    @property
    def exclusive(self) -> bool:
        """Whether :meth:`create_bytes` is a true conditional create on this store."""
        return self.is_local or self.is_s3

    def clean_tmp(self, folder: str = "") -> int:
        """Remove temporary files a killed run left behind (local storage only). Returns how many."""
        if not self.is_local:
            return 0
        base = Path(self.path(folder)) if folder else Path(self.root)
        stale = list(base.glob(f".*{TMP_SUFFIX}")) if base.exists() else []
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
