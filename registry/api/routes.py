"""``add_routes``: the one function the node calls to mount the registry."""

from __future__ import annotations

from aiohttp import web

from registry.api import (
    bulk,
    delegations,
    handles,
    operators,
    sessions,
    prefixes,
    records,
    search,
    sharing,
    templates,
)
from registry.api.common import REGISTRY, RegistryContext


def add_routes(app: web.Application, ctx: RegistryContext) -> None:
    app[REGISTRY] = ctx
    app["www_authenticate"] = sessions.challenge_header   # (resolver/http/app.py, on a 401)
    r = app.router
    r.add_put(r"/api/handles/{handle:[\s\S]+}", handles.put_handle)
    r.add_delete(r"/api/handles/{handle:[\s\S]+}", handles.delete_handle)
    r.add_get("/api/handles", handles.list_prefix_handles)
    r.add_get("/api/prefixes", prefixes.get_prefixes)
    r.add_post("/api/prefixes", prefixes.post_prefix)
    r.add_post("/api/prefixes/{prefix}/owner", prefixes.post_prefix_owner)
    r.add_post("/api/bulk", bulk.bulk_register)
    r.add_get("/api/operators", operators.get_operators)
    r.add_post("/api/operators", operators.post_operator)
    r.add_post("/api/operators/{name}/secret", operators.post_secret)
    r.add_post("/api/operators/{name}/keys", sessions.post_key)
    r.add_post("/api/sessions", sessions.post_session)
    for method in ("GET", "PUT", "POST", "DELETE"):
        r.add_route(method, "/api/sessions/this", sessions.this_session)
    r.add_post("/api/operators/{name}/{state:disable|enable}", operators.post_operator_state)
    r.add_post("/api/tokens", operators.post_token)
    r.add_get("/api/tokens", operators.get_tokens)
    r.add_delete("/api/tokens/{token_id}", operators.delete_token)
    r.add_get("/api/audit", operators.get_audit)
    r.add_get("/hrls/handles", search.hrls_search)   # reverse lookup (pyhandle search_handle)
    r.add_get("/hrls/handles/", search.hrls_search)
    r.add_get("/api/delegations", delegations.get_delegations)
    r.add_post("/api/delegations", delegations.post_delegation)
    r.add_delete("/api/delegations/{prefix}", delegations.delete_delegation)
    r.add_put("/api/prefixes/{prefix}", records.put_prefix)
    r.add_post("/api/templates", templates.post_template)
    r.add_get("/api/templates", templates.get_templates)
    r.add_post("/api/templates/publish", templates.post_publish)
    r.add_post("/api/templates/retire", templates.post_retire)
    r.add_get("/api/templates/check", templates.get_check)
    r.add_get(r"/api/templates/{handle:[\s\S]+}", templates.get_template)
    r.add_get(r"/api/schemas/{handle:[\s\S]+}", templates.get_schema)
    r.add_post(r"/api/lifecycle/{handle:[\s\S]+}", records.post_lifecycle)
    r.add_get("/api/lookup", records.get_lookup)
    r.add_get("/api/records", records.get_records)
    r.add_post("/api/readers", sharing.post_reader)
    r.add_get("/api/readers", sharing.get_readers)
    r.add_delete("/api/readers/{name}", sharing.delete_reader)
    r.add_post("/api/groups", sharing.post_group)
    r.add_get("/api/groups", sharing.get_groups)
    r.add_patch("/api/groups/{name}", sharing.patch_group)
    r.add_post("/api/grants", sharing.post_grant)
    r.add_get("/api/grants", sharing.get_grants)
    r.add_delete("/api/grants/{grant_id}", sharing.delete_grant)
    r.add_get("/api/stats", sharing.get_stats)
    r.add_get("/api/stats/resolutions", sharing.get_resolution_stats)
    r.add_post("/api/stats/reports", sharing.post_usage_report)
    r.add_put(r"/api/readlogs/{scope:[\s\S]+}", sharing.put_readlog)
    r.add_get("/api/reads", sharing.get_reads)
