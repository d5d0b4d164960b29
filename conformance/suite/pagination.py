"""`ListExecutions` paging: complete, ordered, no duplicates, stable under concurrent inserts."""

from __future__ import annotations

from collections.abc import Callable

from grpclib.const import Status

from stigmer_backend.conformance.client import Client, expect_status
from stigmer_backend.conformance.scenarios import apply_agent, claim, create_execution
from stigmer_backend.gen.stigmer.backend import v1 as pb

Phase = pb.ExecutionPhase


def _all_pages(
    client: Client,
    page_size: int,
    during_each_page: Callable[[int], object] | None = None,
    *,
    agent_instance_id: str = "",
    newest_first: bool = False,
    phases: list[pb.ExecutionPhase] | None = None,
) -> list[str]:
    ids: list[str] = []
    token, pages = "", 0
    while True:
        request = pb.ListExecutionsRequest(
            page_size=page_size,
            page_token=token,
            agent_instance_id=agent_instance_id,
            newest_first=newest_first,
            phases=phases or [],
        )
        page = client.list_executions(request)
        assert len(page.executions) <= page_size
        ids += [e.id for e in page.executions]
        token, pages = page.next_page_token, pages + 1
        if not token:
            return ids
        assert pages < 10_000, "paging does not end"
        if during_each_page:
            during_each_page(pages)


class TestListExecutions:
    def test_pages_are_complete_ordered_and_without_duplicates(self, client: Client) -> None:
        """All pages of one agent's executions: every one once, oldest first, `page_size` respected."""
        agent = apply_agent(client)
        created = [create_execution(client, agent).id for _ in range(11)]
        listed = _all_pages(client, 4, agent_instance_id=agent.id)
        assert listed == created

    def test_newest_first_reverses_the_order(self, client: Client) -> None:
        """`newest_first` lists by descending id."""
        agent = apply_agent(client)
        created = [create_execution(client, agent).id for _ in range(7)]
        assert _all_pages(client, 3, agent_instance_id=agent.id, newest_first=True) == created[::-1]

    def test_the_last_page_has_no_token(self, client: Client) -> None:
        """`next_page_token` is empty exactly when there are no more items."""
        agent = apply_agent(client)
        for _ in range(4):
            create_execution(client, agent)
        first = client.list_executions(pb.ListExecutionsRequest(page_size=4, agent_instance_id=agent.id))
        assert len(first.executions) == 4 and first.next_page_token == ""
        two = client.list_executions(pb.ListExecutionsRequest(page_size=2, agent_instance_id=agent.id))
        assert two.next_page_token

    def test_rows_added_while_paging_are_neither_skipped_nor_repeated(self, client: Client) -> None:
        """Executions created during paging: originals exactly once, new ones at most once, all in order."""
        agent = apply_agent(client)
        originals = [create_execution(client, agent).id for _ in range(9)]
        added: list[str] = []
        listed = _all_pages(
            client,
            3,
            during_each_page=lambda _: added.append(create_execution(client, agent).id),
            agent_instance_id=agent.id,
        )
        assert len(listed) == len(set(listed))
        assert listed[: len(originals)] == originals
        assert set(listed) <= set(originals) | set(added)
        assert listed == sorted(listed, key=lambda i: i.encode())

    def test_phase_filter(self, client: Client) -> None:
        """`phases` keeps only executions in one of the phases."""
        agent = apply_agent(client)
        pending = create_execution(client, agent)
        running = claim(client, create_execution(client, agent))
        listed = _all_pages(client, 10, agent_instance_id=agent.id, phases=[Phase.RUNNING])
        assert listed == [running.id]
        both = _all_pages(client, 10, agent_instance_id=agent.id, phases=[Phase.PENDING, Phase.RUNNING])
        assert both == sorted([pending.id, running.id], key=lambda i: i.encode())

    def test_unknown_agent_filter_matches_nothing(self, client: Client) -> None:
        """An `agent_instance_id` naming no agent instance matches nothing (not an error)."""
        response = client.list_executions(pb.ListExecutionsRequest(agent_instance_id="agi_nothing_here"))
        assert list(response.executions) == [] and response.next_page_token == ""

    def test_page_size_zero_means_50(self, client: Client) -> None:
        """`page_size` 0 means 50."""
        agent = apply_agent(client)
        for _ in range(51):
            create_execution(client, agent)
        page = client.list_executions(pb.ListExecutionsRequest(agent_instance_id=agent.id))
        assert len(page.executions) == 50 and page.next_page_token

    def test_a_token_is_bound_to_its_filters(self, client: Client) -> None:
        """A token replayed with other filters or order: INVALID_ARGUMENT naming `page_token`."""
        agent = apply_agent(client)
        for _ in range(3):
            create_execution(client, agent)
        token = client.list_executions(
            pb.ListExecutionsRequest(page_size=1, agent_instance_id=agent.id)
        ).next_page_token
        assert token
        for other in (
            pb.ListExecutionsRequest(page_size=1, page_token=token),
            pb.ListExecutionsRequest(page_size=1, page_token=token, agent_instance_id=agent.id, newest_first=True),
            pb.ListExecutionsRequest(page_size=1, page_token=token, agent_instance_id=agent.id, phases=[Phase.PENDING]),
        ):
            with expect_status(Status.INVALID_ARGUMENT, naming="page_token"):
                client.list_executions(other)
        same_filters_other_size = pb.ListExecutionsRequest(page_size=2, page_token=token, agent_instance_id=agent.id)
        assert len(client.list_executions(same_filters_other_size).executions) == 2
