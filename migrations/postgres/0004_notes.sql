-- Private notes (issue 11) are messages of kind 'note', never sent to Zalo. A note's mentions,
-- one row per colleague, newest first for their "Nhắc đến tôi" list.
CREATE TABLE mentions (
    account_id      TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    message_seq     BIGINT NOT NULL,
    message_id      TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL,
    PRIMARY KEY (account_id, message_seq)
);
