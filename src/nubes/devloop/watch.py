"""``nubes deploy --watch``: a change under a function's code directory updates
that function's code (UpdateFunctionCode with a fresh zip, so the next invocation
runs it); a change to the template re-deploys the stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from nubes.devloop.build import code_dirs, load_template, zip_directory

_SKIP_PARTS = {"__pycache__", ".nubes", ".git", ".aws-sam", ".pytest_cache", ".mypy_cache"}


def function_names(cfn: Any, stack: str) -> dict[str, str]:
    """Logical id → physical name of the stack's Lambda functions."""
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in resources
        if r["ResourceType"] == "AWS::Lambda::Function" and r.get("PhysicalResourceId")
    }


def _affected(changed: set[Path], dirs: dict[Path, list[str]]) -> dict[Path, list[str]]:
    return {d: names for d, names in dirs.items() if any(p == d or d in p.parents for p in changed)}


def update_code(lambda_: Any, source: Path, names: list[str], build_root: Path, console: Console) -> float:
    """Zip ``source`` and give it to each function; returns the seconds it took."""
    started = time.monotonic()
    data = zip_directory(source, build_root)
    for name in names:
        lambda_.update_function_code(FunctionName=name, ZipFile=data)
    took = time.monotonic() - started
    console.print(f"[green]updated[/] {', '.join(names)} from {source} in {took * 1000:.0f} ms", highlight=False)
    return took


def code_map(cfn: Any, stack: str, template_path: Path) -> dict[Path, list[str]]:
    """Code directory → names of the deployed functions built from it."""
    from botocore.exceptions import ClientError

    template = load_template(template_path)
    try:
        physical = function_names(cfn, stack)
    except ClientError:  # not deployed (yet): every code change re-deploys until it is
        physical = {}
    dirs: dict[Path, list[str]] = {}
    for logical_id, (rtype, source) in code_dirs(template, template_path.parent.resolve()).items():
        names = dirs.setdefault(source, [])  # no names (a layer, an undeployed stack): re-deploy
        if rtype.endswith("Function") and logical_id in physical:
            names.append(physical[logical_id])
    return dirs


def _interesting(_change: Any, path: str) -> bool:
    """Source edits, not caches, build output or editor swap files."""
    parts = Path(path).parts
    return not (set(parts) & _SKIP_PARTS) and not path.endswith((".pyc", "~", ".swp", ".tmp"))


def watch(
    cfn: Any, lambda_: Any, stack: str, template_path: Path, build_root: Path,
    redeploy: Callable[[], None], console: Console, stop: Any = None,
) -> None:  # fmt: skip
    """Watch the template and code directories until Ctrl-C (or ``stop`` is set)."""
    import watchfiles

    template_path = template_path.resolve()
    dirs = code_map(cfn, stack, template_path)
    roots = {template_path.parent, *dirs}
    console.print(f"[bold]Watching[/] {len(dirs)} code directories and {template_path.name} (Ctrl-C to stop)")
    for changes in watchfiles.watch(*sorted(roots), stop_event=stop, debounce=50, step=20,
                                    watch_filter=_interesting):  # fmt: skip
        changed = {Path(p).resolve() for _, p in changes}
        affected = _affected(changed, dirs)
        try:
            if template_path in changed or any(not names for names in affected.values()):
                console.print(f"[bold]{template_path.name} or code without a deployed function changed: re-deploying[/]")
                redeploy()
                dirs = code_map(cfn, stack, template_path)
                continue
            for source, names in affected.items():
                update_code(lambda_, source, names, build_root, console)
        except Exception as exc:  # a failed step is reported; watching goes on
            console.print(f"[red]{type(exc).__name__}: {exc}[/]")
