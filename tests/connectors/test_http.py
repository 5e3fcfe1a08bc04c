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


@responses.activate
def test_per_request_headers_and_json_bodies_are_sent_and_not_kept_for_the_next_request() -> None:
    url = f"{BASE}/api/lti/scores"
    responses.post(url, json={})
    responses.get(url, json={})
    http = client([])
    http.request(
        "POST", url, json={"scoreGiven": 1}, headers={"Content-Type": "application/x+json", "X-A": "1"}
    )
    http.request("GET", url)
    sent, then = responses.calls[0].request, responses.calls[1].request
    assert sent.headers["Content-Type"] == "application/x+json" and sent.body == b'{"scoreGiven": 1}'
    assert sent.headers["Authorization"] == "Bearer t"  # the session's headers still apply
    assert "X-A" not in then.headers


@responses.activate
def test_other_hosts_are_refused_unless_the_client_allows_any_origin() -> None:
    responses.get("https://sso.example.net/token", json={"ok": True})
    with pytest.raises(PlatformStopped, match="off the platform's host"):
        client([]).request("GET", "https://sso.example.net/token")
    open_client = HttpClient(BASE, POLICY, sleep=lambda _s: None, any_origin=True)
    assert open_client.request("GET", "https://sso.example.net/token")[0] == {"ok": True}


@responses.activate
def test_pagination_stays_on_the_first_urls_host_even_when_any_origin_is_allowed() -> None:
    first = "https://other.example.edu/items"
    responses.get(first, json=[1], headers={"Link": '<https://evil.test/steal>; rel="next"'})
    open_client = HttpClient(BASE, POLICY, sleep=lambda _s: None, any_origin=True)
    with pytest.raises(PlatformStopped, match="off the platform's host"):
        list(open_client.paginate(first))
    assert [call.request.url for call in responses.calls] == [first]


@responses.activate
def test_retry_false_makes_one_attempt_and_retrying_repeats_a_larger_unit() -> None:
    url = f"{BASE}/api/v1/x"
    responses.get(url, status=503)
    responses.get(url, status=503)
    responses.get(url, json={"ok": True})
    sleeps: list[float] = []
    http = client(sleeps)
    with pytest.raises(Retryable, match="server error 503"):
        http.request("GET", url, retry=False)
    assert http.calls == 1 and sleeps == []
    body, _ = http.retrying()(lambda: http.request("GET", url, retry=False))
    assert body == {"ok": True} and (http.calls, http.retries, len(sleeps)) == (3, 1, 1)


@responses.activate
def test_decode_false_returns_an_empty_answer_without_retrying_it() -> None:
    url = f"{BASE}/api/v1/x"
    responses.post(url, body="")
    http = client([])
    body, response = http.request("POST", url, decode=False)
    assert body is None and response.status_code == 200 and http.calls == 1
