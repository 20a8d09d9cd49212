"""The classification of bad input (clustergate/input_errors.py), row by row: what the libraries
raise or read → the one message a person gets, saying what is wrong, where and what to do."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.exceptions import ProfileNotFound as NoProfile
from kubernetes.client.exceptions import ApiException

from clustergate import input_errors
from clustergate.input_errors import InputError

KC = "/home/me/.kube/config"
KUBECONFIG: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c1", "cluster": {"server": "https://k", "certificate-authority": "ca"}}],
    "users": [
        {"name": "u1", "user": {"client-key": "/keys/u1.key", "tokenFile": "tok"}},
        {"name": "u2", "user": {"exec": {"command": "aws", "args": ["eks", "get-token"]}}},
    ],
    "contexts": [
        {"name": "prod", "context": {"cluster": "c1", "user": "u1"}},
        {"name": "exec", "context": {"cluster": "c1", "user": "u2"}},
    ],
    "current-context": "prod",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: b: c\n", f"kubeconfig {KC} is not YAML (line 1, column 5): mapping values"),
        ("", f"kubeconfig {KC} is empty"),
        ("- a\n- b\n", "is YAML but not a kubeconfig: its top level is a list, not a mapping"),
        ("just text\n", "is YAML but not a kubeconfig: its top level is a string"),
        ("cluster: {name: x}\n", "has none of a kubeconfig's keys (clusters, contexts, users,"),
        ("contexts: {prod: {}}\n", f"kubeconfig {KC}: key contexts is a dict, not a list"),
        ("clusters:\n- cluster: {}\n", f"kubeconfig {KC}: clusters[0] has no name"),
    ],
)
def test_a_file_that_is_not_a_kubeconfig_is_told_why(text: str, expected: str) -> None:
    with pytest.raises(InputError) as raised:
        input_errors.kubeconfig_document(KC, text)
    assert expected in str(raised.value)
    assert "aws eks update-kubeconfig" in str(raised.value) or "each entry is" in str(raised.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            FileNotFoundError(2, "No such file or directory"),
            f"kubeconfig {KC} does not exist: pass",
        ),
        (
            IsADirectoryError(21, "Is a directory"),
            f"kubeconfig {KC} cannot be read: Is a directory",
        ),
    ],
)
def test_a_kubeconfig_that_cannot_be_read_is_told_why(error: OSError, expected: str) -> None:
    assert input_errors.unreadable_kubeconfig(KC, error).startswith(expected)


def test_a_kubeconfig_is_read_as_its_document() -> None:
    assert input_errors.kubeconfig_document(KC, "contexts: []\n") == {"contexts": []}


@pytest.mark.parametrize(
    ("data", "wanted", "expected"),
    [
        (KUBECONFIG, None, "prod"),
        (KUBECONFIG, "exec", "exec"),
        (KUBECONFIG, "staging", f"{KC} has no context 'staging' (--context); its contexts are: "),
        ({**KUBECONFIG, "current-context": ""}, None, "has no current-context and no --context"),
        ({"contexts": []}, None, "its contexts are: none. Pass --context NAME, or set one with"),
        ({**KUBECONFIG, "current-context": "old"}, None, "current-context 'old' is not one of"),
    ],
)
def test_the_context_is_the_one_asked_for_or_the_current_one(
    data: dict[str, Any], wanted: str | None, expected: str
) -> None:
    if expected in ("prod", "exec"):
        assert input_errors.chosen_context(KC, data, wanted) == expected
        return
    with pytest.raises(InputError) as raised:
        input_errors.chosen_context(KC, data, wanted)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            "File does not exist: /home/me/.kube/ca",
            "clusters[c1].cluster.certificate-authority names ca, which does not exist. Correct "
            "the path, or put the content in certificate-authority-data",
        ),
        (
            "File does not exist: /keys/u1.key",
            "users[u1].user.client-key names /keys/u1.key, which does not exist",
        ),
        (
            "File does not exist: /home/me/.kube/tok",
            "users[u1].user.tokenFile names tok, which does not exist. Correct the path, or put "
            "the token in token",
        ),
        ("File does not exist: /elsewhere", "it names the file /elsewhere, which does not exist"),
        (
            "Invalid kube-config file. Expected object with name c9 in /x/clusters list",
            "the context names cluster 'c9', which the clusters list does not have. Add it, or "
            "correct contexts[prod].context.cluster",
        ),
        (
            "Invalid kube-config file. Expected key server in /x/clusters[0]/cluster",
            f"cannot be used: Invalid kube-config file. Expected key server in /x/clusters[0]/"
            f"cluster. Look at it with `kubectl config view --minify --kubeconfig {KC} --context "
            "prod`",
        ),
    ],
)
def test_a_context_that_cannot_be_loaded_names_the_key_at_fault(raised: str, expected: str) -> None:
    message = input_errors.unusable_context(KC, KUBECONFIG, "prod", Exception(raised))
    assert message.startswith(f"context 'prod' of kubeconfig {KC}")
    assert expected in message


def test_a_failed_exec_plugin_names_the_user_and_its_command() -> None:
    message = input_errors.failed_exec_plugin(
        KC, KUBECONFIG, "exec", "exec: process returned 255. Unable to locate credentials."
    )
    assert message == (
        f"context 'exec' of kubeconfig {KC}: the exec credential plugin of user 'u2' "
        "(`aws eks get-token`) failed: exec: process returned 255. Unable to locate credentials. "
        "Run that command yourself to see why; for `aws eks get-token` check the AWS "
        "credentials with `aws sts get-caller-identity`"
    )


def _refused() -> urllib3.exceptions.MaxRetryError:
    cause = urllib3.exceptions.NewConnectionError(None, "[Errno 111] Connection refused")
    return urllib3.exceptions.MaxRetryError(None, "/version", cause)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ApiException(status=401, reason="Unauthorized"),
            "rejected the credentials (401 Unauthorized): the token is expired, revoked or for "
            "another cluster. Get fresh credentials",
        ),
        (
            ApiException(status=403, reason="Forbidden"),
            "refused the request (403 Forbidden): Forbidden. The runner's identity needs "
            "deploy/rbac.yaml",
        ),
        (ApiException(status=500, reason="Internal Server Error"), "answered 500 Internal"),
        (_refused(), "cannot reach the API server at https://k (context 'prod' of kubeconfig"),
        (
            urllib3.exceptions.SSLError("certificate verify failed"),
            "TLS to the API server at https://k",
        ),
    ],
)
def test_a_server_that_cannot_be_used_is_told_with_its_context_and_the_command_to_try(
    error: BaseException, expected: str
) -> None:
    message = input_errors.unusable_server(error, "https://k", "prod", KC)
    assert expected in message
    assert f"kubeconfig {KC}" in message
    if not isinstance(error, ApiException) or error.status != 403:
        assert f"`kubectl get --raw /version --kubeconfig {KC} --context prod`" in message


def _client_error(code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} said AWS"}}, "GetCallerIdentity"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCredentialsError(), "no AWS credentials: Unable to locate credentials. The selected"),
        (NoProfile(profile="prod"), "The config profile (prod) could not be found (AWS_PROFILE)"),
        (
            _client_error("InvalidClientTokenId"),
            "AWS rejected the credentials (InvalidClientTokenId): the access key id is not known",
        ),
        (_client_error("ExpiredToken"), "(ExpiredToken): the session credentials have expired"),
        (_client_error("Throttling"), "(Throttling): Throttling said AWS. Refresh them"),
        (EndpointConnectionError(endpoint_url="https://sts"), "no AWS identity resolves: Could"),
    ],
)
def test_an_aws_identity_that_does_not_resolve_is_told_why(
    error: BaseException, expected: str
) -> None:
    message = input_errors.unusable_aws(error)
    assert expected in message
    assert message.endswith("`aws sts get-caller-identity`")


def test_credentials_of_another_account_name_both_accounts_and_the_key() -> None:
    assert input_errors.wrong_account(
        "arn:aws:iam::123456789012:user/ci", "123456789012", "111122223333", "prod.yaml"
    ) == (
        "the AWS credentials are for account 123456789012 (arn:aws:iam::123456789012:user/ci), "
        "but prod.yaml says cluster.account_id: '111122223333'. Use credentials of account "
        "111122223333 (AWS_PROFILE), or correct cluster.account_id"
    )
