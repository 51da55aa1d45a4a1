"""FastAPI's own OpenTelemetry layer is off: nothing a request carries can leave the node through it, whatever
provider the process has configured, and no request asks for one."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import _logs, metrics, trace


def _consulted(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("a request looked for an OpenTelemetry provider")


class TestTelemetry:
    def test_no_request_consults_an_opentelemetry_provider(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        getters = ((trace, "get_tracer_provider"), (metrics, "get_meter_provider"), (_logs, "get_logger_provider"))
        for module, getter in getters:
            monkeypatch.setattr(module, getter, _consulted)
        assert client.get("/healthz").status_code == 200
        refused = client.post("/v1/capacity/search", json={"name": "Jane Doe"})  # refused: no token
        assert refused.status_code == 401
