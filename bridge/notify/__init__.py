"""Notifications: an outbox row per award and channel, written in the award's own transaction, delivered
after the commit by a sender that retries with backoff and parks what keeps failing."""
