-- The hub's relational schema (issue 10). The SQLite file of the same name differs only where
-- the engines do; ids stay text ("a1", "c42", "m7") as the API has always shown them.

-- Counters moved inside writing transactions: `event` orders the log (gap-free, commit order:
-- its row lock is held until commit), the others number new ids.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES
    ('event', 0), ('account', 0), ('connection', 0), ('rule', 0),
    ('conversation', 0), ('message', 0), ('webhook', 0);

CREATE TABLE accounts (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    username     TEXT NOT NULL,
    -- lower-cased handles: rules and commands name members case-insensitively
    email_key    TEXT NOT NULL UNIQUE,
    username_key TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    availability TEXT NOT NULL CHECK (availability IN ('available', 'away')),
    created_at   BIGINT NOT NULL
);

-- Bearer tokens are kept only as SHA-256 hashes; one current token per account.
CREATE TABLE account_tokens (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE rules (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    method            TEXT NOT NULL CHECK (method IN ('round_robin', 'self_claim')),
    old_conversations TEXT NOT NULL CHECK (old_conversations IN ('none', 'available', 'all')),
    -- round robin: the member who received the last conversation (read and moved under the
    -- row lock of the transaction that routes)
    cursor            TEXT REFERENCES accounts (id) ON DELETE SET NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE rule_members (
    rule_id    TEXT NOT NULL REFERENCES rules (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    PRIMARY KEY (rule_id, account_id)
);

CREATE TABLE connections (
    id                TEXT PRIMARY KEY,
    oa_id             TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    avatar            TEXT NOT NULL DEFAULT '',
    category          TEXT NOT NULL DEFAULT '',
    connector         TEXT NOT NULL REFERENCES accounts (id),
    connected_at      BIGINT NOT NULL,
    last_connected_at BIGINT NOT NULL,
    chat_mode         TEXT NOT NULL CHECK (chat_mode IN ('only_me', 'shared')),
    status            TEXT NOT NULL CHECK (status IN ('connected', 'needs_reauth', 'disconnected')),
    status_reason     TEXT,
    last_event_at     BIGINT,
    last_error        TEXT
);

-- A page is the source of at most one rule.
CREATE TABLE rule_sources (
    connection_id TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    rule_id       TEXT NOT NULL REFERENCES rules (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL
);
CREATE INDEX rule_sources_by_rule ON rule_sources (rule_id, position);

-- The OA grant's tokens. Zalo burns a refresh token on first use, so one hub at a time may
-- refresh: it takes the lease (a conditional UPDATE), calls Zalo outside any transaction, then
-- stores the new pair and frees the lease; the others wait for the new pair.
CREATE TABLE connection_tokens (
    connection_id       TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    access_token        TEXT NOT NULL,
    refresh_token       TEXT NOT NULL,
    access_expires_at   BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    refresh_lease_until BIGINT NOT NULL DEFAULT 0
);

-- OAuth consents begun and not yet completed (PKCE verifier), by their `state`.
CREATE TABLE consents (
    state      TEXT PRIMARY KEY,
    verifier   TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

CREATE TABLE conversations (
    id                  TEXT PRIMARY KEY,
    connection_id       TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    customer_id         TEXT NOT NULL,
    customer_name       TEXT NOT NULL,
    customer_avatar     TEXT NOT NULL DEFAULT '',
    customer_fetched_at BIGINT NOT NULL DEFAULT 0,
    assignee            TEXT REFERENCES accounts (id) ON DELETE SET NULL,
    state               TEXT NOT NULL CHECK (state IN ('unclaimed', 'assigned', 'unattended')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'done')),
    origin              TEXT NOT NULL CHECK (origin IN ('live', 'history')),
    last_interaction_at BIGINT,
    last_activity_at    BIGINT NOT NULL,
    waiting_since       BIGINT,
    -- `waiting_since`, else `created_at`: the unclaimed queue's order, indexed
    waiting_at          BIGINT NOT NULL,
    preview             TEXT NOT NULL DEFAULT '',
    created_at          BIGINT NOT NULL,
    UNIQUE (connection_id, customer_id)
);
-- The views: mine by activity, unclaimed by waiting, all by activity.
CREATE INDEX conversations_mine ON conversations (assignee, last_activity_at DESC, id);
CREATE INDEX conversations_unclaimed ON conversations (waiting_at, id) WHERE state = 'unclaimed';
CREATE INDEX conversations_all ON conversations (last_activity_at DESC, id);

CREATE TABLE unread (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    account_id      TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    count           INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, account_id)
);

CREATE TABLE assignments (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    n               INTEGER NOT NULL,
    at              BIGINT NOT NULL,
    to_account      TEXT,
    by_account      TEXT,
    reason          TEXT NOT NULL,
    PRIMARY KEY (conversation_id, n)
);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    -- arrival order, the tie-break within a thread's time order
    seq             BIGINT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    connection_id   TEXT NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    sender          TEXT NOT NULL,
    sender_name     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    text            TEXT NOT NULL,
    attachments     TEXT NOT NULL DEFAULT '[]',
    zalo_msg_id     TEXT,
    quote_msg_id    TEXT,
    client_key      TEXT,
    delivery        TEXT,
    error_code      BIGINT,
    error_reason    TEXT,
    created_at      BIGINT NOT NULL,
    raw             TEXT,
    -- a webhook delivered twice, or through two hubs, is one message
    UNIQUE (connection_id, zalo_msg_id)
);
CREATE INDEX messages_thread ON messages (conversation_id, created_at, seq);
-- client keys are scoped to the sender and the conversation
CREATE UNIQUE INDEX messages_client_key ON messages (sender, conversation_id, client_key)
    WHERE client_key IS NOT NULL;

-- Replies waiting for Zalo. A hub takes due ones (PostgreSQL: FOR UPDATE SKIP LOCKED) by
-- setting a lease, only the oldest of each conversation, so a conversation's replies go out in
-- order and each once; finishing deletes the job. A lease that runs out means its hub died
-- mid-send: the outcome is unknown, and the job is not sent again blindly.
CREATE TABLE reply_jobs (
    message_id      TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    message_seq     BIGINT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    attachment      TEXT
);
CREATE INDEX reply_jobs_due ON reply_jobs (next_attempt_at);
CREATE INDEX reply_jobs_by_conversation ON reply_jobs (conversation_id, message_seq);

-- Sends whose outcome is unknown, waiting for Zalo's echo until the echo window ends.
CREATE TABLE unknown_sends (
    message_id      TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL,
    since           BIGINT NOT NULL
);

-- The event log consoles resume from: `seq` is gap-free and in commit order across hubs.
CREATE TABLE events (
    seq      BIGINT PRIMARY KEY,
    at       BIGINT NOT NULL,
    -- account ids as a JSON array; "*" inside means everyone
    audience TEXT NOT NULL,
    body     TEXT NOT NULL
);

-- Webhooks as Zalo signed them, stored once by their key before the 200.
CREATE TABLE webhooks (
    n           BIGINT PRIMARY KEY,
    dedupe_key  TEXT NOT NULL UNIQUE,
    received_at BIGINT NOT NULL,
    body        TEXT NOT NULL
);

-- Events the hub does not understand, kept so nothing is lost.
CREATE TABLE raw_events (
    n           BIGINT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    body        TEXT NOT NULL
);

-- Webhooks that could not be applied after three tries.
CREATE TABLE dead_webhooks (
    n     BIGINT PRIMARY KEY,
    at    BIGINT NOT NULL,
    error TEXT NOT NULL,
    body  TEXT NOT NULL
);

-- One row the health check writes durably.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY,
    checked_at BIGINT NOT NULL
);
INSERT INTO health (id, checked_at) VALUES (1, 0);
