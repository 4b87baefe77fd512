"""The peer comparison harness: the tutorial app on several session stores, measured side by side.

Run through ``bench/compare``, which builds the peers first. One module per concern:

* ``settings``  the knobs, read from the environment once;
* ``peers``     what each peer is and how it is started;
* ``procs``     processes started here (stopped here, by PID) and their CPU and memory;
* ``resp``      a small Redis client: INFO snapshots, MONITOR samples;
* ``web``       a small HTTP client: browser-like logins, requests from many threads;
* ``checks``    the tutorial flow, the lost-update test, bytes per session;
* ``load``      wrk and redis-benchmark;
* ``run``       the interleaved rounds and the per-request accounting;
* ``report``    the markdown report; ``chart`` the SVG bar chart.

Only the Python standard library is used.
"""
