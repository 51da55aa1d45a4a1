"""Fixtures for the web pages: an in-process node with the development sign-in on, and a client for it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.core.db import claim_database, make_engine
from registry.core.keys import KeyRing
from registry.core.settings import Settings, load_settings

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def ui_settings(tmp_path: Path, migrated_db_url: str) -> Settings:
    """A regional node on a loopback base URL with the development sign-in on."""
    return load_settings(
        data_dir=tmp_path,
        node_id="rcc-test",
        name="Test RCC",
        database_url=migrated_db_url,
        base_url="http://127.0.0.1:8000",
        ui_dev_signin=True,
    )


@pytest.fixture
def ui_app(ui_settings: Settings, keys: KeyRing) -> Iterator[FastAPI]:
    engine = make_engine(ui_settings.effective_database_url)
    claim_database(engine, ui_settings.node_id)
    yield create_app(ui_settings, keys=keys, engine=engine)
    engine.dispose()


@pytest.fixture
def browser_client(ui_app: FastAPI) -> Iterator[TestClient]:
    """A TestClient that keeps cookies like a browser and does not follow redirects (tests look at them)."""
    with TestClient(ui_app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def dev_sign_in(client: TestClient, role: str, next_page: str = "/ui/") -> None:
    """Sign ``client`` in through the development sign-in form, as a browser would."""
    token = csrf_of(client.get("/ui/sign-in").text)
    response = client.post("/ui/sign-in/dev", data={"csrf_token": token, "role": role, "next": next_page})
    assert response.status_code == 303, response.text
