"""The ``fastconc bench`` command: it measures every backend side by side
with the standard library and the peer libraries.  Above everything it
measures; nothing in the library imports it.

cli        the command line (``fastconc``, ``python -m fastconc``)
runner     the groups, the timing loop, the table, the JSON and the plot
workloads  the measured code, shared with benches/ (pytest-benchmark)
"""
