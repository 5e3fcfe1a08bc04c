"""The "Add to LinkedIn profile" link of a badge (LinkedIn's add-certification URL and its fields)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode


def add_to_profile_url(
    name: str,
    organization: str,
    issued: datetime,
    url: str,
    credential_id: str,
    expires: datetime | None = None,
) -> str:
    fields: dict[str, str | int] = {
        "startTask": "CERTIFICATION_NAME",
        "name": name,
        "organizationName": organization,
        "issueYear": issued.year,
        "issueMonth": issued.month,
    }
    if expires is not None:
        fields |= {"expirationYear": expires.year, "expirationMonth": expires.month}
    return "https://www.linkedin.com/profile/add?" + urlencode(
        {**fields, "certUrl": url, "certId": credential_id}
    )
