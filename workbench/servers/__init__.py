"""Servers the tests and benchmarks start: a local Milvus, a docker compose project."""
