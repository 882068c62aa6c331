"""Domain exceptions. Only `app/api/errors.py` turns them into HTTP responses."""

from __future__ import annotations


class SimSearchError(Exception):
    """Base class; `str(exc)` is a message fit for a client or an operator."""


class InvalidImage(SimSearchError):
    """The upload is not a decodable image (-> 400)."""


class UnsupportedMediaType(SimSearchError):
    """Content type or format outside what we accept (-> 415)."""


class PayloadTooLarge(SimSearchError):
    """Upload bytes or decoded pixel count over the configured limits (-> 413)."""


class InvalidRequest(SimSearchError):
    """A field is well-formed but semantically wrong, e.g. a bbox outside the image (-> 422)."""


class NotFound(SimSearchError):
    """Unknown item id (-> 404)."""


class NotReady(SimSearchError):
    """The service is starting or the model is not loaded (-> 503 with Retry-After)."""


class StoreUnavailable(NotReady):
    """The vector store's server (Milvus) cannot be reached or failed the call (-> 503 with
    Retry-After); the service recovers by itself when it is back."""


class DuplicateScanPending(NotReady):
    """GET /duplicates: the scan of the store is still running (-> 503 with Retry-After); it
    goes on in the background and a later call gets its result."""


class Overloaded(SimSearchError):
    """The inference queue is full (-> 503 with Retry-After)."""


class RequestTimeout(SimSearchError):
    """The request's work did not finish within limits.request_timeout_s (-> 503 with
    Retry-After: the server is busy; the same request can succeed later)."""


class ArtifactMismatch(SimSearchError):
    """The model artifact disagrees with itself, the graph or the store; startup refuses."""


class StoreCorrupt(SimSearchError):
    """A store file cannot be read; the caller rebuilds it from the source of truth."""
