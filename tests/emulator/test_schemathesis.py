"""Schemathesis against the emulator's own OpenAPI document: no 5xx, errors in the envelope.

The schema is loaded from a live emulator (``GET /openapi.json``) and every operation is called
with a real anonymous token. The upload endpoint skips the "positive data accepted" check: its
files (types, sizes, matching content) cannot be expressed in the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from _reliability_support import (  # noqa: F401  (leak_guard is an autouse fixture)
    ISSUED_TOKENS,
    leak_guard,
    record,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from nemo_notebook.emulator import start

pytestmark = pytest.mark.timeout(120)

OPERATIONS_CALLED: dict[str, int] = {}
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("schemathesis-emulator")
    with start(data_dir, time_scale=0.001, tokens_per_ip=1_000_000) as handle:
        yield handle


@pytest.fixture(scope="module")
def bearer(live: Any) -> dict[str, str]:
    with httpx.Client(base_url=live.url, timeout=10) as http:
        response = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "schemathesis"})
    token = response.json()["data"]["token"]
    ISSUED_TOKENS.add(token)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def real_ids(live: Any, bearer: dict[str, str]) -> dict[str, str]:
    """Path parameters that name a real session of the token's user (more 200s)."""
    with httpx.Client(base_url=live.url, timeout=10, headers=bearer) as http:
        created = http.post("/api/tasks/me/with-session/nemo_agent", json={})
    return {"user": "me", "session_id": created.json()["data"]["session_id"]}


@pytest.fixture(scope="module")
def api_schema(live: Any) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


OPERATIONS = [
    "POST /api/auth/anonymous-token",
    "POST /api/auth/claim-token",
    "POST /api/tasks/{user}/with-session/nemo_agent",
    "POST /run_sse",
    "GET /api/state/nemo_agent/{user}/{session_id}/latest",
    "POST /api/upload-video/nemo_agent/{user}/{session_id}",
    "GET /api/credits/balance/simple",
    "POST /api/render/proxy/lambda",
    "GET /api/render/proxy/lambda/{render_id}",
    "POST /api/render/proxy/lambda/{render_id}/cancel",
    "GET /api/render/proxy/{render_id}/download",
    "GET /media/{path}",
]


@schemathesis.check
def errors_use_the_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every JSON answer is the envelope: code 0 on success, {code != 0, message} on errors."""
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if "json" not in content_type:
        assert response.status_code < 400, f"error {response.status_code} is not JSON"
        return None
    body = response.json()
    assert isinstance(body, dict), body
    if response.status_code >= 400:
        assert set(body) == {"code", "message"}, body
        assert isinstance(body["code"], int) and body["code"] != 0, body
        assert isinstance(body["message"], str) and body["message"], body
    elif case.operation.path != "/openapi.json":
        assert body.get("code") in (0, 2001), body
    return None


def test_the_schema_lists_the_protocol_operations(api_schema: Any) -> None:
    listed = {
        f"{result.ok().method.upper()} {result.ok().path}"
        for result in api_schema.get_all_operations()
    }
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_keeps_the_contract(
    api_schema: Any, bearer: dict[str, str], real_ids: dict[str, str], label: str
) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    # File types and sizes cannot be said in the schema: valid-looking uploads may be refused.
    refused_as_designed = path.startswith("/api/upload")
    excluded = [positive_data_acceptance] if refused_as_designed else []
    known = {name: value for name, value in real_ids.items() if "{" + name + "}" in path}
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known or None),
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def call(case: Any) -> None:
        case.call_and_validate(
            headers=bearer,
            additional_checks=[errors_use_the_envelope],
            excluded_checks=excluded,
            timeout=30,
        )
        OPERATIONS_CALLED[label] = OPERATIONS_CALLED.get(label, 0) + 1

    call()


def test_the_document_states_the_client_id_rule(live: Any) -> None:
    import jsonschema

    with httpx.Client(base_url=live.url, timeout=10) as http:
        document = http.get("/openapi.json").json()
        operation = document["paths"]["/api/auth/anonymous-token"]["post"]
        (parameter,) = [p for p in operation["parameters"] if p["name"] == "X-Client-Id"]
        for value in ["", "-leading-dash", "a" * 129, "with space"]:
            answer = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": value})
            assert answer.status_code == 400
            valid = jsonschema.Draft202012Validator(parameter["schema"]).is_valid(value)
            assert not valid, f"{value!r} fits the document but the server refuses it"


def test_schemathesis_figures(
    live: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Runs after the schema tests of this module: report what was tried."""
    statuses: dict[int, int] = {}
    for request in live.requests():
        statuses[request.status] = statuses.get(request.status, 0) + 1
    assert not any(status >= 500 for status in statuses), statuses
    record(
        tmp_path_factory,
        "schemathesis",
        operations=len(OPERATIONS_CALLED),
        cases=sum(OPERATIONS_CALLED.values()),
        requests=sum(statuses.values()),
        statuses=dict(sorted(statuses.items())),
    )
