"""Minimal JSON Schemas, written by hand, for the custom resources abflow ships.

``kubernetes-validate`` knows only the core API, so ServiceMonitor, PodMonitor, PrometheusRule (Prometheus
Operator), ScaledObject (KEDA), AnalysisTemplate (Argo Rollouts) and CronWorkflow (Argo
Workflows) are checked here against the fields abflow uses, with their types and required
fields as the projects' CRDs declare them. Every object is closed (``additionalProperties:
false``), so a misspelt or misplaced field is an error. Pod and container parts inside them
are validated separately against the core API (see :func:`core_parts`).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def obj(required: list[str], **properties: Schema) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
STR_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
ANY_OBJECT: Schema = {"type": "object"}  # validated against the core API on its own
DURATION: Schema = {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"}

METADATA = obj(
    ["name"], name=STR, namespace=STR, labels=STR_MAP, annotations=STR_MAP, generateName=STR
)


def resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return obj(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": api_version},
        kind={"const": kind},
        metadata=METADATA,
        spec=spec,
    )


SELECTOR = obj(["matchLabels"], matchLabels=STR_MAP)

SERVICE_MONITOR = resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    obj(
        ["selector", "endpoints"],
        selector=SELECTOR,
        endpoints={
            "type": "array",
            "minItems": 1,
            "items": obj(
                ["port"],
                port=STR,
                path=STR,
                interval=DURATION,
                authorization=obj(
                    ["credentials"],
                    type=STR,
                    credentials=obj(["name", "key"], name=STR, key=STR),
                ),
            ),
        },
    ),
)

POD_MONITOR = resource(
    "monitoring.coreos.com/v1",
    "PodMonitor",
    obj(
        ["selector", "podMetricsEndpoints"],
        selector=SELECTOR,
        podMetricsEndpoints={
            "type": "array",
            "minItems": 1,
            "items": obj(["port"], port=STR, path=STR, interval=DURATION),
        },
    ),
)

RULE = {
    "oneOf": [
        obj(
            ["alert", "expr"],
            alert={"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            expr=STR,
            labels=STR_MAP,
            annotations=STR_MAP,
            **{"for": DURATION},
        ),
        obj(["record", "expr"], record=STR, expr=STR, labels=STR_MAP),
    ]
}

PROMETHEUS_RULE = resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    obj(
        ["groups"],
        groups={
            "type": "array",
            "items": obj(
                ["name", "rules"],
                name=STR,
                interval=DURATION,
                rules={"type": "array", "items": RULE},
            ),
        },
    ),
)

SCALED_OBJECT = resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    obj(
        ["scaleTargetRef", "triggers"],
        scaleTargetRef=obj(["name"], apiVersion=STR, kind=STR, name=STR),
        minReplicaCount={"type": "integer", "minimum": 0},
        maxReplicaCount={"type": "integer", "minimum": 1},
        pollingInterval=INT,
        cooldownPeriod=INT,
        triggers={
            "type": "array",
            "minItems": 1,
            "items": obj(
                ["type", "metadata"],
                type={"enum": ["prometheus", "cpu", "memory"]},
                metricType={"enum": ["Utilization", "AverageValue", "Value"]},
                # KEDA's trigger metadata is a map of strings: a number must be quoted
                metadata=STR_MAP,
            ),
        },
    ),
)

ARGS = {
    "type": "array",
    "items": obj(["name"], name=STR, value=STR),
}

ANALYSIS_TEMPLATE = resource(
    "argoproj.io/v1alpha1",
    "AnalysisTemplate",
    obj(
        ["metrics"],
        args=ARGS,
        metrics={
            "type": "array",
            "minItems": 1,
            "items": obj(
                ["name", "provider"],
                name=STR,
                count=INT,
                interval=DURATION,
                failureLimit=INT,
                inconclusiveLimit=INT,
                provider=obj(["job"], job=obj(["spec"], metadata=ANY_OBJECT, spec=ANY_OBJECT)),
            ),
        },
    ),
)

PARAMETERS = {
    "type": "array",
    "items": obj(["name"], name=STR, value=STR, description=STR),
}

WORKFLOW_TEMPLATE_ITEM = obj(
    ["name"],
    name=STR,
    inputs=obj([], parameters=PARAMETERS),
    container=ANY_OBJECT,
    steps={
        "type": "array",
        "items": {
            "type": "array",
            "items": obj(
                ["name", "template"],
                name=STR,
                template=STR,
                arguments=obj([], parameters=PARAMETERS),
                continueOn=obj([], failed={"type": "boolean"}),
            ),
        },
    },
    activeDeadlineSeconds=INT,
    retryStrategy=obj([], limit=INT, retryPolicy={"enum": ["Always", "OnFailure", "OnError"]}),
)

CRON_WORKFLOW = resource(
    "argoproj.io/v1alpha1",
    "CronWorkflow",
    obj(
        ["workflowSpec"],
        schedules={"type": "array", "minItems": 1, "items": STR},
        schedule=STR,
        timezone=STR,
        concurrencyPolicy={"enum": ["Allow", "Forbid", "Replace"]},
        startingDeadlineSeconds=INT,
        successfulJobsHistoryLimit=INT,
        failedJobsHistoryLimit=INT,
        workflowSpec=obj(
            ["entrypoint", "templates"],
            entrypoint=STR,
            arguments=obj([], parameters=PARAMETERS),
            serviceAccountName=STR,
            securityContext=ANY_OBJECT,
            activeDeadlineSeconds=INT,
            volumes={"type": "array", "items": ANY_OBJECT},
            ttlStrategy=obj(
                [], secondsAfterCompletion=INT, secondsAfterSuccess=INT, secondsAfterFailure=INT
            ),
            podGC=obj(["strategy"], strategy=STR),
            templates={"type": "array", "minItems": 1, "items": WORKFLOW_TEMPLATE_ITEM},
        ),
    ),
)

SCHEMAS: dict[str, Schema] = {
    "ServiceMonitor": SERVICE_MONITOR,
    "PodMonitor": POD_MONITOR,
    "PrometheusRule": PROMETHEUS_RULE,
    "ScaledObject": SCALED_OBJECT,
    "AnalysisTemplate": ANALYSIS_TEMPLATE,
    "CronWorkflow": CRON_WORKFLOW,
}


def core_parts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Core API objects embedded in a custom resource, as manifests kubernetes-validate takes.

    An AnalysisTemplate's job provider holds a batch/v1 JobSpec; each container of a
    CronWorkflow's templates is a core/v1 Container (checked as the only container of a Pod,
    with the workflow's volumes and security context).
    """
    meta = {"name": "embedded"}
    if manifest["kind"] == "AnalysisTemplate":
        return [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": meta,
                "spec": metric["provider"]["job"]["spec"],
            }
            for metric in manifest["spec"]["metrics"]
        ]
    if manifest["kind"] == "CronWorkflow":
        spec = manifest["spec"]["workflowSpec"]
        pod_extras = {k: spec[k] for k in ("volumes", "securityContext") if k in spec}
        return [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"containers": [template["container"]], **pod_extras},
            }
            for template in spec["templates"]
            if "container" in template
        ]
    return []
