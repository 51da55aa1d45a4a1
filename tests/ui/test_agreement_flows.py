"""The agreement page's "What flowed under this agreement" table: governance officers only, from the same report
as ``GET /v1/agreements/{id}/flows``, and plain accessible HTML (headers scoped, no inline script or style)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from registry.core.audit.recording import audit_log
from tests.agreements.conftest import GM, LDN
from tests.support.flows import inbound, march, outbound, record, vacancies_mou
from tests.support.tokens import bearer
from tests.ui.conftest import dev_sign_in

pytestmark = pytest.mark.postgres

HERE = "rcc-test"
MOU = "ui-flows-mou"


@pytest.fixture
def with_flows(ui_app: FastAPI, browser_client: TestClient) -> TestClient:
    """The node holds a draft agreement with GM; GM asked twice (permitted), London once (refused), we asked GM."""
    doc = vacancies_mou(MOU, HERE, GM)
    created = browser_client.post("/v1/agreements", json=doc, headers=bearer(ui_app, "node-admin"))
    assert created.status_code == 201, created.text
    record(
        audit_log(ui_app.state.node),
        [
            inbound(HERE, peer=GM, agreement=MOU, when=march(2), results=4),
            inbound(HERE, peer=GM, agreement=MOU, when=march(3), results=5),
            inbound(HERE, peer=LDN, agreement=MOU, when=march(4), deny="no-agreement"),
            outbound(HERE, peer=GM, agreement=MOU, when=march(5)),
        ],
    )
    return browser_client


def _flow_rows(html: str) -> list[tuple[str, str, str]]:
    """(direction, peer, decision) of each row of the flows table."""
    table = html.split('id="flows"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-direction="([^"]*)" data-peer="([^"]*)" data-decision="([^"]*)">', table)


class TestFlowsTable:
    def test_a_governance_officer_sees_what_flowed_to_whom(self, with_flows: TestClient) -> None:
        dev_sign_in(with_flows, "governance")
        response = with_flows.get(f"/ui/agreements/{MOU}")
        assert response.status_code == 200, response.text
        html = response.text
        assert "What flowed under this agreement" in html
        rows = _flow_rows(html)
        assert [r for r in rows if r[1]] == [
            ("inbound", GM, "permit"),
            ("inbound", LDN, "deny"),
            ("outbound", GM, "permit"),
        ]
        assert ("inbound", "", "") in rows  # registering the agreement: this node's own user
        gm_row = html.split(f'data-peer="{GM}" data-decision="permit">', 1)[1].split("</tr>", 1)[0]
        assert '<td class="numeric">2</td>' in gm_row and '<td class="numeric">9</td>' in gm_row
        assert "No agreement" in html  # the refusal's reason, in words

    def test_the_table_is_labelled_and_says_which_signed_tree_head_it_covers(self, with_flows: TestClient) -> None:
        dev_sign_in(with_flows, "governance")
        html = with_flows.get(f"/ui/agreements/{MOU}").text
        assert 'aria-labelledby="flows-heading"' in html and 'aria-describedby="flows-scope"' in html
        head = html.split('id="flows"', 1)[1].split("</thead>", 1)[0]
        assert head.count('<th scope="col"') == len(re.findall(r"<th[ >]", head)) == 9
        assert re.search(r"entries 0 to \d+ of the signed tree head", html)
        assert "<script>" not in html and "style=" not in html

    def test_a_node_admin_does_not_see_it(self, with_flows: TestClient) -> None:
        dev_sign_in(with_flows, "node-admin")
        response = with_flows.get(f"/ui/agreements/{MOU}")
        assert response.status_code == 200
        assert "What flowed under this agreement" not in response.text and 'id="flows"' not in response.text
