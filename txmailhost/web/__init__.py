"""Webmail and mail-client autoconfiguration over HTTPS (twisted.web), in the server's process.

What it owns: the HTTPS site on ``[listen] web`` (``site.py``, one resource routing by path
in ``app.py``), the plain-HTTP listener that only redirects to it (``redirect.py``), the
browser sessions (``sessions.py``: server-side, in memory, ended at idle timeout, lifetime,
logout or restart), the pages (``login.py``, ``folders.py``, ``reading.py``, ``moving.py``,
``threads.py``, ``compose.py`` with ``composing.py`` and ``uploads.py``, ``search.py``,
``folderadmin.py``, ``settings.py``, ``admin*.py``) rendered with Jinja2 (autoescape on,
``rendering.py``) from ``templates/``, new-mail push (``events.py``, Server-Sent Events),
the assets in ``static/`` (ours, and htmx from npm, pinned and checked by hash in
``static.py``), messages parsed for reading (``messageview.py``, their header fields bounded
first by ``headerbounds.py``) with HTML made safe by nh3
(``sanitize.py``), sort orders and keys (``sortkeys.py``), the autoconfiguration files
(``autoconfig.py``, ``mobileconfig.py``).

What it may import: the accounts Portal (the same ``ThrottledPortal`` IMAP, POP3 and SMTP AUTH
log in through, so failures count across all of them), the store interfaces
(``store.interfaces``), ``session.auth.PasswordLogin`` and ``peer``; the IMAP server's pure
search modules (``imap.search``, ``imap.matching``, ``imap.session``'s view) and mailbox
observers (``imap.observers.tell``), its threading (``imap.thread``, ``imap.headerkeys``) and
its MIME splitter (``imap.mime``: an attached message downloads as IMAP's ``BODY[n]``),
so search, threads, spam training and part octets mean what they mean over IMAP; ``mailauth.dnsrecords``
and ``ops.log_grep`` for the admin console (the CLI's code); ``sieve.admin``/``sieve.scripts``
for the settings; ``replyfields`` (a reply's ids and subject, as vacation's); and
``smtp.outbox.Refused`` (the ``Outbox`` itself, port 587's pipeline, is built and handed in by
``listeners.py``). Never a protocol's server; nothing imports ``web`` but ``listeners.py``.

On disk: nothing of its own (compose and uploads use temporary files, gone with the
request); sessions live in memory; mail is reached only through ``IMailStore``/``IMailbox``
(the store's pool), accounts through ``IAccounts`` (the accounts pool); parsing, sanitising
and writing messages run in the site's own small pool.

Invariants a change must keep:

- every response carries the security headers of ``responses.py`` (a strict
  Content-Security-Policy without inline script, ``frame-ancestors``, ``nosniff``);
- every request that changes state is a POST carrying the session's CSRF token (the login
  form a signed one, since there is no session yet);
- the user is always the session's: no URL names a user, mailbox names go through the store's
  checks, so an id changed in a URL reaches only the user's own mail or a 404;
- the session cookie is ``Secure; HttpOnly; SameSite=Strict`` and changes at login;
- mail HTML is shown only sanitised, in a sandboxed iframe whose own policy forbids scripts and
  remote loads until the user allows images for that message.
"""
