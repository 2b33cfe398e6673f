#include "server/store/notice_store.h"

#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "caseway/v1/notice.pb.h"
#include "common/status_macros.h"

namespace caseway::server {
namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
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
)sql";

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

}  // namespace

// WriterStatements are prepared once on the writer connection and used only by its thread.
struct NoticeStore::WriterStatements {
  explicit WriterStatements(sqlite3* db)
      : find_notice(db, "SELECT digest FROM notice WHERE notice_id = ?"),
        find_entry(db, "SELECT seq FROM channel_entry WHERE notice_id = ? AND destination = ?"),
        insert_notice(db, "INSERT INTO notice(notice_id, digest, bytes, published_at) "
                          "VALUES(?, ?, ?, ?)"),
        head(db, "SELECT head FROM channel WHERE destination = ?"),
        upsert_head(db, "INSERT INTO channel(destination, head) VALUES(?, ?) "
                        "ON CONFLICT(destination) DO UPDATE SET head = excluded.head"),
        insert_entry(db, "INSERT INTO channel_entry(destination, seq, notice_id) VALUES(?, ?, ?)"),
        ack(db, "UPDATE channel SET acked = ? WHERE destination = ? AND acked < ?"),
        cursor(db, "SELECT seq FROM cursor WHERE origin = ?"),
        upsert_cursor(db, "INSERT INTO cursor(origin, seq) VALUES(?, ?) "
                          "ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq"),
        insert_inbox(db, "INSERT INTO inbox(origin, channel_seq, notice_id, bytes, received_at) "
                         "VALUES(?, ?, ?, ?, ?)"),
        ack_inbox(db, "UPDATE inbox SET acked_at = ? WHERE inbox_seq = ? AND acked_at IS NULL"),
        inbox_exists(db, "SELECT 1 FROM inbox WHERE inbox_seq = ?") {}

  absl::Status Check() const {
    for (const Stmt* s : {&find_notice, &find_entry, &insert_notice, &head, &upsert_head,
                          &insert_entry, &ack, &cursor, &upsert_cursor, &insert_inbox, &ack_inbox,
                          &inbox_exists}) {
      RETURN_IF_ERROR(s->status("prepare writer statement"));
    }
    return absl::OkStatus();
  }

  Stmt find_notice, find_entry, insert_notice, head, upsert_head, insert_entry, ack, cursor,
      upsert_cursor, insert_inbox, ack_inbox, inbox_exists;
};

namespace {

// Done runs a statement to completion and resets it.
absl::Status Done(Stmt& s, absl::string_view what) {
  while (s.Step()) {
  }
  absl::Status st = s.status(what);
  s.Reset();
  return st;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NoticeStore>> NoticeStore::Open(const std::string& path,
                                                               int group_commit_max) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(path));
  RETURN_IF_ERROR(db->Exec(kSchema));
  {
    Stmt v(db->get(), "SELECT value FROM meta WHERE key = 'schema_version'");
    if (v.Step()) {
      int found = std::stoi(v.Text(0));
      if (found > kSchemaVersion) {
        return absl::FailedPreconditionError(
            absl::StrCat(path, ": schema version ", found, " is newer than this binary's ",
                         kSchemaVersion));
      }
    }
    RETURN_IF_ERROR(v.status("read schema version"));
  }
  RETURN_IF_ERROR(db->Exec(
      absl::StrCat("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', '",
                   kSchemaVersion, "')")
          .c_str()));
  auto stmts = std::make_unique<WriterStatements>(db->get());
  RETURN_IF_ERROR(stmts->Check());
  std::unique_ptr<NoticeStore> store(new NoticeStore(path, std::move(stmts)));
  {
    Stmt s(db->get(), "SELECT destination, head, acked FROM channel");
    absl::MutexLock lock(&store->mu_);
    while (s.Step()) {
      store->channels_[s.Text(0)] = ChannelState{static_cast<uint64_t>(s.Int(1)),
                                                 static_cast<uint64_t>(s.Int(2))};
    }
    RETURN_IF_ERROR(s.status("load channels"));
  }
  store->queue_ = std::make_unique<CommitQueue>(std::move(db), group_commit_max);
  return store;
}

NoticeStore::NoticeStore(std::string path, std::unique_ptr<WriterStatements> stmts)
    : path_(std::move(path)), stmts_(std::move(stmts)) {}

NoticeStore::~NoticeStore() { queue_.reset(); }

absl::StatusOr<std::unique_ptr<Db>> NoticeStore::AcquireReader() {
  {
    absl::MutexLock lock(&readers_mu_);
    if (!readers_.empty()) {
      std::unique_ptr<Db> db = std::move(readers_.back());
      readers_.pop_back();
      return db;
    }
  }
  return Db::Open(path_);
}

void NoticeStore::ReleaseReader(std::unique_ptr<Db> db) {
  absl::MutexLock lock(&readers_mu_);
  if (readers_.size() < 16) readers_.push_back(std::move(db));
}

void NoticeStore::Committed(const std::map<std::string, ChannelState>& changes) {
  absl::MutexLock lock(&mu_);
  for (const auto& [dest, state] : changes) {
    ChannelState& c = channels_[dest];
    c.head = std::max(c.head, state.head);
    c.acked = std::max(c.acked, state.acked);
  }
  ++version_;
}

absl::StatusOr<std::vector<v1::PublishResult>> NoticeStore::Publish(
    const std::vector<PreparedNotice>& notices) {
  std::vector<v1::PublishResult> results(notices.size());
  std::map<std::string, ChannelState> changes;
  WriterStatements& w = *stmts_;
  auto apply = [&](sqlite3*) -> absl::Status {
    changes.clear();
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
        bool same = w.find_notice.Blob(0) == n.digest;
        w.find_notice.Reset();
        if (!same) {
          return absl::AlreadyExistsError(absl::StrCat(
              "notices[", i, "]: notice_id ", n.notice_id,
              " is already stored with different content (publish a new revision instead)"));
        }
        r.set_duplicate(true);
        for (const auto& dest : n.destinations) {
          w.find_entry.Bind(1, n.notice_id).Bind(2, dest);
          if (!w.find_entry.Step()) {
            w.find_entry.Reset();
            return absl::InternalError("stored notice lacks a channel entry");
          }
          auto* d = r.add_deliveries();
          d->set_destination(dest);
          d->set_seq(w.find_entry.Int(0));
          w.find_entry.Reset();
        }
        continue;
      }
      RETURN_IF_ERROR(w.find_notice.status("find notice"));
      w.find_notice.Reset();
      w.insert_notice.Bind(1, n.notice_id).BindBlob(2, n.digest).BindBlob(3, n.bytes).Bind(4, now);
      RETURN_IF_ERROR(Done(w.insert_notice, "insert notice"));
      for (const auto& dest : n.destinations) {
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
        w.insert_entry.Bind(1, dest).Bind(2, static_cast<int64_t>(head)).Bind(3, n.notice_id);
        RETURN_IF_ERROR(Done(w.insert_entry, "insert channel entry"));
        auto* d = r.add_deliveries();
        d->set_destination(dest);
        d->set_seq(head);
      }
    }
    for (const auto& [dest, state] : changes) {
      w.upsert_head.Bind(1, dest).Bind(2, static_cast<int64_t>(state.head));
      RETURN_IF_ERROR(Done(w.upsert_head, "update head"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(queue_->Run(apply, [&] { Committed(changes); }));
  return results;
}

absl::StatusOr<std::vector<v1::Entry>> NoticeStore::ReadChannel(const std::string& destination,
                                                                uint64_t from_seq,
                                                                uint32_t max_entries,
                                                                uint64_t max_bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  std::vector<v1::Entry> out;
  {
    Stmt s(db->get(),
           "SELECT e.seq, n.bytes FROM channel_entry e JOIN notice n USING(notice_id) "
           "WHERE e.destination = ? AND e.seq >= ? ORDER BY e.seq LIMIT ?");
    s.Bind(1, destination).Bind(2, static_cast<int64_t>(from_seq)).Bind(3, int64_t{max_entries});
    uint64_t bytes = 0;
    while (s.Step()) {
      v1::Entry& e = out.emplace_back();
      e.set_seq(s.Int(0));
      absl::string_view b = s.Blob(1);
      e.set_notice(b.data(), b.size());
      bytes += b.size() + 16;
      if (bytes >= max_bytes) break;
    }
    RETURN_IF_ERROR(s.status("read channel"));
  }
  ReleaseReader(std::move(db));
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

absl::Status NoticeStore::RecordAck(const std::string& destination, uint64_t seq) {
  std::map<std::string, ChannelState> changes;
  changes[destination].acked = seq;
  WriterStatements& w = *stmts_;
  return queue_->Run(
      [&](sqlite3*) {
        w.ack.Bind(1, static_cast<int64_t>(seq)).Bind(2, destination).Bind(3, static_cast<int64_t>(seq));
        return Done(w.ack, "record ack");
      },
      [&] { Committed(changes); });
}

absl::StatusOr<uint64_t> NoticeStore::Cursor(const std::string& origin) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  uint64_t seq = 0;
  {
    Stmt s(db->get(), "SELECT seq FROM cursor WHERE origin = ?");
    s.Bind(1, origin);
    if (s.Step()) seq = s.Int(0);
    RETURN_IF_ERROR(s.status("read cursor"));
  }
  ReleaseReader(std::move(db));
  return seq;
}

absl::Status NoticeStore::StoreReceived(const std::string& origin, const v1::Batch& batch) {
  // Parse outside the writer thread: only notice ids are needed, bytes are stored as received.
  std::vector<std::string> ids;
  ids.reserve(batch.entries_size());
  for (int i = 0; i < batch.entries_size(); ++i) {
    const v1::Entry& e = batch.entries(i);
    if (e.seq() != batch.first_seq() + i) {
      return absl::FailedPreconditionError(absl::StrCat(
          "batch.entries[", i, "].seq: ", e.seq(), " breaks contiguity (expected ",
          batch.first_seq() + i, ")"));
    }
    v1::Notice n;
    if (!n.ParseFromString(e.notice())) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch.entries[", i, "].notice: not a parsable caseway.v1.Notice"));
    }
    ids.push_back(n.notice_id());
  }
  if (batch.entries_size() == 0) return absl::OkStatus();
  WriterStatements& w = *stmts_;
  return queue_->Run(
      [&](sqlite3*) -> absl::Status {
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
              .Bind(3, ids[i])
              .BindBlob(4, e.notice())
              .Bind(5, now);
          RETURN_IF_ERROR(Done(w.insert_inbox, "insert inbox"));
        }
        uint64_t last = batch.first_seq() + batch.entries_size() - 1;
        w.upsert_cursor.Bind(1, origin).Bind(2, static_cast<int64_t>(last));
        return Done(w.upsert_cursor, "update cursor");
      },
      [&] { Committed({}); });
}

absl::StatusOr<std::vector<InboxRow>> NoticeStore::ReadInbox(uint64_t after, uint32_t limit) {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  std::vector<InboxRow> out;
  {
    Stmt s(db->get(),
           "SELECT inbox_seq, origin, channel_seq, received_at, bytes FROM inbox "
           "WHERE acked_at IS NULL AND inbox_seq > ? ORDER BY inbox_seq LIMIT ?");
    s.Bind(1, static_cast<int64_t>(after)).Bind(2, int64_t{limit});
    while (s.Step()) {
      InboxRow& r = out.emplace_back();
      r.inbox_seq = s.Int(0);
      r.origin = s.Text(1);
      r.channel_seq = s.Int(2);
      r.received_at = absl::FromUnixMicros(s.Int(3));
      absl::string_view b = s.Blob(4);
      r.bytes.assign(b.data(), b.size());
    }
    RETURN_IF_ERROR(s.status("read inbox"));
  }
  ReleaseReader(std::move(db));
  return out;
}

absl::Status NoticeStore::AckInbox(const std::vector<uint64_t>& inbox_seqs) {
  if (inbox_seqs.empty()) return absl::OkStatus();
  WriterStatements& w = *stmts_;
  return queue_->Run([&](sqlite3* db) -> absl::Status {
    int64_t now = NowMicros();
    for (uint64_t seq : inbox_seqs) {
      w.ack_inbox.Bind(1, now).Bind(2, static_cast<int64_t>(seq));
      RETURN_IF_ERROR(Done(w.ack_inbox, "ack inbox"));
      if (sqlite3_changes(db) == 0) {
        w.inbox_exists.Bind(1, static_cast<int64_t>(seq));
        bool exists = w.inbox_exists.Step();
        w.inbox_exists.Reset();
        if (!exists) {
          return absl::NotFoundError(absl::StrCat("ack.inbox_seqs: ", seq, " is not in the inbox"));
        }
      }
    }
    return absl::OkStatus();
  }, [&] { Committed({}); });
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> NoticeStore::InboxCounts() {
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, AcquireReader());
  std::pair<uint64_t, uint64_t> counts;
  {
    Stmt s(db->get(),
           "SELECT count(*), (SELECT count(*) FROM inbox WHERE acked_at IS NULL) FROM inbox");
    if (s.Step()) counts = {s.Int(0), s.Int(1)};
    RETURN_IF_ERROR(s.status("count inbox"));
  }
  ReleaseReader(std::move(db));
  return counts;
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
