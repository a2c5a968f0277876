-- Search (issue 11): message text and customer names as agents type them, folded in Rust
-- (`model::text::fold`: lowercase, no tone marks, đ → d), indexed by FTS5 with prefix indexes of
-- one to three letters, so "d" and "da" already find "Đạt" without scanning every word that
-- starts so. The hub fills `search` for rows written before this migration.
ALTER TABLE messages ADD COLUMN search TEXT;
ALTER TABLE conversations ADD COLUMN customer_search TEXT;

CREATE VIRTUAL TABLE messages_fts USING fts5(
    search, content = 'messages', content_rowid = 'seq', prefix = '1 2 3'
);
-- Every existing row gets its (empty, until filled) entry, so the triggers' 'delete' finds one.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, search) VALUES (new.seq, new.search);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search) VALUES ('delete', old.seq, old.search);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF search ON messages
WHEN old.search IS NOT new.search BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, search) VALUES ('delete', old.seq, old.search);
    INSERT INTO messages_fts (rowid, search) VALUES (new.seq, new.search);
END;

CREATE VIRTUAL TABLE conversations_fts USING fts5(
    customer_search, content = 'conversations', content_rowid = 'rowid', prefix = '1 2 3'
);
INSERT INTO conversations_fts (conversations_fts) VALUES ('rebuild');
CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
    INSERT INTO conversations_fts (rowid, customer_search) VALUES (new.rowid, new.customer_search);
END;
CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, customer_search)
        VALUES ('delete', old.rowid, old.customer_search);
END;
CREATE TRIGGER conversations_fts_update AFTER UPDATE OF customer_search ON conversations
WHEN old.customer_search IS NOT new.customer_search BEGIN
    INSERT INTO conversations_fts (conversations_fts, rowid, customer_search)
        VALUES ('delete', old.rowid, old.customer_search);
    INSERT INTO conversations_fts (rowid, customer_search) VALUES (new.rowid, new.customer_search);
END;
