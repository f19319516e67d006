"""A model server URL may carry credentials (user info, an API key in the query): they reach
the server, never the model version that is logged, metric labels or error messages."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from abflow.errors import BackendError
from abflow.serving.backends.http import HttpBackend, redact_url

URL = "https://scorer:s3cret-pw@models.example:8443/invocations?api_key=k3y-s3cret#frag"


def test_redact_url_keeps_only_scheme_host_port_and_path() -> None:
    assert redact_url(URL) == "https://models.example:8443/invocations"
    assert redact_url("http://127.0.0.1:5000/invocations") == "http://127.0.0.1:5000/invocations"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("answer", ["refused", "status_500", "not_json"])
async def test_no_credential_in_version_reference_or_errors(
    answer: str, anyio_backend: str
) -> None:
    seen: list[httpx.URL] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if answer == "refused":
            msg = "connection refused"
            raise httpx.ConnectError(msg, request=request)
        if answer == "status_500":
            return httpx.Response(500, text="boom")
        return httpx.Response(200, text="<html>")

    backend = HttpBackend(URL, transport=httpx.MockTransport(handle))
    with pytest.raises(BackendError) as raised:
        await backend.predict(np.zeros((1, 3)))
    shown = [str(raised.value), backend.version, backend.reference]
    assert not [text for text in shown if "s3cret" in text], shown
    assert backend.version == "https://models.example:8443/invocations"
    # The server itself still receives the credentials it needs.
    assert seen[0].params["api_key"] == "k3y-s3cret"
