"""Template transforms: ``AWS::Serverless-2016-10-31`` (SAM) through the
``aws-sam-translator`` library, ``AWS::Include`` snippets, and
``AWS::LanguageExtensions`` (whose functions the evaluator implements natively).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from nubes.deploy.template import template_error

SERVERLESS = "AWS::Serverless-2016-10-31"
INCLUDE = "AWS::Include"
LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"

log = logging.getLogger(__name__)


def transforms(template: dict[str, Any]) -> list[str]:
    """The names listed in the template's ``Transform`` section."""
    value = template.get("Transform")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else str(v.get("Name")) for v in value]
    if isinstance(value, dict):
        return [str(value.get("Name"))]
    raise template_error("Template format error: Transform must be a string or list of strings")


def has_serverless(template: dict[str, Any]) -> bool:
    """Whether the template needs the SAM transform."""
    return SERVERLESS in transforms(template)


def check_transforms(template: dict[str, Any]) -> None:
    """Reject transforms nubes cannot run (macros from other accounts, ...)."""
    for name in transforms(template):
        if name not in (SERVERLESS, INCLUDE, LANGUAGE_EXTENSIONS):
            raise template_error(f"Template format error: Unsupported transform: {name}. nubes supports {SERVERLESS}, {INCLUDE} and {LANGUAGE_EXTENSIONS}")


class BundledManagedPolicies:
    """Managed policy names → ARNs from the list shipped with the translator, so
    no IAM call to an AWS account is ever needed."""

    def __init__(self, partition: str = "aws") -> None:
        self.partition = partition
        self._map: dict[str, str] | None = None

    def load(self) -> dict[str, str]:
        """The name → ARN map for this partition."""
        if self._map is None:
            from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

            self._map = dict(get_bundled_managed_policy_map(self.partition) or {})
        return self._map


def transform_serverless(
    template: dict[str, Any],
    parameter_values: dict[str, Any],
    *,
    region: str = "us-east-1",
    account_id: str = "000000000000",
    partition: str = "aws",
) -> dict[str, Any]:
    """Translate a SAM template to plain CloudFormation (a new dict).

    Errors come back as CloudFormation reports a failed transform:
    ``Transform AWS::Serverless-2016-10-31 failed with: ...``.
    """
    # the translator takes ~0.3 s to import: only templates that use it pay for it
    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
    from samtranslator.model.exceptions import InvalidDocumentException, InvalidTemplateException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    source = copy.deepcopy(template)
    values = dict(parameter_values)
    values.setdefault("AWS::Region", region)
    values.setdefault("AWS::AccountId", account_id)
    values.setdefault("AWS::Partition", partition)
    policies = BundledManagedPolicies(partition)
    # The translator only needs the session for its region name; building one makes
    # no network call and needs no credentials. (boto3 is imported here, not at the
    # top: the server imports this module at start-up and may never see a SAM template.)
    import boto3.session

    session = boto3.session.Session(region_name=region)
    # The translator records usage metrics; a dummy publisher drops them (published
    # in the finally below, else the translator logs a warning on garbage collection).
    metrics = Metrics(metrics_publisher=DummyMetricsPublisher())
    translator = Translator(None, Parser(), boto_session=session, metrics=metrics)
    try:
        result: dict[str, Any] = translator.translate(
            source, parameter_values=values, get_managed_policy_map=policies.load
        )
    except (InvalidDocumentException, InvalidTemplateException) as exc:
        raise template_error(f"Transform {SERVERLESS} failed with: {_sam_message(exc)}") from None
    except Exception as exc:  # the translator raises assorted errors on odd input
        log.debug("SAM transform failed", exc_info=True)
        raise template_error(f"Transform {SERVERLESS} failed with: {exc}") from None
    finally:
        metrics.publish()
    remaining = [t for t in transforms(result) if t != SERVERLESS]
    if remaining:
        result["Transform"] = remaining if len(remaining) > 1 else remaining[0]
    else:
        result.pop("Transform", None)
    return result


def _sam_message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    causes = getattr(exc, "causes", None) or []
    details = " ".join(str(getattr(c, "message", c)) for c in causes)
    return f"{message} {details}".strip() if details and details not in message else str(message)


def expand_includes(value: Any, fetch: Callable[[str], dict[str, Any]]) -> Any:
    """Replace every ``Fn::Transform`` with ``Name: AWS::Include`` (and a top-level
    ``Transform: AWS::Include``) by the snippet at its ``Location``.

    ``fetch`` loads a parsed template snippet from a location (``s3://bucket/key``
    or an S3 URL). A snippet inside a mapping is merged into it.
    """
    if isinstance(value, list):
        return [expand_includes(v, fetch) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "Fn::Transform" and isinstance(item, dict) and item.get("Name") == INCLUDE:
            snippet = expand_includes(fetch(_include_location(item)), fetch)
            if len(value) == 1:
                return snippet
            if isinstance(snippet, dict):
                out.update(snippet)
            continue
        out[key] = expand_includes(item, fetch)
    return out


def _include_location(spec: dict[str, Any]) -> str:
    params = spec.get("Parameters") or {}
    location = params.get("Location")
    if not isinstance(location, str):
        raise template_error("Template format error: AWS::Include requires a string Location parameter")
    return location


def apply_top_level_include(template: dict[str, Any], fetch: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Expand a ``Transform: {Name: AWS::Include, Parameters: {Location}}`` section
    (the snippet is merged into the template) and every ``Fn::Transform`` include."""
    spec = template.get("Transform")
    result = dict(template)
    specs = spec if isinstance(spec, list) else [spec]
    kept: list[Any] = []
    for item in specs:
        if isinstance(item, dict) and item.get("Name") == INCLUDE:
            snippet = fetch(_include_location(item))
            for section, content in snippet.items():
                if isinstance(content, dict) and isinstance(result.get(section), dict):
                    result[section] = {**result[section], **content}
                else:
                    result[section] = content
        elif item is not None:
            kept.append(item)
    if spec is not None:
        if kept:
            result["Transform"] = kept if len(kept) > 1 else kept[0]
        else:
            result.pop("Transform", None)
    return expand_includes(result, fetch)  # type: ignore[no-any-return]
