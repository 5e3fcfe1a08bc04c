"""What an LTI launch's roles let its user do here: learner, instructor (of the launch's course),
administrator. From the LIS v2 role URIs (LTI 1.3 core, appendix A.2), which platforms send in full."""

from __future__ import annotations

from collections.abc import Iterable

_LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
LEARNER, INSTRUCTOR, ADMINISTRATOR = "learner", "instructor", "administrator"

# Context (course) roles: membership#Role and its sub-roles (membership/Role#SubRole).
_COURSE_TEACHING = {"Instructor", "ContentDeveloper", "Administrator", "Manager"}
_COURSE_LEARNING = {"Learner"}
# System and institution roles that administer the whole tool. Institution roles such as
# institution/person#Instructor (which Canvas sends for every teacher) say nothing about this course.
_ADMINISTRATORS = {
    f"{_LIS}system/person#Administrator",
    f"{_LIS}system/person#SysAdmin",
    f"{_LIS}institution/person#Administrator",
}


def _membership_role(uri: str) -> str | None:
    """``Instructor`` for ``…/membership#Instructor`` or ``…/membership/Instructor#TeachingAssistant``;
    the short form (``Instructor``) that LTI 1.3 deprecates but still allows, too."""
    if uri.startswith(f"{_LIS}membership/"):
        return uri[len(f"{_LIS}membership/") :].split("#", 1)[0]
    if uri.startswith(f"{_LIS}membership#"):
        return uri.split("#", 1)[1]
    if "/" not in uri and "#" not in uri:
        return uri
    return None


def bridge_roles(uris: Iterable[str]) -> list[str]:
    """The bridge's roles for a launch's role URIs, in a fixed order; a user may hold several."""
    roles: set[str] = set()
    for uri in uris:
        if not isinstance(uri, str):
            continue
        if uri in _ADMINISTRATORS:
            roles.add(ADMINISTRATOR)
        membership = _membership_role(uri)
        if membership in _COURSE_TEACHING:
            roles.add(INSTRUCTOR)
        elif membership in _COURSE_LEARNING:
            roles.add(LEARNER)
    return [role for role in (LEARNER, INSTRUCTOR, ADMINISTRATOR) if role in roles]
