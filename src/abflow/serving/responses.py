"""JSON responses serialised by orjson straight to bytes (no response-model round trip)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["json_response"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A ``application/json`` response; numpy values serialise as plain numbers."""
    return Response(
        orjson.dumps(body, option=_OPTIONS),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
