from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from abflow.errors import InvalidSpecError
from abflow.routing import assign
from abflow.spec import (
    canonical_json,
    challenger_share,
    experiment_json_schema,
    load_experiment,
    parse_experiment,
    rollout_registration,
    spec_hash,
    traffic_fields,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud.yaml"


def base() -> dict[str, Any]:
    return {
        "key": "exp",
        "variants": [
            {"name": "a", "model": "models:/m@champion"},
            {"name": "b", "model": "models:/m/3"},
        ],
        "weights": [0.5, 0.5],
        "metrics": [
            {"name": "conv", "kind": "conversion", "event": "purchase", "role": "primary"},
            {"name": "fpr", "kind": "false_positive_rate", "role": "guardrail"},
        ],
    }


def problems_of(data: Any) -> list[str]:
    with pytest.raises(InvalidSpecError) as info:
        parse_experiment(data)
    return info.value.problems


def test_example_loads_with_defaults() -> None:
    spec = load_experiment(EXAMPLE)
    assert spec.key == "fraud-model-v2"
    assert spec.hash_seed == "fraud-model-v2"
    assert spec.control.name == "champion"
    assert spec.primary_metric is not None
    assert spec.primary_metric.name == "fraud_caught"
    assert spec.analysis.sequential_tuning == 5000


def test_json_and_yaml_give_the_same_spec(tmp_path: Path) -> None:
    spec = load_experiment(EXAMPLE)
    as_json = tmp_path / "spec.json"
    as_json.write_text(json.dumps(spec.model_dump(mode="json")))
    assert load_experiment(as_json) == spec
    assert spec_hash(load_experiment(as_json)) == spec_hash(spec)


def test_equal_weights_when_omitted() -> None:
    data = base()
    del data["weights"]
    data["variants"].append({"name": "c", "model": "file:model.joblib"})
    assert parse_experiment(data).effective_weights == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"weights": [0.5, 0.6]}, "weights: weights sum to 1.1, expected 1"),
        ({"weights": [1.0]}, "weights: 1 weights for 2 variants; give one each"),
        ({"weights": [1e308, 1e308]}, "weights[0]: weight 1e+308 must be between 0 and 1"),
        (
            {
                "metrics": [
                    {
                        "name": "c",
                        "kind": "conversion",
                        "event": "c",
                        "role": "guardrail",
                        "margin": float("inf"),
                    }
                ]
            },
            "metrics[0].margin: Input should be a finite number",
        ),
        ({"coverage": 1.5}, "coverage: Input should be less than or equal to 1"),
        ({"forced": {"u1": "zz"}}, "forced.u1: unknown variant 'zz'"),
        ({"namespace": ["ns", 0.7, 0.2]}, "namespace: namespace start 0.7 must be below end 0.2"),
        (
            {"namespace": ["ns", 0.1]},
            "namespace: namespace must be [name, start, end], got 2 items",
        ),
        ({"condition": {"age": {"$gtx": 3}}}, "condition.age.$gtx: unknown operator '$gtx'"),
        ({"condition": {"$and": {"a": 1}}}, "condition.$and: $and takes a list of conditions"),
        ({"condition": {"a": {"$in": 3}}}, "condition.a.$in: $in takes a list"),
        ({"condition": {"a": {"$regex": "("}}}, "condition.a.$regex: invalid regular expression"),
        (
            {"rollout": {"steps": [{"traffic": 0.1}], "guardrails": ["nope"]}},
            "rollout.guardrails[0]: unknown metric 'nope'",
        ),
        (
            {"rollout": {"steps": [{"traffic": 0.5}, {"traffic": 0.1}]}},
            "must exceed the previous step",
        ),
        ({"analysis": {"alpha": 1.5}}, "analysis.alpha: Input should be less than 1"),
        ({"unexpected": 1}, "unexpected: Extra inputs are not permitted"),
        ({"force": "zz"}, "force: unknown variant 'zz'; variants are ['a', 'b']"),
        ({"active": "maybe"}, "active: Input should be a valid boolean"),
        (
            {"filters": [{"seed": "s", "ranges": [[0.0, 0.1], [0.6, 0.2]]}]},
            "filters[0].ranges[1]: range [0.6, 0.2] starts above its end",
        ),
        (
            {"filters": [{"seed": "s", "ranges": [[-0.1, 0.2]]}]},
            "filters[0].ranges[0][0]: Input should be greater than or equal to 0",
        ),
        (
            {"filters": [{"seed": "s", "ranges": [[0.1, 1.5]]}]},
            "filters[0].ranges[0][1]: Input should be less than or equal to 1",
        ),
        (
            {"filters": [{"seed": "s", "ranges": []}]},
            "filters[0].ranges: List should have at least",
        ),
        ({"filters": [{"ranges": [[0, 1]]}]}, "filters[0].seed: Field required"),
        (
            {"filters": [{"seed": "s", "ranges": [[0, 1]], "hash_version": 3}]},
            "filters[0].hash_version: Input should be 1 or 2",
        ),
        (
            {"filters": [{"seed": "s", "ranges": [[0, 1]]}], "namespace": ["ns", 0.0, 0.5]},
            "namespace: give a namespace or filters, not both",
        ),
    ],
)
def test_each_rule_names_its_path(change: dict[str, Any], expected: str) -> None:
    data = base() | change
    assert any(expected in p for p in problems_of(data)), problems_of(data)


def test_a_namespace_written_as_the_suggested_filter_keeps_the_same_units() -> None:
    namespace = ["ns", 0.2, 0.7]
    filters = [{"seed": "x", "ranges": [[0, 1]]}]
    problems = problems_of(base() | {"namespace": namespace, "filters": filters})
    suggested = "{seed: '__ns', hash_version: 1, ranges: [[0.2, 0.7]]}"
    assert any(p.endswith(suggested) for p in problems), problems
    by_namespace = parse_experiment(base() | {"namespace": namespace})
    by_filter = parse_experiment(
        base() | {"filters": [{"seed": "__ns", "hash_version": 1, "ranges": [[0.2, 0.7]]}]}
    )
    for number in range(300):
        attributes = {"user_id": f"u{number}"}
        one, other = assign(by_namespace, attributes), assign(by_filter, attributes)
        assert (one.index, one.in_experiment) == (other.index, other.in_experiment)


def test_later_routing_fields_stay_out_of_the_canonical_json_until_set() -> None:
    plain = parse_experiment(base())
    assert not {"active", "filters", "force"} & set(json.loads(canonical_json(plain)))
    written = parse_experiment(base() | {"active": True, "filters": [], "force": None})
    assert spec_hash(written) == spec_hash(plain)
    filters = [{"seed": "s", "ranges": [[0, 0.5]]}]
    full = parse_experiment(base() | {"active": False, "filters": filters, "force": "b"})
    stored = json.loads(canonical_json(full))
    assert (stored["active"], stored["force"]) == (False, "b")
    assert stored["filters"] == [
        {"attribute": None, "seed": "s", "hash_version": 2, "ranges": [[0.0, 0.5]]}
    ]
    assert parse_experiment(stored) == full


def test_filters_and_force_start_a_phase_but_pausing_does_not() -> None:
    plain = parse_experiment(base())
    fields = traffic_fields(plain)
    assert traffic_fields(parse_experiment(base() | {"active": False})) == fields
    for change in ({"force": "b"}, {"filters": [{"seed": "s", "ranges": [[0, 0.5]]}]}):
        assert traffic_fields(parse_experiment(base() | change)) != fields, change


def test_duplicate_variant_names() -> None:
    data = base()
    data["variants"][1]["name"] = "a"
    assert problems_of(data) == ["variants[1].name: duplicate variant name 'a' (also variants[0])"]


def test_model_references_mlflow_understands() -> None:
    for reference in (
        "models:/m/latest",
        "models:/m/12",
        "models:/m@challenger",
        "runs:/abc/model",
    ):
        data = base()
        data["variants"][1]["model"] = reference
        assert parse_experiment(data).variants[1].model == reference


def test_unknown_model_reference() -> None:
    data = base()
    data["variants"][1]["model"] = "s3-bucket"
    assert problems_of(data)[0].startswith(
        "variants[1].model: 's3-bucket' is not a model reference"
    )


def test_every_problem_is_reported_at_once() -> None:
    data = base() | {
        "coverage": 2,
        "weights": [0.9, 0.9],
        "forced": {"u": "x"},
        "condition": {"a": {"$bad": 1}},
    }
    found = problems_of(data)
    assert len(found) == 4
    assert {p.split(":")[0] for p in found} == {
        "coverage",
        "weights",
        "forced.u",
        "condition.a.$bad",
    }


def test_non_mapping_and_unreadable(tmp_path: Path) -> None:
    assert problems_of([1, 2]) == [".: a spec must be a mapping of fields"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("key: [unclosed")
    with pytest.raises(InvalidSpecError, match="not valid YAML"):
        load_experiment(broken)
    with pytest.raises(InvalidSpecError) as missing:
        load_experiment(tmp_path / "missing.yaml")
    assert missing.value.problems == ["file: cannot read it: No such file or directory"]


def test_a_key_written_twice_is_refused_not_silently_overwritten(tmp_path: Path) -> None:
    """YAML forbids a repeated key and PyYAML would keep the last; JSON readers keep the last."""
    twice = tmp_path / "twice.yaml"
    twice.write_text("key: fraud\ncoverage: 0.5\nunit: user_id\ncoverage: 1\n")
    with pytest.raises(InvalidSpecError) as yaml_error:
        load_experiment(twice)
    head, shown, _ = yaml_error.value.problems[0].split("\n")
    assert head.startswith("line 4, column 1: not valid YAML: the key 'coverage' is written twice")
    assert shown.strip() == "coverage: 1"
    nested = tmp_path / "nested.json"
    nested.write_text('{"key": "a", "analysis": {"alpha": 0.05, "alpha": 0.5}}')
    with pytest.raises(InvalidSpecError) as json_error:
        load_experiment(nested)
    assert json_error.value.problems == ["file: not valid JSON: the key 'alpha' is written twice"]


def test_syntax_errors_point_at_line_and_column_with_a_caret(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("key: fraud\nvariants:\n  - name: a\n    model: models:/m/1: x\n")
    with pytest.raises(InvalidSpecError) as yaml_error:
        load_experiment(broken)
    (problem,) = yaml_error.value.problems
    head, shown, caret = problem.split("\n")
    assert head == "line 4, column 23: not valid YAML: mapping values are not allowed here"
    assert shown.strip() == "model: models:/m/1: x"
    assert caret.index("^") == shown.index(": x")
    as_json = tmp_path / "broken.json"
    as_json.write_text('{"key": "a",\n "variants": [}\n')
    with pytest.raises(InvalidSpecError) as json_error:
        load_experiment(as_json)
    head, shown, caret = json_error.value.problems[0].split("\n")
    assert head.startswith("line 2, column 15: not valid JSON: ")
    assert caret.index("^") == shown.index("}")


def test_json_schema_names_the_fields() -> None:
    schema = experiment_json_schema()
    assert {"key", "variants", "weights", "coverage", "namespace"} <= set(schema["properties"])
    assert schema["required"] == ["key", "variants"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "abflow.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_validate_lists_problems_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(base() | {"weights": [0.2, 0.2], "forced": {"u": "x"}}))
    result = _cli("validate", str(EXAMPLE), str(bad))
    assert result.returncode == 1
    assert "✓" in result.stdout
    assert "weights: weights sum to 0.4, expected 1" in result.stderr
    assert "forced.u: unknown variant 'x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_schema() -> None:
    result = _cli("validate", "--schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "abflow experiment"


def test_hashed_strings_are_kept_exactly_as_written() -> None:
    data = base() | {"seed": " seed ", "forced": {" u1": "b"}, "namespace": [" ns", 0, 0.5]}
    spec = parse_experiment(data)
    assert spec.hash_seed == " seed "
    assert spec.forced == {" u1": "b"}
    assert spec.namespace is not None
    assert spec.namespace.name == " ns"


def planned(**changes: Any) -> Any:
    data = base() | {"rollout": {"steps": [{"traffic": 0.1}, {"traffic": 0.4}]}} | changes
    del data["weights"]
    if "weights" in changes:
        data["weights"] = changes["weights"]
    return parse_experiment(data)


def test_a_plan_without_weights_starts_with_everything_on_the_control() -> None:
    three = base()
    del three["weights"]
    three["variants"].append({"name": "c", "model": "file:model.joblib"})
    three["rollout"] = {"challenger": "c", "steps": [{"traffic": 0.2}]}
    spec = parse_experiment(three)
    assert spec.effective_weights == [1.0, 0.0, 0.0]
    assert (spec.challenger_index, challenger_share(spec)) == (2, 0.0)
    assert challenger_share(planned(weights=[0.6, 0.4])) == pytest.approx(0.4)
    assert challenger_share(spec.model_copy(update={"weights": [0.5, 0.3, 0.2]})) is None


def test_rollout_registration_keeps_the_rollout_split_and_refuses_contradictions() -> None:
    assert rollout_registration(planned(), None) == planned()
    with pytest.raises(InvalidSpecError, match="before the rollout has started"):
        rollout_registration(planned(weights=[0.9, 0.1]), None)
    at_step_2 = planned(weights=[0.6, 0.4])
    kept = rollout_registration(planned(name="renamed"), at_step_2)
    assert (kept.name, kept.effective_weights) == ("renamed", [0.6, 0.4])
    with pytest.raises(InvalidSpecError, match="not a position of the rollout plan"):
        rollout_registration(planned(weights=[0.7, 0.3]), at_step_2)
    with pytest.raises(InvalidSpecError, match=r"from 0\.4 to 0\.1"):
        rollout_registration(planned(weights=[0.9, 0.1]), at_step_2)
    for allowed in ([1.0, 0.0], [0.0, 1.0], [0.6, 0.4]):  # rollback, promotion, same step
        assert rollout_registration(planned(weights=allowed), at_step_2).weights == allowed
    for step in ([0.9, 0.1], [0.6, 0.4], [0.0, 1.0]):  # registered again, not started yet
        with pytest.raises(InvalidSpecError, match="before the rollout has started"):
            rollout_registration(planned(weights=step), planned(), is_before_start=True)
    again = rollout_registration(planned(name="again"), planned(), is_before_start=True)
    assert again.effective_weights == [1.0, 0.0]
    other_model = planned().model_copy(update={"variants": [planned().variants[0]] * 2})
    with pytest.raises(InvalidSpecError, match="weights: "):  # new variants: a new rollout
        rollout_registration(planned(weights=[0.6, 0.4]), other_model)
    no_plan = base()
    assert rollout_registration(parse_experiment(no_plan), at_step_2).weights == [0.5, 0.5]


def test_cli_validate_refuses_weights_that_contradict_a_plan(tmp_path: Path) -> None:
    spec = tmp_path / "planned.yaml"
    spec.write_text(json.dumps(base() | {"rollout": {"steps": [{"traffic": 0.1}]}}))
    result = _cli("validate", str(spec))
    assert result.returncode == 1
    assert f"{spec}: 1 problem in spec" in result.stderr
    assert "weights: weights [0.5, 0.5] send traffic to a variant other than the control" in (
        " ".join(result.stderr.split())
    )


def test_a_key_that_is_no_plain_name_is_shown_in_brackets() -> None:
    # found by schemathesis: an extra key " " under monitoring read as "monitoring. : ..."
    problems = problems_of({**base(), "monitoring": {" ": 1, "": 2}})
    assert "monitoring[' ']: Extra inputs are not permitted" in problems
    assert "monitoring['']: Extra inputs are not permitted" in problems


def test_shown_spec_keeps_credentials_out_of_model_references() -> None:
    from abflow.spec import shown_reference, shown_spec

    secret = "http://alice:BACKENDPW@10.0.0.9:9/invocations?api_key=APIKEY#part"
    spec = parse_experiment(
        {"key": "k", "unit": "u", "variants": [
            {"name": "a", "model": "models:/fraud@champion"}, {"name": "b", "model": secret}]}
    )  # fmt: skip
    shown = shown_spec(spec)
    assert [v["model"] for v in shown["variants"]] == [
        "models:/fraud@champion",
        "http://10.0.0.9:9/invocations",
    ]
    assert "BACKENDPW" not in str(shown)
    assert "APIKEY" not in str(shown)
    assert spec.variants[1].model == secret  # the spec itself is unchanged
    assert shown_reference("https://[::1]:8443/v2/models/m/infer") == (
        "https://[::1]:8443/v2/models/m/infer"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"min_duration_hours": float("inf")},
            "min_duration_hours: Input should be a finite number, got inf",
        ),
        ({"name": "\ud800"}, "name: contains a lone surrogate"),
        (
            {"condition": {"score": {"$gt": float("nan")}}},
            "condition.score.$gt: Input should be a finite number, got nan",
        ),
        ({"forced": {"u\x00": "control"}}, "forced: a key contains a NUL character"),
        ({"variants": [{"name": "c\x00", "model": "models:/m/1"}]}, "variants[0].name: contains"),
        (
            {"metrics": [{"name": "c", "kind": "cost", "cost_per_1000": 1e308}]},
            "metrics[0].cost_per_1000: Input should be less than or equal to 1000000000",
        ),
    ],
)
def test_what_the_store_cannot_hold_and_read_back_is_refused(
    change: dict[str, Any], expected: str
) -> None:
    """An infinite number was stored as null and a lone surrogate as JSON no reader takes
    back: after one such spec, listing the store's experiments failed for every experiment."""
    data = base() | change
    assert any(problem.startswith(expected) for problem in problems_of(data)), problems_of(data)
