-- A taken reply job is marked just before the message goes to Zalo. A job whose hub died with it
-- taken comes back after its lease: sent again when it never reached that mark (Zalo never saw
-- it), left to Zalo's echo when it did (whether Zalo got it is unknown).
ALTER TABLE reply_jobs ADD COLUMN sending INTEGER NOT NULL DEFAULT 0;
