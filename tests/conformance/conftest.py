"""Fixtures for runs against a real ``stigmer server``; see ``tests.remote_fixtures``."""

from tests.remote_fixtures import db_path, home, served, server_env, token, token_file  # noqa: F401
