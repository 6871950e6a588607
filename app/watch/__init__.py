"""``trio-echo watch``: the parent side of watching another Trio program (issue 10).

``command.py`` (the command's root nursery), ``supervisor.py`` (the child
process, its environment and signals), ``link.py`` (the Unix socket the
agent reports to), ``session.py`` (pure: agent messages to feed events),
``own.py`` (``serve`` watching its own loop), ``pstext.py`` (pure: ``ps`` and
``pstree`` text).  The agent that runs inside the child is the separate
top-level package ``trio_echo_agent``.
"""
