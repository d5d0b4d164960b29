"""Resolving ``${.secrets.NAME}`` in strings and nested structures, at the last moment."""

from __future__ import annotations

import pytest

from stigmer_backend.runner.masking import SecretValue
from stigmer_backend.runner.resolver import UnresolvedReference, resolve

SECRETS = {"GH_TOKEN": "ghp_abc123", "DB_PASSWORD": "p@ss word"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${.secrets.GH_TOKEN}", "ghp_abc123"),
        ("Bearer ${ .secrets.GH_TOKEN }", "Bearer ghp_abc123"),
        ("${\t.secrets.GH_TOKEN\t}:${.secrets.DB_PASSWORD}", "ghp_abc123:p@ss word"),
        ("no references, ${HOME} and ${.env.X} stay", "no references, ${HOME} and ${.env.X} stay"),
        ("", ""),
    ],
)
def test_strings(template: str, expected: str) -> None:
    assert resolve(template, SECRETS) == expected


def test_nested_structures_resolve_values_not_keys_and_keep_other_types() -> None:
    config = {
        "headers": {"Authorization": "Bearer ${.secrets.GH_TOKEN}", "${.secrets.GH_TOKEN}": "key stays"},
        "args": ["--password", "${.secrets.DB_PASSWORD}", 3, None, True],
        "pair": ("${.secrets.GH_TOKEN}", 1.5),
    }
    resolved = resolve(config, SECRETS)
    assert resolved == {
        "headers": {"Authorization": "Bearer ghp_abc123", "${.secrets.GH_TOKEN}": "key stays"},
        "args": ["--password", "p@ss word", 3, None, True],
        "pair": ("ghp_abc123", 1.5),
    }
    assert config["args"][1] == "${.secrets.DB_PASSWORD}"  # the input is not changed


def test_secret_value_wrappers_are_revealed_only_into_the_result() -> None:
    wrapped = {name: SecretValue(value) for name, value in SECRETS.items()}
    assert resolve(["${.secrets.GH_TOKEN}"], wrapped) == ["ghp_abc123"]


def test_an_unknown_reference_is_an_error_naming_it_and_where() -> None:
    with pytest.raises(UnresolvedReference) as caught:
        resolve({"tools": [{"env": {"KEY": "x ${.secrets.GH_TOKEN} ${.secrets.MISSING}"}}]}, SECRETS)
    assert caught.value.name == "MISSING"
    assert caught.value.path == "tools[0].env.KEY"
    assert str(caught.value) == (
        "${.secrets.MISSING} at tools[0].env.KEY names a secret that this execution's context does not hold"
    )
    assert "ghp_abc123" not in str(caught.value)


def test_an_unknown_reference_in_a_plain_string_and_with_no_secrets_at_all() -> None:
    with pytest.raises(UnresolvedReference, match=r"^\$\{\.secrets\.GH_TOKEN\} names a secret"):
        resolve("${.secrets.GH_TOKEN}", {})


def test_a_malformed_reference_is_an_error() -> None:
    with pytest.raises(UnresolvedReference, match=r"^args\[0\]: malformed secret reference") as caught:
        resolve({"args": ["${.secrets.bad-name}"]}, SECRETS)
    assert caught.value.name == ""
