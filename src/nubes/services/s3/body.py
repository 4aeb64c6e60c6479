"""Upload bodies: aws-chunked framing, checksums, Content-MD5 and payload hashes,
streamed into the BlobStore chunk by chunk (a 5 GB upload is never in memory)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import crc32c as _crc32c

from nubes.aws.errors import AwsError
from nubes.services.s3.models import INLINE, INLINE_MAX, new_inline_id
from nubes.storage.base import Store, Txn
from nubes.storage.blobs import BlobInfo, BlobStore

#: algorithm name (as in ``ChecksumAlgorithm``) → response/record member suffix
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_STREAMING = "STREAMING-"
_SIGNED_HASH_LEN = 64


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def b64(self) -> str: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def b64(self) -> str:
        return base64.b64encode(self.value.to_bytes(4, "big")).decode()


class _Crc32c(_Crc32):
    def update(self, data: bytes) -> None:
        self.value = _crc32c.crc32c(data, self.value)


def _crc64_table() -> list[int]:
    poly = 0x9A6C9329AC4BC9B5  # CRC-64/NVME, reflected
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64 = _crc64_table()


class _Crc64Nvme:
    """CRC-64/NVME in Python: correct, but slow; used only when a client asks for it."""

    def __init__(self) -> None:
        self.value = 0xFFFFFFFFFFFFFFFF

    def update(self, data: bytes) -> None:
        crc, table = self.value, _CRC64
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self.value = crc

    def b64(self) -> str:
        return base64.b64encode((self.value ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")).decode()


class _Hashlib:
    def __init__(self, name: str) -> None:
        self.h = hashlib.new(name)

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def b64(self) -> str:
        return base64.b64encode(self.h.digest()).decode()


def hasher(algorithm: str) -> Hasher:
    """A running checksum for ``CRC32``/``CRC32C``/``CRC64NVME``/``SHA1``/``SHA256``."""
    if algorithm == "CRC32":
        return _Crc32()
    if algorithm == "CRC32C":
        return _Crc32c()
    if algorithm == "CRC64NVME":
        return _Crc64Nvme()
    if algorithm in ("SHA1", "SHA256"):
        return _Hashlib(algorithm.lower())
    raise invalid_checksum_algorithm(algorithm)


def invalid_checksum_algorithm(algorithm: str) -> AwsError:
    return AwsError(
        "InvalidRequest",
        f"Checksum algorithm {algorithm} is not supported by nubes; use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256.",
        400,
    )


def checksum_of(algorithm: str, data: bytes) -> str:
    """The base64 checksum of ``data``."""
    h = hasher(algorithm)
    h.update(data)
    return h.b64()


@dataclass
class Upload:
    """What a streamed upload produced."""

    blob: BlobInfo
    #: algorithm → base64 value, for the checksums the client sent or asked for
    checksums: dict[str, str] = field(default_factory=dict)
    #: the bytes of an inline upload, which the caller stores (``inline_rows``) in the
    #: same write as the record naming them
    data: bytes | None = None

    @property
    def etag(self) -> str:
        return f'"{self.blob.md5}"'

    def inline_rows(self) -> dict[str, bytes]:
        """``{inline id: bytes}`` to put in ``s3.inline`` (empty for a blob)."""
        return {self.blob.id: self.data} if self.data is not None else {}


def wanted_algorithms(params: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str | None]:
    """Checksum algorithms to compute → the value the client claims (None: compute only)."""
    wanted: dict[str, str | None] = {}
    for alg in ALGORITHMS:
        value = params.get(f"Checksum{alg}")
        if value is not None:
            wanted[alg] = str(value)
    trailer = headers.get("x-amz-trailer", "").strip().lower()
    if trailer.startswith("x-amz-checksum-"):
        alg = trailer[len("x-amz-checksum-") :].upper()
        if alg not in ALGORITHMS:
            raise invalid_checksum_algorithm(alg)
        wanted.setdefault(alg, None)
    requested = params.get("ChecksumAlgorithm") or headers.get("x-amz-sdk-checksum-algorithm")
    if requested:
        alg = str(requested).upper()
        if alg not in ALGORITHMS:
            raise invalid_checksum_algorithm(alg)
        wanted.setdefault(alg, None)
    return wanted


def _content_md5(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise AwsError("InvalidDigest", "The Content-MD5 you specified is not valid.", 400)
    return digest


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    if body is None:
        return
    if isinstance(body, bytes | bytearray | memoryview):
        if body:
            yield bytes(body)
        return
    async for chunk in body:
        yield chunk


@dataclass(frozen=True)
class ChunkSigning:
    """What chunk signatures of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body are
    checked with: the request's signing key, date, scope and seed signature."""

    key: bytes
    amz_date: str
    scope: str
    seed: str

    def expected(self, previous: str, chunk_sha256: str) -> str:
        text = f"AWS4-HMAC-SHA256-PAYLOAD\n{self.amz_date}\n{self.scope}\n{previous}\n{_EMPTY_SHA256}\n{chunk_sha256}"
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class AwsChunkedDecoder:
    """Decodes ``aws-chunked`` framing (``<hex>[;chunk-signature=...]\\r\\n<data>\\r\\n``
    ... ``0\\r\\n<trailers>\\r\\n``) incrementally; trailers land in ``trailers``."""

    def __init__(self, signing: ChunkSigning | None = None) -> None:
        self._buf = bytearray()
        self._state = "size"  # size | data | crlf | trailers | done
        self._need = 0
        self.trailers: dict[str, str] = {}
        self._signing = signing
        self._previous = signing.seed if signing is not None else ""
        self._signature = ""
        self._chunk_hash = hashlib.sha256()

    def feed(self, data: bytes) -> list[bytes]:
        """Feed raw bytes; returns decoded payload pieces."""
        self._buf += data
        out: list[bytes] = []
        while self._state != "done":
            if self._state == "data":
                take = min(self._need, len(self._buf))
                if take == 0:
                    break
                piece = bytes(self._buf[:take])
                out.append(piece)
                del self._buf[:take]
                self._need -= take
                if self._signing is not None:
                    self._chunk_hash.update(piece)
                if self._need == 0:
                    self._check_chunk()
                    self._state = "crlf"
                continue
            if self._state == "crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise _incomplete()
                del self._buf[:2]
                self._state = "size"
                continue
            end = self._buf.find(b"\r\n")
            if end < 0:
                if len(self._buf) > 4096:
                    raise _incomplete()
                break
            line = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 2]
            if self._state == "size":
                self._size_line(line)
            else:
                self._trailer_line(line)
        return out

    def _size_line(self, line: str) -> None:
        size_text, _, extension = line.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise _incomplete() from None
        self._signature = extension.strip().removeprefix("chunk-signature=")
        self._chunk_hash = hashlib.sha256()
        if size == 0:
            self._check_chunk()
            self._state = "trailers"
        else:
            self._need = size
            self._state = "data"

    def _check_chunk(self) -> None:
        """Each chunk signs its bytes and the previous chunk's signature."""
        if self._signing is None:
            return
        expected = self._signing.expected(self._previous, self._chunk_hash.hexdigest())
        if not hmac.compare_digest(expected, self._signature):
            raise AwsError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
                403,
            )
        self._previous = expected

    def _trailer_line(self, line: str) -> None:
        if not line:
            self._state = "done"
            return
        name, _, value = line.partition(":")
        self.trailers[name.strip().lower()] = value.strip()

    def finish(self) -> None:
        """Check the body ended where the framing says it should."""
        if self._state == "trailers" and not self._buf:
            return  # some clients end without the blank line after the last trailer
        if self._state != "done":
            raise _incomplete()


def _incomplete() -> AwsError:
    return AwsError("IncompleteBody", "The request body terminated unexpectedly", 400)


async def drain(body: Any) -> None:
    """Read and drop what is left of an upload body, so an early error leaves the
    keep-alive connection in step (the client may already be sending the bytes)."""
    if body is None or isinstance(body, bytes | bytearray | memoryview):
        return
    try:
        async for _ in body:
            pass
    except Exception:  # the body was consumed already, or the client went away
        return


async def receive_upload(
    blobs: BlobStore,
    body: Any,
    headers: Mapping[str, str],
    params: Mapping[str, Any],
    store: Store | None = None,
    signing: ChunkSigning | None = None,
) -> Upload:
    """Stream ``body`` into a new blob (or, up to INLINE_MAX bytes and given a store,
    keep it for the caller to store inline), decoding aws-chunked framing and checking Content-MD5,
    x-amz-content-sha256 and flexible checksums. Nothing is left behind when a
    check fails."""
    wanted = wanted_algorithms(params, headers)
    md5 = _content_md5(params.get("ContentMD5") or headers.get("content-md5"))
    content_sha = headers.get("x-amz-content-sha256", "")
    chunked = content_sha.startswith(_STREAMING) or "aws-chunked" in headers.get("content-encoding", "")
    decoder = AwsChunkedDecoder(signing) if chunked else None
    hashers = {alg: hasher(alg) for alg in wanted}

    async def pieces() -> AsyncIterator[bytes]:
        async for raw in _chunks(body):
            for piece in decoder.feed(raw) if decoder is not None else [raw]:
                for h in hashers.values():
                    h.update(piece)
                yield piece
        if decoder is not None:
            decoder.finish()

    source = pieces()
    head = bytearray()
    more = False
    async for piece in source:
        head += piece
        if store is not None and len(head) <= INLINE_MAX:
            continue
        more = True
        break
    data: bytes | None = None
    # the SHA-256 of the whole body is only needed to check a signed payload hash
    sha256 = len(content_sha) == _SIGNED_HASH_LEN
    if not more and store is not None:
        data = bytes(head)
        md5_hex = hashlib.md5(data, usedforsecurity=False).hexdigest()
        sha256_hex = hashlib.sha256(data).hexdigest() if sha256 else None
        info = BlobInfo(new_inline_id(), len(data), md5_hex, sha256_hex)
    else:
        info = await _write_blob(blobs, head, source, sha256=sha256)
    try:
        checksums = _verify(info, hashers, wanted, decoder, md5, content_sha, headers)
    except AwsError:
        if data is None:
            await blobs.delete(info.id)
        raise
    return Upload(info, checksums, data)


async def _write_blob(
    blobs: BlobStore, head: bytes | bytearray, rest: AsyncIterator[bytes], *, sha256: bool
) -> BlobInfo:
    async with blobs.writer(sha256=sha256) as writer:
        await writer.write(bytes(head))
        async for piece in rest:
            await writer.write(piece)
        return await writer.commit()


def put_inline(txn: Txn, rows: dict[str, bytes]) -> None:
    """Store inline upload bytes (inside the write that stores their record)."""
    for inline_id, data in rows.items():
        txn.put(INLINE, inline_id.encode(), data)


def drop_inline(txn: Txn, ids: list[str]) -> list[str]:
    """Delete the inline rows among ``ids`` inside the write that unreferenced them;
    returns the blob ids, whose files go once that write has committed."""
    for inline_id in ids:
        if inline_id.startswith("i"):
            txn.delete(INLINE, inline_id.encode())
    return [blob_id for blob_id in ids if not blob_id.startswith("i")]


async def discard(blobs: BlobStore, store: Store | None, ids: list[str]) -> None:
    """Delete object data no version or part references any more."""
    inline = [i for i in ids if i.startswith("i")]
    if inline and store is not None:

        def drop(txn: Txn) -> None:
            for inline_id in inline:
                txn.delete(INLINE, inline_id.encode())

        await store.write(drop)
    for blob_id in ids:
        if not blob_id.startswith("i"):
            await blobs.delete(blob_id)


def _verify(
    info: BlobInfo,
    hashers: dict[str, Hasher],
    wanted: dict[str, str | None],
    decoder: AwsChunkedDecoder | None,
    md5: bytes | None,
    content_sha: str,
    headers: Mapping[str, str],
) -> dict[str, str]:
    if md5 is not None and md5.hex() != info.md5:
        raise AwsError("BadDigest", "The Content-MD5 you specified did not match what we received.", 400)
    if len(content_sha) == _SIGNED_HASH_LEN and content_sha != info.sha256:
        raise AwsError(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            400,
            fields={"ClientComputedContentSHA256": content_sha, "S3ComputedContentSHA256": info.sha256},
        )
    declared = headers.get("x-amz-decoded-content-length")
    if decoder is not None and declared is not None and declared.isdigit() and int(declared) != info.size:
        raise _incomplete()
    checksums: dict[str, str] = {}
    for alg, h in hashers.items():
        computed = h.b64()
        claimed = wanted.get(alg)
        if claimed is None and decoder is not None:
            claimed = decoder.trailers.get(f"x-amz-checksum-{alg.lower()}")
        if claimed is not None and claimed != computed:
            raise AwsError(
                "BadDigest", f"The {alg} you specified did not match the calculated checksum.", 400
            )
        checksums[alg] = computed
    return checksums
