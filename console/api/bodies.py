"""Request bodies: JSON only (415 otherwise), and JSON the databases can store (400 otherwise)."""
from __future__ import annotations

import json

from flask import request
from webargs.core import missing
from webargs.flaskparser import FlaskParser

from .errors import ApiProblem

JSON_METHODS = {"POST", "PUT", "PATCH"}


def require_json_body() -> None:
    """A body must be JSON: a form post or text is refused (415) rather than read as empty."""
    if request.method in JSON_METHODS and request.get_data(cache=True) and not request.is_json:
        raise ApiProblem(415, "The request body must be JSON: send Content-Type: "
                              "application/json.")


class StrictJsonParser(FlaskParser):
    """webargs' parser, refusing (400) JSON that parses but cannot be stored: strings with
    unpaired surrogates (``"\\ud800"`` is valid JSON escaping, but not Unicode: encoding it
    for the database fails) and nesting too deep for Python's parser."""

    def _raw_load_json(self, req):
        try:
            data = super()._raw_load_json(req)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", "body", 0) from None
        if data is not missing:
            _check_unicode(data)
        return data


def _check_unicode(data) -> None:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise json.JSONDecodeError("a string has an unpaired surrogate escape, "
                                           "\\ud800–\\udfff, which is not Unicode", "body",
                                           0) from None
