"""The PostgreSQL store's tables, as numbered migrations applied in order.

Why numbered steps and not "CREATE TABLE IF NOT EXISTS": several nodes share one database and
run different releases during an upgrade; each step is applied exactly once, in order, and
``schema_version`` says which ran. Every node runs ``upgrade`` when it starts (``txmailhost db
upgrade`` does the same by hand), in one transaction under an advisory lock, so nodes starting
together apply each step once. A node whose code is older than the database
refuses to start rather than write rows it does not understand.

A step is appended, never edited once released: a database that ran it must stay right.
Steps are known by their number, and ``upgrade`` applies each one the database lacks, not only
those above its highest: two branches that each add a step (6 and 7, say) merge without
renumbering, and a database that already ran 7 gets 6 at its next start. A number written
``None`` is reserved for a step another branch adds; it is neither applied nor recorded. Steps
are therefore written so that the order of independent ones does not matter.

What is where (docs/scaling.rst says the same for administrators):

- ``mail_users``: one row per mailbox owner (canonical address), made on first use;
- ``mailboxes``: one row per mailbox: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and the lowest UID
  no session has claimed as \\Recent. The row is the mailbox's lock: appends, flag changes
  and expunges take it (``FOR UPDATE``), so UIDs and MODSEQs are allocated in the committing
  transaction and become visible in ascending order;
- ``messages``: the index (UID, flags, size in CRLF form, INTERNALDATE, MODSEQ, the header
  block); ``message_chunks``: the message in its CRLF form, in chunks of at most 1 MiB of
  ``bytea``, so a large message is never one value held whole by the server or the client;
- ``expunged``: tombstones (UID, MODSEQ) for QRESYNC; ``derived``: values a protocol derived
  once (IMAP BODYSTRUCTURE), gone with their message;
- ``subscriptions``, ``access_keys``: IMAP LSUB and URLAUTH state per user;
- ``domains``, ``users``, ``login_origins``, ``aliases``, ``forwards`` (step 2): the accounts,
  when ``[store] accounts = "postgres"`` (``accounts/postgres.py``), as in ``accounts.sqlite``;
- step 3 (object ids): ``mailboxes.objectid`` (RFC 8474 MAILBOXID: the row keeps it through RENAME),
  ``messages.emailid`` (EMAILID, carried by each copy) and ``messages.savedate`` (RFC 8514:
  when the row was saved into its mailbox; NULL for rows older than the step, which then
  report their INTERNALDATE).
- ``queue_messages``, ``queue_chunks``, ``queue_recipients`` (step 4): the relay queue, when
  ``[queue] backend = "postgres"`` (``queue/postgres.py``): one row per recipient with its
  state, next attempt and lease (which node is delivering it, until when);
- ``throttle_failures``, ``greylist_triplets``, ``greylist_clients`` (step 4): recent login
  failures and greylisting state, shared by every node of a PostgreSQL store
  (``accounts/sharedfailures.py``, ``spam/greylist.py``);
- ``mailbox_acl`` (step 5): RFC 4314 ACL entries per mailbox row (``store/acl.py`` rights).
- step 6 (bodies in an object store): ``messages.blob``, the key of the object holding the
  message when ``[store] blobs = "s3"`` (``store/s3blobs.py``; its ``chunks`` is then 0 and it
  has no ``message_chunks``); NULL for a body in ``message_chunks``. Copies of a message share
  its object; the partial index finds the rows naming a key (deletion, ``db gc``).
- ``srs_keys``, ``sieve_scripts``, ``sieve_responses``, ``sieve_notices``, ``dkim_selectors``
  (step 7): state that lived in each node's data directory and must be the same on every
  node: the SRS signing keys (``srs.py``), users' Sieve scripts, whom a vacation answered and
  which script failure a user was told about (``sieve/shared.py``), the DKIM signing keys
  (``mailauth/sharedkeys.py``).
- ``mailbox_metadata``, ``server_metadata`` (step 8): IMAP METADATA entries (RFC 5464) per
  mailbox row (RENAME keeps the id, DELETE cascades) and per user (the account's own
  "server" entries), values as ``bytea``.
"""

from __future__ import annotations

from typing import Any

# The advisory lock key nodes take while upgrading ("txmh" in ASCII).
_LOCK = 0x74786D68

MIGRATIONS: tuple[str | None, ...] = (
    # 1: the mail store
    """
    CREATE TABLE mail_users (
        id bigserial PRIMARY KEY,
        address text NOT NULL UNIQUE
    );
    -- UIDVALIDITY comes from one sequence for every mailbox of every node: a mailbox created
    -- again always gets a greater one (RFC 3501 2.3.1.1), even within the same second.
    CREATE SEQUENCE uidvalidity_seq;
    SELECT setval('uidvalidity_seq', extract(epoch FROM now())::bigint);
    CREATE TABLE mailboxes (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL REFERENCES mail_users (id) ON DELETE CASCADE,
        name text NOT NULL,
        uidvalidity bigint NOT NULL DEFAULT nextval('uidvalidity_seq'),
        uidnext bigint NOT NULL DEFAULT 1,
        highestmodseq bigint NOT NULL DEFAULT 1,
        recent_uid bigint NOT NULL DEFAULT 1,
        -- octets of the messages in it, kept by the writers that hold the row anyway: a
        -- quota check (usage) reads one row per mailbox, not one per message
        size bigint NOT NULL DEFAULT 0,
        UNIQUE (user_id, name)
    );
    CREATE TABLE messages (
        id bigserial PRIMARY KEY,
        mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        modseq bigint NOT NULL,
        flags text[] NOT NULL DEFAULT '{}',
        size bigint NOT NULL,
        internaldate double precision NOT NULL,
        chunks integer NOT NULL,
        header bytea NOT NULL,
        UNIQUE (mailbox_id, uid)
    );
    CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
    -- Deferred: a message's chunks are written before its row, so the mailbox row (the lock
    -- every writer of the mailbox waits for) is held only for the row, not for the upload.
    CREATE TABLE message_chunks (
        message_id bigint NOT NULL
            REFERENCES messages (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        seq integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (message_id, seq)
    );
    CREATE TABLE expunged (
        mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        uid bigint NOT NULL,
        modseq bigint NOT NULL
    );
    CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
    CREATE TABLE derived (
        message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        name text NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (message_id, name)
    );
    CREATE TABLE subscriptions (
        user_id bigint NOT NULL REFERENCES mail_users (id) ON DELETE CASCADE,
        name text NOT NULL,
        PRIMARY KEY (user_id, name)
    );
    CREATE TABLE access_keys (
        user_id bigint NOT NULL REFERENCES mail_users (id) ON DELETE CASCADE,
        name text NOT NULL,
        key bytea NOT NULL,
        PRIMARY KEY (user_id, name)
    );
    """,
    # 2: accounts (txmailhost/accounts/postgres.py), the tables of accounts/db.py's SQLite file
    """
    CREATE TABLE domains (
        name text PRIMARY KEY,
        created double precision NOT NULL,
        default_quota bigint,
        alias_of text
    );
    CREATE TABLE users (
        address text PRIMARY KEY,
        domain text NOT NULL REFERENCES domains (name),
        password_hash text NOT NULL,
        created double precision NOT NULL,
        keep_copy integer NOT NULL DEFAULT 1,
        quota bigint
    );
    CREATE INDEX users_by_domain ON users (domain);
    CREATE TABLE login_origins (
        address text NOT NULL REFERENCES users (address) ON DELETE CASCADE,
        client text NOT NULL,
        last_login double precision NOT NULL,
        PRIMARY KEY (address, client)
    );
    CREATE TABLE aliases (
        address text NOT NULL,
        target text NOT NULL,
        created double precision NOT NULL,
        PRIMARY KEY (address, target)
    );
    CREATE TABLE forwards (
        address text NOT NULL REFERENCES users (address) ON DELETE CASCADE,
        target text NOT NULL,
        PRIMARY KEY (address, target)
    );
    """,
    # 3: object ids (RFC 8474) and save dates (RFC 8514); ids as store/objectids.py makes them
    """
    ALTER TABLE mailboxes ADD COLUMN objectid text NOT NULL
        DEFAULT 'F' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24);
    ALTER TABLE messages ADD COLUMN emailid text NOT NULL
        DEFAULT 'M' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24);
    -- Added without a default first, so rows already there keep NULL (no save date known).
    ALTER TABLE messages ADD COLUMN savedate double precision;
    ALTER TABLE messages ALTER COLUMN savedate SET DEFAULT extract(epoch FROM clock_timestamp());
    """,
    # 4: the relay queue (txmailhost/queue/postgres.py) and state shared between nodes
    """
    CREATE TABLE queue_messages (
        id bigserial PRIMARY KEY,
        queue_id text NOT NULL UNIQUE,
        sender text,  -- NULL: the null reverse-path <>
        arrival double precision NOT NULL,
        size bigint NOT NULL,
        hops integer NOT NULL,
        chunks integer NOT NULL,
        delay_warned boolean NOT NULL DEFAULT false,
        held boolean NOT NULL DEFAULT false,
        bounce_requested boolean NOT NULL DEFAULT false,
        body text NOT NULL,
        smtputf8 boolean NOT NULL,
        ret text NOT NULL,
        envid text NOT NULL,
        requiretls boolean NOT NULL
    );
    CREATE TABLE queue_chunks (
        message_id bigint NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
        seq integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (message_id, seq)
    );
    -- One row per recipient: the unit a node claims (FOR UPDATE SKIP LOCKED) and leases.
    CREATE TABLE queue_recipients (
        id bigserial PRIMARY KEY,
        message_id bigint NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
        position integer NOT NULL,
        address text NOT NULL,
        domain text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt double precision NOT NULL,
        status text NOT NULL DEFAULT '',
        diagnostic text NOT NULL DEFAULT '',
        remote_mta text NOT NULL DEFAULT '',
        notify text[] NOT NULL DEFAULT '{}',
        orcpt text NOT NULL DEFAULT '',
        lease_owner text,
        lease_until double precision NOT NULL DEFAULT 0,
        UNIQUE (message_id, position)
    );
    CREATE INDEX queue_recipients_due ON queue_recipients (next_attempt)
        WHERE state IN ('pending', 'deferred');
    CREATE INDEX queue_recipients_message ON queue_recipients (message_id);
    CREATE INDEX queue_recipients_lease ON queue_recipients (lease_owner)
        WHERE lease_owner IS NOT NULL;
    -- One row per failed login (or unknown recipient) on any node, kept for the throttle's
    -- window: each node adds the others' to its own counts (accounts/sharedfailures.py).
    CREATE TABLE throttle_failures (
        id bigserial PRIMARY KEY,
        kind text NOT NULL,
        client text,
        account text,
        at double precision NOT NULL,
        origin text NOT NULL
    );
    CREATE INDEX throttle_failures_at ON throttle_failures (at);
    -- who may use the webmail's admin console (accounts/db.py's "admins", missing until now)
    CREATE TABLE admins (
        address text PRIMARY KEY REFERENCES users (address) ON DELETE CASCADE
    );
    -- app passwords (accounts/apppasswords.py's table, missing until now)
    CREATE TABLE app_passwords (
        id bigserial PRIMARY KEY,
        address text NOT NULL REFERENCES users (address) ON DELETE CASCADE,
        name text NOT NULL,
        lookup text NOT NULL,
        password_hash text NOT NULL,
        created double precision NOT NULL,
        last_used double precision
    );
    CREATE INDEX app_passwords_by_user ON app_passwords (address, lookup);
    -- spam/greylist.py's two SQLite tables, shared
    CREATE TABLE greylist_triplets (
        network text NOT NULL,
        sender text NOT NULL,
        recipient text NOT NULL,
        first_seen double precision NOT NULL,
        passed double precision,
        last_seen double precision NOT NULL,
        PRIMARY KEY (network, sender, recipient)
    );
    CREATE TABLE greylist_clients (
        network text PRIMARY KEY,
        passes integer NOT NULL,
        last_seen double precision NOT NULL
    );
    """,
    # 5: RFC 4314 ACLs (IAclStore): entries follow their mailbox row (RENAME keeps the id,
    # DELETE cascades); the identifier index answers "what is shared with me" for LIST
    """
    CREATE TABLE mailbox_acl (
        mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        identifier text NOT NULL,
        rights text NOT NULL,
        PRIMARY KEY (mailbox_id, identifier)
    );
    CREATE INDEX mailbox_acl_by_identifier ON mailbox_acl (identifier);
    """,
    # 6: message bodies in an S3-compatible object store (store/s3blobs.py): the row names
    # its object; rows without one keep their body in message_chunks, so a database can
    # switch [store] blobs without moving what it holds
    """
    ALTER TABLE messages ADD COLUMN blob text;
    CREATE INDEX messages_blob ON messages (blob) WHERE blob IS NOT NULL;
    """,
    # 7: per-node state that a cluster must share (srs.py, sieve/shared.py, DKIM keys)
    """
    -- SRS keys: the newest signs, every one verifies (rotation keeps the old ones a while).
    CREATE TABLE srs_keys (
        id bigserial PRIMARY KEY,
        secret text NOT NULL UNIQUE,
        created double precision NOT NULL
    );
    -- Sieve scripts per user (canonical address), at most one active (the partial index).
    CREATE TABLE sieve_scripts (
        address text NOT NULL,
        name text NOT NULL,
        script text NOT NULL,
        active boolean NOT NULL DEFAULT false,
        updated double precision NOT NULL,
        PRIMARY KEY (address, name)
    );
    CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts (address) WHERE active;
    -- vacation: the digest of (sender, handle) a user answered, not again until "until"
    CREATE TABLE sieve_responses (
        address text NOT NULL,
        digest text NOT NULL,
        until double precision NOT NULL,
        PRIMARY KEY (address, digest)
    );
    CREATE INDEX sieve_responses_until ON sieve_responses (until);
    -- the digest of the last script failure each user was told about
    CREATE TABLE sieve_notices (
        address text PRIMARY KEY,
        digest text NOT NULL
    );
    -- DKIM keys: a selector per row (its Ed25519 and RSA keys), one active per domain
    CREATE TABLE dkim_selectors (
        domain text NOT NULL,
        name text NOT NULL,
        created double precision NOT NULL,
        active boolean NOT NULL DEFAULT false,
        ed25519_pem text NOT NULL,
        rsa_pem text NOT NULL,
        PRIMARY KEY (domain, name)
    );
    CREATE UNIQUE INDEX dkim_selectors_one_active ON dkim_selectors (domain) WHERE active;
    """,
    # 8: RFC 5464 METADATA (IMetadataStore): a mailbox's entries follow its row (RENAME keeps
    # the id; RENAME INBOX leaves them on INBOX, whose row stays; DELETE cascades), the
    # account's own ("server") entries go with the user's row
    """
    CREATE TABLE mailbox_metadata (
        mailbox_id bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
        entry text NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (mailbox_id, entry)
    );
    CREATE TABLE server_metadata (
        user_id bigint NOT NULL REFERENCES mail_users (id) ON DELETE CASCADE,
        entry text NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (user_id, entry)
    );
    """,
)

LATEST = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was upgraded by a newer release than this one."""


def applied_steps(conn: Any) -> set[int]:
    """The numbers of the steps the database behind ``conn`` has run."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_version")}


def _level(applied: set[int]) -> int:
    """The highest version up to which every step is there (reserved numbers count as there):
    what ``db status`` calls the schema version."""
    version = 0
    while version + 1 in applied or (version < LATEST and MIGRATIONS[version] is None):
        version += 1
    return version


def current_version(conn: Any) -> int:
    """The schema version of the database behind ``conn`` (0: nothing applied yet): every
    step up to it has run."""
    return _level(applied_steps(conn))


def missing_steps(conn: Any) -> list[int]:
    """The steps of this release the database has not run, in order."""
    applied = applied_steps(conn)
    return [
        number
        for number, step in enumerate(MIGRATIONS, 1)
        if step is not None and number not in applied
    ]


def upgrade(conn: Any) -> tuple[int, int]:
    """Apply every migration the database lacks; (version before, version after).

    One transaction under the advisory lock: a node that starts while another upgrades waits,
    then finds nothing left to do, and a failed step leaves the database as it was (DDL is
    transactional in PostgreSQL). ``conn`` is an autocommit psycopg connection."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY)")
        applied = applied_steps(conn)
        if applied and max(applied) > LATEST:
            raise SchemaTooNew(
                f"the database's schema is version {max(applied)}, newer than this release"
                f" knows ({LATEST}): upgrade txmailhost on this node"
            )
        before = _level(applied)
        for version, step in enumerate(MIGRATIONS, 1):
            if step is None or version in applied:
                continue
            conn.execute(step)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            applied.add(version)
    return before, _level(applied)
