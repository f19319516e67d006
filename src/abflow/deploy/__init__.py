"""Deployment artefacts: Kubernetes manifests for the gateway and the rollout controller."""

from __future__ import annotations

from abflow.deploy.k8s import K8sOptions, render_manifests, to_yaml

__all__ = ["K8sOptions", "render_manifests", "to_yaml"]
