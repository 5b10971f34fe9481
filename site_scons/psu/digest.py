"""The one text hash of the front end: every hash in a manifest is a SHA-256 of text."""
import hashlib


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()
