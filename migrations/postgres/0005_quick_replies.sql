-- Quick replies (issue 11, "Tin nhắn mẫu"): shared by an admin (owner NULL) or an agent's own.
CREATE TABLE quick_replies (
    id         TEXT PRIMARY KEY,
    owner      TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    shortcut   TEXT NOT NULL,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX quick_replies_owner ON quick_replies (owner);
