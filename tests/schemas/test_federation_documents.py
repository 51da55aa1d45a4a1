"""Node identity and federation wire documents: key sets, descriptors, the directory, tree heads, problems."""

from __future__ import annotations

import pytest

from schemas import validate
from tests.schemas.examples import DELETE, DIGEST, descriptor, directory, edited, jwk, jwks, problem, tree_head


class TestJwks:
    def test_accepts_the_example(self):
        assert validate("jwks", jwks()) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param(
                {"/keys/0/d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}, ["/keys/0/d"], id="a private key"
            ),
            pytest.param({"/keys/0/kty": "RSA"}, ["/keys/0/kty"], id="an RSA key"),
            pytest.param({"/keys/0/crv": "X25519"}, ["/keys/0/crv"], id="a key-agreement curve"),
            pytest.param({"/keys/0/alg": "none"}, ["/keys/0/alg"], id="alg none"),
            pytest.param({"/keys/0/use": "enc"}, ["/keys/0/use"], id="an encryption key"),
            pytest.param({"/keys/0/x": jwk(1)["x"] + "="}, ["/keys/0/x"], id="a padded x"),
            pytest.param({"/keys/0/x": jwk(1)["x"][:42] + "B"}, ["/keys/0/x"], id="x that is not 32 bytes exactly"),
            pytest.param({"/keys/0/kid": DELETE}, ["/keys/0/kid"], id="a key without kid"),
            pytest.param({"/keys/0/status": "revoked"}, ["/keys/0/status"], id="an unknown status"),
            pytest.param({"/keys": []}, ["/keys"], id="no keys"),
            pytest.param({"/keys/1": jwk(1)}, ["/keys"], id="the same key twice"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("jwks", edited(jwks(), changes))] == paths


class TestDescriptor:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="a regional node"),
            pytest.param({"/kind": "national", "/region_code": None}, id="a national node without region"),
            pytest.param({"/datasets": []}, id="a node offering nothing yet"),
            pytest.param({"/base_url": "http://127.0.0.1:8001"}, id="a loopback node"),
            pytest.param({"/jwks/keys/0/status": DELETE}, id="a key without status"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("descriptor", edited(descriptor(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/region_code": None}, ["/region_code"], id="a regional node without region"),
            pytest.param({"/region_code": "E10000016"}, ["/region_code"], id="an LA code as region"),
            pytest.param({"/node_id": "RCC-SE"}, ["/node_id"], id="an uppercase node id"),
            pytest.param({"/node_id": "-rcc"}, ["/node_id"], id="a node id starting with a hyphen"),
            pytest.param({"/base_url": "https://rcc-se.example.org/"}, ["/base_url"], id="a trailing slash"),
            pytest.param({"/base_url": "https://rcc-se.example.org?x=1"}, ["/base_url"], id="a query"),
            pytest.param({"/base_url": "ftp://rcc-se.example.org"}, ["/base_url"], id="not http"),
            pytest.param({"/datasets/0": "capacity.children"}, ["/datasets/0"], id="an unknown dataset"),
            pytest.param({"/jwks/keys/0/status": "lost"}, ["/jwks/keys/0/status"], id="a bad key in its key set"),
            pytest.param({"/issued_at": "2025-05-01T09:00:00"}, ["/issued_at"], id="a time without offset"),
            pytest.param({"/private_key": "..."}, ["/private_key"], id="an unknown member"),
            pytest.param({"/software_version": DELETE}, ["/software_version"], id="no software version"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("descriptor", edited(descriptor(), changes))] == paths


class TestDirectory:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="the example"),
            pytest.param({"/nodes/1/valid_from": DELETE, "/nodes/1/valid_until": DELETE}, id="no validity dates"),
        ],
    )
    def test_accepts(self, changes):
        assert validate("directory", edited(directory(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/nodes/0/keys/0/status": DELETE}, ["/nodes/0/keys/0/status"], id="a key without status"),
            pytest.param({"/nodes/0/keys": []}, ["/nodes/0/keys"], id="a node without keys"),
            pytest.param({"/serial": 0}, ["/serial"], id="serial zero"),
            pytest.param({"/serial": "42"}, ["/serial"], id="serial as text"),
            pytest.param({"/expires_at": "2025-02-30T00:00:00Z"}, ["/expires_at"], id="an impossible date"),
            pytest.param({"/operator": "National Node"}, ["/operator"], id="an operator that is no node id"),
            pytest.param({"/nodes/0/neighbours/0": "E10000016"}, ["/nodes/0/neighbours/0"], id="an LA as neighbour"),
            pytest.param({"/nodes/2/neighbours": DELETE}, ["/nodes/2/neighbours"], id="no neighbours list"),
            pytest.param({"/nodes/1/region_code": None}, ["/nodes/1/region_code"], id="a regional node without region"),
            pytest.param({"/nodes": []}, ["/nodes"], id="no nodes"),
            pytest.param({"/nodes/0/address": "1 High St"}, ["/nodes/0/address"], id="an unknown node member"),
            pytest.param({"/signature": "x..y"}, ["/signature"], id="the signature inside the document"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("directory", edited(directory(), changes))] == paths


class TestTreeHead:
    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({}, id="the example"),
            pytest.param(
                {"/tree_size": 0, "/root_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
                id="the empty tree",
            ),
        ],
    )
    def test_accepts(self, changes):
        assert validate("tree-head", edited(tree_head(), changes)) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/root_hash": DIGEST.upper()}, ["/root_hash"], id="an uppercase hash"),
            pytest.param({"/root_hash": DIGEST[:63]}, ["/root_hash"], id="a short hash"),
            pytest.param({"/tree_size": -1}, ["/tree_size"], id="a negative size"),
            pytest.param({"/tree_size": 1.5}, ["/tree_size"], id="a fractional size"),
            pytest.param({"/timestamp": 1746090000123}, ["/timestamp"], id="milliseconds instead of a date-time"),
            pytest.param({"/node_id": DELETE}, ["/node_id"], id="no node"),
            pytest.param({"/signature": "x..y"}, ["/signature"], id="the signature inside the head"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("tree-head", edited(tree_head(), changes))] == paths


class TestProblem:
    @pytest.mark.parametrize(
        "document",
        [
            pytest.param(problem(), id="a validation problem"),
            pytest.param({"type": "about:blank", "title": "Not found", "status": 404}, id="the bare minimum"),
            pytest.param(
                {"type": "about:blank", "title": "Forbidden", "status": 403, "reason": "no-agreement", "peer_id": "x"},
                id="extension members",
            ),
        ],
    )
    def test_accepts(self, document):
        assert validate("problem", document) == []

    @pytest.mark.parametrize(
        ("changes", "paths"),
        [
            pytest.param({"/status": 200}, ["/status"], id="a success status"),
            pytest.param({"/title": DELETE}, ["/title"], id="no title"),
            pytest.param({"/type": "not a uri"}, ["/type"], id="a type that is no URI reference"),
            pytest.param({"/errors/0/path": "grants.0"}, ["/errors/0/path"], id="a dotted path"),
            pytest.param({"/errors/0/path": "/a~2b"}, ["/errors/0/path"], id="a bad pointer escape"),
            pytest.param({"/errors/0/value": "secret"}, ["/errors/0/value"], id="an error echoing the value"),
            pytest.param({"/x": 1}, [""], id="an extension member with a one-letter name"),
        ],
    )
    def test_refuses(self, changes, paths):
        assert [e.path for e in validate("problem", edited(problem(), changes))] == paths
