"""Build steps of ``nubes deploy``: which directories are code, reproducible zips,
requirements cached by hash, template rewriting, local URLs for AWS hostnames."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nubes.cli.deploy import default_stack_name, parse_overrides
from nubes.devloop import build
from nubes.devloop.stack import local_url


def _template() -> dict[str, Any]:
    return {
        "Globals": {"Function": {"CodeUri": "shared/"}},
        "Resources": {
            "A": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "a.h"}},
            "B": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "b/"}},
            "Inline": {"Type": "AWS::Serverless::Function", "Properties": {"InlineCode": "x"}},
            "Remote": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "s3://bucket/key.zip"}},
            "Layer": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "layer/"}},
            "Raw": {"Type": "AWS::Lambda::Function", "Properties": {"Code": "raw/"}},
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        },
    }


def test_code_dirs_finds_local_directories_only(tmp_path: Path) -> None:
    found = build.code_dirs(_template(), tmp_path)
    assert found == {
        "A": ("AWS::Serverless::Function", tmp_path / "shared"),
        "B": ("AWS::Serverless::Function", tmp_path / "b"),
        "Layer": ("AWS::Serverless::LayerVersion", tmp_path / "layer"),
        "Raw": ("AWS::Lambda::Function", tmp_path / "raw"),
    }


def test_zip_is_reproducible_and_skips_clutter(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "pkg").mkdir()
    (src / "app.py").write_text("x = 1\n")
    (src / "pkg" / "mod.py").write_text("y = 2\n")
    (src / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"junk")
    first = build.zip_directory(src, tmp_path / "build")
    (src / "app.py").touch()  # a new mtime alone changes nothing
    assert build.zip_directory(src, tmp_path / "build") == first
    assert zipfile.ZipFile(io.BytesIO(first)).namelist() == ["app.py", "pkg/mod.py"]
    (src / "app.py").write_text("x = 2\n")
    assert build.zip_directory(src, tmp_path / "build") != first


def test_missing_code_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build.zip_directory(tmp_path / "nope", tmp_path / "build")


def test_requirements_installed_once_per_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("")
    (src / "requirements.txt").write_text("tinydep==1.0\n")
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        target = Path(cmd[cmd.index("-t") + 1])
        (target / "tinydep").mkdir(parents=True)
        (target / "tinydep" / "__init__.py").write_text("VERSION = 1\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(build.subprocess, "run", fake_pip)
    first = build.zip_directory(src, tmp_path / "build")
    second = build.zip_directory(src, tmp_path / "build")
    assert len(calls) == 1 and first == second
    assert "tinydep/__init__.py" in zipfile.ZipFile(io.BytesIO(first)).namelist()
    (src / "requirements.txt").write_text("tinydep==2.0\n")
    build.zip_directory(src, tmp_path / "build")
    assert len(calls) == 2


def test_failed_pip_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("no-such-thing\n")
    monkeypatch.setattr(build.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: nothing"))  # fmt: skip
    with pytest.raises(RuntimeError, match=r"requirements\.txt failed"):
        build.zip_directory(src, tmp_path / "build")


def test_rewrite_points_code_at_s3(tmp_path: Path) -> None:
    template = _template()
    artifacts = [build.Artifact(lid, rtype, path, b"zip-" + lid.encode())
                 for lid, (rtype, path) in build.code_dirs(template, tmp_path).items()]  # fmt: skip
    out = build.rewrite(template, "bkt", artifacts)
    key_a = artifacts[0].key
    assert out["Resources"]["A"]["Properties"]["CodeUri"] == f"s3://bkt/{key_a}"
    assert out["Resources"]["Layer"]["Properties"]["ContentUri"].startswith("s3://bkt/artifacts/")
    assert out["Resources"]["Raw"]["Properties"]["Code"]["S3Bucket"] == "bkt"
    assert "CodeUri" not in template["Resources"]["A"]["Properties"]  # the input is untouched


def test_local_url_for_aws_hostnames() -> None:
    assert local_url("https://abc123.execute-api.us-east-1.amazonaws.com/prod", 4566) == \
        "http://abc123.execute-api.localhost:4566/prod"  # fmt: skip
    assert local_url("wss://ws1.execute-api.eu-west-1.amazonaws.com/live", 80) == "ws://ws1.execute-api.localhost:80/live"
    assert local_url("https://abc.execute-api.us-east-1.amazonaws.com", 1) == "http://abc.execute-api.localhost:1"
    assert local_url("https://example.com/x", 4566) is None
    assert local_url("arn:aws:states:us-east-1:0:stateMachine:x", 4566) is None


def test_overrides_and_stack_names(tmp_path: Path) -> None:
    assert parse_overrides(["A=1", "B=x=y", "ParameterKey=C,ParameterValue=z"]) == {"A": "1", "B": "x=y", "C": "z"}
    with pytest.raises(ValueError, match="Key=Value"):
        parse_overrides(["novalue"])
    assert default_stack_name(tmp_path / "my_app" / "template.yaml") == "my-app"
    assert default_stack_name(tmp_path / "9lives" / "template.yaml") == "stack-9lives"
