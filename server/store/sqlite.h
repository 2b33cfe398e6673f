// Thin RAII helpers over the SQLite C API: a connection and a prepared statement.
#ifndef CASEWAY_SERVER_STORE_SQLITE_H_
#define CASEWAY_SERVER_STORE_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace caseway::server {

// SqliteError turns a SQLite result code into a status naming `what` (never the bound values,
// which may be personal data).
absl::Status SqliteError(sqlite3* db, absl::string_view what);

class Stmt;

// Db owns one connection. Thread-compatible: use it from one thread at a time.
class Db {
 public:
  // Open opens (creating if missing) `path` with WAL and synchronous=FULL.
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() const { return db_; }
  // Exec runs statements without results.
  absl::Status Exec(const char* sql);
  // Prepared returns this connection's statement for `sql` (a string literal: the pointer is
  // the key), preparing it on first use. The caller must Reset() it when done, so that a reader
  // holds no snapshot between uses.
  Stmt& Prepared(const char* sql);

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<const char*, std::unique_ptr<Stmt>> prepared_;  // finalized before db_ closes
};

// Stmt is a prepared statement. Binding parameter 1 resets it (a new use); a failed bind makes
// Step() return false and status() report the error.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  // The connection the statement belongs to.
  sqlite3* db() const { return db_; }
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, absl::string_view text);
  Stmt& BindBlob(int i, absl::string_view blob);
  Stmt& BindNull(int i);
  // Step returns true for a row, false when done; errors are kept for status().
  bool Step();
  // Reset clears bindings and the cursor for reuse.
  void Reset();
  absl::Status status(absl::string_view what) const;

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  bool IsInteger(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_INTEGER; }
  std::string Text(int col) const;
  absl::string_view Blob(int col) const;

 private:
  void BeginUse(int i);
  void Check(int rc);

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_SQLITE_H_
