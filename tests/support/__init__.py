"""Helpers shared by the unit and system tests (the fixtures themselves are in tests/conftest.py).

    processes   the repository's folders, the environment of a `runner` subprocess, a pool's workers
    databases   SQL on a runner database, a foreign SQLite file, the PostgreSQL test server
    sweeps      a toy sweep with known outcomes (plots, reports)
    grid_db     an lr x width x seed sweep in three states (results, views)
    figures     checks on written PNGs
    markdown    sections and rows of a written report
    bytecode    interpreters with given bytecode settings
"""
