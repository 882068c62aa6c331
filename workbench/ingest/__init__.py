"""Bulk ingest: shard jobs embed photos into Parquet parts; loaders write them to a store."""
