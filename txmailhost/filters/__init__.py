"""Content filters: a chain of small objects asked at each SMTP stage, before the reply.

What it owns:
- ``interfaces.py``: ``IMessageFilter`` (hooks at connect, HELO, MAIL, RCPT, end of data),
  the ``Client`` and ``Transaction`` facts a filter is shown, and its ``Verdict``: accept,
  add header fields, Junk, tempfail (4xx) or reject (5xx), with a reason, per recipient
  where that matters.
- ``base.py``: ``MessageFilter``, which accepts everything (subclass it), and
  ``fields_named``: the sender's copies of a filter's own fields, for it to remove.
- ``chain.py``: ``FilterChain``, which runs them in order with a time budget and a default
  for failures (``[filters] timeout``, ``on_error``), blocking ones in a worker thread.
- ``deadlines.py``: ``Deadlines``, the budget of the answers still to come from filters that
  answer later (a ``Deferred``), all watched by one reactor timer.
- ``registry.py``: names in ``[filters] chain`` to factories (registered, entry points of
  the ``txmailhost.filters`` group, or ``module:factory`` paths).

Who calls it: the SMTP server (``smtp/server.py``), at each stage, when ``service.py`` gave
its factory a chain. Header fields a filter adds are prepended to the message before it is
made durable (``delivery.incoming.IncomingMessage.prepend``); Junk marks go with the envelope
to the delivery agent, which picks the Junk folder after the ``250``.

Imports: nothing of the protocols, the store or delivery; filters see plain data and a
read-only stream. On disk: nothing. Invariants: a filter's failure or slowness never loses
an acknowledged message (the default is a 4xx) and never blocks the reactor thread.
Writing a filter: docs/filters.rst.
"""
