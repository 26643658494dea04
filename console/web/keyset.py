"""Keyset pages for the console's lists that are not jobs: ``console/jobs/keyset.py``, beneath
both doors since the API's audit list pages the same way."""
from ..jobs.keyset import BadCursor, Page, decode_cursor, encode_cursor, keyset_page

__all__ = ["BadCursor", "Page", "decode_cursor", "encode_cursor", "keyset_page"]
