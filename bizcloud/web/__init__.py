"""The FastAPI application: REST under /api/v1, OpenAPI, metrics."""
