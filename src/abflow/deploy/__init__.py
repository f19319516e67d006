"""Deployment artefacts: Kubernetes manifests for the gateway and the rollout controller, and
values for the Helm chart in deploy/helm/abflow that renders the same objects."""

from __future__ import annotations

from abflow.deploy.helm import helm_values
from abflow.deploy.k8s import K8sOptions, render_manifests, to_yaml

__all__ = ["K8sOptions", "helm_values", "render_manifests", "to_yaml"]
