// The store's SQL, independent of the database behind it: a connection (Db) and its prepared
// statements (Stmt). Two backends implement it: SQLite (server/store/sqlite.h, the embedded
// default) and PostgreSQL (server/store/postgres.h).
//
// The store writes its statements once, in the SQL both backends accept:
// - parameters are `?` (the PostgreSQL backend numbers them $1, $2, ... when it prepares);
// - upserts are `INSERT ... ON CONFLICT(...) DO UPDATE SET ... = excluded....` or `DO NOTHING`,
//   never SQLite's `INSERT OR REPLACE/IGNORE`;
// - a generated key is read with `RETURNING`, never last_insert_rowid() (SQLite's backend runs
//   a one-row `INSERT ... RETURNING <the rowid column>` as the insert and its last_insert_rowid:
//   the same row, without the statement journal and table SQLite's RETURNING runs with);
// - integers are 64-bit, byte strings are bound with BindBlob and read with Blob, text with
//   Bind(string_view) and Text.
// What differs between the two (the schema's types, checkpoints, backups) asks Db::backend().
#ifndef CASEWAY_SERVER_STORE_SQL_H_
#define CASEWAY_SERVER_STORE_SQL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace caseway::server {

class Db;

// StmtImpl is what a backend implements for one prepared statement (see Stmt).
class StmtImpl {
 public:
  virtual ~StmtImpl() = default;
  virtual bool ok() const = 0;
  virtual void Bind(int i, int64_t v) = 0;
  virtual void Bind(int i, absl::string_view text) = 0;
  virtual void BindBlob(int i, absl::string_view blob) = 0;
  virtual void BindNull(int i) = 0;
  virtual bool Step() = 0;
  virtual void Reset() = 0;
  virtual absl::Status status(absl::string_view what) const = 0;
  virtual int64_t Int(int col) const = 0;
  virtual bool IsNull(int col) const = 0;
  virtual bool IsInteger(int col) const = 0;
  virtual std::string Text(int col) const = 0;
  virtual absl::string_view Blob(int col) const = 0;
};

// Stmt is a prepared statement. Binding parameter 1 starts a new use (the statement is reset
// first, so a use that ended early can never leak its cursor or bindings into the next); a
// failed bind or prepare makes Step() return false and status() report the error. Columns are
// numbered from 0, parameters from 1. Thread-compatible, like its Db.
class Stmt {
 public:
  Stmt(Db* db, const char* sql);
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return impl_->ok(); }
  Db* db() const { return db_; }
  Stmt& Bind(int i, int64_t v) {
    impl_->Bind(i, v);
    return *this;
  }
  Stmt& Bind(int i, absl::string_view text) {
    impl_->Bind(i, text);
    return *this;
  }
  Stmt& BindBlob(int i, absl::string_view blob) {
    impl_->BindBlob(i, blob);
    return *this;
  }
  Stmt& BindNull(int i) {
    impl_->BindNull(i);
    return *this;
  }
  // Step returns true for a row, false when done; errors are kept for status().
  bool Step() { return impl_->Step(); }
  // Reset clears bindings and the cursor for reuse (a reader then holds no snapshot).
  void Reset() { impl_->Reset(); }
  // status names `what` and the backend's message, never a bound value (it may be personal data).
  absl::Status status(absl::string_view what) const { return impl_->status(what); }

  int64_t Int(int col) const { return impl_->Int(col); }
  bool IsNull(int col) const { return impl_->IsNull(col); }
  bool IsInteger(int col) const { return impl_->IsInteger(col); }
  std::string Text(int col) const { return impl_->Text(col); }
  // Valid until the next Step or Reset.
  absl::string_view Blob(int col) const { return impl_->Blob(col); }

 private:
  Db* db_;
  std::unique_ptr<StmtImpl> impl_;
};

// Db is one connection to the node's database. Thread-compatible: use it from one thread at a
// time.
class Db {
 public:
  enum class Backend { kSqlite, kPostgres };

  virtual ~Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  virtual Backend backend() const = 0;
  // Exec runs statements without parameters or results.
  virtual absl::Status Exec(const char* sql) = 0;
  // Begin starts a write transaction (SQLite: BEGIN IMMEDIATE, the write lock taken at once).
  virtual absl::Status Begin() = 0;
  // InTransaction is false once the backend has ended a transaction by itself (SQLite rolls back
  // on some I/O errors); true inside one that is still open, even when it must be rolled back.
  virtual bool InTransaction() = 0;
  // Changes is the number of rows the last INSERT, UPDATE or DELETE changed.
  virtual int64_t Changes() = 0;
  // Broken is true once the connection is lost for good (PostgreSQL: the server went away or
  // ended the session); nothing more can be done on it. A SQLite file is never broken.
  virtual bool Broken() const { return false; }
  // Prepared returns this connection's statement for `sql` (a string literal: the pointer is
  // the key), preparing it on first use. The caller must Reset() it when done.
  Stmt& Prepared(const char* sql);

 protected:
  Db() = default;
  // Releases the prepared statements; a backend's destructor calls it before it disconnects.
  void ClearPrepared() { prepared_.clear(); }

 private:
  friend class Stmt;
  virtual std::unique_ptr<StmtImpl> Prepare(const char* sql) = 0;

  std::map<const char*, std::unique_ptr<Stmt>> prepared_;
};

// HasTable says whether the database (the current schema on PostgreSQL) has table `name`.
absl::StatusOr<bool> HasTable(Db* db, const char* name);

// Done runs a statement to completion and resets it, returning its status.
absl::Status Done(Stmt& s, absl::string_view what);

// Returned runs a statement that returns one integer (`INSERT ... RETURNING id`) to completion
// and resets it, returning that integer; INTERNAL when it returned no row.
absl::StatusOr<int64_t> Returned(Stmt& s, absl::string_view what);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_SQL_H_
