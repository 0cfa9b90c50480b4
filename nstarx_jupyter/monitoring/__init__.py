"""Watching deployments: live latency charts and load tests (drift and A/B statistics later)."""
