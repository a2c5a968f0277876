-- A quick reply's image or file (issue 11, "optionally an image or file"): what it is on the
-- quick reply (listed with it), the bytes apart (read only when an agent inserts it). In the
-- database, not on one hub's disk, so every hub sharing the database can send it.
ALTER TABLE quick_replies ADD COLUMN file_kind TEXT;
ALTER TABLE quick_replies ADD COLUMN file_name TEXT;
ALTER TABLE quick_replies ADD COLUMN file_size BIGINT;
CREATE TABLE quick_reply_files (
    quick_reply_id TEXT PRIMARY KEY REFERENCES quick_replies (id) ON DELETE CASCADE,
    content        BYTEA NOT NULL
);
