"""Static checks of a definition, reported the way AWS reports them.

``check(raw)`` returns every :class:`~nubes.workflows.errors.Diagnostic` found:
schema problems (``SCHEMA_VALIDATION_FAILED``), dangling transitions and
unreachable states (``MISSING_TRANSITION_TARGET``), machines that can never end
(``MISSING_END_STATE``), bad paths, bad intrinsic calls and bad JSONata, each
with its location as a JSON pointer-like path (``/States/A/Next``).
"""

from __future__ import annotations

import re
from typing import Any

from nubes.workflows import intrinsics, jsonata_mode, jsonpath
from nubes.workflows.errors import ALL, Diagnostic

SCHEMA = "SCHEMA_VALIDATION_FAILED"
MISSING_TARGET = "MISSING_TRANSITION_TARGET"
STATE_TYPES = ("Task", "Wait", "Pass", "Succeed", "Fail", "Choice", "Parallel", "Map")

_FLOW = {"Next", "End"}
_IO_PATH = {"InputPath", "OutputPath"}
_RESULT = {"Parameters", "ResultSelector", "ResultPath"}
_ERRORS = {"Retry", "Catch"}
_ATA = {"Arguments", "Output", "Assign"}
FIELDS: dict[str, set[str]] = {
    "Task": _FLOW | _IO_PATH | _RESULT | _ERRORS | _ATA
    | {"Resource", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds",
       "HeartbeatSecondsPath", "Credentials"},
    "Pass": _FLOW | _IO_PATH | {"Parameters", "ResultPath", "Result", "Output", "Assign"},
    "Choice": _IO_PATH | {"Choices", "Default", "Output", "Assign"},
    "Wait": _FLOW | _IO_PATH | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath",
                                "Output", "Assign"},
    "Succeed": _IO_PATH | {"Output"},
    "Fail": {"Error", "Cause", "ErrorPath", "CausePath"},
    "Parallel": _FLOW | _IO_PATH | _RESULT | _ERRORS | _ATA | {"Branches"},
    "Map": _FLOW | _IO_PATH | _RESULT | _ERRORS | _ATA
    | {"ItemsPath", "ItemSelector", "Iterator", "ItemProcessor", "ItemReader", "ItemBatcher",
       "ResultWriter", "MaxConcurrency", "MaxConcurrencyPath", "ToleratedFailurePercentage",
       "ToleratedFailurePercentagePath", "ToleratedFailureCount", "ToleratedFailureCountPath",
       "Label", "Items"},
}
_COMMON = {"Type", "Comment", "QueryLanguage"}
#: fields only JSONPath states may use, and only JSONata states may use
JSONPATH_ONLY = {
    "InputPath", "OutputPath", "Parameters", "ResultSelector", "ResultPath", "ItemsPath",
    "TimeoutSecondsPath", "HeartbeatSecondsPath", "SecondsPath", "TimestampPath", "ErrorPath",
    "CausePath", "MaxConcurrencyPath", "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath", "Iterator",
}
JSONATA_ONLY = {"Arguments", "Output", "Items"}
_PATH_FIELDS = ("InputPath", "OutputPath", "ItemsPath", "TimeoutSecondsPath",
                "HeartbeatSecondsPath", "SecondsPath", "TimestampPath", "ErrorPath", "CausePath",
                "MaxConcurrencyPath", "ToleratedFailurePercentagePath",
                "ToleratedFailureCountPath")
_TEMPLATES = ("Parameters", "ResultSelector", "ItemSelector")
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
COMPARATORS = {
    f"{kind}{op}{suffix}"
    for kind in ("String", "Numeric", "Timestamp")
    for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    for suffix in ("", "Path")
} | {"BooleanEquals", "BooleanEqualsPath", "StringMatches", "IsNull", "IsPresent", "IsNumeric",
     "IsString", "IsBoolean", "IsTimestamp"}


class _Checker:
    def __init__(self) -> None:
        self.out: list[Diagnostic] = []

    def add(self, message: str, location: str | None, code: str = SCHEMA) -> None:
        self.out.append(Diagnostic(code, message, location))

    # -- machines ----------------------------------------------------------

    def machine(self, raw: Any, where: str, language: str) -> None:
        if not isinstance(raw, dict):
            self.add("The value must be an OBJECT", where or "/")
            return
        missing = [f for f in ("StartAt", "States") if f not in raw]
        if missing:
            self.add(f"These fields are required: [{', '.join(missing)}]", where or "/")
            return
        allowed = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage",
                   "ProcessorConfig"}
        for key in raw:
            if key not in allowed:
                self.add(f'The field "{key}" is not supported by Step Functions', f"{where}/{key}")
        language = self.language(raw, where, language)
        states = raw["States"]
        if not isinstance(states, dict) or not states:
            self.add("The field 'States' must be a non-empty OBJECT", f"{where}/States")
            return
        if not isinstance(raw["StartAt"], str):
            self.add("The value for the field 'StartAt' must be a STRING", f"{where}/StartAt")
            return
        timeout = raw.get("TimeoutSeconds")
        if timeout is not None and not _positive_int(timeout):
            self.add("The value for the field 'TimeoutSeconds' must be a positive INTEGER",
                     f"{where}/TimeoutSeconds")
        for name, body in states.items():
            self.state(name, body, f"{where}/States/{name}", language)
        if not any(d.code == SCHEMA for d in self.out):
            self.transitions(raw, where)

    def language(self, raw: dict[str, Any], where: str, inherited: str) -> str:
        language = raw.get("QueryLanguage", inherited)
        if language not in ("JSONPath", "JSONata"):
            self.add("The field \"QueryLanguage\" should have one of these values: "
                     "[JSONPath, JSONata]", f"{where}/QueryLanguage")
            return inherited
        if inherited == "JSONata" and language == "JSONPath":
            self.add("A state cannot use JSONPath when its state machine uses JSONata",
                     f"{where}/QueryLanguage")
        return str(language)

    def transitions(self, raw: dict[str, Any], where: str) -> None:
        states: dict[str, Any] = raw["States"]
        edges: dict[str, list[str]] = {}
        if raw["StartAt"] not in states:
            self.add(f"Missing 'Next' target: {raw['StartAt']}", f"{where}/StartAt", MISSING_TARGET)
        for name, body in states.items():
            targets: list[tuple[str, str]] = []
            if isinstance(body.get("Next"), str):
                targets.append((body["Next"], f"{where}/States/{name}/Next"))
            if isinstance(body.get("Default"), str):
                targets.append((body["Default"], f"{where}/States/{name}/Default"))
            for i, rule in enumerate(body.get("Choices") or ()):
                if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
                    targets.append((rule["Next"], f"{where}/States/{name}/Choices[{i}]/Next"))
            for i, catcher in enumerate(body.get("Catch") or ()):
                if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
                    targets.append((catcher["Next"], f"{where}/States/{name}/Catch[{i}]/Next"))
            for target, loc in targets:
                if target not in states:
                    self.add(f"Missing 'Next' target: {target}", loc, MISSING_TARGET)
            edges[name] = [t for t, _ in targets if t in states]
        terminal = {n for n, b in states.items()
                    if b.get("End") is True or b.get("Type") in ("Succeed", "Fail")}
        if not terminal:
            self.out.append(Diagnostic("MISSING_END_STATE", "Workflow has no terminal state"))
            return
        seen: set[str] = set()
        todo = [raw["StartAt"]] if raw["StartAt"] in states else []
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(edges.get(current, ()))
        for name in states:
            if name not in seen:
                self.add(f'State "{name}" is not reachable.', f"{where}/States/{name}",
                         MISSING_TARGET)

    # -- states ------------------------------------------------------------

    def state(self, name: str, body: Any, where: str, language: str) -> None:
        if not isinstance(body, dict):
            self.add("The value must be an OBJECT", where)
            return
        kind = body.get("Type")
        if kind is None:
            self.add("These fields are required: [Type]", where)
            return
        if kind not in STATE_TYPES:
            self.add(f"The field \"Type\" should have one of these values: "
                     f"[{', '.join(STATE_TYPES)}]", f"{where}/Type")
            return
        if len(name) > 80:
            self.add("State names must be at most 80 characters", where)
        language = self.language(body, where, language)
        for key in body:
            if key not in FIELDS[kind] and key not in _COMMON:
                self.add(f'The field "{key}" is not supported by Step Functions', f"{where}/{key}")
            elif language == "JSONata" and key in JSONPATH_ONLY:
                self.add(f"The QueryLanguage is set to 'JSONata', but field '{key}' is only "
                         "supported for the 'JSONPath' QueryLanguage", f"{where}/{key}")
            elif language == "JSONPath" and key in JSONATA_ONLY:
                self.add(f"The QueryLanguage is set to 'JSONPath', but field '{key}' is only "
                         "supported for the 'JSONata' QueryLanguage", f"{where}/{key}")
        self.flow(kind, body, where)
        self.paths(body, where, language)
        getattr(self, f"state_{kind.lower()}")(body, where, language)
        for key in ("Retry", "Catch"):
            if key in body:
                self.errors(key, body[key], f"{where}/{key}", language)
        if "Assign" in body:
            self.assign(body["Assign"], f"{where}/Assign", language)

    def flow(self, kind: str, body: dict[str, Any], where: str) -> None:
        if kind not in ("Task", "Pass", "Wait", "Parallel", "Map"):
            return
        has_next, has_end = "Next" in body, body.get("End") is True
        if "End" in body and not isinstance(body["End"], bool):
            self.add("The value for the field 'End' must be a BOOLEAN", f"{where}/End")
        if has_next and not isinstance(body["Next"], str):
            self.add("The value for the field 'Next' must be a STRING", f"{where}/Next")
        if has_next and has_end:
            self.add("There should only be one of the following fields: [Next, End]", where)
        elif not has_next and not has_end:
            self.add("Exactly one of these fields is required: [Next, End]", where)

    def paths(self, body: dict[str, Any], where: str, language: str) -> None:
        if language != "JSONPath":
            return
        for key in _PATH_FIELDS:
            value = body.get(key, "$")
            if value is None and key in ("InputPath", "OutputPath"):
                continue
            if key in ("ErrorPath", "CausePath") and self.dynamic_ok(value):
                continue
            if not isinstance(value, str) or not jsonpath.is_valid_path(value):
                self.add("Value must be a valid JSONPath.", f"{where}/{key}")
        result_path = body.get("ResultPath")
        if result_path is not None and not jsonpath.is_reference_path(str(result_path)):
                self.add("Value is not a Reference Path",
                         f"{where}/ResultPath")
        for key in _TEMPLATES:
            if key in body:
                self.template(body[key], f"{where}/{key}")

    def template(self, value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key.endswith(".$"):
                    if not self.dynamic_ok(item):
                        self.add(f"The value for the field '{key}' must be a valid JSONPath or a "
                                 "valid intrinsic function call", where)
                else:
                    self.template(item, where)
        elif isinstance(value, list):
            for item in value:
                self.template(item, where)

    @staticmethod
    def dynamic_ok(item: Any) -> bool:
        if not isinstance(item, str):
            return False
        if intrinsics.is_intrinsic(item):
            try:
                intrinsics.check_arity(intrinsics.parse(item))
            except intrinsics.IntrinsicSyntaxError:
                return False
            return True
        return jsonpath.is_valid_path(item)

    def jsonata(self, value: Any, where: str) -> None:
        """Check every ``{% %}`` string inside ``value`` compiles."""
        if isinstance(value, dict):
            for key, item in value.items():
                self.jsonata(item, f"{where}/{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.jsonata(item, f"{where}[{i}]")
        elif isinstance(value, str) and value.lstrip().startswith("{%"):
            problem = jsonata_mode.syntax_problem(value)
            if problem:
                self.add(f"The JSONata expression is not valid: {problem}", where)

    def assign(self, value: Any, where: str, language: str) -> None:
        if not isinstance(value, dict):
            self.add("The value for the field 'Assign' must be an OBJECT", where)
            return
        for key in value:
            name = key[:-2] if key.endswith(".$") else key
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self.add(f"The variable name '{name}' is not valid", f"{where}/{key}")
        if language == "JSONata":
            self.jsonata(value, where)
        else:
            self.template(value, where)

    # -- per type ----------------------------------------------------------

    def state_task(self, body: dict[str, Any], where: str, language: str) -> None:
        resource = body.get("Resource")
        if not isinstance(resource, str):
            self.add("These fields are required: [Resource]", where)
        elif not re.match(r"^arn:aws[a-z-]*:[a-z0-9-]+:", resource):
            self.add("Value is not a valid resource ARN", f"{where}/Resource")
        for key in ("TimeoutSeconds", "HeartbeatSeconds"):
            value = body.get(key)
            if value is None:
                continue
            if f"{key}Path" in body:
                self.add(f"There should only be one of the following fields: [{key}, {key}Path]",
                         where)
            if not (_positive_int(value) or _is_jsonata(value, language)):
                self.add(f"The value for the field '{key}' must be a positive INTEGER",
                         f"{where}/{key}")
        timeout, heartbeat = body.get("TimeoutSeconds"), body.get("HeartbeatSeconds")
        if isinstance(timeout, int) and isinstance(heartbeat, int) and heartbeat >= timeout > 0:
            self.add("The value for the field 'HeartbeatSeconds' must be smaller than the value "
                     "for the field 'TimeoutSeconds'", f"{where}/HeartbeatSeconds")
        if language == "JSONata":
            self.jsonata({k: body[k] for k in ("Arguments", "Output", "TimeoutSeconds",
                                                "HeartbeatSeconds") if k in body}, where)

    def state_pass(self, body: dict[str, Any], where: str, language: str) -> None:
        if language == "JSONata" and "Output" in body:
            self.jsonata(body["Output"], f"{where}/Output")

    def state_succeed(self, body: dict[str, Any], where: str, language: str) -> None:
        self.state_pass(body, where, language)

    def state_fail(self, body: dict[str, Any], where: str, language: str) -> None:
        for key in ("Error", "Cause"):
            if key in body and f"{key}Path" in body:
                self.add(f"There should only be one of the following fields: [{key}, {key}Path]",
                         where)
            if key in body and not isinstance(body[key], str):
                self.add(f"The value for the field '{key}' must be a STRING", f"{where}/{key}")
            if key in body and language == "JSONata":
                self.jsonata(body[key], f"{where}/{key}")

    def state_wait(self, body: dict[str, Any], where: str, language: str) -> None:
        given = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in body]
        if len(given) != 1:
            self.add("Exactly one of these fields is required: "
                     "[Seconds, Timestamp, SecondsPath, TimestampPath]", where)
            return
        key = given[0]
        value = body[key]
        if _is_jsonata(value, language):
            self.jsonata(value, f"{where}/{key}")
        elif key == "Seconds" and not (_non_negative_int(value)):
            self.add("The value for the field 'Seconds' must be a non-negative INTEGER",
                     f"{where}/Seconds")
        elif key == "Timestamp" and not (isinstance(value, str) and _TIMESTAMP.match(value)):
            self.add("The value for the field 'Timestamp' must be a valid ISO-8601 timestamp",
                     f"{where}/Timestamp")

    def state_choice(self, body: dict[str, Any], where: str, language: str) -> None:
        choices = body.get("Choices")
        if not isinstance(choices, list) or not choices:
            self.add("The field 'Choices' must be a non-empty ARRAY", f"{where}/Choices")
            return
        if "Default" in body and not isinstance(body["Default"], str):
            self.add("The value for the field 'Default' must be a STRING", f"{where}/Default")
        for i, rule in enumerate(choices):
            self.rule(rule, f"{where}/Choices[{i}]", language, top=True)

    def rule(self, rule: Any, where: str, language: str, *, top: bool) -> None:
        if not isinstance(rule, dict):
            self.add("The value must be an OBJECT", where)
            return
        if top and not isinstance(rule.get("Next"), str):
            self.add("These fields are required: [Next]", where)
        if not top and "Next" in rule:
            self.add('The field "Next" is not supported by Step Functions in a nested rule',
                     f"{where}/Next")
        if language == "JSONata":
            if "Condition" not in rule:
                self.add("These fields are required: [Condition]", where)
            else:
                self.jsonata(rule["Condition"], f"{where}/Condition")
            return
        ops = [k for k in rule if k in COMPARATORS or k in ("And", "Or", "Not")]
        if len(ops) != 1:
            self.add("A choice rule must have exactly one comparison operator or And/Or/Not",
                     where)
            return
        op = ops[0]
        if op in ("And", "Or"):
            if not isinstance(rule[op], list) or not rule[op]:
                self.add(f"The field '{op}' must be a non-empty ARRAY", f"{where}/{op}")
                return
            for i, sub in enumerate(rule[op]):
                self.rule(sub, f"{where}/{op}[{i}]", language, top=False)
            return
        if op == "Not":
            self.rule(rule[op], f"{where}/Not", language, top=False)
            return
        self.comparison(rule, op, where)

    def comparison(self, rule: dict[str, Any], op: str, where: str) -> None:
        variable = rule.get("Variable")
        if not isinstance(variable, str) or not jsonpath.is_valid_path(variable):
            self.add("Value must be a valid JSONPath.",
                     f"{where}/Variable")
        value = rule[op]
        if op.endswith("Path"):
            if not isinstance(value, str) or not jsonpath.is_valid_path(value):
                self.add("Value must be a valid JSONPath.",
                         f"{where}/{op}")
        elif op.startswith("Is") or op == "BooleanEquals":
            if not isinstance(value, bool):
                self.add(f"The value for the field '{op}' must be a BOOLEAN", f"{where}/{op}")
        elif op.startswith("Numeric"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                self.add(f"The value for the field '{op}' must be a NUMBER", f"{where}/{op}")
        elif op.startswith("Timestamp"):
            if not isinstance(value, str) or not _TIMESTAMP.match(value):
                self.add(f"The value for the field '{op}' must be a valid ISO-8601 timestamp",
                         f"{where}/{op}")
        elif not isinstance(value, str):
            self.add(f"The value for the field '{op}' must be a STRING", f"{where}/{op}")

    def state_parallel(self, body: dict[str, Any], where: str, language: str) -> None:
        branches = body.get("Branches")
        if not isinstance(branches, list) or not branches:
            self.add("The field 'Branches' must be a non-empty ARRAY", f"{where}/Branches")
            return
        for i, branch in enumerate(branches):
            self.machine(branch, f"{where}/Branches[{i}]", language)
        if language == "JSONata":
            self.jsonata({k: body[k] for k in ("Arguments", "Output") if k in body}, where)

    def state_map(self, body: dict[str, Any], where: str, language: str) -> None:
        key = "ItemProcessor" if "ItemProcessor" in body else "Iterator"
        if key not in body:
            self.add("These fields are required: [ItemProcessor]", where)
            return
        if "ItemProcessor" in body and "Iterator" in body:
            self.add("There should only be one of the following fields: [ItemProcessor, "
                     "Iterator]", where)
        processor = body[key]
        mode = "INLINE"
        if isinstance(processor, dict):
            config = processor.get("ProcessorConfig", {})
            mode = config.get("Mode", "INLINE") if isinstance(config, dict) else "?"
            if mode not in ("INLINE", "DISTRIBUTED"):
                self.add("The field \"Mode\" should have one of these values: "
                         "[INLINE, DISTRIBUTED]", f"{where}/{key}/ProcessorConfig/Mode")
        self.machine(processor, f"{where}/{key}", language)
        if mode != "DISTRIBUTED":
            for field in ("ItemReader", "ItemBatcher", "ResultWriter"):
                if field in body:
                    self.add(f"The field \"{field}\" is only supported for a Map state in "
                             "DISTRIBUTED mode", f"{where}/{field}")
        for field in ("ItemReader", "ResultWriter"):
            if field in body and not (isinstance(body[field], dict)
                                      and isinstance(body[field].get("Resource"), str)):
                self.add("These fields are required: [Resource]", f"{where}/{field}")
        for field in ("MaxConcurrency", "ToleratedFailureCount", "ToleratedFailurePercentage"):
            if field in body and f"{field}Path" in body:
                self.add(f"There should only be one of the following fields: [{field}, "
                         f"{field}Path]", where)
            if field in body and not _is_jsonata(body[field], language):
                self.number(field, body[field], f"{where}/{field}")
        if language == "JSONata":
            self.jsonata({k: body[k] for k in ("Items", "Arguments", "Output", "ItemSelector")
                          if k in body}, where)

    def number(self, field: str, value: Any, where: str) -> None:
        """A Map number field: an integer >= 0 (a percentage: 0.0 to 100.0)."""
        percentage = field == "ToleratedFailurePercentage"
        if not (_number(value) if percentage else isinstance(value, int)) or isinstance(
                value, bool):
            kind = "NUMBER" if percentage else "INTEGER"
            self.add(f"The value for the field '{field}' must be an {kind}", where)
        elif value < 0:
            self.add("Minimum value is 0.0" if percentage else "Minimum value is 0", where)
        elif percentage and value > 100:
            self.add("Maximum value is 100.0", where)

    def errors(self, key: str, entries: Any, where: str, language: str) -> None:
        if not isinstance(entries, list):
            self.add(f"The value for the field '{key}' must be an ARRAY", where)
            return
        for i, entry in enumerate(entries):
            loc = f"{where}[{i}]"
            if not isinstance(entry, dict):
                self.add("The value must be an OBJECT", loc)
                continue
            names = entry.get("ErrorEquals")
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                self.add("The field 'ErrorEquals' must be a non-empty ARRAY of STRING",
                         f"{loc}/ErrorEquals")
            elif ALL in names and (len(names) > 1 or i != len(entries) - 1):
                self.add(f"{ALL} must appear alone in ErrorEquals and in the last {key} entry",
                         f"{loc}/ErrorEquals")
            if key == "Retry":
                self.retrier(entry, loc)
            else:
                if not isinstance(entry.get("Next"), str):
                    self.add("These fields are required: [Next]", loc)
                rp = entry.get("ResultPath", "$")
                if rp is not None and not jsonpath.is_reference_path(str(rp)):
                    self.add("Value is not a Reference Path",
                             f"{loc}/ResultPath")

    def retrier(self, entry: dict[str, Any], loc: str) -> None:
        checks = (("IntervalSeconds", _positive_int), ("MaxAttempts", _non_negative_int),
                  ("MaxDelaySeconds", _positive_int),
                  ("BackoffRate", lambda v: _number(v) and v >= 1.0))
        for field, ok in checks:
            if field in entry and not ok(entry[field]):
                self.add(f"The value for the field '{field}' is not valid", f"{loc}/{field}")
        if entry.get("JitterStrategy", "NONE") not in ("NONE", "FULL"):
            self.add('The field "JitterStrategy" should have one of these values: [FULL, NONE]',
                     f"{loc}/JitterStrategy")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _non_negative_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_jsonata(value: Any, language: str) -> bool:
    return language == "JSONata" and isinstance(value, str) and value.lstrip().startswith("{%")


def check(raw: dict[str, Any]) -> list[Diagnostic]:
    """Every problem of a definition (empty list: valid)."""
    checker = _Checker()
    checker.machine(raw, "", "JSONPath")
    return checker.out
