-- Search (issue 11): message text and customer names as agents type them, folded in Rust
-- (`model::text::fold`: lowercase, no tone marks, đ → d), indexed as `simple` tsvectors so a
-- prefix query (`da:*`) already finds "Đạt". The hub fills `search` for rows written before this
-- migration.
ALTER TABLE messages ADD COLUMN search TEXT;
ALTER TABLE conversations ADD COLUMN customer_search TEXT;
CREATE INDEX messages_search ON messages
    USING gin (to_tsvector('simple', coalesce(search, '')));
CREATE INDEX conversations_search ON conversations
    USING gin (to_tsvector('simple', coalesce(customer_search, '')));
