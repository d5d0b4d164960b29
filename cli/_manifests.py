"""Agent instance manifests: YAML or JSON documents read by ``stigmer apply -f`` and ``stigmer diff -f``.

Two forms of one document are accepted. The short one::

    name: helper
    spec:                       # an AgentInstanceSpec, in its proto JSON form
      instructions: You are a careful assistant.
      model: {provider: openai, model: gpt-4o, credentials: "${.secrets.OPENAI_API_KEY}"}
      env:
        - {name: GH_TOKEN, value: "${.secrets.GH_TOKEN}"}

and the Kubernetes-style one, for people and tools that write those::

    apiVersion: agentic.stigmer.ai/v1
    kind: AgentInstance
    metadata: {name: helper}
    spec: ...

``-f`` takes files, directories (their ``*.yaml``, ``*.yml`` and ``*.json``,
sorted by name) and ``-`` for stdin; a file may hold several documents
(``---``). ``spec`` is parsed strictly by Google's protobuf JSON parser
against the contract's descriptor, so a misspelled field or a wrong type is an
error naming it, not a silent default. Every document is read and checked
before the caller writes anything.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import yaml

    from stigmer_backend.gen.stigmer.backend import v1 as pb

__all__ = ["API_VERSIONS", "KINDS", "MANIFEST_SUFFIXES", "Manifest", "read_manifests"]

API_VERSIONS = ("agentic.stigmer.ai/v1",)
KINDS = ("AgentInstance",)
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_SHORT_KEYS = {"kind", "name", "spec"}
_RESOURCE_KEYS = {"apiVersion", "kind", "metadata", "spec"}


@dataclass(frozen=True)
class Manifest:
    source: str  # "FILE, document N", for messages
    name: str
    spec: pb.AgentInstanceSpec


def read_manifests(paths: Iterable[str]) -> list[Manifest]:
    """Every document of ``paths`` (files, directories, ``-`` for stdin), validated.

    Raises ``ClickException`` naming the file (and document, line or key) of the first problem.
    """
    manifests: list[Manifest] = []
    for path in _expand(paths):
        manifests += _read_file(path)
    seen: dict[str, str] = {}
    for manifest in manifests:
        if manifest.name in seen:
            raise click.ClickException(
                f"agent instance {manifest.name!r} is declared in more than one document: "
                f"{seen[manifest.name]} and {manifest.source}"
            )
        seen[manifest.name] = manifest.source
    return manifests


def _expand(paths: Iterable[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found = sorted(p for p in Path(path).iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
            if not found:
                raise click.ClickException(f"{path}: a directory without *.yaml, *.yml or *.json files")
            files += [str(p) for p in found]
        else:
            files.append(path)
    if files.count("-") > 1:
        raise click.UsageError("-f - (stdin) can be given once")
    return files


def _read_file(path: str) -> list[Manifest]:
    import yaml

    text = sys.stdin.read() if path == "-" else _read(path)
    try:
        documents = [d for d in yaml.load_all(text, Loader=_strict_loader()) if d is not None]
    except _DuplicateKey as error:
        raise click.ClickException(f"{path}: line {error.line}: duplicate key {error.key!r}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise click.ClickException(f"{path}: not valid YAML or JSON{where}") from None
    except RecursionError:
        raise click.ClickException(f"{path}: nested too deeply to be a manifest") from None
    if not documents:
        raise click.ClickException(f"{path}: no documents")
    return [_manifest(f"{path}, document {n}", document) for n, document in enumerate(documents, start=1)]


def _manifest(where: str, document: object) -> Manifest:
    from google.protobuf import json_format, message_factory
    from grpclib import GRPCError

    from stigmer_backend.backends.rules import validation
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    name, spec = _name_and_spec(where, document)
    if not isinstance(spec, dict | None):
        raise click.ClickException(f"{where}: spec must be a mapping")
    google_spec = message_factory.GetMessageClass(pb.AgentInstanceSpec.DESCRIPTOR)
    try:
        parsed = json_format.ParseDict(spec or {}, google_spec())
    except json_format.ParseError as error:
        raise click.ClickException(f"{where}: spec: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise click.ClickException(f"{where}: spec is nested too deeply") from None
    message = pb.AgentInstanceSpec.parse(parsed.SerializeToString())
    try:
        validation.validate_apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=message))
    except GRPCError as error:
        raise click.ClickException(f"{where}: {error.message}") from None
    return Manifest(source=where, name=name, spec=message)


def _name_and_spec(where: str, document: object) -> tuple[str, object]:
    """The agent instance's name and raw spec, from either form of a document."""
    if not isinstance(document, dict):
        raise click.ClickException(f"{where}: expected a mapping with name and spec")
    kind = document.get("kind", "AgentInstance")
    if kind not in KINDS:
        raise click.ClickException(f"{where}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if "apiVersion" in document or "metadata" in document:
        if document.get("apiVersion") not in API_VERSIONS:
            raise click.ClickException(
                f"{where}: unknown apiVersion {document.get('apiVersion')!r}; known: {', '.join(API_VERSIONS)}"
            )
        if "kind" not in document:
            raise click.ClickException(f"{where}: kind is required with apiVersion (known kinds: {', '.join(KINDS)})")
        _only(where, document, _RESOURCE_KEYS, "")
        metadata = document.get("metadata")
        if not isinstance(metadata, dict):
            raise click.ClickException(f"{where}: metadata must be a mapping with name")
        _only(where, metadata, {"name"}, "metadata.")
        name = metadata.get("name")
        field = "metadata.name"
    else:
        _only(where, document, _SHORT_KEYS, "")
        name = document.get("name")
        field = "name"
    if not isinstance(name, str):
        raise click.ClickException(f"{where}: {field} is required and must be a string")
    return name, document.get("spec")


def _only(where: str, mapping: dict[Any, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(str(key) for key in set(mapping) - allowed)
    if unknown:
        raise click.ClickException(
            f"{where}: unknown key {prefix}{unknown[0]}; expected {', '.join(prefix + k for k in sorted(allowed))}"
        )


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        self.key, self.line = key, line


def _strict_loader() -> type[yaml.SafeLoader]:
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML 1.2 forbids it; PyYAML keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, str | int | float | bool) or key is None:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
