"""What the server imports at start-up stays small: libraries only some requests
need (YAML templates, SAM, JSONata, boto3 sessions, cryptography, PyJWT, CBOR) are
imported on first use, and no service model is loaded before its first request."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: imported by the first request that needs them, never at start-up
_LAZY = ("yaml", "jsonata", "boto3", "samtranslator", "botocore.session", "cryptography", "jwt", "cbor2")


def _imported_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {_LAZY!r} if m in sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    found: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def test_cloudformation_and_step_functions_import_no_heavy_library() -> None:
    assert _imported_after(
        """
        import nubes.services.cloudformation, nubes.services.stepfunctions
        import nubes.deploy.resources, nubes.deploy.prepare, nubes.workflows.interpreter
        """
    ) == []


def test_yaml_template_still_parses_with_short_form_tags_once_loaded() -> None:
    found = _imported_after(
        """
        from nubes.deploy.template import parse_template
        t = parse_template("Resources:\\n  Q:\\n    Type: AWS::SQS::Queue\\n    Properties:\\n      QueueName: !Sub '${AWS::StackName}-q'\\n")
        assert t["Resources"]["Q"]["Properties"]["QueueName"] == {"Fn::Sub": "${AWS::StackName}-q"}, t
        """
    )
    assert found == ["yaml"]


def test_jsonata_expression_still_evaluates_once_loaded() -> None:
    found = _imported_after(
        """
        from nubes.workflows import jsonata_mode
        assert jsonata_mode.evaluate("{% $x + 1 %}", {"x": 41}) == 42
        """
    )
    assert found == ["jsonata"]


def test_starting_every_service_imports_no_heavy_library_and_loads_no_model(tmp_path: Path) -> None:
    """What ``nubes up`` does before it answers: discover every service, build the
    gateway (routing catalog), open the store and start the providers."""
    found = _imported_after(
        f"""
        import asyncio
        from pathlib import Path
        from nubes.app import App
        from nubes.aws import spec
        from nubes.gateway.asgi import Gateway
        from nubes.settings import Settings

        async def main():
            app = App(Settings(data_dir=Path({str(tmp_path)!r}), tls_port=-1))
            Gateway(app)
            await app.start()
            await app.stop()
            assert not spec._LOADED, sorted(spec._LOADED)

        asyncio.run(main())
        """
    )
    assert found == []
