"""Against a real ``rcc-node serve`` with two worker processes: one ETag, many concurrent PUTs, one winner."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.registry.publications import documents
from tests.registry.publications.documents import edited
from tests.support.databases import fresh_database
from tests.support.nodes import init_node, served
from tests.support.tokens import access_token

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

NODE = "rcc-race"


def test_concurrent_puts_across_workers_let_exactly_one_win(tmp_path: Path) -> None:
    with fresh_database(tmp_path) as url:
        spec = init_node(tmp_path, NODE, database_url=url if url.startswith("postgresql") else None)
        with served(spec, workers=2) as node:
            headers = {"Authorization": f"Bearer {access_token(node, 'publisher')}"}
            with httpx.Client(base_url=node.base_url, headers=headers, timeout=120) as client:
                created = client.post("/v1/publications", json={"kind": "fee-cap", "document": documents.fee_cap(NODE)})
                assert created.status_code == 201, created.text
                etag, url_path = created.headers["etag"], f"/v1/publications/{created.json()['id']}"

                writers = 12
                barrier = threading.Barrier(writers)
                statuses: list[int] = []
                lock = threading.Lock()

                def put(fee: int) -> None:
                    document = edited(documents.fee_cap(NODE), "/caps/0/max_weekly_fee", fee)
                    barrier.wait()
                    status = client.put(url_path, json={"document": document}, headers={"If-Match": etag}).status_code
                    with lock:
                        statuses.append(status)

                threads = [threading.Thread(target=put, args=(5000 + i,)) for i in range(writers)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert sorted(statuses) == [200] + [412] * (writers - 1)
                history = client.get(f"{url_path}/versions").json()
                assert [item["version"] for item in history] == [1, 2]
                latest = client.get(url_path).json()
                assert latest["verification"]["ok"] is True
