#include "server/store/reseal.h"

#include <atomic>
#include <functional>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/store/backup.h"
#include "server/store/notice_store.h"
#include "server/store/postgres.h"
#include "server/store/sqlite.h"
#include "server/store/writer_lease.h"

namespace caseway::server {
namespace {

constexpr int64_t kRowsPerTransaction = 1000;

// A table that holds sealed bodies: its rows in key order from `after`, and how each names its
// row (the sealed value's context).
struct Bodies {
  const char* select;  // key, body, then the context columns; bound: after, limit
  const char* update;  // bound: body, key
  std::function<std::string(const Stmt&)> context;
  // The name an older version gave the row, when it differs (read, never written).
  std::function<std::string(const Stmt&)> legacy_context = nullptr;
};

struct Row {
  int64_t key;
  std::string body;
  std::string context;
  std::string legacy_context;
};

// Begin opens one write transaction of a reseal (on PostgreSQL, fenced by the writer lease).
using BeginWrite = std::function<absl::Status(Db&)>;

absl::Status ResealTable(Db& db, const Bodies& table, const Sealer& sealer, const BeginWrite& begin,
                         ResealCounts* counts) {
  int64_t after = -1;
  for (;;) {
    std::vector<Row> rows;
    {
      Stmt s(&db, table.select);
      s.Bind(1, after).Bind(2, kRowsPerTransaction);
      while (s.Step()) {
        rows.push_back({s.Int(0), std::string(s.Blob(1)), table.context(s),
                        table.legacy_context ? table.legacy_context(s) : std::string()});
      }
      RETURN_IF_ERROR(s.status("read bodies"));
    }
    if (rows.empty()) return absl::OkStatus();
    after = rows.back().key;
    if (absl::Status begun = begin(db); !begun.ok()) {
      if (db.InTransaction()) db.Exec("ROLLBACK").IgnoreError();
      return begun;
    }
    Stmt update(&db, table.update);
    absl::Status status;
    for (const Row& r : rows) {
      const uint32_t key = Sealer::KeyOf(r.body);
      // A row sealed under its older name is sealed again under the current one, whatever key.
      const bool renamed =
          !r.legacy_context.empty() && key != 0 &&
          absl::IsDataLoss(sealer.Open(r.body, r.context).status()) &&
          sealer.Open(r.body, r.legacy_context).ok();
      if (r.body.empty() || (key == sealer.current_key() && !renamed)) {
        if (!r.body.empty()) ++counts->already_current;
        continue;
      }
      absl::StatusOr<std::string> plain = sealer.Open(r.body, renamed ? r.legacy_context : r.context);
      if (!plain.ok()) {
        status = plain.status();
        break;
      }
      update.BindBlob(1, sealer.Seal(*plain, r.context)).Bind(2, r.key);
      update.Step();
      if (status = update.status("reseal"); !status.ok()) break;
      update.Reset();
      ++(key == 0 ? counts->was_plain : counts->was_older_key);
    }
    if (!status.ok()) {
      db.Exec("ROLLBACK").IgnoreError();
      return status;
    }
    RETURN_IF_ERROR(db.Exec("COMMIT"));
  }
}

// CheckVersion refuses a store this binary did not migrate yet.
absl::Status CheckVersion(Db& db, const std::string& where) {
  Stmt v(&db, "SELECT value FROM meta WHERE key = 'schema_version'");
  int version = 0;
  if (!v.Step() || !absl::SimpleAtoi(v.Text(0), &version) || version != kStoreSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, " is not a store of this caseway-node's version (", kStoreSchemaVersion,
        "): start the node once with this version, stop it, then reseal"));
  }
  return absl::OkStatus();
}

// ResealBodies rewrites every sealed table's bodies, then records that only the current key has
// sealed anything.
absl::StatusOr<ResealCounts> ResealBodies(Db& db, const Sealer& sealer, const BeginWrite& begin) {
  ResealCounts counts;
  const Bodies tables[] = {
      {"SELECT rowid, bytes, notice_id FROM notice WHERE rowid > ? ORDER BY rowid LIMIT ?",
       "UPDATE notice SET bytes = ? WHERE rowid = ?",
       [](const Stmt& s) { return NoticeContext(s.Text(2)); }},
      {"SELECT inbox_seq, bytes, origin, channel_seq FROM inbox WHERE inbox_seq > ? "
       "ORDER BY inbox_seq LIMIT ?",
       "UPDATE inbox SET bytes = ? WHERE inbox_seq = ?",
       [](const Stmt& s) { return InboxContext(s.Text(2), static_cast<uint64_t>(s.Int(3))); }},
      {"SELECT id, message, peer, digest FROM evidence WHERE id > ? AND kind IN (5, 7) "
       "ORDER BY id LIMIT ?",
       "UPDATE evidence SET message = ? WHERE id = ?",
       [](const Stmt& s) { return AnswerContext(s.Text(2), s.Blob(3)); }},
      {"SELECT c.id, c.bytes, c.destination, c.seq, e.notice_id FROM shared_copy c "
       "JOIN channel_entry e ON e.destination = c.destination AND e.seq = c.seq "
       "WHERE c.id > ? ORDER BY c.id LIMIT ?",
       "UPDATE shared_copy SET bytes = ? WHERE id = ?",
       [](const Stmt& s) { return CopyContext(s.Text(2), s.Text(4)); },
       [](const Stmt& s) { return LegacyCopyContext(s.Text(2), static_cast<uint64_t>(s.Int(3))); }},
      {"SELECT rowid, value, key FROM meta WHERE rowid > ? AND key = 'access_key' "
       "ORDER BY rowid LIMIT ?",
       "UPDATE meta SET value = ? WHERE rowid = ?",
       [](const Stmt& s) { return MetaContext(s.Text(2)); }},
  };
  for (const Bodies& table : tables) {
    RETURN_IF_ERROR(ResealTable(db, table, sealer, begin, &counts));
  }
  if (absl::Status begun = begin(db); !begun.ok()) {
    if (db.InTransaction()) db.Exec("ROLLBACK").IgnoreError();
    return begun;
  }
  Stmt s(&db, "INSERT INTO meta(key, value) VALUES('seal_keys', ?)"
              " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.Bind(1, absl::StrCat(sealer.current_key()));
  s.Step();
  if (absl::Status written = s.status("write meta.seal_keys"); !written.ok()) {
    db.Exec("ROLLBACK").IgnoreError();
    return written;
  }
  RETURN_IF_ERROR(db.Exec("COMMIT"));
  return counts;
}

}  // namespace

absl::StatusOr<ResealCounts> ResealDatabase(const std::string& db_path, const Sealer& sealer) {
  if (DatabaseInUse(db_path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage.path: ", db_path, " is open in a running process (or its -shm file cannot be "
        "read): stop the node first"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, SqliteDb::Open(db_path));
  // Again with the file open here: a node started between the first look and the open holds it
  // too (this process's own lock does not count).
  if (DatabaseInUse(db_path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "storage.path: ", db_path, " was opened by another process meanwhile: stop the node first"));
  }
  RETURN_IF_ERROR(CheckVersion(*db, absl::StrCat("storage.path: ", db_path)));
  ASSIGN_OR_RETURN(ResealCounts counts,
                   ResealBodies(*db, sealer, [](Db& d) { return d.Exec("BEGIN IMMEDIATE"); }));
  // The rewritten rows' old copies sit in freed pages and in the WAL until both are rebuilt.
  // VACUUM may renumber the notice table's rows: departments' feed positions start again.
  RETURN_IF_ERROR(db->Exec("DELETE FROM meta WHERE key = 'feed_epoch'; VACUUM"));
  {
    Stmt checkpoint(db.get(), "PRAGMA wal_checkpoint(TRUNCATE)");
    if (checkpoint.Step() && checkpoint.Int(0) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage.path: ", db_path, ": the WAL could not be truncated (another process reads "
          "the database); every body is resealed: run reseal again once it is stopped"));
    }
    RETURN_IF_ERROR(checkpoint.status("truncate the WAL"));
  }
  return counts;
}

absl::StatusOr<ResealCounts> ResealPostgres(const std::string& dsn, const Sealer& sealer) {
  // The writer lease, taken without waiting, keeps every node of the jurisdiction from writing
  // (or taking over) while the bodies are rewritten; a node that holds it is running.
  LeaseOptions options;
  options.dsn = dsn;
  options.holder = absl::StrCat("reseal/", LeaseHolderName());
  std::string holder;
  absl::Status unreachable;
  // Declared before the lease: its watchdog may set it until the lease's destructor joins it.
  std::atomic<bool> lost{false};
  auto lease = WriterLease::Acquire(
      options,
      [&](const WriterLease::Wait& w) {
        holder = w.holder;
        unreachable = w.error;
      },
      [](absl::Duration) { return false; });
  if (!lease.ok()) {
    if (!unreachable.ok()) return unreachable;
    return absl::FailedPreconditionError(absl::StrCat(
        "storage.postgres: the writer lease is held by ", holder.empty() ? "a node" : holder,
        ": stop the node first (both nodes of an active/standby pair)"));
  }
  (*lease)->KeepRenewed([&](const std::string&) { lost = true; });
  ASSIGN_OR_RETURN(std::unique_ptr<Db> db, PgDb::Connect(dsn));
  RETURN_IF_ERROR(CheckVersion(*db, "storage.postgres"));
  const std::string me = (*lease)->holder();
  const int64_t epoch = (*lease)->epoch();
  ASSIGN_OR_RETURN(ResealCounts counts, ResealBodies(*db, sealer, [&](Db& d) -> absl::Status {
                     if (lost) {
                       return absl::AbortedError(
                           "the writer lease was lost (not renewed in time): run reseal again");
                     }
                     RETURN_IF_ERROR(d.Begin());
                     if (absl::Status fenced = WriterLease::Fence(&d, me, epoch); !fenced.ok()) {
                       return absl::AbortedError(absl::StrCat(
                           "the writer lease was taken meanwhile (", fenced.message(),
                           "): stop every node of the jurisdiction, then run reseal again"));
                     }
                     return absl::OkStatus();
                   }));
  // The rewritten rows' old versions stay in the tables' pages until they are rewritten:
  // VACUUM FULL rewrites each table. Row ids do not change, so departments' feed positions
  // stay valid. (PostgreSQL's own WAL, its archive and older base backups keep old versions
  // until they are recycled: docs/operator.md, "Encryption at rest".)
  RETURN_IF_ERROR(db->Exec("VACUUM FULL notice, inbox, evidence, shared_copy, meta"));
  return counts;
}

}  // namespace caseway::server
