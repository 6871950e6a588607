"""``trio-echo bench``: a load tool for echo servers, and the feed's fan-out benchmark.

:mod:`app.bench.stats` is pure (histogram, summary, table); :mod:`app.bench.load`
drives the connections under Trio.
"""
