"""Build steps: find each function's code directory, install its requirements,
zip it reproducibly, upload it to the artifacts bucket, rewrite the template.

A zip built from unchanged files is byte-identical (fixed timestamps, sorted
entries), so its S3 key — the zip's sha256 — is too, and an unchanged re-deploy
yields a template CloudFormation sees as unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: resource type → (property that holds a local path, how the S3 location is written)
CODE_PROPERTIES: dict[str, tuple[str, str]] = {
    "AWS::Serverless::Function": ("CodeUri", "s3uri"),
    "AWS::Serverless::LayerVersion": ("ContentUri", "s3uri"),
    "AWS::Lambda::Function": ("Code", "code"),
    "AWS::Lambda::LayerVersion": ("Content", "content"),
}
_SKIP_DIRS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", "tests", ".nubes", ".aws-sam"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Artifact:
    """One function's (or layer's) built code: the source dir and its zip."""

    logical_id: str
    resource_type: str
    source: Path
    data: bytes

    @property
    def key(self) -> str:
        """The S3 key: content-addressed, so identical code is one object."""
        return "artifacts/" + hashlib.sha256(self.data).hexdigest() + ".zip"


def load_template(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON template (short-form tags understood)."""
    from nubes.deploy.template import parse_template

    return parse_template(path.read_text())


def find_template(given: str | None) -> Path:
    """The template to deploy: the one given, else template.yaml/template.yml here."""
    if given:
        return Path(given)
    for name in ("template.yaml", "template.yml", "template.json"):
        if Path(name).exists():
            return Path(name)
    raise FileNotFoundError("no template.yaml or template.yml in this directory (pass the template's path)")


def _local_path(value: Any) -> str | None:
    """A property value that names a local path (not s3://, not a dict)."""
    if isinstance(value, str) and not value.startswith(("s3://", "http://", "https://")):
        return value
    return None


def code_dirs(template: dict[str, Any], base: Path) -> dict[str, tuple[str, Path]]:
    """Logical id → (resource type, absolute code directory) for every function or
    layer whose code is a local directory (Globals.Function.CodeUri included)."""
    globals_uri = ((template.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    found: dict[str, tuple[str, Path]] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        rtype = resource.get("Type", "") if isinstance(resource, dict) else ""
        if rtype not in CODE_PROPERTIES:
            continue
        prop = CODE_PROPERTIES[rtype][0]
        props = resource.get("Properties") or {}
        if rtype == "AWS::Serverless::Function" and "InlineCode" in props:
            continue
        value = props.get(prop, globals_uri if rtype == "AWS::Serverless::Function" else None)
        local = _local_path(value)
        if local is not None:
            found[logical_id] = (rtype, (base / local).resolve())
    return found


def _deps_dir(source: Path, build_root: Path) -> Path | None:
    """``pip install -r requirements.txt -t`` into a directory cached by the file's hash."""
    requirements = source / "requirements.txt"
    if not requirements.exists() or not requirements.read_text().strip():
        return None
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:24]
    target = build_root / "deps" / digest
    if (target / ".complete").exists():
        return target
    partial = target.with_name(digest + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "-r", str(requirements), "-t", str(partial)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install -r {requirements} failed:\n{done.stderr.strip()}")
    (partial / ".complete").write_text(digest)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _walk(root: Path) -> list[tuple[Path, str]]:
    """Files under ``root`` (sorted, build clutter skipped) with their archive names."""
    files: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".pyc") or name == ".complete":
                continue
            path = Path(dirpath) / name
            files.append((path, path.relative_to(root).as_posix()))
    return files


def zip_directory(source: Path, build_root: Path) -> bytes:
    """A reproducible zip of ``source`` plus its installed requirements."""
    if not source.is_dir():
        raise FileNotFoundError(f"code directory {source} does not exist")
    entries: dict[str, Path] = {}
    deps = _deps_dir(source, build_root)
    if deps is not None:
        entries.update({name: path for path, name in _walk(deps)})
    entries.update({name: path for path, name in _walk(source)})  # the function's own files win
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].read_bytes())
    return buffer.getvalue()


def build(template: dict[str, Any], base: Path, build_root: Path) -> list[Artifact]:
    """Zip every local code directory of the template."""
    cache: dict[Path, bytes] = {}
    artifacts = []
    for logical_id, (rtype, source) in code_dirs(template, base).items():
        if source not in cache:
            cache[source] = zip_directory(source, build_root)
        artifacts.append(Artifact(logical_id, rtype, source, cache[source]))
    return artifacts


def artifacts_bucket(s3: Any, account: str, region: str) -> str:
    """``nubes-deploy-artifacts-<account>``, created if missing."""
    from botocore.exceptions import ClientError

    bucket = f"nubes-deploy-artifacts-{account}"
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    return bucket


def upload(s3: Any, bucket: str, artifacts: list[Artifact]) -> None:
    """Put each zip unless an object with its (content-addressed) key exists."""
    from botocore.exceptions import ClientError

    for key, data in {a.key: a.data for a in artifacts}.items():
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            s3.put_object(Bucket=bucket, Key=key, Body=data)


def rewrite(template: dict[str, Any], bucket: str, artifacts: list[Artifact]) -> dict[str, Any]:
    """A copy of the template whose code properties point at the uploaded zips."""
    out = copy.deepcopy(template)
    resources = out["Resources"]
    for artifact in artifacts:
        prop, style = CODE_PROPERTIES[artifact.resource_type]
        props = resources[artifact.logical_id].setdefault("Properties", {})
        if style == "s3uri":
            props[prop] = f"s3://{bucket}/{artifact.key}"
        elif style == "code":
            props[prop] = {"S3Bucket": bucket, "S3Key": artifact.key}
        else:
            props[prop] = {"S3Bucket": bucket, "S3Key": artifact.key}
    return out
