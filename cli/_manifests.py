"""Agent instance manifests: YAML or JSON documents read by ``stigmer apply -f``.

    name: helper
    spec:                       # an AgentInstanceSpec, in its proto JSON form
      instructions: You are a careful assistant.
      model: {provider: openai, model: gpt-4o, credentials: "${.secrets.OPENAI_API_KEY}"}
      env:
        - {name: GH_TOKEN, value: "${.secrets.GH_TOKEN}"}

A file may hold several documents (``---``). ``spec`` is parsed strictly by
Google's protobuf JSON parser against the contract's descriptor, so a
misspelled field or a wrong type is an error naming it, not a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

__all__ = ["Manifest", "read_manifests"]


@dataclass(frozen=True)
class Manifest:
    source: str
    name: str
    spec: object  # pb.AgentInstanceSpec


def read_manifests(path: str) -> list[Manifest]:
    """Every document of ``path`` (``-`` for stdin), validated; raises ``ClickException`` at the first problem."""
    import yaml
    from google.protobuf import json_format, message_factory

    from stigmer.backends.rules import validation
    from stigmer.gen.stigmer.backend import v1 as pb

    text = click.get_text_stream("stdin").read() if path == "-" else _read(path)
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
    google_spec = message_factory.GetMessageClass(pb.AgentInstanceSpec.DESCRIPTOR)
    manifests = []
    for number, document in enumerate(documents, start=1):
        where = f"{path}, document {number}"
        if not isinstance(document, dict) or set(document) - {"kind", "name", "spec"}:
            raise click.ClickException(f"{where}: expected the keys name and spec (and optionally kind: AgentInstance)")
        if document.get("kind", "AgentInstance") != "AgentInstance":
            raise click.ClickException(f"{where}: kind {document['kind']!r} is not AgentInstance")
        name = document.get("name")
        if not isinstance(name, str):
            raise click.ClickException(f"{where}: name is required and must be a string")
        try:
            parsed = json_format.ParseDict(document.get("spec") or {}, google_spec())
        except json_format.ParseError as error:
            raise click.ClickException(f"{where}: spec: {' '.join(str(error).split())}") from None
        except RecursionError:
            raise click.ClickException(f"{where}: spec is nested too deeply") from None
        spec = pb.AgentInstanceSpec.parse(parsed.SerializeToString())
        from grpclib import GRPCError

        try:
            validation.validate_apply_agent_instance(pb.ApplyAgentInstanceRequest(name=name, spec=spec))
        except GRPCError as error:
            raise click.ClickException(f"{where}: {error.message}") from None
        manifests.append(Manifest(source=where, name=name, spec=spec))
    names = [m.name for m in manifests]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise click.ClickException(f"{path}: agent instance {duplicates[0]!r} appears in more than one document")
    return manifests


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int) -> None:
        self.key, self.line = key, line


def _strict_loader():
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML 1.2 forbids it; PyYAML keeps the last)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
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
