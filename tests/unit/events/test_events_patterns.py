"""Event pattern matching and validation, from the cases in AWS's EventBridge docs
("Content filtering in Amazon EventBridge event patterns", "Comparison operators")."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.events.patterns import (
    CompiledPattern,
    PatternError,
    PatternIndex,
    matches,
    validate_pattern,
)

EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {
        "instance-id": "i-1234567890abcdef0",
        "state": "terminated",
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.123",
        "FileName": "image.png",
        "location": "us-east-1",
    },
}


def ev(**detail: Any) -> dict[str, Any]:
    return {**EC2_EVENT, "detail": {**EC2_EVENT["detail"], **detail}}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["aws.ec2"]}, True),
        ({"source": ["aws.s3"]}, False),
        ({"source": ["aws.s3", "aws.ec2"]}, True),  # array = OR
        ({"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]}, True),
        ({"source": ["aws.ec2"], "detail": {"state": ["running"]}}, False),
        ({"detail": {"state": ["terminated"], "instance-id": ["i-1234567890abcdef0"]}}, True),
        ({"detail": {"nope": ["x"]}}, False),
        # numbers match by value
        ({"detail": {"c-count": [5.0]}}, True),
        ({"detail": {"c-count": ["5"]}}, False),
        ({"account": [111122223333]}, False),  # the account is a string in the event
        ({"account": ["111122223333"]}, True),
    ],
)
def test_exact_and_and(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, EC2_EVENT) is expected


def test_resources_array_any_value_matches() -> None:
    event = {
        **EC2_EVENT,
        "resources": [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
        ],
    }
    assert matches(
        {
            "resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:999999999999:instance/i-b188560f",
            ]
        },
        event,
    )
    assert not matches({"resources": ["arn:aws:ec2:us-east-1:1:instance/x"]}, event)


def test_null_and_empty_values() -> None:
    event = {"detail": {"eventVersion": "", "responseElements": None, "a": []}}
    assert matches({"detail": {"eventVersion": [""], "responseElements": [None]}}, event)
    assert not matches({"detail": {"eventVersion": [None]}}, event)
    assert not matches({"detail": {"responseElements": [""]}}, event)
    # null is a value: exists true holds, a missing field is not null
    assert matches({"detail": {"responseElements": [{"exists": True}]}}, event)
    assert not matches({"detail": {"missing": [None]}}, event)
    # an empty array has no values
    assert matches({"detail": {"a": [{"exists": False}]}}, event)
    assert not matches({"detail": {"a": [{"exists": True}]}}, event)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ({"prefix": "us-"}, "us-east-1", True),
        ({"prefix": "us-"}, "eu-west-1", False),
        ({"prefix": "us-"}, 5, False),
        ({"prefix": {"equals-ignore-case": "EventB"}}, "eventbridge", True),
        ({"prefix": {"equals-ignore-case": "eventb"}}, "EVENTBRIDGE", True),
        ({"prefix": {"equals-ignore-case": "eventb"}}, "xeventb", False),
        ({"suffix": ".png"}, "image.png", True),
        ({"suffix": ".png"}, "image.PNG", False),
        ({"suffix": {"equals-ignore-case": "tBridge"}}, "EventBRIDGE", True),
        ({"equals-ignore-case": "alice"}, "ALICE", True),
        ({"equals-ignore-case": "alice"}, "alic", False),
        ({"anything-but": "initializing"}, "running", True),
        ({"anything-but": "initializing"}, "initializing", False),
        ({"anything-but": ["stopped", "overloaded"]}, "stopped", False),
        ({"anything-but": ["stopped", "overloaded"]}, "running", True),
        ({"anything-but": 123}, 123, False),
        ({"anything-but": 123}, 124, True),
        ({"anything-but": [100, 200, 300]}, 200.0, False),
        ({"anything-but": [100, 200, 300]}, 201, True),
        ({"anything-but": {"prefix": "init"}}, "initializing", False),
        ({"anything-but": {"prefix": "init"}}, "running", True),
        ({"anything-but": {"suffix": ".txt"}}, "notes.txt", False),
        ({"anything-but": {"suffix": ".txt"}}, "image.png", True),
        ({"anything-but": {"equals-ignore-case": "initializing"}}, "INITIALIZING", False),
        ({"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}, "stopped", False),
        ({"anything-but": {"equals-ignore-case": ["Stopped", "OverLoaded"]}}, "run", True),
        ({"anything-but": {"wildcard": "*/lib/*"}}, "/usr/lib/x", False),
        ({"anything-but": {"wildcard": "*/lib/*"}}, "/usr/bin/x", True),
        ({"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}}, "/usr/bin/x", False),
        ({"anything-but": {"wildcard": ["*/lib/*", "*/bin/*"]}}, "/usr/src/x", True),
        ({"numeric": [">", 0, "<=", 5]}, 5, True),
        ({"numeric": [">", 0, "<=", 5]}, 0, False),
        ({"numeric": [">", 0, "<=", 5]}, 5.0001, False),
        ({"numeric": [">", 0, "<=", 5]}, "3", False),
        ({"numeric": ["<", 10]}, 3, True),
        ({"numeric": ["<", 10]}, 10, False),
        ({"numeric": [">=", 10]}, 10, True),
        ({"numeric": ["=", 3.018e2]}, 301.8, True),
        ({"numeric": ["=", 3.018e2]}, 301.81, False),
        ({"numeric": ["=", 1]}, True, False),
        ({"cidr": "10.0.0.0/24"}, "10.0.0.255", True),
        ({"cidr": "10.0.0.0/24"}, "10.0.1.0", False),
        ({"cidr": "10.0.0.0/24"}, "not-an-ip", False),
        ({"cidr": "2001:db8::/64"}, "2001:db8::1", True),
        ({"cidr": "2001:db8::/64"}, "2001:db9::1", False),
        ({"wildcard": "dir/*.png"}, "dir/a/b.png", True),
        ({"wildcard": "dir/*.png"}, "dir/a.jpg", False),
        (
            {"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"},
            "arn:aws:events:us-east-1:123456789012:event-bus/default",
            True,
        ),
        ({"wildcard": "a\\*b"}, "a*b", True),
        ({"wildcard": "a\\*b"}, "axb", False),
        ({"wildcard": "a\\\\b"}, "a\\b", True),
        ({"exact": "a"}, "a", True),
    ],
)
def test_operators(pattern: dict[str, Any], value: Any, expected: bool) -> None:
    assert matches({"detail": {"f": [pattern]}}, {"detail": {"f": value}}) is expected


def test_anything_but_needs_the_field() -> None:
    assert not matches({"detail": {"f": [{"anything-but": "x"}]}}, {"detail": {}})


def test_exists() -> None:
    assert matches({"detail": {"c-count": [{"exists": True}]}}, EC2_EVENT)
    assert not matches({"detail": {"c-count": [{"exists": False}]}}, EC2_EVENT)
    assert matches({"detail": {"e-count": [{"exists": False}]}}, EC2_EVENT)
    assert not matches({"detail": {"e-count": [{"exists": True}]}}, EC2_EVENT)
    # exists only sees leaves: an object-valued field does not "exist" as a leaf
    event = {"detail": {"obj": {"a": 1}}}
    assert not matches({"detail": {"obj": [{"exists": True}]}}, event)
    # a missing parent makes children absent
    assert matches({"nope": {"child": [{"exists": False}]}}, event)
    assert not matches({"nope": {"child": [{"exists": True}]}}, event)


def test_or_docs_examples() -> None:
    pattern = {
        "detail": {
            "$or": [
                {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
                {"x-limit": [{"numeric": ["=", 3.018e2]}]},
            ]
        }
    }
    assert matches(pattern, EC2_EVENT)
    assert matches(pattern, {"detail": {"c-count": 9, "d-count": 11, "x-limit": 301.8}})
    assert not matches(pattern, {"detail": {"c-count": 9, "d-count": 11, "x-limit": 1}})
    pattern2 = {
        "source": ["aws.cloudwatch"],
        "$or": [
            {"metricName": ["CPUUtilization", "ReadLatency"]},
            {"metricType": ["MetricType"], "namespace": ["AWS/EC2", "AWS/ES"]},
            {"scope": ["Service"]},
        ],
    }
    base = {"source": "aws.cloudwatch"}
    assert matches(pattern2, {**base, "metricName": "ReadLatency"})
    assert matches(pattern2, {**base, "metricType": "MetricType", "namespace": "AWS/ES"})
    assert not matches(pattern2, {**base, "metricType": "MetricType"})
    assert matches(pattern2, {**base, "scope": "Service"})
    assert not matches(pattern2, {"source": "aws.ec2", "scope": "Service"})


def test_arrays_of_objects_match_within_one_element() -> None:
    event = {"detail": {"items": [{"k": "a", "v": 1}, {"k": "b", "v": 2}]}}
    assert matches({"detail": {"items": {"k": ["a"], "v": [1]}}}, event)
    assert not matches({"detail": {"items": {"k": ["a"], "v": [2]}}}, event)
    assert matches({"detail": {"items": {"k": ["b"]}}}, event)


def test_mixed_operators_in_one_array_are_or() -> None:
    pattern = {"detail": {"state": ["pending", {"prefix": "term"}, {"numeric": [">", 100]}]}}
    assert matches(pattern, EC2_EVENT)
    assert matches(pattern, ev(state="pending"))
    assert matches(pattern, ev(state=101))
    assert not matches(pattern, ev(state="running"))


def test_pattern_accepts_json_text() -> None:
    assert matches('{"source": ["aws.ec2"]}', EC2_EVENT)
    assert CompiledPattern.compile(b'{"detail": {"c-count": [5]}}').matches(EC2_EVENT)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("[1]", "Filter is not an object"),
        ("not json", "Unexpected character"),
        ({}, "Empty objects are not allowed"),
        ({"source": "aws.ec2"}, '"source" must be an object or an array'),
        ({"source": []}, "Empty arrays are not allowed"),
        ({"source": [["a"]]}, "Match value must be String, number, true, false, or null"),
        ({"source": [{}]}, "Match expression name not found"),
        ({"source": [{"prefix": "a", "suffix": "b"}]}, "Only one key allowed in match expression"),
        ({"source": [{"foo": "a"}]}, "Unrecognized match type foo"),
        ({"source": [{"prefix": 1}]}, "prefix match pattern must be a string"),
        ({"source": [{"prefix": {"foo": "a"}}]}, "Unsupported prefix pattern: foo"),
        ({"source": [{"suffix": None}]}, "suffix match pattern must be a string"),
        (
            {"source": [{"equals-ignore-case": 5}]},
            "equals-ignore-case match pattern must be a string",
        ),
        ({"source": [{"wildcard": 5}]}, "wildcard match pattern must be a string"),
        ({"source": [{"wildcard": "a**b"}]}, "Consecutive wildcard characters at pos 2"),
        ({"source": [{"wildcard": "a\\b"}]}, "Invalid escape character at pos 2"),
        ({"source": [{"exists": "yes"}]}, "exists match pattern must be either true or false."),
        ({"source": [{"numeric": 5}]}, "Value of numeric must be an array."),
        ({"source": [{"numeric": [">", "a"]}]}, "Value of > must be numeric"),
        ({"source": [{"numeric": ["!", 1]}]}, "Unrecognized numeric range operator: !"),
        ({"source": [{"numeric": [">", 1, ">", 5]}]}, "Bad numeric range operator: >"),
        ({"source": [{"numeric": ["<", 1, ">", 5]}]}, "Too many elements in numeric expression"),
        ({"source": [{"numeric": [">", 5, "<", 1]}]}, "Bottom must be less than top"),
        ({"source": [{"numeric": ["=", 1, 2]}]}, "Too many elements in numeric expression"),
        ({"source": [{"numeric": [5]}]}, "Invalid member in numeric match: 5"),
        ({"source": [{"cidr": "10.0.0.1"}]}, "Malformed CIDR, one '/' required"),
        ({"source": [{"cidr": "10.0.0.x/24"}]}, "Nonstandard IP address: 10.0.0.x"),
        ({"source": [{"anything-but": None}]}, "Value of anything-but must be an array or single"),
        ({"source": [{"anything-but": ["a", 1]}]}, "mixed type is not supported"),
        ({"source": [{"anything-but": [True]}]}, "start|null|boolean is not supported"),
        ({"source": [{"anything-but": {"prefix": ""}}]}, "Null prefix/suffix not allowed"),
        (
            {"source": [{"anything-but": {"prefix": 1}}]},
            "prefix/suffix match pattern must be a string",
        ),
        (
            {"source": [{"anything-but": {"numeric": [">", 1]}}]},
            "Unsupported anything-but pattern: numeric",
        ),
        ({"source": [{"anything-but": {"equals-ignore-case": 1}}]}, "number|start|null|boolean"),
        ({"$or": {"a": ["b"]}}, "It must be an Array followed with $or."),
        ({"$or": [{"a": ["b"]}]}, "There must have at least 2 Objects in $or relationship."),
        ({"$or": [{"a": ["b"]}, "x"]}, "Only JSON object is allowed in array of $or relationship."),
        ({"$or": [{"prefix": ["b"]}, {"a": ["c"]}]}, "prefix is Ruler reserved fieldName"),
    ],
)
def test_invalid_patterns(pattern: Any, reason: str) -> None:
    with pytest.raises(PatternError) as info:
        validate_pattern(pattern)
    assert reason in info.value.reason


def test_sns_mode() -> None:
    validate_pattern({"store": ["a"], "price": [{"numeric": [">", 1]}]}, mode="sns")
    with pytest.raises(PatternError, match="Unrecognized match type wildcard"):
        validate_pattern({"store": [{"wildcard": "a*"}]}, mode="sns")
    with pytest.raises(PatternError, match="more than 5 keys"):
        validate_pattern({k: ["x"] for k in "abcdef"}, mode="sns")
    with pytest.raises(PatternError, match="too complex"):
        validate_pattern({k: [str(i) for i in range(10)] for k in "abc"}, mode="sns")


def test_index_matches_like_one_by_one() -> None:
    patterns: dict[str, Any] = {
        "ec2": {"source": ["aws.ec2"]},
        "ec2-terminated": {"source": ["aws.ec2"], "detail": {"state": ["terminated"]}},
        "s3": {"source": ["aws.s3"]},
        "prefix": {"detail-type": [{"prefix": "EC2"}]},
        "or": {"$or": [{"source": ["aws.s3"]}, {"detail": {"c-count": [5]}}]},
        "absent": {"detail": {"zzz": [{"exists": False}]}},
        "count": {"detail": {"c-count": [5, 6]}},
        "resources": {
            "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]
        },
    }
    index = PatternIndex()
    for rule_id, pattern in patterns.items():
        index.add(rule_id, pattern)
    events = [EC2_EVENT, ev(state="running"), {**EC2_EVENT, "source": "aws.s3"}, {"source": "x"}]
    for event in events:
        expected = {r for r, p in patterns.items() if matches(p, event)}
        assert set(index.match(event)) == expected
    assert set(index.match(EC2_EVENT)) >= {"ec2", "ec2-terminated", "or", "absent", "count"}
    assert index.remove("ec2")
    assert not index.remove("ec2")
    assert "ec2" not in index.match(EC2_EVENT)
    index.add("s3", {"source": ["aws.ec2"]})  # replacing a rule refiles it
    assert "s3" in index.match(EC2_EVENT)
    assert len(index) == len(patterns) - 1


def test_index_checks_only_candidates() -> None:
    index = PatternIndex()
    for i in range(2000):
        index.add(i, {"source": ["app"], "detail-type": [f"type-{i}"]})
    event = {"source": "app", "detail-type": "type-1234"}
    # the first rule is filed under the shared source before others share it
    candidates = set(index.candidates(event))
    assert (1234, 0) in candidates
    assert len(candidates) <= 2
    assert index.match(event) == [1234]


def test_index_rejects_invalid_patterns() -> None:
    index = PatternIndex()
    with pytest.raises(PatternError):
        index.add("bad", {"source": "x"})
    assert len(index) == 0


def test_index_files_prefix_and_ignore_case_rules() -> None:
    index = PatternIndex()
    for i in range(300):
        index.add(f"p{i}", {"detail": {"customer": [{"prefix": f"cust-{i}-"}]}})
        index.add(f"c{i}", {"detail": {"name": [{"equals-ignore-case": f"Name{i}"}]}})
    index.add("empty-prefix", {"detail": {"customer": [{"prefix": ""}]}})
    event = {"detail": {"customer": "cust-42-abc", "name": "NAME7"}}
    assert sorted(index.match(event)) == ["c7", "empty-prefix", "p42"]
    assert len(set(index.candidates(event))) <= 4
    index.remove("p42")
    assert sorted(index.match(event)) == ["c7", "empty-prefix"]
    assert "empty-prefix" not in index.match({"detail": {"customer": 42}})


def test_docs_complex_example_and_duplicate_keys() -> None:
    pattern = {
        "time": [{"prefix": "2017-10-02"}],
        "detail": {
            "state": [{"anything-but": "initializing"}],
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"anything-but": [100, 200, 300]}],
        },
    }
    event = {"time": "2017-10-02T18:43:48Z",
             "detail": {"state": "running", "c-count": 3, "d-count": 9, "x-limit": 150}}  # fmt: skip
    assert matches(pattern, event)
    assert not matches(pattern, {**event, "detail": {**event["detail"], "x-limit": 200}})
    assert not matches(pattern, {**event, "time": "2017-10-03T00:00:00Z"})
    # a key given twice: the last one counts
    text = (
        '{"detail": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}'
    )
    assert matches(text, {"detail": {"location": "eu-west"}})
    assert not matches(text, {"detail": {"location": "us-east"}})


def test_exists_on_an_array_value_and_numeric_limits() -> None:
    event = {"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}}
    assert matches({"detail": {"state": [{"exists": True}]}}, event)
    assert not matches({"detail": {"c-count": [{"exists": True}]}}, event)
    for bad in ({"numeric": [">", 6e9]}, {"numeric": ["=", -5.1e9]}, {"anything-but": [1, 6e9]}):
        with pytest.raises(PatternError, match=r"between -5\.0E9 and 5\.0E9"):
            validate_pattern({"n": [bad]})
    validate_pattern({"n": [{"numeric": [">=", -5e9, "<=", 5e9]}]})


def test_absurdly_deep_patterns_are_refused_not_crashing() -> None:
    deep = '{"a": ' * 3000 + '["x"]' + "}" * 3000
    with pytest.raises(PatternError):
        validate_pattern(deep)
    nested: dict[str, Any] = {"x": ["y"]}
    for _ in range(2000):
        nested = {"a": nested}
    with pytest.raises(PatternError, match="too complex"):
        validate_pattern(nested)


def test_index_agrees_with_one_by_one_matching_on_random_cases() -> None:
    import random

    rng = random.Random(1234)
    values = ["a", "ab", "B", "", 1, 2.5, None, True]
    operators: list[Any] = [
        "a", "ab", 1, None, True, {"prefix": "a"}, {"suffix": "b"}, {"exists": True},
        {"exists": False}, {"anything-but": "a"}, {"numeric": [">", 1]},
        {"equals-ignore-case": "b"}, {"wildcard": "a*"}, {"prefix": {"equals-ignore-case": "A"}},
    ]  # fmt: skip

    def random_value(depth: int) -> Any:
        roll = rng.random()
        if depth < 2 and roll < 0.25:
            return {k: random_value(depth + 1) for k in rng.sample(["x", "y", "z"], 2)}
        if depth < 2 and roll < 0.4:
            return [random_value(depth + 1) for _ in range(rng.randrange(3))]
        return rng.choice(values)

    def random_pattern(depth: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in rng.sample(["x", "y", "z"], rng.randrange(1, 3)):
            if depth < 1 and rng.random() < 0.3:
                out[key] = random_pattern(depth + 1)
            else:
                out[key] = rng.sample(operators, rng.randrange(1, 3))
        if depth == 0 and rng.random() < 0.2:
            out["$or"] = [random_pattern(1), random_pattern(1)]
        return out

    patterns = {i: random_pattern() for i in range(300)}
    index = PatternIndex()
    for i, pattern in patterns.items():
        index.add(i, pattern)
    compiled = {i: CompiledPattern.compile(p) for i, p in patterns.items()}
    for _ in range(300):
        event = {k: random_value(0) for k in rng.sample(["x", "y", "z"], rng.randrange(0, 4))}
        expected = {i for i, c in compiled.items() if c.matches(event)}
        assert set(index.match(event)) == expected, event
