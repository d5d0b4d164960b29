"""The SQL of one ``ListExecutions`` page: one index range per phase, whatever the filters.

Every filter the contract allows (agent instance, any set of phases, a page
token, either order) is answered from an index whose leading columns are the
filters and whose last column is ``id``, the page order: the page costs the
same with a thousand rows or a million. Several phases cannot share one
ordered range, so each phase gets its own ranged, limited subquery and SQLite
merges them in ``id`` order (at most ``phases * page`` rows read).
``tests/sqlite/test_list_query_plans.py`` pins the plan of every combination.
"""

from __future__ import annotations

from ._rows import EXECUTION_COLUMNS, SqlValue

__all__ = ["page_query"]

_COLUMNS = ", ".join(EXECUTION_COLUMNS)


def page_query(
    agent_instance_id: str, phases: list[int], after: str | None, newest_first: bool, limit: int
) -> tuple[str, tuple[SqlValue, ...]]:
    """``(sql, parameters)`` selecting ``EXECUTION_COLUMNS`` of at most ``limit`` rows of the page."""
    order = "DESC" if newest_first else "ASC"
    where: list[str] = []
    params: list[SqlValue] = []
    if agent_instance_id:
        where.append("agent_instance_id = ?")
        params.append(agent_instance_id)
    if after is not None:
        where.append("id < ?" if newest_first else "id > ?")
        params.append(after)
    distinct = sorted(set(phases))
    if len(distinct) <= 1:
        if distinct:
            where.append("phase = ?")
            params.append(distinct[0])
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {_COLUMNS} FROM executions{condition} ORDER BY id {order} LIMIT ?", (*params, limit)
    condition = " AND ".join([*where, "phase = ?"])
    branch = f"SELECT * FROM (SELECT {_COLUMNS} FROM executions WHERE {condition} ORDER BY id {order} LIMIT ?)"
    sql = " UNION ALL ".join([branch] * len(distinct)) + f" ORDER BY id {order} LIMIT ?"
    return sql, (*(value for phase in distinct for value in (*params, phase, limit)), limit)
