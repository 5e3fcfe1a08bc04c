"""LMS Badge Bridge: learning events from Moodle and Canvas in, verifiable badges out."""

__version__ = "0.1.0"
