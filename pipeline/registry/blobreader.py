"""Reading blobs as verified streams: every byte is hashed and counted, and the end of
the stream checks size and digest against the descriptor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from pipeline.digest import DIGEST_PREFIX
from pipeline.registry.reference import CHUNK

# ---------------------------------------------------------------------------------------
# blob reading


class BlobReader:
    """A file-like ``read(n)`` over a streaming blob response that hashes and counts
    every byte. More bytes than ``expected_size`` or a stream that ends early raise a
    RegistryError (transient for a broken connection or a short stream)."""

    def __init__(
        self, response: httpx.Response, expected_size: int | None, fail: Callable[..., Any]
    ) -> None:
        self._chunks = response.iter_raw(CHUNK)
        self._buf = bytearray()
        self._eof = False
        self._expected = expected_size
        self._fail = fail
        self._hash = hashlib.sha256()
        self.size = 0

    def _fill(self, n: int) -> None:
        while not self._eof and (n < 0 or len(self._buf) < n):
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                break
            except httpx.HTTPError as exc:
                raise self._fail(
                    f"transfer broken after {self.size + len(self._buf)} bytes"
                    + (f" of {self._expected}" if self._expected is not None else "")
                    + f" (truncated blob): {exc_text(exc)}",
                    transient=True,
                ) from None
            self._buf += chunk
            if self._expected is not None and self.size + len(self._buf) > self._expected:
                raise self._fail(f"the registry sent more than the {self._expected} bytes expected")

    def read(self, n: int = -1) -> bytes:
        self._fill(n)
        if n < 0 or n >= len(self._buf):
            data = bytes(self._buf)
            self._buf.clear()
        else:
            data = bytes(self._buf[:n])
            del self._buf[:n]
        self._hash.update(data)
        self.size += len(data)
        if n != 0 and not data and self._expected is not None and self.size < self._expected:
            raise self._fail(
                f"truncated blob: got {self.size} of {self._expected} bytes", transient=True
            )
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + self._hash.hexdigest()


def exc_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text else type(exc).__name__


def file_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            data = f.read(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data
