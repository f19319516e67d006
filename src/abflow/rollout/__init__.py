"""Deciding from analysis results: deploy gates for CI (ramps and promotion build on them)."""

from __future__ import annotations

from abflow.rollout.gate import GateCheck, GatePolicy, GateResult, Requirement, evaluate_gate

__all__ = ["GateCheck", "GatePolicy", "GateResult", "Requirement", "evaluate_gate"]
