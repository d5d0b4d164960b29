"""Every `List*` RPC: its order with rows created out of order, paging by key under inserts and deletes, page sizes.

`pagination.py` covers `ListExecutions` filters and tokens; this module holds
what the pagination section of `request_response.proto` promises of every
list, checked on each of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import pytest
from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status, request_id, unique_name, unique_secret_name
from stigmer_backend.conformance.scenarios import apply_agent, claim, create_execution, spec
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase
CAP = 1000

Fetch = Callable[[int, str], tuple[list[str], str]]
"""``fetch(page_size, page_token)``: one page of a list, as names or ids, and its ``next_page_token``."""


def _bytewise(values: Iterable[str]) -> list[str]:
    return sorted(values, key=lambda v: v.encode())


def _pages(fetch: Fetch, page_size: int, between_pages: Callable[[int], None] | None = None) -> list[str]:
    """Every item of every page, calling ``between_pages(n)`` after page n (not after the last)."""
    items: list[str] = []
    token, pages = "", 0
    while True:
        page_items, token = fetch(page_size, token)
        assert len(page_items) <= page_size, f"a page holds {len(page_items)} items, more than page_size {page_size}"
        items += page_items
        pages += 1
        if not token:
            return items
        assert pages < 100_000, "paging does not end"
        if between_pages:
            between_pages(pages)


def _agents(client: Client) -> Fetch:
    def fetch(size: int, token: str) -> tuple[list[str], str]:
        page = client.list_agent_instances(pb.ListAgentInstancesRequest(page_size=size, page_token=token))
        return [a.name for a in page.agent_instances], page.next_page_token

    return fetch


def _secrets(client: Client) -> Fetch:
    def fetch(size: int, token: str) -> tuple[list[str], str]:
        page = client.list_secrets(pb.ListSecretsRequest(page_size=size, page_token=token))
        return [s.name for s in page.secrets], page.next_page_token

    return fetch


def _executions(
    client: Client, agent: pb.AgentInstance, newest_first: bool = False, phases: Sequence[pb.ExecutionPhase] = ()
) -> Fetch:
    def fetch(size: int, token: str) -> tuple[list[str], str]:
        request = pb.ListExecutionsRequest(
            page_size=size, page_token=token, agent_instance_id=agent.id, newest_first=newest_first, phases=list(phases)
        )
        page = client.list_executions(request)
        return [e.id for e in page.executions], page.next_page_token

    return fetch


def _put(client: Client, name: str) -> str:
    client.put_secret(pb.PutSecretRequest(name=name, value=f"value-of-{name}"))
    return name


secrets_only = pytest.mark.requires_capability(pb.Capability.SECRETS)


class TestOrder:
    def test_agent_instances_by_name_whatever_the_creation_order(self, client: Client) -> None:
        """`ListAgentInstances`: ascending bytewise order of name, for names applied in another order."""
        base = unique_name("ord")
        mine = [f"{base}-x9", f"{base}-x-9", f"{base}-x10", f"{base}-a", f"{base}-x-a", f"{base}a"]
        for name in random.Random(7).sample(mine, len(mine)):
            apply_agent(client, name=name)
        listed = [n for n in _pages(_agents(client), 2) if n in mine]
        assert listed == _bytewise(mine), "agent instances are not in ascending bytewise order of name"

    @secrets_only
    def test_secrets_by_name_whatever_the_creation_order(self, client: Client) -> None:
        """`ListSecrets`: ascending bytewise order of name (case-sensitive: upper case before `_` before lower)."""
        suffix = unique_secret_name("S")
        mine = [f"{p}{suffix}" for p in ("b", "B", "_", "Z", "a", "A1", "a_")]
        for name in random.Random(3).sample(mine, len(mine)):
            _put(client, name)
        listed = [n for n in _pages(_secrets(client), 3) if n in mine]
        assert listed == _bytewise(mine), "secrets are not in ascending bytewise order of name"

    @pytest.mark.parametrize("newest_first", [False, True], ids=["oldest-first", "newest-first"])
    def test_executions_by_id_whatever_the_order_of_updates(self, client: Client, newest_first: bool) -> None:
        """`ListExecutions` orders by `Execution.id`, not by when executions were last written."""
        agent = apply_agent(client)
        created = [create_execution(client, agent) for _ in range(6)]
        for execution in reversed(created[::2]):  # the oldest is written last
            claim(client, execution)
        expected = [e.id for e in created]
        listed = _pages(_executions(client, agent, newest_first=newest_first), 4)
        assert listed == (expected[::-1] if newest_first else expected)


class TestPagingUnderChanges:
    def test_agent_instances_inserted_and_deleted_while_paging(self, client: Client) -> None:
        """Agent instances applied and deleted between pages never make another one skipped or repeated."""
        base = unique_name("pg") + "-"
        originals = [f"{base}{i:02d}" for i in range(0, 20, 2)]
        for name in originals:
            apply_agent(client, name=name)
        deleted: set[str] = set()
        seen: list[str] = []
        fetch = _agents(client)

        def record(size: int, token: str) -> tuple[list[str], str]:
            names, token = fetch(size, token)
            seen.extend(n for n in names if n.startswith(base))
            return names, token

        def change(page: int) -> None:
            last = seen[-1] if seen else ""
            behind = [n for n in originals if n < last and n not in deleted]
            ahead = [n for n in originals if n > last and n not in deleted]
            if page % 2 and behind:  # an offset-based pager would now skip an item
                _delete_agent(client, behind[0])
                deleted.add(behind[0])
            elif not page % 2:  # behind the page: an offset-based pager would return an item twice
                apply_agent(client, name=f"{base}00a{page}")
            if ahead:  # deleted before its page: may not appear, and must not disturb the others
                _delete_agent(client, ahead[-1])
                deleted.add(ahead[-1])
            if last:
                apply_agent(client, name=f"{last}z")  # just after the page: returned at most once

        listed = [n for n in _pages(record, 2, change) if n.startswith(base)]
        _check_paged(listed, [n for n in originals if n not in deleted])

    @secrets_only
    def test_secrets_inserted_and_deleted_while_paging(self, client: Client) -> None:
        """Secrets put and deleted between pages never make another one skipped or repeated."""
        suffix = unique_secret_name("P")
        originals = [f"{suffix}_{i:02d}" for i in range(0, 20, 2)]
        for name in originals:
            _put(client, name)
        deleted: set[str] = set()
        seen: list[str] = []
        fetch = _secrets(client)

        def record(size: int, token: str) -> tuple[list[str], str]:
            names, token = fetch(size, token)
            seen.extend(n for n in names if n.startswith(suffix))
            return names, token

        def change(page: int) -> None:
            last = seen[-1] if seen else ""
            behind = [n for n in originals if n < last and n not in deleted]
            ahead = [n for n in originals if n > last and n not in deleted]
            for victim in (behind[:1] if page % 2 else []) + ahead[-1:]:  # behind: an offset pager skips one
                client.delete_secret(pb.DeleteSecretRequest(name=victim))
                deleted.add(victim)
            if not page % 2:
                _put(client, f"{suffix}_00a{page}")  # behind: an offset pager returns one twice
            if last:
                _put(client, f"{last}z")

        listed = [n for n in _pages(record, 2, change) if n.startswith(suffix)]
        _check_paged(listed, [n for n in originals if n not in deleted])

    @pytest.mark.parametrize("newest_first", [False, True], ids=["oldest-first", "newest-first"])
    def test_executions_created_and_leaving_the_filter_while_paging(self, client: Client, newest_first: bool) -> None:
        """`ListExecutions` with `phases` in both orders: executions created, and executions leaving the filter,
        between pages never make another one skipped or repeated."""
        agent = apply_agent(client)
        originals = [create_execution(client, agent) for _ in range(10)]
        left: set[str] = set()
        seen: list[str] = []
        fetch = _executions(client, agent, newest_first=newest_first, phases=[Phase.PENDING])

        def record(size: int, token: str) -> tuple[list[str], str]:
            ids, token = fetch(size, token)
            seen.extend(ids)
            return ids, token

        def change(page: int) -> None:
            last = seen[-1]
            behind = [e for e in originals if (e.id > last if newest_first else e.id < last) and e.id not in left]
            ahead = [e for e in originals if (e.id < last if newest_first else e.id > last) and e.id not in left]
            # Odd pages: one execution behind the page leaves the filter (an offset-based pager skips one);
            # even pages: a new one (behind the page when newest first: an offset-based pager repeats one).
            for leaving in (behind[:1] if page % 2 else []) + ahead[-1:]:
                claim(client, leaving)  # no longer PENDING: out of the filter
                left.add(leaving.id)
            if not page % 2:
                create_execution(client, agent)

        listed = _pages(record, 2, change)
        order = sorted(listed, key=lambda i: i.encode(), reverse=newest_first)
        assert listed == order, "executions are not in the requested order while paging"
        assert len(listed) == len(set(listed)), "an execution was returned twice"
        missing = [e.id for e in originals if e.id not in left and e.id not in listed]
        assert not missing, f"executions that stayed PENDING were skipped: {missing}"


def _delete_agent(client: Client, name: str) -> None:
    client.delete_agent_instance(pb.DeleteAgentInstanceRequest(agent_instance=pb.AgentInstanceRef(name=name)))


def _check_paged(listed: list[str], must_appear: list[str]) -> None:
    assert listed == _bytewise(listed), "items are not in ascending bytewise order while paging"
    assert len(listed) == len(set(listed)), f"an item was returned twice: {listed}"
    missing = [n for n in must_appear if n not in listed]
    assert not missing, f"items present for the whole paging were skipped: {missing}"


def _many_agents(client: Client, count: int) -> None:
    agent_spec = spec()
    calls = [
        ("apply_agent_instance", pb.ApplyAgentInstanceRequest(name=unique_name("cap"), spec=agent_spec))
        for _ in range(count)
    ]
    for start in range(0, count, 100):
        client.concurrently(calls[start : start + 100])


def _many_secrets(client: Client, count: int) -> None:
    calls = [("put_secret", pb.PutSecretRequest(name=unique_secret_name("CAP"), value="v")) for _ in range(count)]
    for start in range(0, count, 100):
        client.concurrently(calls[start : start + 100])


def _many_executions(client: Client, count: int) -> pb.AgentInstance:
    agent = apply_agent(client)
    ref = pb.AgentInstanceRef(id=agent.id)
    calls = [
        ("create_execution", pb.CreateExecutionRequest(request_id=request_id(), agent_instance=ref, input=pb.ExecutionInput(message="m")))
        for _ in range(count)
    ]  # fmt: skip
    for start in range(0, count, 100):
        client.concurrently(calls[start : start + 100])
    return agent


def _more_agents_than_a_page(client: Client) -> Fetch:
    _many_agents(client, CAP + 1)
    return _agents(client)


def _more_secrets_than_a_page(client: Client) -> Fetch:
    _many_secrets(client, CAP + 1)
    return _secrets(client)


def _more_executions_than_a_page(client: Client) -> Fetch:
    return _executions(client, _many_executions(client, CAP + 1))


# RPC -> a function that stores more than a page of items and returns the fetch that lists them
LISTS: dict[str, Callable[[Client], Fetch]] = {
    "ListAgentInstances": _more_agents_than_a_page,
    "ListSecrets": _more_secrets_than_a_page,
    "ListExecutions": _more_executions_than_a_page,
}


class TestPageSize:
    @pytest.mark.parametrize("rpc", list(LISTS))
    def test_zero_means_50_and_values_above_1000_mean_1000(
        self, client: Client, capabilities: set[int], rpc: str
    ) -> None:
        """`page_size` 0 means 50; above 1000 is treated as 1000 (with more than 1000 items to list)."""
        if rpc == "ListSecrets" and pb.Capability.SECRETS not in capabilities:
            pytest.skip("optional: the backend does not report CAPABILITY_SECRETS")
        fetch = LISTS[rpc](client)
        for requested, expected in ((0, 50), (CAP + 1, CAP), (2**31 - 1, CAP)):
            items, token = fetch(requested, "")
            assert len(items) == expected, f"page_size {requested} gave {len(items)} items, not {expected}"
            assert token, "a full page with more items to come has a next_page_token"


class TestTokens:
    def test_a_token_of_another_list_is_invalid_argument(self, client: Client, capabilities: set[int]) -> None:
        """A `page_token` issued by one `List*` RPC, given to another: INVALID_ARGUMENT naming `page_token`."""
        for _ in range(2):
            apply_agent(client)
        token = client.list_agent_instances(pb.ListAgentInstancesRequest(page_size=1)).next_page_token
        assert token, "a page of 1 with more agent instances to come has a next_page_token"
        with expect_status(Status.INVALID_ARGUMENT, naming="page_token"):
            client.list_executions(pb.ListExecutionsRequest(page_token=token))
        if pb.Capability.SECRETS in capabilities:
            with expect_status(Status.INVALID_ARGUMENT, naming="page_token"):
                client.list_secrets(pb.ListSecretsRequest(page_token=token))

    @pytest.mark.parametrize("rpc", ["list_agent_instances", "list_secrets"])
    def test_a_malformed_token_or_negative_size_is_invalid_argument(
        self, client: Client, capabilities: set[int], rpc: str
    ) -> None:
        """Every list: a negative `page_size` or a malformed `page_token` is INVALID_ARGUMENT naming it."""
        if rpc == "list_secrets" and pb.Capability.SECRETS not in capabilities:
            pytest.skip("optional: the backend does not report CAPABILITY_SECRETS")
        request = {"list_agent_instances": pb.ListAgentInstancesRequest, "list_secrets": pb.ListSecretsRequest}[rpc]
        with expect_status(Status.INVALID_ARGUMENT, naming="page_size"):
            getattr(client, rpc)(request(page_size=-1))
        with expect_status(Status.INVALID_ARGUMENT, naming="page_token"):
            getattr(client, rpc)(request(page_token="@@not a token@@"))
