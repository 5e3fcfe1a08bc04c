"""The domain: plain Python, no Flask, no database, no I/O. Most unit tests live here."""
