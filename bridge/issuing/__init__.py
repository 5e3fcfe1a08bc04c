"""Issuing Open Badges: signing keys, signatures, baked images, and the documents served for awards."""
