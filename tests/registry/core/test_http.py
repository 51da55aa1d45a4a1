"""Request ids: unique, sane, and drawn afresh by a forked worker."""

from __future__ import annotations

import pytest

from registry.core import http


class TestRequestIds:
    def test_ids_are_unique_url_safe_and_22_characters(self) -> None:
        ids = [http.new_request_id() for _ in range(1000)]
        assert len(set(ids)) == len(ids)
        assert all(len(i) == 22 and http._SANE_REQUEST_ID.match(i) for i in ids)

    def test_a_forked_worker_draws_its_own_prefix(self, monkeypatch: pytest.MonkeyPatch) -> None:
        parent = http.new_request_id()
        monkeypatch.setattr(http.os, "getpid", lambda: -1)
        child = http.new_request_id()
        assert child[:12] != parent[:12]
