"""`make bench`: every ``bench_*.py`` module here, figures printed and saved as JSON.

A benchmark module defines ``run(quick: bool) -> list[dict]``; each dict is one case with at least
``case`` and the figures it measured (e.g. ``images_per_s``, ``seconds``, ``peak_mem_mb``) and,
where it compares against a reference measured in the same run, ``reference`` and ``ratio``.
"""
