"""Schemathesis hooks of the contract run (tests/tests/contract.rs): what the OpenAPI document
cannot say, each kept as narrow as it can be. Anything else schemathesis finds is a finding.

1. Some refusals of a well-formed request come from what the server stores, which no schema
   sees: a push id used before for another push, a root or objects the project does not have,
   a member `{account}` that names nobody. A schema-valid request refused with one of those
   codes is no finding (`filter_failure`); refused with any other code, it is.
2. Push and upload bodies are object streams, bytes that JSON Schema cannot describe: their
   stream problems are no finding either.
3. The run never revokes the token it authenticates with (`CAIRN_CONTRACT_TOKEN_ID`), or every
   later request would only meet `401` (`filter_case`).
"""

import json
import os

import schemathesis

# The problems of an object stream's bytes (`wire::routes::STREAM_PROBLEMS` less the media
# type, which the document states).
STREAM_CODES = {
    "bad-stream",
    "truncated-stream",
    "hash-mismatch",
    "non-canonical-object",
    "bad-name",
    "case-collision",
    "object-too-large",
    "bad-frame",
    "kind-mismatch",
    "too-many-objects",
    "body-too-large",
}

# The codes each operation answers a schema-valid request for the server's state.
STATE_CODES = {
    "POST /v1/projects/{project}/commits": {
        "push-id-reused",
        "missing-object",
        "entry-mismatch",
        "bad-path",
    },
    "POST /v1/projects/{project}/restore": {"push-id-reused"},
    "POST /v1/projects/{project}/pull": {"missing-object"},
    "POST /v1/projects/{project}/push": STREAM_CODES
    | {"push-id-reused", "missing-object", "entry-mismatch", "bad-path", "bad-records"},
    "POST /v1/projects/{project}/objects": STREAM_CODES | {"missing-object", "entry-mismatch"},
}

# Operations whose `{account}` is an account id or name: one that names nobody is
# `invalid-field` on `account`.
ACCOUNT_OPERATIONS = {
    "PUT /v1/teams/{team}/members/{account}",
    "DELETE /v1/teams/{team}/members/{account}",
}

SCHEMA_VALID_REQUEST_REJECTED = "ST202"


def _label(case):
    return f"{case.method.upper()} {case.path}"


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but a schema-valid request refused for the server's state."""
    if failure.code != SCHEMA_VALID_REQUEST_REJECTED:
        return True
    try:
        problem = json.loads(response.content)
    except ValueError:
        return True
    if not isinstance(problem, dict):
        return True
    code = problem.get("code")
    label = _label(case)
    if code in STATE_CODES.get(label, ()):
        return False
    if label in ACCOUNT_OPERATIONS and code == "invalid-field" and problem.get("field") == "account":
        return False
    return True


def _revokes_the_runs_token(case):
    protected = os.environ.get("CAIRN_CONTRACT_TOKEN_ID")
    return bool(protected) and (case.path_parameters or {}).get("token") == protected


@schemathesis.hook
def filter_case(context, case):
    """Drops a case that revokes the run's token."""
    return not _revokes_the_runs_token(case)
