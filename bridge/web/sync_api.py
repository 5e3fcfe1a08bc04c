"""``GET /api/v1/sync/runs``: the record of every LMS sync, the latest first, paged by ``cursor``."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify, request

from bridge.services.sync import SyncService
from bridge.web.access import needs, platform_filter
from bridge.web.context import services
from bridge.web.errors import ApiError
from bridge.web.openapi import documented
from bridge.web.paging import keyset, next_cursor
from bridge.web.responses import RunsOut
from bridge.web.schemas import SyncRunsQuery

sync_api = Blueprint("sync_api", __name__, url_prefix="/api/v1/sync")


@sync_api.get("/runs")
@needs("read")
@documented(answers={200: RunsOut}, query=SyncRunsQuery)
def list_runs() -> Response:
    context = services()
    platform = platform_filter(request.args.get("platform"))
    if platform is not None and context.settings.platform(platform) is None:
        raise ApiError(404, "unknown_platform", f"platform: {platform!r} is not configured")
    page_asked = keyset("sync-runs", limit=50, maximum=500)
    page = SyncService(context.database, context.settings, context.connectors).runs_page(platform, page_asked)
    return jsonify(
        runs=[asdict(run) for run in page.rows], next_cursor=next_cursor("sync-runs", page, page_asked)
    )
