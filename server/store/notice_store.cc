#include "server/store/notice_store.h"
#include "server/store/statements.h"
#include "server/store/postgres.h"
#include "server/store/sqlite.h"
#include "server/store/writer_lease.h"

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <future>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/validation.h"
#include "caseway/v1/notice.pb.h"
#include "common/grpc_status.h"
#include "common/log_entry.h"
#include "common/refusal.h"
#include "common/status_macros.h"
#include "common/thread_name.h"

namespace caseway::server {
namespace {

constexpr int kSchemaVersion = kStoreSchemaVersion;

constexpr const char* kSchema = R"sql(
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
-- Version 10: an item is keyed by its notice's place on the channel between this node and `peer`
-- (side 1: inbox.channel_seq of a notice `peer` sent, its first if sent twice; side 2: the seq of
-- one published here on the channel to `peer`), so that items are appended in channel order.
-- Version 4 keyed them by (origin, notice_id, peer): with random notice ids, each item was a write
-- to a page of its own.
CREATE INDEX IF NOT EXISTS inbox_by_notice ON inbox(notice_id);
CREATE TABLE IF NOT EXISTS obligation(
  peer TEXT NOT NULL, side INTEGER NOT NULL, seq INTEGER NOT NULL,
  origin TEXT NOT NULL, notice_id TEXT NOT NULL,
  case_id TEXT NOT NULL, kind TEXT NOT NULL, priority INTEGER NOT NULL,
  opened_at INTEGER NOT NULL,               -- unix microseconds: received or published
  due INTEGER NOT NULL,                     -- unix microseconds: the deadline applied here
  stated_due INTEGER,                       -- the notice's reply_due, when it has one
  state INTEGER NOT NULL,
  cleared_by TEXT, cleared_at INTEGER, superseded_by TEXT,
  PRIMARY KEY(peer, side, seq)) WITHOUT ROWID;
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
)sql";
// The same schema for PostgreSQL (the newest version only: no PostgreSQL database predates it).
// SQLite's INTEGER is 64-bit (BIGINT here) and its BLOB is BYTEA; an INTEGER PRIMARY KEY is an
// identity column; the tables whose SQLite rowid the store reads (notice, meta: retention and
// reseal scan them in rowid order) get a column of that name, last (so that an INSERT without a
// column list fills the same columns as in SQLite); case_index.ref holds a notice id,
// or "#" and an inbox_seq (notice ids never hold '#'), where SQLite keeps text or an integer;
// meta.value is BYTEA: SQLite's TEXT column holds the sealed access key's bytes too.
constexpr const char* kPgSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY, value BYTEA NOT NULL,
  rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE);
CREATE TABLE IF NOT EXISTS notice(
  notice_id TEXT PRIMARY KEY,
  digest BYTEA NOT NULL,
  bytes BYTEA NOT NULL,
  published_at BIGINT NOT NULL,
  deliveries TEXT NOT NULL,
  request_digest BYTEA,
  rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE);
CREATE TABLE IF NOT EXISTS channel(
  destination TEXT PRIMARY KEY,
  head BIGINT NOT NULL,
  acked BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS channel_entry(
  destination TEXT NOT NULL,
  seq BIGINT NOT NULL,
  notice_id TEXT NOT NULL REFERENCES notice(notice_id),
  PRIMARY KEY(destination, seq));
CREATE TABLE IF NOT EXISTS cursor(origin TEXT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS inbox(
  inbox_seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  origin TEXT NOT NULL,
  channel_seq BIGINT NOT NULL,
  notice_id TEXT NOT NULL,
  bytes BYTEA NOT NULL,
  received_at BIGINT NOT NULL,
  acked_at BIGINT,
  UNIQUE(origin, channel_seq));
CREATE INDEX IF NOT EXISTS inbox_unacked ON inbox(inbox_seq) WHERE acked_at IS NULL;
CREATE TABLE IF NOT EXISTS log_leaf(idx BIGINT PRIMARY KEY, bytes BYTEA NOT NULL, hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS log_node(
  level BIGINT NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL,
  PRIMARY KEY(level, idx));
CREATE TABLE IF NOT EXISTS checkpoint(
  size BIGINT PRIMARY KEY, root BYTEA NOT NULL, note BYTEA NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS cosignature(
  size BIGINT NOT NULL, witness TEXT NOT NULL, line BYTEA NOT NULL,
  PRIMARY KEY(size, witness));
CREATE TABLE IF NOT EXISTS witnessed(
  peer TEXT PRIMARY KEY, size BIGINT NOT NULL, root BYTEA NOT NULL, note BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS evidence(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  kind BIGINT NOT NULL, peer TEXT NOT NULL,
  first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
  digest BYTEA NOT NULL, message BYTEA NOT NULL, signature BYTEA NOT NULL,
  log_index BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS evidence_by_peer ON evidence(peer, kind, last_seq);
CREATE INDEX IF NOT EXISTS inbox_by_notice ON inbox(notice_id);
CREATE TABLE IF NOT EXISTS obligation(
  peer TEXT NOT NULL, side BIGINT NOT NULL, seq BIGINT NOT NULL,
  origin TEXT NOT NULL, notice_id TEXT NOT NULL,
  case_id TEXT NOT NULL, kind TEXT NOT NULL, priority BIGINT NOT NULL,
  opened_at BIGINT NOT NULL,
  due BIGINT NOT NULL,
  stated_due BIGINT,
  state BIGINT NOT NULL,
  cleared_by TEXT, cleared_at BIGINT, superseded_by TEXT,
  PRIMARY KEY(peer, side, seq));
CREATE INDEX IF NOT EXISTS obligation_open ON obligation(due) WHERE state = 1;
CREATE TABLE IF NOT EXISTS anomaly(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, peer TEXT NOT NULL,
  notice_id TEXT NOT NULL, received_at BIGINT NOT NULL, problem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS case_index(
  key BIGINT NOT NULL, ref TEXT NOT NULL, PRIMARY KEY(key, ref));
CREATE TABLE IF NOT EXISTS case_index_new(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, key BIGINT NOT NULL, ref TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS access(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at BIGINT NOT NULL, who TEXT NOT NULL,
  what TEXT NOT NULL, purpose TEXT NOT NULL, peer TEXT NOT NULL, notices BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS shared_copy(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, destination TEXT NOT NULL,
  seq BIGINT NOT NULL, bytes BYTEA NOT NULL, UNIQUE(destination, seq));
CREATE TABLE IF NOT EXISTS access_subject(
  subject BYTEA NOT NULL, access BIGINT NOT NULL, PRIMARY KEY(subject, access));
)sql";

int64_t NowMicros() { return absl::ToUnixMicros(common::Now()); }

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParseDeliveries(absl::string_view text) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (absl::string_view d : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(d, absl::MaxSplits(':', 1));
    int64_t seq = 0;
    if (kv.first.empty() || !absl::SimpleAtoi(kv.second, &seq) || seq <= 0) {
      return absl::DataLossError("notice.deliveries: malformed");
    }
    out.emplace_back(std::string(kv.first), seq);
  }
  return out;
}

// CheckSealKeys refuses to open a database with personal data sealed by a key the node does not
// have (none configured, or not listed in the key file), and records that the current key seals
// from now on (meta 'seal_keys': ids, comma-separated; ResealBodies resets it).
static absl::Status CheckSealKeys(Db& db, const std::string& path, const Sealer* sealer) {
  std::set<uint32_t> used;
  {
    Stmt s(&db, "SELECT value FROM meta WHERE key = 'seal_keys'");
    if (s.Step()) {
      for (absl::string_view id : absl::StrSplit(s.Text(0), ',', absl::SkipEmpty())) {
        uint32_t k = 0;
        if (!absl::SimpleAtoi(id, &k)) {
          return absl::DataLossError("meta.seal_keys: comma-separated key ids 1..4294967295 expected");
        }
        used.insert(k);
      }
    }
    RETURN_IF_ERROR(s.status("read meta.seal_keys"));
  }
  if (sealer == nullptr) {
    if (used.empty()) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": personal data here is sealed (encrypted at rest) with key ",
        absl::StrJoin(used, ", "), "; set storage.key_file to the key file that lists it"));
  }
  for (uint32_t k : used) {
    if (!sealer->Has(k)) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": key ", k, " sealed personal data here, and ", sealer->file(),
          " does not list it (put it back; remove a key only after `caseway-node reseal`)"));
    }
  }
  if (used.insert(sealer->current_key()).second) {
    Stmt s(&db, "INSERT INTO meta(key, value) VALUES('seal_keys', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    s.Bind(1, absl::StrJoin(used, ","));
    s.Step();
    RETURN_IF_ERROR(s.status("write meta.seal_keys"));
  }
  return absl::OkStatus();
}

// Migrate brings a database of an older schema version up to kSchemaVersion, in one transaction.
static absl::Status Migrate(Db& db) {
  bool has_deliveries = false;
  bool has_request_digest = false;
  {
    Stmt s(&db, "SELECT name FROM pragma_table_info('notice')");
    while (s.Step()) {
      has_deliveries |= s.Text(0) == "deliveries";
      has_request_digest |= s.Text(0) == "request_digest";
    }
    RETURN_IF_ERROR(s.status("read notice columns"));
  }
  // Version 4: the publisher's digest, for retries of notices the node completes.
  if (!has_request_digest) {
    RETURN_IF_ERROR(db.Exec("ALTER TABLE notice ADD COLUMN request_digest BLOB;"));
  }
  if (has_deliveries) return absl::OkStatus();
  // Versions 1 and 2: the assigned sequences lived only in channel_entry (indexed by notice).
  // `deliveries` lists them in the notice's destination order, as a publisher's retry answers.
  RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE;"
                          "ALTER TABLE notice ADD COLUMN deliveries TEXT NOT NULL DEFAULT '';"));
  absl::Status status = [&]() -> absl::Status {
    Stmt notices(&db, "SELECT notice_id, bytes FROM notice");
    Stmt seq(&db, "SELECT seq FROM channel_entry WHERE notice_id = ? AND destination = ?");
    Stmt update(&db, "UPDATE notice SET deliveries = ? WHERE notice_id = ?");
    while (notices.Step()) {
      const std::string id = notices.Text(0);
      v1::Notice n;
      if (!n.ParseFromString(std::string(notices.Blob(1)))) {
        return absl::DataLossError(absl::StrCat("notice ", id, ": stored bytes do not parse"));
      }
      std::vector<std::string> parts;
      for (const std::string& destination : n.destinations()) {
        seq.Bind(1, id).Bind(2, destination);
        if (seq.Step()) parts.push_back(absl::StrCat(destination, ":", seq.Int(0)));
        RETURN_IF_ERROR(seq.status("read channel_entry"));
        seq.Reset();
      }
      update.Bind(1, absl::StrJoin(parts, ",")).Bind(2, id);
      update.Step();
      RETURN_IF_ERROR(update.status("set notice.deliveries"));
      update.Reset();
    }
    return notices.status("read notices");
  }();
  if (!status.ok()) {
    (void)db.Exec("ROLLBACK;");
    return status;
  }
  return db.Exec("DROP INDEX IF EXISTS channel_entry_by_notice; COMMIT;");
}

// MigrateTodoKeys brings the to-do items of versions 4 to 9, keyed by (origin, notice_id, peer),
// to version 10's key (peer, side, seq), and records version 10, in one transaction (a version-9
// binary must never find the new table under its own version). Each item gets the seq of its
// notice on its channel: a received one's from its inbox row (the first, if the origin sent the
// notice twice), a published one's from notice.deliveries. An item whose notice the database
// does not hold cannot be keyed: the migration stops and the to-do table stays as it was (rows
// are never deleted, so only a damaged database has one).
static absl::Status MigrateTodoKeys(Db& db, const char* schema) {
  const bool pg = db.backend() == Db::Backend::kPostgres;
  {
    Stmt s(&db, pg ? "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                     "current_schema() AND table_name = 'obligation' AND column_name = 'seq'"
                   : "SELECT 1 FROM pragma_table_info('obligation') WHERE name = 'seq'");
    const bool current = s.Step();
    RETURN_IF_ERROR(s.status("read obligation columns"));
    if (current) return absl::OkStatus();
  }
  RETURN_IF_ERROR(db.Begin());
  absl::Status status = [&]() -> absl::Status {
    // The old table's index and (PostgreSQL) key names are taken for the new table's.
    RETURN_IF_ERROR(db.Exec(pg ? "DROP INDEX obligation_open;"
                                 "ALTER TABLE obligation RENAME TO obligation_v4;"
                                 "ALTER INDEX obligation_pkey RENAME TO obligation_v4_pkey;"
                               : "DROP INDEX obligation_open;"
                                 "ALTER TABLE obligation RENAME TO obligation_v4;"));
    RETURN_IF_ERROR(db.Exec(schema));
#define CW_TODO_REST "case_id, kind, priority, opened_at, due, stated_due, state, cleared_by, " \
                     "cleared_at, superseded_by"
    // Each item gets the key TodoKeysOf finds for it (the store's own lookup), and is copied by
    // its old key. Received (side 1): the notice's first inbox row; published (side 2): the seq
    // on the peer's channel, from the notice's deliveries. `self` is the origin of side-2 items.
    Stmt items(&db, "SELECT origin, notice_id, peer, side FROM obligation_v4");
    Stmt copy(&db, "INSERT INTO obligation(peer, side, seq, origin, notice_id, " CW_TODO_REST ") "
                   "SELECT peer, side, ?, origin, notice_id, " CW_TODO_REST
                   " FROM obligation_v4 WHERE origin = ? AND notice_id = ? AND peer = ?");
#undef CW_TODO_REST
    while (items.Step()) {
      const std::string origin = items.Text(0), notice_id = items.Text(1), peer = items.Text(2);
      const bool published = items.Int(3) == kOwedToUs;
      ASSIGN_OR_RETURN(const std::vector<TodoKey> keys,
                       TodoKeysOf(&db, published ? origin : std::string(), origin, notice_id));
      for (const TodoKey& key : keys) {
        if (key.peer != peer) continue;
        copy.Bind(1, key.seq).Bind(2, origin).Bind(3, notice_id).Bind(4, peer);
        RETURN_IF_ERROR(Done(copy, "copy to-do item"));
        break;
      }
    }
    RETURN_IF_ERROR(items.status("read to-do items"));
    Stmt count(&db, "SELECT (SELECT count(*) FROM obligation_v4), (SELECT count(*) FROM obligation)");
    if (!count.Step()) return count.status("count to-do items");
    if (count.Int(1) != count.Int(0)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "obligation: ", count.Int(0) - count.Int(1), " of ", count.Int(0),
          " to-do items name a notice this database does not hold, or a channel it never used; "
          "version 10 keys each item by its notice's place on the channel (the to-do table was "
          "left as it was)"));
    }
    count.Reset();
    RETURN_IF_ERROR(db.Exec(absl::StrCat("INSERT INTO meta(key, value) VALUES('schema_version', '",
                                         kSchemaVersion, "') ON CONFLICT(key) DO UPDATE SET "
                                         "value = excluded.value")
                                .c_str()));
    return db.Exec("DROP TABLE obligation_v4;");
  }();
  if (!status.ok()) {
    (void)db.Exec("ROLLBACK;");
    return status;
  }
  return db.Exec("COMMIT;");
}

absl::StatusOr<std::unique_ptr<NoticeStore>> NoticeStore::Open(const StoreOptions& options) {
  const bool pg = !options.postgres_dsn.empty();
  // How messages name the database (never the connection string: it may hold a password).
  const std::string path = pg ? std::string("the PostgreSQL database (store.postgres)") : options.path;
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Connect(options));
  // A database of a newer version is refused before anything touches it: creating this version's
  // tables in it would change a file a newer binary owns (after a rollback, say).
  int found = 0;
  {
    ASSIGN_OR_RETURN(const bool existing, HasTable(db.get(), "meta"));
    if (existing) {
      Stmt v(db.get(), "SELECT value FROM meta WHERE key = 'schema_version'");
      if (v.Step()) {
        if (!absl::SimpleAtoi(v.Text(0), &found)) found = INT_MAX;
        if (found > kSchemaVersion) {
          return absl::FailedPreconditionError(
              absl::StrCat(path, ": schema version ", v.Text(0), " is newer than this binary's ",
                           kSchemaVersion, " (run the newer caseway-node, or restore a backup "
                           "made by this version)"));
        }
      }
      RETURN_IF_ERROR(v.status("read schema version"));
    }
  }
  RETURN_IF_ERROR(db->Exec(pg ? kPgSchema : kSchema));
  // Before anything reads a body: a database sealed with keys this node lacks is left untouched.
  RETURN_IF_ERROR(CheckSealKeys(*db, path, options.sealer.get()));
  // PostgreSQL came with version 8, whose tables are version 9's: only the to-do keys migrate.
  if (!pg) RETURN_IF_ERROR(Migrate(*db));
  RETURN_IF_ERROR(MigrateTodoKeys(*db, pg ? kPgSchema : kSchema));
  ASSIGN_OR_RETURN(std::string subject_salt, SubjectSalt(*db));
  std::string feed_epoch;
  {
    Stmt s(db.get(), "SELECT value FROM meta WHERE key = 'feed_epoch'");
    if (s.Step()) feed_epoch = s.Text(0);
    RETURN_IF_ERROR(s.status("read the feed epoch"));
  }
  if (feed_epoch.empty()) {  // a new file, or one restored from a backup or rebuilt by reseal
    unsigned char random[8];
    if (RAND_bytes(random, sizeof random) != 1) return absl::InternalError("no random bytes");
    feed_epoch = common::ToHex(absl::string_view(reinterpret_cast<char*>(random), sizeof random));
    Stmt s(db.get(), "INSERT INTO meta(key, value) VALUES('feed_epoch', ?)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    s.Bind(1, feed_epoch);
    RETURN_IF_ERROR(Done(s, "store the feed epoch"));
  }
  bool reindex = found != 0 && found < 5;
  if (!pg) {
    // A case index of the first layout (keys with origin and notice id, made by a development
    // build of version 5) is rebuilt.
    Stmt s(db.get(), "SELECT 1 FROM pragma_table_info('case_index') WHERE name = 'origin'");
    const bool old_layout = s.Step();
    RETURN_IF_ERROR(s.status("read case_index columns"));
    if (old_layout) {
      RETURN_IF_ERROR(db->Exec("DROP TABLE case_index; DELETE FROM case_index_new;"));
      RETURN_IF_ERROR(db->Exec(kSchema));
      reindex = true;
    }
  }
  if (reindex) RETURN_IF_ERROR(IndexExistingCases(*db, subject_salt));
  ASSIGN_OR_RETURN(std::string access_key, LoadAccessKey(*db, options.sealer.get()));
  RETURN_IF_ERROR(db->Exec(
      absl::StrCat("INSERT INTO meta(key, value) VALUES('schema_version', '", kSchemaVersion,
                   "') ON CONFLICT(key) DO UPDATE SET value = excluded.value")
          .c_str()));
  auto stmts = std::make_unique<WriterStatements>(db.get());
  RETURN_IF_ERROR(stmts->Check());
  std::unique_ptr<NoticeStore> store(new NoticeStore(options, std::move(stmts)));
  store->subject_salt_ = std::move(subject_salt);
  store->feed_epoch_ = std::move(feed_epoch);
  store->access_key_ = std::move(access_key);
  RETURN_IF_ERROR(store->LoadPendingKeys(*db));
  store->PrepareLogStatements(db.get());
  ASSIGN_OR_RETURN(store->log_, MerkleLog::Load(db.get()));
  store->size_at_open_ = store->log_->Committed().first;
  {
    Stmt s(db.get(), "SELECT value FROM meta WHERE key = 'halted'");
    if (s.Step()) {
      absl::MutexLock lock(&store->halt_mu_);
      store->halted_ = s.Text(0);
      store->is_halted_.store(true, std::memory_order_release);
    }
    RETURN_IF_ERROR(s.status("read halt"));
  }
  {
    Stmt s(db.get(), "SELECT bytes FROM log_leaf ORDER BY idx DESC LIMIT 1");
    v1::LogEntry last;
    if (s.Step() && last.ParseFromArray(s.Blob(0).data(), s.Blob(0).size())) {
      store->last_entry_micros_ = common::EntryMicros(last);
    }
    RETURN_IF_ERROR(s.status("read last log entry"));
  }
  {
    Stmt s(db.get(), "SELECT destination, head, acked FROM channel");
    absl::MutexLock lock(&store->mu_);
    while (s.Step()) {
      store->channels_[s.Text(0)] = ChannelState{static_cast<uint64_t>(s.Int(1)),
                                                 static_cast<uint64_t>(s.Int(2))};
    }
    RETURN_IF_ERROR(s.status("load channels"));
  }
  CommitQueue::BeginCheck fence;
  if (options.lease_epoch > 0) {
    fence = [holder = options.lease_holder, epoch = options.lease_epoch, fenced = options.fenced,
             once = std::make_shared<std::atomic<bool>>(false)](Db* db) {
      absl::Status s = WriterLease::Fence(db, holder, epoch);
      if (s.code() == absl::StatusCode::kFailedPrecondition && fenced && !once->exchange(true)) {
        fenced(s);
      }
      return s;
    };
  }
  store->queue_ = std::make_unique<CommitQueue>(std::move(db), options.group_commit_max,
                                                store->log_.get(), std::move(fence),
                                                options.connection_lost);
  store->wal_checkpointer_ = std::thread([s = store.get()] { s->CheckpointLoop(); });
  return store;
}

void NoticeStore::CheckpointLoop() {
  common::NameThisThread("cw-checkpoint");
  // PostgreSQL checkpoints its own WAL: on it this loop only merges the case index.
  std::unique_ptr<SqliteDb> db;
  int64_t page_size = 4096;
  if (!postgres()) {
    auto opened = SqliteDb::Open(path_);
    if (!opened.ok()) StorageFault("open the checkpoint connection", opened.status());
    db = std::move(*opened);
    Stmt q(db.get(), "PRAGMA page_size");
    if (q.Step()) page_size = q.Int(0);
  }
  // How long a RESTART waits for the readers of older snapshots: 50 ms, doubled after each round
  // that gave up (to at most 1 s), back to 50 ms once one succeeds. A reader that keeps a long read
  // going (or a loaded machine) outlasted a fixed 50 ms every round, and the WAL grew again.
  constexpr int kRestartWaitMs = 50;
  constexpr int kRestartWaitMaxMs = 1000;
  int restart_wait_ms = kRestartWaitMs;
  auto last_merge = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  // The loop ends after the round that saw the stop (`last`), never before it: a stop that came
  // while a round was busy (a long checkpoint, a RESTART waiting for readers) used to end the loop
  // without its last round, and the WAL outlived a clean stop, with whatever a purge had just
  // asked to be truncated out of it.
  for (bool last = false; !last;) {
    mu_.AwaitWithTimeout(absl::Condition(&stop_checkpointer_), absl::Milliseconds(500));
    last = stop_checkpointer_;
    mu_.Unlock();
    if (!last) {
      absl::MutexLock merging(&merge_mu_);
      if (!stop_merging_ && CaseMergeDue(last_merge)) {
        if (absl::Status m = MergeCaseIndex(); !m.ok()) {
          common::Log(common::LogLevel::kWarn, "case index not merged (retried)",
                      {{"status", m.ToString()}});
        } else {
          last_merge = std::chrono::steady_clock::now();
        }
      }
    }
    if (db == nullptr) {
      mu_.Lock();
      continue;
    }
    // PASSIVE only while the node runs: it never takes the writer's lock. (A TRUNCATE here used
    // to block the writer and make the WAL grow from zero again, so that every commit's
    // fdatasync waited for an ext4 journal commit behind the checkpoint's writes: the p99
    // latency spikes in PROFILE.md.) The last one, after the writer has stopped, empties the WAL.
    // After a purge (retention), one TRUNCATE: the WAL must not keep old images of the pages
    // that held the removed data. A purge runs an hour apart at most, so one stall an hour.
    const bool truncate = last || truncate_wal_.exchange(false);
    int wal_frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(db->get(), nullptr,
                                       truncate ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
                                       &wal_frames, nullptr);
    if (rc == SQLITE_BUSY && truncate && !last) truncate_wal_ = true;  // again next round
    // SQLite starts the WAL again from its beginning only when a commit begins with every frame
    // copied into the database. Under continuous commits the PASSIVE one above is always a
    // little behind, and the WAL grew by every byte written (1.8 GB of WAL at the origin after
    // 43 s of publishing). Past wal_restart_bytes, a RESTART copies the few frames written since, holding
    // writers off, and waits for readers to leave the WAL: at most restart_wait_ms, then it
    // gives up (BUSY) until the next round, which waits twice as long. The file keeps its length
    // and is reused from its start.
    if (rc == SQLITE_OK && !truncate &&
        int64_t{wal_frames} * page_size > options_.wal_restart_bytes) {
      sqlite3_busy_timeout(db->get(), restart_wait_ms);
      rc = sqlite3_wal_checkpoint_v2(db->get(), nullptr, SQLITE_CHECKPOINT_RESTART, nullptr,
                                     nullptr);
      sqlite3_busy_timeout(db->get(), 10000);
      restart_wait_ms =
          rc == SQLITE_OK ? kRestartWaitMs : std::min(2 * restart_wait_ms, kRestartWaitMaxMs);
    }
    // BUSY: a reader or (at the last one) a straggler holds the WAL; the next round retries.
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
      StorageFault("checkpoint the WAL into the database file", SqliteError(db->get(), "checkpoint"));
    }
    mu_.Lock();
  }
}

void NoticeStore::StorageFault(absl::string_view what, const absl::Status& status) {
  // After a failed write or sync the kernel may have dropped the pages it could not write, and
  // SQLite's checkpoint position may already count them as written: the WAL holds the only good
  // copy. Any further checkpoint, or closing the connections, could let SQLite reuse that WAL.
  // Stop now, as PostgreSQL does after a failed fsync; the next start rebuilds the WAL index and
  // checkpoints everything again from the WAL's first frame (docs/errors.md, "Storage faults").
  common::Log(common::LogLevel::kError,
              "storage fault: the node stops at once; restart it to recover from the WAL",
              {{"operation", std::string(what)}, {"status", status.ToString()}});
  std::_Exit(kStorageFaultExitCode);
}

NoticeStore::NoticeStore(StoreOptions options, std::unique_ptr<WriterStatements> stmts)
    : options_(std::move(options)), stmts_(std::move(stmts)) {}


absl::StatusOr<std::unique_ptr<Db>> NoticeStore::AcquireReader() {
  {
    absl::MutexLock lock(&readers_mu_);
    if (!readers_.empty()) {
      std::unique_ptr<Db> db = std::move(readers_.back());
      readers_.pop_back();
      return db;
    }
  }
  return Connect(options_);
}

absl::StatusOr<std::unique_ptr<Db>> NoticeStore::Connect(const StoreOptions& options) {
  if (!options.postgres_dsn.empty()) {
    PgSession session;
    session.idle_in_transaction = options.postgres_idle_in_transaction;
    ASSIGN_OR_RETURN(std::unique_ptr<PgDb> db, PgDb::Connect(options.postgres_dsn, session));
    return std::unique_ptr<Db>(std::move(db));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(options.path));
  return std::unique_ptr<Db>(std::move(db));
}

void NoticeStore::ReleaseReader(std::unique_ptr<Db> db) {
  if (db->Broken()) return;  // the next read connects again
  absl::MutexLock lock(&readers_mu_);
  if (readers_.size() < 16) readers_.push_back(std::move(db));
}

void NoticeStore::Committed(const std::map<std::string, ChannelState>& changes) {
  ChannelListener listener;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [dest, state] : changes) {
      ChannelState& c = channels_[dest];
      c.head = std::max(c.head, state.head);
      c.acked = std::max(c.acked, state.acked);
    }
    ++version_;
    listener = listener_;
  }
  if (listener && !changes.empty()) listener(changes);
}

void NoticeStore::CommittedAcked(const std::string& destination, uint64_t acked) {
  std::map<std::string, ChannelState> changes;
  changes[destination].acked = acked;
  Committed(changes);
}

void NoticeStore::SetChannelListener(ChannelListener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

absl::StatusOr<std::vector<v1::PublishResult>> NoticeStore::Publish(
    const std::vector<PreparedNotice>& notices) {
  std::promise<absl::StatusOr<std::vector<v1::PublishResult>>> promise;
  auto result = promise.get_future();
  PublishAsync(notices, [&promise](absl::StatusOr<std::vector<v1::PublishResult>> r) {
    promise.set_value(std::move(r));
  });
  return result.get();
}

void NoticeStore::PublishAsync(std::vector<PreparedNotice> notices_in, PublishDone done) {
  struct State {
    std::vector<PreparedNotice> notices;
    std::vector<v1::PublishResult> results;
    std::map<std::string, ChannelState> changes;
    std::vector<PendingKey> keys;
    PublishDone done;
  };
  auto state = std::make_shared<State>();
  state->notices = std::move(notices_in);
  // A destination's copy is stored under the sequence it gets, known only in the transaction;
  // its digest is taken here, before it is sealed (below, under its destination and notice id).
  std::vector<std::vector<std::string>> copy_digests(state->notices.size());
  for (size_t i = 0; i < state->notices.size(); ++i) {
    for (const std::string& c : state->notices[i].copies) {
      copy_digests[i].push_back(c.empty() ? std::string() : common::Sha256(c));
    }
  }
  if (options_.sealer) {  // here, on the caller's thread: the writer thread is the bottleneck
    for (PreparedNotice& n : state->notices) {
      n.bytes = options_.sealer->Seal(n.bytes, NoticeContext(n.notice_id));
      for (size_t d = 0; d < n.copies.size() && d < n.destinations.size(); ++d) {
        n.copies[d] = options_.sealer->Seal(n.copies[d], CopyContext(n.destinations[d], n.notice_id));
      }
    }
  }
  state->results.resize(state->notices.size());
  state->done = std::move(done);
  auto apply = [this, state, copy_digests = std::move(copy_digests)](Db* db) -> absl::Status {
    WriterStatements& w = *stmts_;
    const auto& notices = state->notices;
    auto& results = state->results;
    auto& changes = state->changes;
    changes.clear();
    state->keys.clear();
    // Test fault: the node freezes (SIGSTOP) inside the write transaction of its n-th publish
    // (a group run again counts again), past the writer lease's fence, so holding the lease
    // row's share lock (FailoverTest).
    if (common::FaultHits("freeze_in_publish", 1, UINT64_MAX)) {
      static std::atomic<uint64_t> publishes{0};
      const uint64_t n = ++publishes;
      if (common::FaultHits("freeze_in_publish", n, n)) raise(SIGSTOP);
    }
    int64_t now = NowMicros();
    for (size_t i = 0; i < notices.size(); ++i) {
      const PreparedNotice& n = notices[i];
      v1::PublishResult& r = results[i];
      r.Clear();
      r.set_notice_id(n.notice_id);
      r.set_digest(n.digest);
      for (const auto& warning : n.warnings) r.add_warnings(warning);
      w.find_notice.Bind(1, n.notice_id);
      if (w.find_notice.Step()) {
        bool same = w.find_notice.Blob(0) == (n.request_digest.empty() ? n.digest : n.request_digest);
        // Test fault: a node that answers other content under a stored id as a duplicate (what
        // `caseway conformance` must catch).
        if (common::FaultHits("conflict_as_duplicate", 1, 1)) same = true;
        if (!same) {
          w.find_notice.Reset();
          return ContentConflict(absl::StrCat("notices[", i, "]."), n.notice_id);
        }
        r.set_duplicate(true);
        // The original result, from the notice row (no index on channel entries by notice).
        auto parsed = ParseDeliveries(w.find_notice.Text(1));
        w.find_notice.Reset();
        if (!parsed.ok()) return parsed.status();
        for (auto& [destination, seq] : *parsed) {
          auto* delivery = r.add_deliveries();
          delivery->set_destination(std::move(destination));
          delivery->set_seq(static_cast<uint64_t>(seq));
        }
        continue;
      }      RETURN_IF_ERROR(w.find_notice.status("find notice"));
      w.find_notice.Reset();
      // Assign a sequence on each destination's channel, then store the notice (with them), then
      // the channel entries (which reference the notice).
      std::string deliveries;
      for (const auto& dest : n.destinations) {
        if (any_held_.load(std::memory_order_relaxed) && Held(dest)) {
          return absl::UnavailableError(absl::StrCat(
              "notices[", i, "].destinations: the channel to ", dest, " awaits ", dest,
              "'s confirmation after this node was restored from a backup (it has not subscribed "
              "since); retry later"));
        }
        uint64_t head = 0;
        auto it = changes.find(dest);
        if (it != changes.end()) {
          head = it->second.head;
        } else {
          w.head.Bind(1, dest);
          if (w.head.Step()) head = w.head.Int(0);
          RETURN_IF_ERROR(w.head.status("read head"));
          w.head.Reset();
        }
        ++head;
        changes[dest].head = head;
        auto* d = r.add_deliveries();
        d->set_destination(dest);
        d->set_seq(head);
        absl::StrAppend(&deliveries, deliveries.empty() ? "" : ",", dest, ":", head);
      }
      w.insert_notice.Bind(1, n.notice_id)
          .BindBlob(2, n.digest)
          .BindBlob(3, n.bytes)
          .Bind(4, now)
          .Bind(5, deliveries);
      if (n.request_digest.empty() || n.request_digest == n.digest) {
        w.insert_notice.BindNull(6);
      } else {
        w.insert_notice.BindBlob(6, n.request_digest);
      }
      RETURN_IF_ERROR(Done(w.insert_notice, "insert notice"));
      RETURN_IF_ERROR(IndexPublished(n.facts, &state->keys));
      RETURN_IF_ERROR(TrackPublished(n.facts, r, now));
      for (const auto& d : r.deliveries()) {
        w.insert_entry.Bind(1, d.destination()).Bind(2, static_cast<int64_t>(d.seq())).Bind(3, n.notice_id);
        RETURN_IF_ERROR(Done(w.insert_entry, "insert channel entry"));
      }
      for (size_t d = 0; d < n.copies.size(); ++d) {
        if (n.copies[d].empty()) continue;
        const auto& delivery = r.deliveries(static_cast<int>(d));  // sealed above when sealing
        w.insert_copy.Bind(1, delivery.destination()).Bind(2, static_cast<int64_t>(delivery.seq()));
        w.insert_copy.BindBlob(3, n.copies[d]);
        RETURN_IF_ERROR(Done(w.insert_copy, "insert shared copy"));
      }
      if (options_.log_enabled) {
        v1::LogEntry entry;
        entry.set_kind(v1::LogEntry::KIND_PUBLISHED);
        entry.set_notice_id(n.notice_id);
        entry.set_digest(n.digest);
        for (const auto& d : r.deliveries()) {
          entry.add_destinations(d.destination());
          entry.add_sequences(d.seq());
        }
        if (!n.sharing_policy_digest.empty()) {
          for (const std::string& digest : copy_digests[i]) entry.add_destination_digests(digest);
          entry.set_sharing_policy_digest(n.sharing_policy_digest);
        }
        common::CopyFacts(n.facts, &entry);
        RETURN_IF_ERROR(AppendEntry(entry).status());
      }
    }
    for (const auto& [dest, state] : changes) {
      w.upsert_head.Bind(1, dest).Bind(2, static_cast<int64_t>(state.head));
      RETURN_IF_ERROR(Done(w.upsert_head, "update head"));
    }
    return absl::OkStatus();
  };
  // kSafe: the transaction's state is reset above, and its result and index rows rebuilt.
  queue_->Submit(
      std::move(apply),
      [this, state](const absl::Status& s) {
        if (!s.ok()) {
          state->done(s);
          return;
        }
        AddPendingKeys(std::move(state->keys));
        Committed(state->changes);
        state->done(std::move(state->results));
      },
      CommitQueue::Rerun::kSafe);
}

absl::StatusOr<std::vector<v1::Entry>> NoticeStore::ReadChannel(const std::string& destination,
                                                                uint64_t from_seq,
                                                                uint32_t max_entries,
                                                                uint64_t max_bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  std::vector<v1::Entry> out;
  absl::Status purged;
  {
    static constexpr char kSql[] =
        "SELECT e.seq, coalesce(c.bytes, n.bytes), notice_id, c.bytes IS NOT NULL "
        "FROM channel_entry e JOIN notice n USING(notice_id) LEFT JOIN shared_copy c "
        "ON c.destination = e.destination AND c.seq = e.seq "
        "WHERE e.destination = ? AND e.seq >= ? ORDER BY e.seq LIMIT ?";
    Stmt& s = db->Prepared(kSql);
    absl::Cleanup reset = [&s] { s.Reset(); };
    s.Bind(1, destination).Bind(2, static_cast<int64_t>(from_seq)).Bind(3, int64_t{max_entries});
    uint64_t bytes = 0;
    while (s.Step()) {
      absl::string_view b = s.Blob(1);
      if (b.empty()) {
        // Only a destination that lost what it acknowledged asks again for so old a notice.
        purged = absl::FailedPreconditionError(absl::StrCat(
            "channel to ", destination, ": seq ", s.Int(0), " was acknowledged by ", destination,
            " and its body purged under storage.retention; a destination restored from an older "
            "backup cannot get it again"));
        break;
      }
      // Stop before the budget is passed (framing ~16 bytes an entry); one entry always goes.
      if (!out.empty() && bytes + b.size() + 16 > max_bytes) break;
      v1::Entry& e = out.emplace_back();
      e.set_seq(s.Int(0));
      if (s.Int(3) != 0) {
        ASSIGN_OR_RETURN(*e.mutable_notice(),
                         OpenCopy(options_.sealer.get(), b, destination, s.Text(2),
                                  static_cast<uint64_t>(s.Int(0))));
      } else {
        ASSIGN_OR_RETURN(*e.mutable_notice(),
                         OpenBody(options_.sealer.get(), b, NoticeContext(s.Text(2))));
      }
      bytes += b.size() + 16;
    }
    RETURN_IF_ERROR(s.status("read channel"));
  }
  ReleaseReader(std::move(db));
  if (!purged.ok()) return purged;
  return out;
}

ChannelState NoticeStore::Channel(const std::string& destination) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(destination);
  return it == channels_.end() ? ChannelState{} : it->second;
}

std::map<std::string, ChannelState> NoticeStore::Channels() {
  absl::MutexLock lock(&mu_);
  return channels_;
}

absl::Status NoticeStore::AwaitWrite(const std::function<void(WriteDone)>& submit) {
  std::promise<absl::Status> promise;
  submit([&promise](const absl::Status& s) { promise.set_value(s); });
  return promise.get_future().get();
}

absl::Status NoticeStore::RecordAck(const std::string& destination, uint64_t seq) {
  return AwaitWrite([&](WriteDone done) { RecordAckAsync(destination, seq, std::move(done)); });
}

void NoticeStore::RecordAckAsync(const std::string& destination, uint64_t seq, WriteDone done) {
  WriterStatements& w = *stmts_;
  queue_->Submit(
      [&w, destination, seq](Db*) {
        w.ack.Bind(1, static_cast<int64_t>(seq)).Bind(2, destination).Bind(3, static_cast<int64_t>(seq));
        return Done(w.ack, "record ack");
      },
      [this, destination, seq, done = std::move(done)](const absl::Status& s) {
        if (s.ok()) CommittedAcked(destination, seq);
        done(s);
      },
      CommitQueue::Rerun::kSafe);
}

absl::StatusOr<uint64_t> NoticeStore::Cursor(const std::string& origin) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  uint64_t seq = 0;
  {
    Stmt s(db.get(), "SELECT seq FROM cursor WHERE origin = ?");
    s.Bind(1, origin);
    if (s.Step()) seq = s.Int(0);
    RETURN_IF_ERROR(s.status("read cursor"));
  }
  ReleaseReader(std::move(db));
  return seq;
}

absl::Status ContentConflict(const std::string& path, const std::string& notice_id) {
  return common::Refusal(
      absl::StatusCode::kAlreadyExists, "CONTENT_CONFLICT",
      absl::StrCat(path, "notice_id: ", notice_id,  // validated: [A-Za-z0-9._:-]{1,128}
                   " is already stored with other content. A retry must resend the identical "
                   "notice (every field, occurred_at included); to change a stored notice, "
                   "publish a correction: a new notice_id, revision + 1, in_reply_to = this id"),
      {}, {{"field", absl::StrCat(path, "notice_id")}, {"notice_id", notice_id}});
}

absl::Status NoticeStore::RequireSigner(const Signer& sign, absl::string_view what) const {
  if (!options_.log_enabled || sign) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("store: with the exchange log on, ", what, " is signed: no signer was given"));
}

absl::StatusOr<std::optional<v1::Signed>> NoticeStore::StoreReceived(
    const common::CheckedBatch& checked, const Signer& sign_receipt) {
  RETURN_IF_ERROR(RequireSigner(sign_receipt, "the receipt"));
  if (checked.self() != options_.self) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: a batch checked for ", checked.self(), " given to the store of ", options_.self));
  }
  // Parsed outside the writer thread (by the check): ids are needed, bytes are stored exactly as
  // received.
  const v1::Batch& batch = checked.batch();
  const std::string& origin = checked.origin();
  const std::vector<common::NoticeFacts>& facts = checked.facts();
  if (batch.entries_size() == 0) return std::optional<v1::Signed>();
  const uint64_t last = batch.first_seq() + batch.entries_size() - 1;
  if (options_.log_enabled && !batch.has_manifest()) {
    return absl::FailedPreconditionError("batch.manifest: required when the exchange log is on");
  }
  // Sealed here, on the subscriber's thread, not on the writer's.
  std::vector<std::string> sealed;
  if (options_.sealer) {
    sealed.reserve(batch.entries_size());
    for (const v1::Entry& e : batch.entries()) {
      sealed.push_back(options_.sealer->Seal(e.notice(), InboxContext(origin, e.seq())));
    }
  }
  WriterStatements& w = *stmts_;
  std::optional<v1::Signed> receipt;
  std::vector<PendingKey> keys;
  RETURN_IF_ERROR(queue_->Run(
      [&](Db* db) -> absl::Status {
        keys.clear();
        uint64_t cursor = 0;
        w.cursor.Bind(1, origin);
        if (w.cursor.Step()) cursor = w.cursor.Int(0);
        RETURN_IF_ERROR(w.cursor.status("read cursor"));
        w.cursor.Reset();
        if (batch.first_seq() != cursor + 1) {
          return absl::FailedPreconditionError(absl::StrCat(
              "batch.first_seq: ", batch.first_seq(), " is not cursor+1 (cursor ", cursor, ")"));
        }
        int64_t now = NowMicros();
        for (int i = 0; i < batch.entries_size(); ++i) {
          const v1::Entry& e = batch.entries(i);
          w.insert_inbox.Bind(1, origin)
              .Bind(2, static_cast<int64_t>(e.seq()))
              .Bind(3, facts[i].notice_id)
              .BindBlob(4, sealed.empty() ? e.notice() : sealed[i])
              .Bind(5, now);
          ASSIGN_OR_RETURN(int64_t inbox_seq, Returned(w.insert_inbox, "insert inbox"));
          RETURN_IF_ERROR(IndexReceived(inbox_seq, facts[i], &keys));
          RETURN_IF_ERROR(TrackReceived(origin, static_cast<int64_t>(e.seq()), facts[i], now));
        }
        w.upsert_cursor.Bind(1, origin).Bind(2, static_cast<int64_t>(last));
        RETURN_IF_ERROR(Done(w.upsert_cursor, "update cursor"));
        if (!options_.log_enabled) return absl::OkStatus();
        ASSIGN_OR_RETURN(receipt, LogReceived(origin, batch, now, sign_receipt));
        return absl::OkStatus();
      },
      [&] {
        AddPendingKeys(std::move(keys));
        Committed({});
        std::function<void()> listener;
        {
          absl::MutexLock lock(&mu_);
          listener = inbox_listener_;
        }
        if (listener) listener();
      },
      CommitQueue::Rerun::kSafe));  // `keys` is cleared and `receipt` set again on each run
  return receipt;
}

void NoticeStore::SetInboxListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  inbox_listener_ = std::move(listener);
}

absl::StatusOr<std::vector<InboxRow>> NoticeStore::ReadInbox(uint64_t after, uint32_t limit) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  std::vector<InboxRow> out;
  {
    Stmt s(db.get(),
           "SELECT inbox_seq, origin, channel_seq, received_at, bytes FROM inbox "
           "WHERE acked_at IS NULL AND inbox_seq > ? ORDER BY inbox_seq LIMIT ?");
    s.Bind(1, static_cast<int64_t>(after)).Bind(2, int64_t{limit});
    while (s.Step()) {
      InboxRow& r = out.emplace_back();
      r.inbox_seq = s.Int(0);
      r.origin = s.Text(1);
      r.channel_seq = s.Int(2);
      r.received_at = absl::FromUnixMicros(s.Int(3));
      ASSIGN_OR_RETURN(r.bytes, OpenBody(options_.sealer.get(), s.Blob(4),
                                         InboxContext(r.origin, r.channel_seq)));
    }
    RETURN_IF_ERROR(s.status("read inbox"));
  }
  ReleaseReader(std::move(db));
  return out;
}

absl::Status NoticeStore::AckInbox(const std::vector<uint64_t>& inbox_seqs) {
  return AwaitWrite([&](WriteDone done) { AckInboxAsync(inbox_seqs, std::move(done)); });
}

void NoticeStore::AckInboxAsync(std::vector<uint64_t> inbox_seqs,
                                std::function<void(const absl::Status&)> done) {
  if (inbox_seqs.empty()) {
    done(absl::OkStatus());
    return;
  }
  queue_->Submit([stmts = stmts_.get(), inbox_seqs = std::move(inbox_seqs)](Db* db) -> absl::Status {
    WriterStatements& w = *stmts;
    int64_t now = NowMicros();
    for (uint64_t seq : inbox_seqs) {
      w.ack_inbox.Bind(1, now).Bind(2, static_cast<int64_t>(seq));
      RETURN_IF_ERROR(Done(w.ack_inbox, "ack inbox"));
      if (db->Changes() == 0) {
        w.inbox_exists.Bind(1, static_cast<int64_t>(seq));
        bool exists = w.inbox_exists.Step();
        w.inbox_exists.Reset();
        if (!exists) {
          return absl::NotFoundError(absl::StrCat("ack.inbox_seqs: ", seq, " is not in the inbox"));
        }
      }
    }
    return absl::OkStatus();
  }, [this, done = std::move(done)](const absl::Status& s) {
    if (s.ok()) Committed({});
    done(s);
  }, CommitQueue::Rerun::kSafe);
}

absl::StatusOr<std::optional<NoticeStore::RestoreMark>> NoticeStore::RestoredFrom() {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::optional<RestoreMark>> {
    Stmt s(db, "SELECT key, value FROM meta WHERE key IN ('backup_taken_at', 'restore_checked', "
               "'restore_unconfirmed')");
    std::optional<RestoreMark> mark;
    std::map<std::string, std::string> values;
    while (s.Step()) values[s.Text(0)] = s.Text(1);
    RETURN_IF_ERROR(s.status("read the restore mark"));
    if (values.count("backup_taken_at") == 0) return mark;
    mark.emplace();
    int64_t micros = 0;
    if (!absl::SimpleAtoi(values["backup_taken_at"], &micros)) {
      return absl::DataLossError("meta.backup_taken_at: not a number");
    }
    mark->taken_at = absl::FromUnixMicros(micros);
    mark->checked = values["restore_checked"] == "1";
    for (absl::string_view d : absl::StrSplit(values["restore_unconfirmed"], ',', absl::SkipEmpty())) {
      mark->unconfirmed.insert(std::string(d));
    }
    return mark;
  });
}

namespace {

// RecordRestoreCheck writes the restore mark's state (NoticeStore::SetRestoreChecked).
absl::Status RecordRestoreCheck(Db* db, const std::set<std::string>& unconfirmed) {
  if (unconfirmed.empty()) {
    Stmt s(db, "DELETE FROM meta WHERE key IN ('backup_taken_at', 'restore_checked', "
               "'restore_unconfirmed')");
    return Done(s, "clear the restore mark");
  }
  Stmt s(db, "INSERT INTO meta(key, value) VALUES('restore_checked', '1'), "
             "('restore_unconfirmed', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.Bind(1, absl::StrJoin(unconfirmed, ","));
  return Done(s, "record the restore check");
}

}  // namespace

absl::Status NoticeStore::SetRestoreChecked(const std::set<std::string>& unconfirmed) {
  return queue_->Run([&](Db* db) { return RecordRestoreCheck(db, unconfirmed); }, [] {});
}

void NoticeStore::HoldChannels(const std::set<std::string>& destinations) {
  absl::MutexLock lock(&mu_);
  held_.insert(destinations.begin(), destinations.end());
  any_held_ = !held_.empty();
}

bool NoticeStore::Held(const std::string& destination) {
  absl::MutexLock lock(&mu_);
  return held_.count(destination) > 0;
}

void NoticeStore::ConfirmChannel(const std::string& destination) {
  std::set<std::string> left;
  {
    absl::MutexLock lock(&mu_);
    if (held_.erase(destination) == 0) return;
    left = held_;
    any_held_ = !held_.empty();
  }
  common::Log(common::LogLevel::kInfo, "restore: destination confirmed its channel",
              {{"destination", destination}, {"still_held", absl::StrJoin(left, ",")}});
  // Not waited for (the caller is a stream's handler): a restart before it commits asks again.
  queue_->Submit([left](Db* db) { return RecordRestoreCheck(db, left); },
                 [](const absl::Status& s) {
                   if (!s.ok()) {
                     common::Log(common::LogLevel::kWarn, "restore: confirmation not recorded",
                                 {{"status", s.ToString()}});
                   }
                 });
}

absl::StatusOr<NoticeStore::InboxSummary> NoticeStore::Inbox() {
  return ReadOnly([&](Db* db) -> absl::StatusOr<InboxSummary> {
    InboxSummary summary;
    // The oldest unconsumed row is the first of the partial index inbox_unacked.
    Stmt s(db,
           "SELECT count(*), (SELECT count(*) FROM inbox WHERE acked_at IS NULL), "
           "(SELECT received_at FROM inbox WHERE acked_at IS NULL ORDER BY inbox_seq LIMIT 1) "
           "FROM inbox");
    if (s.Step()) {
      summary.total = static_cast<uint64_t>(s.Int(0));
      summary.unacked = static_cast<uint64_t>(s.Int(1));
      if (!s.IsNull(2)) summary.oldest_unacked = absl::FromUnixMicros(s.Int(2));
    }
    RETURN_IF_ERROR(s.status("count inbox"));
    return summary;
  });
}

absl::StatusOr<std::map<std::string, absl::Time>> NoticeStore::OldestUnacked() {
  std::map<std::string, absl::Time> oldest;
  const std::map<std::string, ChannelState> channels = Channels();
  RETURN_IF_ERROR(ReadOnly([&](Db* db) -> absl::Status {
    Stmt s(db,
           "SELECT n.published_at FROM channel_entry e JOIN notice n USING(notice_id) "
           "WHERE e.destination = ? AND e.seq = ?");
    for (const auto& [destination, state] : channels) {
      if (state.head <= state.acked) continue;
      s.Reset();
      s.Bind(1, destination).Bind(2, static_cast<int64_t>(state.acked + 1));
      if (s.Step()) oldest[destination] = absl::FromUnixMicros(s.Int(0));
      RETURN_IF_ERROR(s.status("date the oldest unacknowledged notice"));
    }
    return absl::OkStatus();
  }));
  return oldest;
}

uint64_t NoticeStore::CommitGroupsRerun() const { return queue_->groups_rerun(); }

void NoticeStore::SetCommitObserver(CommitObserver observer) {
  queue_->SetObserver(std::move(observer));
}

void NoticeStore::Barrier() {
  queue_->Run([](Db*) { return absl::OkStatus(); }, nullptr, CommitQueue::Rerun::kSafe)
      .IgnoreError();
}

uint64_t NoticeStore::Version() {
  absl::MutexLock lock(&mu_);
  return version_;
}

uint64_t NoticeStore::Wait(uint64_t seen, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ > seen; };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  return version_;
}

}  // namespace caseway::server
