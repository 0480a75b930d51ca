"""The queue: grid files, their submission, and the store every job lives in.

Lives here: grid files (grid: parse, overrides, expansion) and their submission (submission: each
cell validated against the trainloop's plan, then added once by its config hash), job states
(states) and the store (store: schema, engine, job moves, readers). All SQL is in runner.queue.store
and nowhere else.

May import: runner.train (the options table and the job plan a cell must pass) and the base modules;
never pool, results or cli.
"""
