-- Schema version 4 of the Caseway store, exactly as created by caseway-node at commit a4dfdd7
-- (kSchema in server/store/notice_store.cc; the last commit of version 4). Used by
-- NoticeStoreTest.EveryEarlierSchemaMigrates: never edit, add a file for the next version.
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Notices published here: exact bytes as delivered, SHA-256 digest for idempotency.
CREATE TABLE IF NOT EXISTS notice(
  notice_id TEXT PRIMARY KEY,
  digest BLOB NOT NULL,
  bytes BLOB NOT NULL,
  published_at INTEGER NOT NULL,            -- unix microseconds
  deliveries TEXT NOT NULL,                 -- "dest:seq,dest:seq" in destination order
  request_digest BLOB);                     -- as the publisher sent it (v4; NULL: = digest)
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
-- Version 2: the exchange log (docs/exchange-log.md). Version 3: notice.deliveries replaces the
-- channel_entry_by_notice index (see Migrate).
CREATE TABLE IF NOT EXISTS log_leaf(idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log_node(
  level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
  PRIMARY KEY(level, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint(
  size INTEGER PRIMARY KEY, root BLOB NOT NULL, note BLOB NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cosignature(
  size INTEGER NOT NULL, witness TEXT NOT NULL, line BLOB NOT NULL,
  PRIMARY KEY(size, witness)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS witnessed(
  peer TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL);
-- Signed manifests and receipts, sent and received (kind = caseway.v1.Evidence.Kind).
CREATE TABLE IF NOT EXISTS evidence(
  id INTEGER PRIMARY KEY,
  kind INTEGER NOT NULL, peer TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
  digest BLOB NOT NULL, message BLOB NOT NULL, signature BLOB NOT NULL,
  log_index INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS evidence_by_peer ON evidence(peer, kind, last_seq);
-- Version 4: replies and the to-do list (docs/policy.md). One item per notice that owes a reply
-- and party that owes it: side 1 (caseway.v1.TodoRequest.Side) this node owes `peer` a reply to
-- a received notice; side 2 `peer` owes this node one. state = caseway.v1.TodoItem.State.
CREATE INDEX IF NOT EXISTS inbox_by_notice ON inbox(notice_id);
CREATE TABLE IF NOT EXISTS obligation(
  origin TEXT NOT NULL, notice_id TEXT NOT NULL, peer TEXT NOT NULL,
  side INTEGER NOT NULL,
  case_id TEXT NOT NULL, kind TEXT NOT NULL, priority INTEGER NOT NULL,
  opened_at INTEGER NOT NULL,               -- unix microseconds: received or published
  due INTEGER NOT NULL,                     -- unix microseconds: the deadline applied here
  stated_due INTEGER,                       -- the notice's reply_due, when it has one
  state INTEGER NOT NULL,
  cleared_by TEXT, cleared_at INTEGER, superseded_by TEXT,
  PRIMARY KEY(origin, notice_id, peer)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS obligation_open ON obligation(due) WHERE state = 1;
-- Received replies, voids and corrections that name a notice this node does not know.
CREATE TABLE IF NOT EXISTS anomaly(
  id INTEGER PRIMARY KEY, peer TEXT NOT NULL, notice_id TEXT NOT NULL,
  received_at INTEGER NOT NULL, problem TEXT NOT NULL);
