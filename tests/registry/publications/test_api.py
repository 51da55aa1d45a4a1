"""The register over HTTP: publish, validation paths, ETags, history, diff, withdrawal, roles, schemas, signatures."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from registry.core.node import Node
from registry.core.signing import TYP_PUBLICATION, canonical, sha256_hex
from tests.registry.publications import documents
from tests.registry.publications.documents import DELETE, edited
from tests.registry.publications.test_patch import apply_patch
from tests.support.jose import verify_detached

pytestmark = pytest.mark.postgres


def publish(client: TestClient, headers: dict[str, str], kind: str, document: dict[str, Any], **extra: Any) -> Any:
    response = client.post("/v1/publications", json={"kind": kind, "document": document, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response


def signed_statement(body: dict[str, Any]) -> dict[str, Any]:
    """What the README says the signature covers, rebuilt from the served members."""
    names = ["node_id", "id", "kind", "version", "state", "published_at", "schema", "document"]
    statement = {name: body[name] for name in names}
    if body.get("reason") is not None:
        statement["reason"] = body["reason"]
    return statement


class TestPublish:
    @pytest.mark.parametrize("kind", sorted(documents.VALID))
    def test_valid_document_is_stored_as_signed_version_one(
        self, client: TestClient, publisher: dict[str, str], kind: str
    ) -> None:
        document = documents.VALID[kind]()
        response = publish(client, publisher, kind, document)
        body = response.json()
        assert body["version"] == 1 and body["kind"] == kind and body["state"] == "published"
        assert body["document"] == document
        assert response.headers["etag"] == body["etag"]
        assert response.headers["location"] == f"/v1/publications/{body['id']}/versions/1"
        assert len(body["sha256"]) == 64 and body["synthetic"] is True
        jwks = client.get("/.well-known/jwks.json").json()
        verify_detached(signed_statement(body), body["signature"], jwks, TYP_PUBLICATION)

    def test_chosen_id_is_kept_and_cannot_be_taken_twice(self, client: TestClient, publisher: dict[str, str]) -> None:
        assert publish(client, publisher, "fee-cap", documents.fee_cap(), id="se-caps").json()["id"] == "se-caps"
        again = client.post(
            "/v1/publications",
            json={"kind": "fee-cap", "document": documents.fee_cap(), "id": "se-caps"},
            headers=publisher,
        )
        assert again.status_code == 409
        assert again.json()["code"] == "publication-exists"

    @pytest.mark.parametrize(
        ("kind", "pointer", "value", "expected_path"),
        [
            ("fee-cap", "/caps", DELETE, "/document/caps"),
            ("fee-cap", "/currency", "EUR", "/document/currency"),
            ("fee-cap", "/caps/0/max_weekly_fee", -1, "/document/caps/0/max_weekly_fee"),
            ("fee-cap", "/caps/0/max_weekly_fee", 5500.001, "/document/caps/0/max_weekly_fee"),
            ("fee-cap", "/caps/1/need_level", "standard", "/document/caps/1"),
            (
                "fee-cap",
                "/covers",
                {"region_code": "E12000008", "la_codes": ["E08000003"]},
                "/document/covers/la_codes/0",
            ),
            ("fee-cap", "/effective_to", "2025-03-31", "/document/effective_to"),
            ("fee-cap", "/owner", "rcc-elsewhere", "/document/owner"),
            ("framework", "/procurement_route", "tender", "/document/procurement_route"),
            ("framework", "/lots", [], "/document/lots"),
            ("framework", "/lots/0/providers/0/urn", "12345", "/document/lots/0/providers/0/urn"),
            ("framework", "/lots/0/age_bands/0/max_age", 7, None),
            (
                "framework",
                "/lots/0/providers/0/rate_card/1/need_level",
                "complex",
                "/document/lots/0/providers/0/rate_card/1/need_level",
            ),
            ("placement-protocol", "/notification_duties/0/timing/working_days", 61, None),
            ("placement-protocol", "/notification_duties/1/notify", "mayor", "/document/notification_duties/1/notify"),
            ("placement-protocol", "/parties/las/0", "E10999999", "/document/parties/las/0"),
            ("placement-protocol", "/distance_placements", DELETE, "/document/distance_placements"),
            ("placement-protocol", "/unexpected", "x", "/document/unexpected"),
        ],
    )
    def test_invalid_document_is_refused_naming_the_failing_path(
        self,
        client: TestClient,
        publisher: dict[str, str],
        kind: str,
        pointer: str,
        value: Any,
        expected_path: str | None,
    ) -> None:
        document = edited(documents.VALID[kind](), pointer, value)
        response = client.post("/v1/publications", json={"kind": kind, "document": document}, headers=publisher)
        assert response.status_code == 422, response.text
        body = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        paths = [error["path"] for error in body["errors"]]
        assert paths == [expected_path or "/document" + pointer]
        assert client.get("/v1/publications", headers=publisher).json()["count"] == 0

    def test_every_failing_path_is_named_at_once(self, client: TestClient, publisher: dict[str, str]) -> None:
        document = edited(edited(documents.fee_cap(), "/currency", "EUR"), "/caps/2/need_level", "urgent")
        response = client.post("/v1/publications", json={"kind": "fee-cap", "document": document}, headers=publisher)
        assert [e["path"] for e in response.json()["errors"]] == ["/document/caps/2/need_level", "/document/currency"]

    @pytest.mark.parametrize(
        ("body", "path"),
        [
            ({"kind": "memo", "document": {}}, "/kind"),
            ({"kind": "fee-cap", "document": [1]}, "/document"),
            ({"kind": "fee-cap"}, "/document"),
            ({"kind": "fee-cap", "document": {}, "extra": 1}, "/extra"),
            ({"kind": "fee-cap", "document": {}, "id": "-bad"}, "/id"),
        ],
    )
    def test_malformed_body_is_refused(
        self, client: TestClient, publisher: dict[str, str], body: dict[str, Any], path: str
    ) -> None:
        response = client.post("/v1/publications", json=body, headers=publisher)
        assert response.status_code == 422
        assert path in [error["path"] for error in response.json()["errors"]]

    def test_not_json_is_a_400(self, client: TestClient, publisher: dict[str, str]) -> None:
        response = client.post(
            "/v1/publications", content=b"{nope", headers={**publisher, "content-type": "application/json"}
        )
        assert response.status_code == 400


class TestRoles:
    def test_reader_may_read_but_not_publish(
        self, client: TestClient, publisher: dict[str, str], reader: dict[str, str]
    ) -> None:
        created = publish(client, publisher, "fee-cap", documents.fee_cap()).json()
        refused = client.post(
            "/v1/publications", json={"kind": "fee-cap", "document": documents.fee_cap()}, headers=reader
        )
        assert refused.status_code == 403
        assert client.get(f"/v1/publications/{created['id']}", headers=reader).status_code == 200
        put = client.put(
            f"/v1/publications/{created['id']}",
            json={"document": documents.fee_cap()},
            headers={**reader, "If-Match": created["etag"]},
        )
        assert put.status_code == 403

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("get", "/v1/publications"),
            ("get", "/v1/publications/x"),
            ("get", "/v1/schemas"),
            ("get", "/v1/schemas/fee-cap"),
            ("get", "/v1/compare/placement-protocols"),
            ("post", "/v1/publications"),
        ],
    )
    def test_no_token_is_a_401(self, client: TestClient, method: str, path: str) -> None:
        assert client.request(method, path).status_code == 401


class TestUpdate:
    def test_put_with_current_etag_makes_the_next_version(self, client: TestClient, publisher: dict[str, str]) -> None:
        first = publish(client, publisher, "fee-cap", documents.fee_cap()).json()
        changed = edited(documents.fee_cap(), "/caps/0/max_weekly_fee", 5600)
        response = client.put(
            f"/v1/publications/{first['id']}",
            json={"document": changed},
            headers={**publisher, "If-Match": first["etag"]},
        )
        assert response.status_code == 200, response.text
        second = response.json()
        assert second["version"] == 2 and second["etag"] != first["etag"]
        assert client.get(f"/v1/publications/{first['id']}/versions/1", headers=publisher).json()["document"] == (
            documents.fee_cap()
        )
        latest = client.get(f"/v1/publications/{first['id']}", headers=publisher)
        assert latest.json()["version"] == 2 and latest.headers["etag"] == second["etag"]

    def test_stale_etag_is_a_412_and_missing_etag_a_428(self, client: TestClient, publisher: dict[str, str]) -> None:
        first = publish(client, publisher, "fee-cap", documents.fee_cap()).json()
        url = f"/v1/publications/{first['id']}"
        assert client.put(url, json={"document": documents.fee_cap()}, headers={**publisher, "If-Match": first["etag"]})
        stale = client.put(
            url, json={"document": documents.fee_cap()}, headers={**publisher, "If-Match": first["etag"]}
        )
        assert stale.status_code == 412
        assert stale.json()["current_etag"] == client.get(url, headers=publisher).json()["etag"]
        missing = client.put(url, json={"document": documents.fee_cap()}, headers=publisher)
        assert missing.status_code == 428
        weak = client.put(
            url, json={"document": documents.fee_cap()}, headers={**publisher, "If-Match": "W/" + first["etag"]}
        )
        assert weak.status_code == 412

    def test_update_is_validated_and_keeps_its_kind(self, client: TestClient, publisher: dict[str, str]) -> None:
        first = publish(client, publisher, "fee-cap", documents.fee_cap()).json()
        headers = {**publisher, "If-Match": first["etag"]}
        url = f"/v1/publications/{first['id']}"
        bad = client.put(url, json={"document": edited(documents.fee_cap(), "/currency", "EUR")}, headers=headers)
        assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "/document/currency"
        other_kind = client.put(url, json={"kind": "framework", "document": documents.framework()}, headers=headers)
        assert other_kind.status_code == 422 and other_kind.json()["errors"][0]["path"] == "/kind"
        assert client.get(url, headers=publisher).json()["version"] == 1

    def test_unknown_publication_is_a_404(self, client: TestClient, publisher: dict[str, str]) -> None:
        response = client.put(
            "/v1/publications/nope", json={"document": documents.fee_cap()}, headers={**publisher, "If-Match": '"x"'}
        )
        assert response.status_code == 404
        assert client.get("/v1/publications/nope/versions/1", headers=publisher).status_code == 404

    def test_concurrent_puts_with_one_etag_let_exactly_one_win(
        self, client: TestClient, publisher: dict[str, str], node: Node
    ) -> None:
        first = publish(client, publisher, "fee-cap", documents.fee_cap()).json()
        writers = 6
        barrier = threading.Barrier(writers)
        statuses: list[int] = []

        def put(fee: int) -> None:
            document = edited(documents.fee_cap(), "/caps/0/max_weekly_fee", fee)
            barrier.wait()
            response = client.put(
                f"/v1/publications/{first['id']}",
                json={"document": document},
                headers={**publisher, "If-Match": first["etag"]},
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=put, args=(5600 + i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] + [412] * (writers - 1)
        with node.engine.connect() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM publication_version WHERE publication_id = :id"), {"id": first["id"]}
            ).scalar_one()
        assert count == 2


class TestHistory:
    def test_versions_list_and_diff_applies(self, client: TestClient, publisher: dict[str, str]) -> None:
        v1 = documents.fee_cap()
        created = publish(client, publisher, "fee-cap", v1).json()
        url = f"/v1/publications/{created['id']}"
        v2 = edited(edited(v1, "/caps/0/max_weekly_fee", 5650.25), "/effective_to", "2026-03-31")
        v2["caps"].append({"setting_type": "childrens-home", "need_level": "specialist", "max_weekly_fee": 9800})
        del v2["synthetic"]
        etag = client.put(url, json={"document": v2}, headers={**publisher, "If-Match": created["etag"]}).json()["etag"]
        v3 = edited(v2, "/caps", v2["caps"][1:])
        client.put(url, json={"document": v3}, headers={**publisher, "If-Match": etag})

        history = client.get(f"{url}/versions", headers=publisher).json()
        assert [h["version"] for h in history] == [1, 2, 3]
        served = {n: client.get(f"{url}/versions/{n}", headers=publisher).json()["document"] for n in (1, 2, 3)}
        for n, m in [(1, 2), (2, 3), (1, 3), (3, 1), (2, 2)]:
            response = client.get(f"{url}/versions/{n}/diff/{m}", headers=publisher)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json-patch+json"
            assert apply_patch(served[n], response.json()) == served[m]
        assert client.get(f"{url}/versions/2/diff/2", headers=publisher).json() == []
        missing = client.get(f"{url}/versions/1/diff/9", headers=publisher)
        assert missing.status_code == 404 and missing.json()["latest_version"] == 3

    def test_list_filters_by_kind_and_date_in_force(self, client: TestClient, publisher: dict[str, str]) -> None:
        publish(client, publisher, "fee-cap", documents.fee_cap(effective_to="2026-03-31"), id="caps-2025")
        publish(client, publisher, "fee-cap", documents.fee_cap(effective_from="2026-04-01"), id="caps-2026")
        publish(client, publisher, "framework", documents.framework(), id="dps")

        def ids(**params: str) -> list[str]:
            response = client.get("/v1/publications", params=params, headers=publisher)
            assert response.status_code == 200
            return [item["id"] for item in response.json()["items"]]

        assert ids() == ["caps-2025", "caps-2026", "dps"]
        assert ids(kind="fee-cap") == ["caps-2025", "caps-2026"]
        assert ids(kind="fee-cap", effective_on="2026-03-31") == ["caps-2025"]
        assert ids(kind="fee-cap", effective_on="2026-04-01") == ["caps-2026"]
        assert ids(effective_on="2025-03-31") == []
        first_page = client.get("/v1/publications", params={"limit": 2}, headers=publisher).json()
        assert [i["id"] for i in first_page["items"]] == ["caps-2025", "caps-2026"]
        rest = client.get("/v1/publications", params={"cursor": first_page["next_cursor"]}, headers=publisher).json()
        assert [i["id"] for i in rest["items"]] == ["dps"] and rest["next_cursor"] is None
        assert client.get("/v1/publications", params={"kind": "memo"}, headers=publisher).status_code == 422
        assert client.get("/v1/publications", params={"effective_on": "soon"}, headers=publisher).status_code == 422


class TestWithdraw:
    def test_withdrawal_is_a_signed_final_version(self, client: TestClient, publisher: dict[str, str]) -> None:
        created = publish(client, publisher, "fee-cap", documents.fee_cap(), id="caps").json()
        url = "/v1/publications/caps"
        assert client.post(f"{url}/withdraw", json={"reason": "replaced"}, headers=publisher).status_code == 428
        response = client.post(
            f"{url}/withdraw",
            json={"reason": "Replaced by caps-2026"},
            headers={**publisher, "If-Match": created["etag"]},
        )
        assert response.status_code == 200, response.text
        withdrawn = response.json()
        assert withdrawn["state"] == "withdrawn" and withdrawn["version"] == 2
        assert withdrawn["document"] == created["document"] and withdrawn["reason"] == "Replaced by caps-2026"
        jwks = client.get("/.well-known/jwks.json").json()
        verify_detached(signed_statement(withdrawn), withdrawn["signature"], jwks, TYP_PUBLICATION)

        again = client.put(
            url, json={"document": documents.fee_cap()}, headers={**publisher, "If-Match": withdrawn["etag"]}
        )
        assert again.status_code == 409 and again.json()["code"] == "publication-withdrawn"
        assert client.get(f"{url}/versions/1", headers=publisher).status_code == 200
        in_force = client.get("/v1/publications", params={"effective_on": "2025-06-01"}, headers=publisher).json()
        assert in_force["count"] == 0
        assert client.get("/v1/publications", params={"state": "withdrawn"}, headers=publisher).json()["count"] == 1

    def test_withdraw_without_body_is_allowed(self, client: TestClient, publisher: dict[str, str]) -> None:
        created = publish(client, publisher, "framework", documents.framework(), id="dps").json()
        response = client.post("/v1/publications/dps/withdraw", headers={**publisher, "If-Match": created["etag"]})
        assert response.status_code == 200 and response.json()["reason"] is None


TAMPERED_FEE = 9500


class TestTamper:
    @pytest.mark.parametrize(
        ("statements", "reason"),
        [
            (
                ["UPDATE publication_version SET document = replace(document, '5500', '9500'), sha256 = :sha"],
                "bad-signature",
            ),
            (["UPDATE publication_version SET document = replace(document, '5500', '9500')"], "digest-mismatch"),
            (["UPDATE publication_version SET document = :spaced, sha256 = :spaced_sha"], "not-canonical"),
            (["UPDATE publication_version SET effective_to = '2030-01-01'"], "dates-mismatch"),
            (["UPDATE publication_version SET signature = :other"], "bad-signature"),
            (
                [
                    "UPDATE publication_version SET version = 7",
                    "UPDATE publication SET latest_version = 7 WHERE id = 'caps'",
                ],
                "bad-signature",
            ),
        ],
    )
    def test_a_tampered_row_fails_verification(
        self, client: TestClient, publisher: dict[str, str], node: Node, statements: list[str], reason: str
    ) -> None:
        created = publish(client, publisher, "fee-cap", documents.fee_cap(), id="caps").json()
        other = publish(client, publisher, "fee-cap", documents.fee_cap(), id="other").json()
        assert client.get("/v1/publications/caps", headers=publisher).json()["verification"]["ok"] is True
        tampered = edited(created["document"], "/caps/0/max_weekly_fee", TAMPERED_FEE)
        spaced = json.dumps(created["document"], indent=1)
        params = {
            "sha": sha256_hex(canonical(tampered)),
            "other": other["signature"],
            "spaced": spaced,
            "spaced_sha": sha256_hex(spaced.encode()),
        }
        with node.engine.begin() as connection:
            for statement in statements:
                where = "" if "WHERE" in statement else " WHERE publication_id = 'caps'"
                used = {k: v for k, v in params.items() if f":{k}" in statement}
                connection.execute(text(statement + where), used)
        got = client.get("/v1/publications/caps", headers=publisher).json()
        assert got["verification"] == {"ok": False, "reason": reason, "kid": node.keys.active.kid}
        listed = client.get("/v1/publications", params={"verify": "true"}, headers=publisher).json()["items"]
        assert {item["id"]: item["verification"]["ok"] for item in listed} == {"caps": False, "other": True}


class TestSchemas:
    def test_schemas_are_served(self, client: TestClient, reader: dict[str, str]) -> None:
        listed = client.get("/v1/schemas", headers=reader).json()
        names = {item["name"] for item in listed}
        assert {"fee-cap", "framework", "placement-protocol"} <= names
        response = client.get("/v1/schemas/fee-cap", headers=reader)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/schema+json")
        assert response.json()["$id"].endswith("/fee-cap/1")
        assert client.get("/v1/schemas/nothing-here", headers=reader).status_code == 404
