// The SQLite backend of the store's SQL (server/store/sql.h): the embedded default, one file
// with WAL and synchronous=FULL.
#ifndef CASEWAY_SERVER_STORE_SQLITE_H_
#define CASEWAY_SERVER_STORE_SQLITE_H_

#include <sqlite3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/store/sql.h"

namespace caseway::server {

// ConfigureSqlite turns SQLite's memory statistics off, once per process, and says whether they
// are. With them on, every allocation and free SQLite makes (several per row) takes a
// process-wide mutex to count it: 8% of the instructions of a publish on the writer thread
// (PROFILE.md, 2026-12-02); Caseway reads none of them. It must come before SQLite's first use in
// the process, so SqliteDb::Open calls it; a program that uses SQLite directly first (a
// benchmark) calls it at its start. Too late, it changes nothing, which costs only time.
bool ConfigureSqlite();

// SqliteError turns a SQLite result code into a status naming `what` (never the bound values,
// which may be personal data). RESOURCE_EXHAUSTED when the disk is full, INTERNAL otherwise.
absl::Status SqliteError(sqlite3* db, absl::string_view what);

// SqliteDb is one SQLite connection.
class SqliteDb final : public Db {
 public:
  // Open opens (creating if missing) `path` with WAL and synchronous=FULL.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path);
  // OpenReadOnly opens an existing file only to read it (a backup being checked).
  static absl::StatusOr<std::unique_ptr<SqliteDb>> OpenReadOnly(const std::string& path);
  ~SqliteDb() override;

  // The raw handle, for what only SQLite has (checkpoints, backups).
  sqlite3* get() const { return db_; }

  Backend backend() const override { return Backend::kSqlite; }
  absl::Status Exec(const char* sql) override;
  absl::Status Begin() override { return Exec("BEGIN IMMEDIATE"); }
  bool InTransaction() override { return !sqlite3_get_autocommit(db_); }
  int64_t Changes() override { return sqlite3_changes64(db_); }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  std::unique_ptr<StmtImpl> Prepare(const char* sql) override;

  sqlite3* db_;
};

// AsSqlite returns the SQLite handle of `db`, or nullptr when it is another backend's.
inline sqlite3* AsSqlite(Db* db) {
  return db->backend() == Db::Backend::kSqlite ? static_cast<SqliteDb*>(db)->get() : nullptr;
}

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_SQLITE_H_
