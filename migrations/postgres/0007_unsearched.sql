-- The rows still without search text (written before migration 3), which the hub fills at start:
-- an index that stays empty once they are, so looking for them is not a scan of every message.
CREATE INDEX messages_unsearched ON messages (seq) WHERE search IS NULL;
