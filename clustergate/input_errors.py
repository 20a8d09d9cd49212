"""Bad input, told once: what is wrong, where (file, key, context) and what to do.

Whatever a person must fix before a run can start (the kubeconfig, its context and credentials,
the API server it names, the AWS identity, the cluster config) ends as an :class:`InputError`,
which the plugin hands to pytest as a usage error: one message, printed once, exit code 4, no
traceback. What the libraries raise is classified here, by the tables below; each row is a case
of tests/test_input_errors.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import urllib3
import yaml
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from kubernetes.client.exceptions import ApiException


class InputError(Exception):
    """Input a person must fix; the message says what is wrong, where, and what to do."""


#: Top-level keys of a kubeconfig (client-go's clientcmd/api/v1 Config).
KUBECONFIG_KEYS = frozenset(
    {"apiVersion", "kind", "clusters", "contexts", "users", "current-context", "preferences"}
)
#: Keys of a cluster or user entry that name a file, as the client resolves them: relative to
#: the kubeconfig's directory.
FILE_KEYS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}
WRITE_ONE = "`aws eks update-kubeconfig --name <cluster> --kubeconfig <file>` writes one"


def _type_name(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def unreadable_kubeconfig(path: str, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return (
            f"kubeconfig {path} does not exist: pass --kubeconfig, set KUBECONFIG, or run "
            "`aws eks update-kubeconfig --name <cluster>`"
        )
    return f"kubeconfig {path} cannot be read: {error.strerror or error}. Pass a readable file"


def kubeconfig_document(path: str, text: str) -> Mapping[str, Any]:
    """The kubeconfig's YAML document, or InputError saying why the file is not a kubeconfig."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InputError(
            f"kubeconfig {path} is not YAML{where}: {problem}. Point --kubeconfig (or KUBECONFIG) "
            f"at a kubeconfig; {WRITE_ONE}"
        ) from None
    if data is None:
        raise InputError(f"kubeconfig {path} is empty; {WRITE_ONE}")
    if not isinstance(data, dict):
        raise InputError(
            f"kubeconfig {path} is YAML but not a kubeconfig: its top level is a "
            f"{_type_name(data)}, not a mapping of clusters, contexts and users; {WRITE_ONE}"
        )
    if not KUBECONFIG_KEYS.intersection(data):
        raise InputError(
            f"kubeconfig {path} is YAML but not a kubeconfig: it has none of a kubeconfig's keys "
            f"(clusters, contexts, users, current-context); its keys are: "
            f"{', '.join(map(str, data))}; {WRITE_ONE}"
        )
    for key in ("clusters", "contexts", "users"):
        entries = data.get(key) or []
        if not isinstance(entries, list):
            raise InputError(
                f"kubeconfig {path}: key {key} is a {_type_name(entries)}, not a list of named "
                f"entries; {WRITE_ONE}"
            )
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry.get("name"):
                raise InputError(
                    f"kubeconfig {path}: {key}[{position}] has no name; each entry is "
                    f"`- name: ...` with its {key[:-1]} under `{key[:-1]}:`"
                )
    return data


def _names(data: Mapping[str, Any], key: str) -> list[str]:
    return [str(entry["name"]) for entry in data.get(key) or []]


def chosen_context(path: str, data: Mapping[str, Any], wanted: str | None) -> str:
    """The context a run uses (``--context`` or the current one), or InputError."""
    names = _names(data, "contexts")
    listed = ", ".join(names) or "none"
    if wanted:
        if wanted not in names:
            raise InputError(
                f"kubeconfig {path} has no context {wanted!r} (--context); its contexts are: "
                f"{listed}. Pass one of them (`kubectl config get-contexts --kubeconfig {path}`)"
            )
        return wanted
    current = data.get("current-context")
    if not current:
        raise InputError(
            f"kubeconfig {path} has no current-context and no --context was given; its "
            f"contexts are: {listed}. Pass --context NAME, or set one with "
            f"`kubectl config use-context NAME --kubeconfig {path}`"
        )
    if current not in names:
        raise InputError(
            f"kubeconfig {path}: its current-context {current!r} is not one of its contexts "
            f"({listed}). Pass --context NAME, or correct current-context"
        )
    return str(current)


def _entry(data: Mapping[str, Any], kind: str, name: str | None) -> Mapping[str, Any]:
    for entry in data.get(f"{kind}s") or []:
        if entry.get("name") == name:
            return entry.get(kind) or {}
    return {}


def _context_entries(data: Mapping[str, Any], context: str) -> dict[str, tuple[str, Any]]:
    """The context's cluster and user: kind → (name, entry)."""
    names = _entry(data, "context", context)
    return {
        kind: (str(names.get(kind)), _entry(data, kind, names.get(kind)))
        for kind in ("cluster", "user")
    }


def _missing_file(match: re.Match[str], path: str, data: Mapping[str, Any], context: str) -> str:
    missing = Path(match["file"])
    for kind, (name, entry) in _context_entries(data, context).items():
        for key in FILE_KEYS[kind]:
            named = entry.get(key)
            if named and (Path(path).parent / named).resolve() == missing.resolve():
                embed = "the token in token" if key == "tokenFile" else f"the content in {key}-data"
                return (
                    f"{kind}s[{name}].{kind}.{key} names {named}, which does not exist. Correct "
                    f"the path, or put {embed}"
                )
    return f"it names the file {missing}, which does not exist. Correct the path"


def _dangling(match: re.Match[str], path: str, data: Mapping[str, Any], context: str) -> str:
    kind = match["list"][:-1]
    return (
        f"the context names {kind} {match['name']!r}, which the {match['list']} list does not "
        f"have. Add it, or correct contexts[{context}].context.{kind}"
    )


#: What loading a chosen context can raise (the client's ConfigException messages), → the
#: sentence after "context C of kubeconfig K: ".
LOAD_ERRORS: tuple[tuple[re.Pattern[str], Callable[..., str]], ...] = (
    (re.compile(r"File does not exist: (?P<file>.+)$"), _missing_file),
    (
        re.compile(r"Expected object with name (?P<name>.*) in .*/(?P<list>clusters|users) list"),
        _dangling,
    ),
)


def unusable_context(path: str, data: Mapping[str, Any], context: str, error: object) -> str:
    """Why the chosen context of a kubeconfig cannot be loaded."""
    message = str(error)
    for pattern, explain in LOAD_ERRORS:
        match = pattern.search(message)
        if match:
            explained = explain(match, path, data, context)
            return f"context {context!r} of kubeconfig {path}: {explained}"
    return (
        f"context {context!r} of kubeconfig {path} cannot be used: {message}. Look at it with "
        f"`kubectl config view --minify --kubeconfig {path} --context {context}`"
    )


def failed_exec_plugin(path: str, data: Mapping[str, Any], context: str, logged: str) -> str:
    """The user's exec credential plugin failed (the client only logs it and goes on)."""
    name, user = _context_entries(data, context)["user"]
    plugin = user.get("exec") or {}
    command = " ".join(str(part) for part in [plugin.get("command"), *(plugin.get("args") or [])])
    return (
        f"context {context!r} of kubeconfig {path}: the exec credential plugin of user {name!r} "
        f"(`{command}`) failed: {logged.rstrip('.')}. Run that command yourself to see why; for "
        "`aws eks get-token` check the AWS credentials with `aws sts get-caller-identity`"
    )


def root_cause(error: BaseException) -> str:
    text = str(error)
    for marker in ("Connection refused", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text


def status_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


def unusable_server(error: BaseException, server: str, context: str, kubeconfig: str) -> str:
    """Why the first request to the API server failed, for a person who can fix it."""
    where = f"the API server at {server} (context {context!r} of kubeconfig {kubeconfig})"
    retry = f"`kubectl get --raw /version --kubeconfig {kubeconfig} --context {context}`"
    if isinstance(error, ApiException):
        said = status_message(error)
        if error.status == 401:
            return (
                f"{where} rejected the credentials (401 Unauthorized): the token is expired, "
                "revoked or for another cluster. Get fresh credentials (`aws eks "
                f"update-kubeconfig --name <cluster>`), then try {retry}"
            )
        if error.status == 403:
            return (
                f"{where} refused the request (403 Forbidden): {said}. The runner's "
                "identity needs deploy/rbac.yaml"
            )
        return f"{where} answered {error.status} {error.reason}: {said}. Try {retry}"
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason or error
    if isinstance(error, urllib3.exceptions.SSLError):
        return (
            f"TLS to {where} failed: {error}. Check certificate-authority-data of the context's "
            f"cluster, then try {retry}"
        )
    return (
        f"cannot reach {where}: {root_cause(error)}. Check the server address, the network "
        f"(VPN, security groups) and the cluster's endpoint access, then try {retry}"
    )


CHECK_AWS = "check with `aws sts get-caller-identity`"
#: AWS error codes of credentials that exist but do not work → what to tell.
AWS_REJECTED = {
    "InvalidClientTokenId": "the access key id is not known to AWS",
    "UnrecognizedClientException": "the access key id is not known to AWS",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "ExpiredToken": "the session credentials have expired",
    "ExpiredTokenException": "the session credentials have expired",
    "RequestExpired": "the session credentials have expired",
    "InvalidToken": "the session token is malformed",
}


def unusable_aws(error: BaseException) -> str:
    """Why no AWS identity resolves from the standard credential chain."""
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return (
            f"no AWS credentials: {error}. The selected checks call AWS through the standard "
            "chain: set AWS_PROFILE (after `aws sso login`) or export AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, then {CHECK_AWS}"
        )
    if isinstance(error, ProfileNotFound):
        return f"{error} (AWS_PROFILE): name a profile of ~/.aws/config, then {CHECK_AWS}"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "?")
        why = AWS_REJECTED.get(code, error.response.get("Error", {}).get("Message", str(error)))
        return (
            f"AWS rejected the credentials ({code}): {why}. Refresh them (`aws sso login`, or "
            f"new keys) or choose another AWS_PROFILE, then {CHECK_AWS}"
        )
    if isinstance(error, BotoCoreError):
        return f"no AWS identity resolves: {error}. Set AWS_PROFILE or AWS credentials; {CHECK_AWS}"
    return f"asking AWS who the credentials are failed: {error}; {CHECK_AWS}"


def wrong_account(caller_arn: str, account: str, expected: str, config: str) -> str:
    return (
        f"the AWS credentials are for account {account} ({caller_arn}), but {config} says "
        f"cluster.account_id: {expected!r}. Use credentials of account {expected} (AWS_PROFILE), "
        "or correct cluster.account_id"
    )
