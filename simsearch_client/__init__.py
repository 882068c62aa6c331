"""A typed Python client for the image-similarity search service, and a CLI over it
(`python -m simsearch_client --help`). Needs only httpx: no server dependencies."""

from simsearch_client.client import (
    ApiError,
    Duplicate,
    DuplicateGroup,
    DuplicatePage,
    Hit,
    IndexResult,
    Item,
    ItemPage,
    SearchResult,
    SimSearchClient,
)

__all__ = [
    "ApiError",
    "Duplicate",
    "DuplicateGroup",
    "DuplicatePage",
    "Hit",
    "IndexResult",
    "Item",
    "ItemPage",
    "SearchResult",
    "SimSearchClient",
]
