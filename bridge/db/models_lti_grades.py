"""What the tool last sent to each LMS gradebook's "Badge points" column, so that a push sends only
points that changed since (a platform keeps the newest score anyway; re-sending every learner every
minute would spend the platform's rate limit on nothing)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bridge.db.models import Base, UTCDateTime

GRADE_POST_STATUSES = ("posted", "refused")


class LtiGradePost(Base):
    """The points last sent for one LTI user (``sub``) in one context. ``refused``: the platform said no
    (a teacher, a dropped student), so the same points are not offered again until they change."""

    __tablename__ = "lti_grade_posts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["registration_id", "context_id"],
            ["lti_contexts.registration_id", "lti_contexts.context_id"],
        ),
    )

    registration_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    context_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    sub: Mapped[str] = mapped_column(String(255), primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default="posted")
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
