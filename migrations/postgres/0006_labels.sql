-- Labels ("Nhãn", issue 11) are Zalo's tags on a page's followers. A customer's labels travel
-- with their conversation (a JSON array of names, like the other customer fields).
ALTER TABLE conversations ADD COLUMN customer_labels TEXT NOT NULL DEFAULT '[]';
-- Whether the customer follows the page (1/0), as Zalo last said; NULL until it has.
ALTER TABLE conversations ADD COLUMN customer_follows INTEGER;

-- The page's labels as the hub knows them: made here, seen in webhooks and profiles, or read
-- from Zalo's tag list when the page connects.
CREATE TABLE page_labels (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    PRIMARY KEY (connection_id, name)
);

-- Changes to send to Zalo's tag API, written with the change itself and sent like replies:
-- taken by one hub under a lease, in order per page, retried with backoff.
-- op: 'tag' and 'untag' a follower (user_id), 'remove' the page's tag (user_id empty).
CREATE TABLE tag_jobs (
    n BIGSERIAL PRIMARY KEY,
    connection_id   TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL DEFAULT '',
    op              TEXT NOT NULL CHECK (op IN ('tag', 'untag', 'remove')),
    name            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tag_jobs_page ON tag_jobs (connection_id, n);
