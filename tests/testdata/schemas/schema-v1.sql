-- Schema version 1 of the Caseway store, exactly as created by caseway-node at commit 7a9c60f
-- (kSchema in server/store/notice_store.cc; the last commit of version 1). Used by
-- NoticeStoreTest.EveryEarlierSchemaMigrates: never edit, add a file for the next version.
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Notices published here: exact bytes as delivered, SHA-256 digest for idempotency.
CREATE TABLE IF NOT EXISTS notice(
  notice_id TEXT PRIMARY KEY,
  digest BLOB NOT NULL,
  bytes BLOB NOT NULL,
  published_at INTEGER NOT NULL);           -- unix microseconds
-- Outbound channels (this node -> destination): one row per destination.
CREATE TABLE IF NOT EXISTS channel(
  destination TEXT PRIMARY KEY,
  head INTEGER NOT NULL,                    -- highest seq assigned
  acked INTEGER NOT NULL DEFAULT 0);        -- highest seq the destination acknowledged
CREATE TABLE IF NOT EXISTS channel_entry(
  destination TEXT NOT NULL,
  seq INTEGER NOT NULL,
  notice_id TEXT NOT NULL REFERENCES notice(notice_id),
  PRIMARY KEY(destination, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS channel_entry_by_notice ON channel_entry(notice_id, destination);
-- Inbound subscriptions: highest seq stored per origin.
CREATE TABLE IF NOT EXISTS cursor(origin TEXT PRIMARY KEY, seq INTEGER NOT NULL);
-- Received notices, exactly once per (origin, channel_seq).
CREATE TABLE IF NOT EXISTS inbox(
  inbox_seq INTEGER PRIMARY KEY AUTOINCREMENT,
  origin TEXT NOT NULL,
  channel_seq INTEGER NOT NULL,
  notice_id TEXT NOT NULL,
  bytes BLOB NOT NULL,
  received_at INTEGER NOT NULL,             -- unix microseconds
  acked_at INTEGER,                         -- unix microseconds, NULL until consumed
  UNIQUE(origin, channel_seq));
CREATE INDEX IF NOT EXISTS inbox_unacked ON inbox(inbox_seq) WHERE acked_at IS NULL;
