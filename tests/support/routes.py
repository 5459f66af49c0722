"""Every HTTP route of the app, as `function_app.py` declares them (relative to `/api`): what
the OpenAPI document must describe and what the HTTP fuzzer must cover."""

GATEWAY_ROUTES = frozenset(
    {
        "/openai/deployments/{deployment}/chat/completions",
        "/openai/deployments/{deployment}/embeddings",
        "/openai/v1/chat/completions",
        "/openai/v1/embeddings",
        "/v1/chat/completions",
        "/v1/embeddings",
        *(
            f"{prefix}/responses{tail}"
            for prefix in ("/openai/v1", "/openai", "/v1")
            for tail in (
                "",
                "/{response_id}",
                "/{response_id}/input_items",
                "/{response_id}/cancel",
            )
        ),
    }
)
# The team registry: admin level (the host's master key).
TEAM_ROUTES = frozenset(
    {"/teams", "/teams/{team_id}", "/teams/{team_id}/keys", "/teams/{team_id}/keys/{key_id}"}
)
ROUTES = frozenset(
    {
        "/chat",
        "/usage",
        "/usage/all",
        "/health",
        "/health/details",
        "/openapi.json",
        "/jobs/embeddings",
        "/jobs/classifications",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        *GATEWAY_ROUTES,
        *TEAM_ROUTES,
    }
)
