"""Several worker processes on one machine (``[server] workers = N``).

``supervisor.py`` is the process twistd runs: it binds the listening sockets and starts N
workers (``main.py``), each a full server built by ``service.build`` with a ``role.WorkerRole``
and sharing the data directory; ``bus.py`` carries what the workers must tell each other.
See docs/scaling.rst.
"""
