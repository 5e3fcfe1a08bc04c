"""Operations endpoints: /healthz for load balancers, /metrics for Prometheus."""

from datetime import timedelta
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import update

from bridge.app import create_app
from bridge.clock import utcnow
from bridge.db.engine import Database
from bridge.db.models import Event
from bridge.worker import Worker
from tests.conftest import make_settings
from tests.helpers import learning_event, store


def test_healthy_with_database_and_queue_figures(client: FlaskClient, database: Database) -> None:
    store(database, learning_event("a"))
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["queue"]["pending"] == 1 and body["queue"]["failed"] == 0


def test_unhealthy_when_the_worker_lags(client: FlaskClient, database: Database) -> None:
    store(database, learning_event("a"))
    with database.write() as session:
        session.execute(update(Event).values(next_attempt_at=utcnow() - timedelta(hours=1)))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unhealthy"
    assert response.get_json()["queue"]["lag_seconds"] >= 3600


def test_events_backing_off_do_not_count_as_lag(client: FlaskClient, database: Database) -> None:
    store(database, learning_event("a"))
    with database.write() as session:
        session.execute(update(Event).values(next_attempt_at=utcnow() + timedelta(hours=1)))
    assert client.get("/healthz").get_json()["queue"]["lag_seconds"] == 0


def test_unhealthy_when_the_database_is_unreachable(tmp_path: Path, database: Database) -> None:
    settings = make_settings("postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path)
    unreachable = Database(settings.effective_database_url)
    client = create_app(settings, unreachable).test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unhealthy", "database": "unreachable"}
    assert client.get("/metrics").status_code == 200  # still scrapeable, without the queue gauges


def test_metrics_count_events_awards_and_requests(
    client: FlaskClient, auth: dict[str, str], database: Database
) -> None:
    from bridge.settings import Settings

    event = {"platform": "demo", "event_key": "m1", "kind": "login", "learner": "7"}
    client.post("/api/v1/events", json=event, headers=auth)
    client.post("/api/v1/events", json=event, headers=auth)
    settings: Settings = client.application.extensions["bridge"].settings
    Worker(database, settings).run_once()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bridge_events_received_total{outcome="accepted",platform="demo"}' in text
    assert 'bridge_events_received_total{outcome="duplicate",platform="demo"}' in text
    assert 'bridge_awards_total{badge="welcome"}' in text
    assert "bridge_events_processed_total" in text
    assert "bridge_queue_pending 0.0" in text
    assert 'bridge_http_request_seconds_count{endpoint="/api/v1/events",method="POST",status="202"}' in text
