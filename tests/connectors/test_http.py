"""The shared HTTP client: timeouts, User-Agent, retries with backoff, Retry-After, pacing, pagination."""

from __future__ import annotations

import pytest
import requests
import responses

from connectors.http import HttpClient, HttpPolicy, ItemSkipped, PlatformStopped, Retryable, php_params

BASE = "https://lms.example.edu"
POLICY = HttpPolicy(timeout=3.0, attempts=4, backoff_base=0.5, backoff_max=4.0, pace_below=100.0)


def client(sleeps: list[float]) -> HttpClient:
    return HttpClient(BASE, POLICY, headers={"Authorization": "Bearer t"}, sleep=sleeps.append)


@responses.activate
def test_every_request_has_a_timeout_and_a_user_agent() -> None:
    responses.get(f"{BASE}/api/v1/x", json={"ok": True})
    body, _ = client([]).request("GET", f"{BASE}/api/v1/x")
    assert body == {"ok": True}
    sent = responses.calls[0].request
    assert sent.req_kwargs["timeout"] == 3.0
    assert sent.headers["User-Agent"].startswith("lms-badge-bridge/")


@responses.activate
def test_server_errors_timeouts_and_bodies_that_are_not_json_are_retried_with_jittered_backoff() -> None:
    url = f"{BASE}/api/v1/x"
    responses.get(url, status=502, body="Bad gateway")
    responses.get(url, body=requests.ReadTimeout("slow"))
    responses.get(url, body="<b>Notice</b>: undefined index {", content_type="text/html")
    responses.get(url, json=[1, 2])
    sleeps: list[float] = []
    http = client(sleeps)
    body, _ = http.request("GET", url)
    assert body == [1, 2]
    assert (http.calls, http.retries) == (4, 3)
    # Full jitter: each wait is somewhere in [0, min(cap, base * 2**n)].
    assert all(0 <= wait <= cap for wait, cap in zip(sleeps, [0.5, 1.0, 2.0], strict=True))


@responses.activate
def test_retry_after_is_honoured_on_a_429() -> None:
    url = f"{BASE}/api/v1/x"
    responses.get(url, status=429, headers={"Retry-After": "3"})
    responses.get(url, json={})
    sleeps: list[float] = []
    client(sleeps).request("GET", url)
    assert sleeps == [3.0]


@responses.activate
def test_a_request_that_keeps_failing_raises_after_the_last_attempt() -> None:
    url = f"{BASE}/api/v1/x"
    responses.get(url, status=503)
    http = client([])
    with pytest.raises(Retryable, match="server error 503"):
        http.request("GET", url)
    assert http.calls == POLICY.attempts


@responses.activate
def test_other_client_errors_are_not_retried() -> None:
    responses.get(f"{BASE}/api/v1/x", status=404, json={"errors": [{"message": "not found"}]})
    http = client([])
    with pytest.raises(ItemSkipped, match="HTTP 404"):
        http.request("GET", f"{BASE}/api/v1/x")
    assert http.calls == 1


@responses.activate
def test_a_low_rate_budget_slows_the_next_request_down() -> None:
    url = f"{BASE}/api/v1/x"
    responses.get(url, json={}, headers={"x-rate-limit-remaining": "40.0"})  # lower-cased, as Canvas does
    responses.get(url, json={})
    sleeps: list[float] = []
    http = client(sleeps)
    http.request("GET", url)
    http.request("GET", url)
    # (100 - 40) units at 10 units/s: about six seconds before the next request.
    assert len(sleeps) == 1 and 5.5 < sleeps[0] <= 6.0


@responses.activate
def test_pages_follow_the_link_header_until_there_is_no_next() -> None:
    first, second = f"{BASE}/api/v1/items", f"{BASE}/api/v1/items?page=bookmark:abc&per_page=100"
    responses.get(first, json=[1, 2], headers={"Link": f'<{second}>; rel="next", <{first}>; rel="first"'})
    responses.get(second, json=[3], headers={"Link": f'<{first}>; rel="first"'})
    pages = list(client([]).paginate(first, {"per_page": 100}))
    assert [page.items for page in pages] == [[1, 2], [3]]
    assert pages[0].next_url == second and pages[1].next_url is None
    assert responses.calls[1].request.url == second  # the opaque link, as given


@responses.activate
def test_a_next_link_to_another_host_is_refused() -> None:
    responses.get(f"{BASE}/api/v1/items", json=[1], headers={"Link": '<https://evil.test/steal>; rel="next"'})
    with pytest.raises(PlatformStopped, match="off the platform's host"):
        list(client([]).paginate(f"{BASE}/api/v1/items"))
    assert len(responses.calls) == 1


def test_moodle_array_parameters_use_php_brackets() -> None:
    assert php_params({"courseid": 42, "options": [{"name": "onlyactive", "value": True}], "skip": None}) == [
        ("courseid", "42"),
        ("options[0][name]", "onlyactive"),
        ("options[0][value]", "1"),
    ]
