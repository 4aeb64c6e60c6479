"""Function and layer code: validate zips, unpack them content-addressed, hot-reload dirs.

Code lives under ``<data_dir>/lambda/``:

* ``zips/<sha256 hex>.zip`` — the uploaded archive (GetFunction's ``Code.Location``);
* ``code/<sha256 hex>/`` — the same archive unpacked, shared by every function and
  version with that exact zip; never modified after it is renamed into place.

**Local directories for development.** ``Code={"S3Bucket": "hot-reload", "S3Key":
"/abs/path/to/dir"}`` (the convention LocalStack uses) runs the function straight from
that directory; edits are picked up by the next invocation (the revision is the
newest mtime under the directory, checked at most once a second).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import time
import uuid
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath

from nubes.aws.errors import AwsError

#: the bucket name that means "run this local directory" (S3Key is its absolute path)
HOT_RELOAD_BUCKET = "hot-reload"
MAX_ZIPPED_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 262_144_000
_REVISION_CHECK_S = 1.0


@dataclass(frozen=True)
class StoredCode:
    """Where a zip was unpacked and how AWS describes it."""

    sha256: str  # base64, as CodeSha256
    size: int  # zipped bytes, as CodeSize
    directory: Path
    hex: str


def invalid_zip(detail: str = "") -> AwsError:
    """AWS's answer to an archive it cannot unzip."""
    message = "Could not unzip uploaded file. Please check your file, then try to upload again."
    return AwsError("InvalidParameterValueException", message + (f" ({detail})" if detail else ""), 400,
                    fields={"Type": "User"})  # fmt: skip


def _safe_member(name: str) -> PurePosixPath:
    norm = name.replace("\\", "/")
    path = PurePosixPath(norm)
    drive = bool(path.parts) and len(path.parts[0]) == 2 and path.parts[0][1] == ":"
    if norm.startswith("/") or ".." in path.parts or drive:
        raise invalid_zip(f"entry {name!r} points outside the code directory")
    return path


def validate_zip(data: bytes) -> zipfile.ZipFile:
    """Open ``data`` as a zip and check AWS's limits and that no entry escapes."""
    if len(data) > MAX_ZIPPED_BYTES:
        raise AwsError("RequestEntityTooLargeException",
                       f"Zipped size must be smaller than {MAX_ZIPPED_BYTES} bytes", 413)  # fmt: skip
    try:
        archive = zipfile.ZipFile(BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise invalid_zip() from None
    total = 0
    for info in infos:
        _safe_member(info.filename)
        total += info.file_size
    if total > MAX_UNZIPPED_BYTES:
        raise AwsError("InvalidParameterValueException",
                       f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes", 400,
                       fields={"Type": "User"})  # fmt: skip
    return archive


def _extract(archive: zipfile.ZipFile, target: Path) -> None:
    written = 0
    for info in archive.infolist():
        dest = target.joinpath(*_safe_member(info.filename).parts)
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_UNZIPPED_BYTES:  # the header lied about sizes
                        raise AwsError("InvalidParameterValueException",
                                       f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes", 400)  # fmt: skip
                    out.write(chunk)
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
            raise invalid_zip(str(exc)) from None
        mode = (info.external_attr >> 16) & 0o777
        # zips made on Windows carry no mode; keep files readable, executables executable
        os.chmod(dest, (mode | 0o644) if mode else 0o755 if dest.name == "bootstrap" else 0o644)


def store_zip(data_dir: Path, data: bytes, kind: str = "code") -> StoredCode:
    """Validate and unpack ``data`` (blocking: run it in a thread)."""
    archive = validate_zip(data)
    digest = hashlib.sha256(data).digest()
    hex_digest = digest.hex()
    root = data_dir / "lambda"
    target = root / kind / hex_digest
    if not target.is_dir():
        staging = root / "staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            _extract(archive, staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                staging.rename(target)
            except OSError:  # another upload of the same zip won the race
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    zip_path = root / "zips" / f"{hex_digest}.zip"
    if not zip_path.exists():
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = zip_path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        tmp.replace(zip_path)
    return StoredCode(base64.b64encode(digest).decode(), len(data), target, hex_digest)


def zip_path(data_dir: Path, hex_digest: str) -> Path | None:
    """The stored archive with this digest, if any."""
    if not all(c in "0123456789abcdef" for c in hex_digest) or len(hex_digest) != 64:
        return None
    path = data_dir / "lambda" / "zips" / f"{hex_digest}.zip"
    return path if path.is_file() else None


def local_dir(path: str) -> Path:
    """Check a hot-reload directory (``S3Key`` of the ``hot-reload`` bucket)."""
    directory = Path(path)
    if not directory.is_absolute() or not directory.is_dir():
        raise AwsError("InvalidParameterValueException",
                       f"Hot-reload path {path!r} must be an absolute path to an existing directory", 400,
                       fields={"Type": "User"})  # fmt: skip
    return directory


def local_dir_sha(directory: Path) -> str:
    """A CodeSha256 for a local directory (of its path; the contents keep changing)."""
    return base64.b64encode(hashlib.sha256(str(directory).encode()).digest()).decode()


class RevisionCache:
    """Newest mtime under hot-reload directories, recomputed at most once a second."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[float, str]] = {}

    def revision(self, directory: Path) -> str:
        """A string that changes whenever a file under ``directory`` changes."""
        now = time.monotonic()
        cached = self._seen.get(directory)
        if cached is not None and now - cached[0] < _REVISION_CHECK_S:
            return cached[1]
        newest = 0.0
        count = 0
        for root, dirs, files in os.walk(directory):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", ".git", "node_modules")]
            for name in files:
                try:
                    st = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    newest = max(newest, st.st_mtime)
                    count += 1
        rev = f"dir-{newest:.6f}-{count}"
        self._seen[directory] = (now, rev)
        return rev
