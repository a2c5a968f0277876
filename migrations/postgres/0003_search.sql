-- Search (issue 11): message text and customer names as agents type them, folded in Rust
-- (`model::text::fold`: lowercase, no tone marks, đ → d), kept as `simple` tsvectors in stored
-- columns (a row is tested without re-parsing its text) with GIN indexes, so a prefix query
-- (`da:*`) already finds "Đạt". The hub fills `search` for rows written before this migration.
ALTER TABLE messages ADD COLUMN search TEXT;
ALTER TABLE messages ADD COLUMN search_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(search, ''))) STORED;
CREATE INDEX messages_search ON messages USING gin (search_words);
ALTER TABLE conversations ADD COLUMN customer_search TEXT;
ALTER TABLE conversations ADD COLUMN customer_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(customer_search, ''))) STORED;
CREATE INDEX conversations_search ON conversations USING gin (customer_words);
