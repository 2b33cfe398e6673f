// The PostgreSQL backend of the store's SQL (server/store/sql.h), over libpq.
#ifndef CASEWAY_SERVER_STORE_POSTGRES_H_
#define CASEWAY_SERVER_STORE_POSTGRES_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/store/sql.h"

// libpq's connection, kept out of this header.
typedef struct pg_conn PGconn;

namespace caseway::server {

// PgConn owns a libpq connection. PgDb and each of its statements share it: the connection is
// closed when the last of them is gone (a store's prepared statements may outlive the Db they
// were prepared on, as SQLite's sqlite3_close_v2 allows). `open` is false once the PgDb is gone.
struct PgConn {
  explicit PgConn(PGconn* c) : conn(c) {}
  ~PgConn();
  PGconn* const conn;
  bool open = true;
};

// PgDb is one PostgreSQL connection.
//
// Statements are prepared on the server (the `?` of the store's SQL numbered $1, $2, ...;
// a `?` inside a quoted string or identifier, or a comment, is left alone). A value bound to a
// parameter the server types bytea goes in binary form, whether bound with Bind or BindBlob
// (SQLite keeps bytes in any column). Results come as text and are converted by the column
// accessors: bytea is decoded (for Text as for Blob), integers parsed.
//
// Errors: a status naming the statement's `what` and PostgreSQL's primary message (never its
// detail, which quotes the values). RESOURCE_EXHAUSTED for SQLSTATE class 53 (disk full, out of
// memory), UNAVAILABLE when the connection is lost (class 08, or libpq's connection is bad),
// ABORTED when the statement may succeed if retried (class 40: serialization failure, deadlock;
// 55P03: lock_timeout ran out), INTERNAL otherwise.
// PgSession holds settings of one connection's server session (zero: the server's own).
struct PgSession {
  // idle_in_transaction_session_timeout: the server ends the session of a client that stays this
  // long inside a transaction without sending anything, and so releases its locks. A process
  // frozen in the middle of a write transaction (SIGSTOP, a paused VM) keeps its connection open
  // and would otherwise hold its row locks for ever.
  absl::Duration idle_in_transaction;
  // lock_timeout: a statement that waits this long for a lock fails (ABORTED) instead of waiting.
  absl::Duration lock_timeout;
};

class PgDb final : public Db {
 public:
  // Connect opens a connection with a libpq connection string ("host=... port=... dbname=..."
  // or a postgresql:// URI) and applies `session`. UNAVAILABLE when the server cannot be
  // reached; the message never includes the password.
  static absl::StatusOr<std::unique_ptr<PgDb>> Connect(const std::string& dsn,
                                                       const PgSession& session = {});
  ~PgDb() override;

  // The raw connection, for what only PostgreSQL has (advisory locks, LISTEN).
  PGconn* get() const { return conn_->conn; }
  // Connected is false once the connection is lost.
  bool Connected() const;

  Backend backend() const override { return Backend::kPostgres; }
  absl::Status Exec(const char* sql) override;
  absl::Status Begin() override { return Exec("BEGIN"); }
  bool InTransaction() override;
  int64_t Changes() override { return changes_; }
  bool Broken() const override { return !Connected(); }

  // Statements report the rows they changed here.
  void set_changes(int64_t n) { changes_ = n; }

 private:
  explicit PgDb(PGconn* conn) : conn_(std::make_shared<PgConn>(conn)) {}
  std::unique_ptr<StmtImpl> Prepare(const char* sql) override;

  std::shared_ptr<PgConn> conn_;
  int next_statement_ = 0;
  int64_t changes_ = 0;
};

// NumberParameters rewrites the store's `?` parameters as PostgreSQL's $1, $2, ... (and SQLite's
// numbered `?NNN` as `$NNN`), leaving quoted strings, quoted identifiers and comments as they
// are; `count` receives the number of parameters.
std::string NumberParameters(absl::string_view sql, int* count);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_POSTGRES_H_
