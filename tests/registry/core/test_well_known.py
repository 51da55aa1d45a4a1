from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from tests.support import jose


class TestDescriptor:
    def test_descriptor_is_signed_by_a_key_in_its_own_jwks(self, client: TestClient) -> None:
        body = client.get("/.well-known/rcc-node").json()
        descriptor = body["descriptor"]
        jwks = client.get("/.well-known/jwks.json").json()
        assert descriptor["jwks"] == jwks
        header = jose.verify_detached(descriptor, body["signature"], jwks, "rcc-node+jws")
        assert header["kid"] == jwks["keys"][0]["kid"] == jose.thumbprint(jwks["keys"][0])
        assert descriptor["node_id"] == "rcc-test"
        assert descriptor["region_code"] == "E12000008"
        assert "capacity.vacancies" in descriptor["datasets"]

    @pytest.mark.parametrize("field", ["node_id", "base_url", "datasets", "issued_at"])
    def test_a_changed_descriptor_fails_verification(self, client: TestClient, field: str) -> None:
        body = client.get("/.well-known/rcc-node").json()
        altered = copy.deepcopy(body["descriptor"])
        altered[field] = ["x"] if field == "datasets" else altered[field] + "x"
        with pytest.raises(AssertionError):
            jose.verify_detached(altered, body["signature"], altered["jwks"], "rcc-node+jws")


class TestHealth:
    def test_healthz_answers(self, client: TestClient) -> None:
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_readyz_reports_database_and_key(self, client: TestClient) -> None:
        response = client.get("/readyz")
        assert response.status_code == 200
        checks = response.json()["checks"]
        assert checks["database"]["ok"] and checks["signing_key"]["ok"]

    def test_readyz_is_503_on_an_unmigrated_database(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        settings = load_settings(data_dir=tmp_path, database_url=url)
        engine = make_engine(url)
        try:
            with TestClient(create_app(settings, keys=KeyRing.generate(), engine=engine)) as client:
                response = client.get("/readyz")
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert "database" in response.json()["detail"]
            assert response.json()["checks"]["database"]["ok"] is False
        finally:
            engine.dispose()

    def test_readyz_is_503_when_the_database_is_unreachable(self, tmp_path) -> None:
        url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
        settings = load_settings(data_dir=tmp_path, database_url=url)
        engine = make_engine(url)
        with TestClient(create_app(settings, keys=KeyRing.generate(), engine=engine)) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"]["detail"].startswith("unreachable")
