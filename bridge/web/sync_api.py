"""``GET /api/v1/sync/runs``: the record of every LMS sync, the latest first."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify, request

from bridge.services.sync import SyncService
from bridge.web.access import authorise
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.inputs import query_int

sync_api = Blueprint("sync_api", __name__, url_prefix="/api/v1/sync")


@sync_api.get("/runs")
def list_runs() -> Response:
    authorise(write=False)
    context = services()
    platform = request.args.get("platform")
    if platform is not None and context.settings.platform(platform) is None:
        raise ApiError(404, "unknown_platform", f"platform: {platform!r} is not configured")
    runs = SyncService(context.database, context.settings, context.connectors).runs(
        platform, query_int("limit", 50, maximum=500)
    )
    return jsonify(runs=[asdict(run) for run in runs])
