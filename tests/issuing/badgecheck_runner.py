"""Runs 1EdTech's OB 2.0 validator core (PyPI ``badgecheck``) offline; executed by the badgecheck venv's
Python, never imported by the test suite (that venv has the validator, the project venv does not).

stdin: ``{"cases": [{"name": ..., "input": <URL, JSON or JWS>} | {"name": ..., "file": <baked PNG path>},
with an optional "recipient": {"email": ...}]}``; stdout: one JSON list of
``{"name", "valid", "errors": [...]}``. The validator's ``verify()`` always builds its own JSON-LD document
loader, which would fetch https://w3id.org/openbadges/v2 from the internet; so the report is made from
``verification_store()`` with a loader that answers that context from the copy bundled in the validator
(the recipe in ../shared/reference/openbadges.md §3.2). Badge objects are fetched over real HTTP from the
test's local server.
"""

import json
import sys

import requests
from openbadges.verifier.openbadges_context import OPENBADGES_CONTEXT_V2_DICT, OPENBADGES_CONTEXT_V2_URI
from openbadges.verifier.utils import CachableDocumentLoader
from openbadges.verifier.verifier import DEFAULT_OPTIONS, generate_report, verification_store
from requests.adapters import BaseAdapter

CONTEXTS = {OPENBADGES_CONTEXT_V2_URI: OPENBADGES_CONTEXT_V2_DICT}


class ContextAdapter(BaseAdapter):
    """Answers JSON-LD context URLs from memory; anything else under that host is a 404, not a fetch."""

    def send(self, request, **kwargs):
        response = requests.Response()
        document = CONTEXTS.get(request.url)
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        response.status_code = 200 if document else 404
        response._content = json.dumps(document or {}).encode()
        response.headers["Content-Type"] = "application/ld+json"
        return response

    def close(self):
        return None


def validate(badge_input, recipient):
    session = requests.Session()
    session.mount("https://w3id.org/", ContextAdapter())
    options = dict(
        DEFAULT_OPTIONS,
        use_cache=False,
        cache_backend=None,
        jsonld_options={"documentLoader": CachableDocumentLoader(use_cache=False, session=session)},
    )
    return generate_report(verification_store(badge_input, recipient, options=options), options=options)


def main():
    results = []
    for case in json.load(sys.stdin)["cases"]:
        if "file" in case:
            with open(case["file"], "rb") as handle:
                report = validate(handle, case.get("recipient"))["report"]
        else:
            report = validate(case["input"], case.get("recipient"))["report"]
        errors = [m["result"] for m in report["messages"] if m["messageLevel"] == "ERROR"]
        results.append({"name": case["name"], "valid": report["valid"], "errors": errors})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
