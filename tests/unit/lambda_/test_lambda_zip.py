"""Zip validation and unpacking of function code."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from nubes.aws.errors import AwsError
from nubes.services.lambda_ import code


def _zip(entries: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            archive.writestr(info, data)
    return buf.getvalue()


def test_unpacks_content_addressed_and_keeps_exec_bits(tmp_path: Path) -> None:
    data = _zip({"app.py": b"x = 1\n", "pkg/mod.py": b"", "bootstrap": b"#!/bin/sh\n"}, {"bootstrap": 0o755})
    stored = code.store_zip(tmp_path, data)
    assert stored.directory == tmp_path / "lambda" / "code" / stored.hex
    assert (stored.directory / "app.py").read_bytes() == b"x = 1\n"
    assert (stored.directory / "pkg" / "mod.py").exists()
    assert (stored.directory / "bootstrap").stat().st_mode & stat.S_IXUSR
    assert stored.size == len(data)
    again = code.store_zip(tmp_path, data)
    assert again.directory == stored.directory and again.sha256 == stored.sha256
    assert code.zip_path(tmp_path, stored.hex) is not None


def test_not_a_zip_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(AwsError) as err:
        code.store_zip(tmp_path, b"this is not a zip file")
    assert err.value.code == "InvalidParameterValueException"
    assert err.value.message.startswith("Could not unzip uploaded file.")


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "/etc/passwd", "C:/x.py", "..\\evil.py"])
def test_entries_escaping_the_directory_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(AwsError) as err:
        code.store_zip(tmp_path, _zip({name: b"x"}))
    assert err.value.code == "InvalidParameterValueException"
    assert not (tmp_path / "evil.py").exists() and not (tmp_path.parent / "evil.py").exists()


def test_unzipped_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code, "MAX_UNZIPPED_BYTES", 1000)
    with pytest.raises(AwsError) as err:
        code.store_zip(tmp_path, _zip({"big.bin": b"0" * 2000}))
    assert err.value.message == "Unzipped size must be smaller than 1000 bytes"


def test_zipped_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code, "MAX_ZIPPED_BYTES", 100)
    with pytest.raises(AwsError) as err:
        code.store_zip(tmp_path, _zip({"a.py": b"x" * 500}))
    assert err.value.code == "RequestEntityTooLargeException" and err.value.status == 413


def test_hot_reload_revision_changes_with_files(tmp_path: Path) -> None:
    cache = code.RevisionCache()
    (tmp_path / "app.py").write_text("a")
    first = cache.revision(tmp_path)
    assert cache.revision(tmp_path) == first  # cached within a second
    cache._seen.clear()
    (tmp_path / "new.py").write_text("b")
    assert cache.revision(tmp_path) != first


def test_hot_reload_dir_must_exist() -> None:
    with pytest.raises(AwsError):
        code.local_dir("relative/path")
    with pytest.raises(AwsError):
        code.local_dir("/no/such/dir/anywhere")
