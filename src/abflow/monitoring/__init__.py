"""Observability: Prometheus metrics and OpenTelemetry tracing for the gateway."""
