-- Schema version 9 of the Caseway store, exactly as created by caseway-node at commit f91c9c2
-- (kSchema in server/store/notice_store.cc; the last commit of version 9). Used by
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
-- Version 5: cases and subjects, for Gateway.Case and remote queries. Two rows per notice held:
-- key = the first 8 bytes of SHA-256(subject_salt || 'c' || case_id), and of SHA-256(subject_salt
-- || 's' || common::SubjectDigest(id_number)) (never the number itself), as an integer; ref = the
-- notice_id (TEXT) of a notice published here, or the inbox_seq (INTEGER) of a received one.
CREATE TABLE IF NOT EXISTS case_index(
  key INTEGER NOT NULL, ref NOT NULL, PRIMARY KEY(key, ref)) WITHOUT ROWID;
-- Index rows not yet merged into case_index: appended, in id order, in each notice's own
-- transaction (cheap), and moved into case_index sorted, many at once, by
-- NoticeStore::MergeCaseIndex (a random insert per row into a large B-tree costs a page write
-- each when done per commit).
CREATE TABLE IF NOT EXISTS case_index_new(id INTEGER PRIMARY KEY, key INTEGER NOT NULL, ref NOT NULL);
-- The access log (docs/privacy.md): every read of personal data, with who, why and whose
-- (subject = the first 16 bytes of HMAC-SHA256(meta.access_key, identity number)).
CREATE TABLE IF NOT EXISTS access(
  id INTEGER PRIMARY KEY, at INTEGER NOT NULL, who TEXT NOT NULL, what TEXT NOT NULL,
  purpose TEXT NOT NULL, peer TEXT NOT NULL, notices INTEGER NOT NULL);
-- Version 7: a destination's copy of a notice published here, when the node's sharing policy
-- (docs/privacy.md) removed fields for it; the channel entry then carries these bytes, not
-- notice.bytes. Sealed like notice.bytes; emptied with it by retention.
CREATE TABLE IF NOT EXISTS shared_copy(
  id INTEGER PRIMARY KEY, destination TEXT NOT NULL, seq INTEGER NOT NULL, bytes BLOB NOT NULL,
  UNIQUE(destination, seq));
-- Version 9: log_node holds the perfect subtrees of 8 leaves and more only; levels 1 and 2 are
-- computed from log_leaf.hash (a version-8 binary reads them, and must not open it). Rows of
-- those levels written before stay, unread. No table changes.
-- Version 8: shared_copy bodies sealed under (destination, notice id); answers given under the
-- sharing policy kept as evidence (kind 7); meta.feed_epoch names this copy of the store for
-- departments' feed positions (a restored or rebuilt file gets a new one). A version-7 binary
-- must not open it (it could not open the new copies).
CREATE TABLE IF NOT EXISTS access_subject(
  subject BLOB NOT NULL, access INTEGER NOT NULL, PRIMARY KEY(subject, access)) WITHOUT ROWID;
