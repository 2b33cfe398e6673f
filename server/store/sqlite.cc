#include "server/store/sqlite.h"

#include "absl/strings/str_cat.h"

namespace caseway::server {
namespace {

class SqliteStmt final : public StmtImpl {
 public:
  SqliteStmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  ~SqliteStmt() override { sqlite3_finalize(stmt_); }

  bool ok() const override { return stmt_ != nullptr; }
  void Bind(int i, int64_t v) override {
    BeginUse(i);
    Check(sqlite3_bind_int64(stmt_, i, v));
  }
  void Bind(int i, absl::string_view text) override {
    BeginUse(i);
    Check(sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()),
                            SQLITE_TRANSIENT));
  }
  void BindBlob(int i, absl::string_view blob) override {
    BeginUse(i);
    Check(sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()),
                            SQLITE_TRANSIENT));
  }
  void BindNull(int i) override {
    BeginUse(i);
    Check(sqlite3_bind_null(stmt_, i));
  }
  bool Step() override {
    if (stmt_ == nullptr) return false;
    if (rc_ != SQLITE_OK && rc_ != SQLITE_ROW && rc_ != SQLITE_DONE) return false;  // a bind failed
    rc_ = sqlite3_step(stmt_);
    return rc_ == SQLITE_ROW;
  }
  void Reset() override {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    rc_ = SQLITE_OK;
  }
  absl::Status status(absl::string_view what) const override {
    if (stmt_ == nullptr) return SqliteError(db_, absl::StrCat("prepare ", what));
    if (rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE) return absl::OkStatus();
    return SqliteError(db_, what);
  }
  int64_t Int(int col) const override { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const override { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  bool IsInteger(int col) const override {
    return sqlite3_column_type(stmt_, col) == SQLITE_INTEGER;
  }
  std::string Text(int col) const override {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col))
             : "";
  }
  absl::string_view Blob(int col) const override {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p ? absl::string_view(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col))
             : absl::string_view();
  }

 private:
  // Binding parameter 1 starts a new use.
  void BeginUse(int i) {
    if (i == 1) Reset();
  }
  void Check(int rc) {
    if (rc != SQLITE_OK && (rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE)) rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

}  // namespace

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string msg = absl::StrCat("sqlite: ", what, ": ", db ? sqlite3_errmsg(db) : "no connection");
  if ((code & 0xff) == SQLITE_FULL) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw));
  if (rc != SQLITE_OK) return SqliteError(raw, absl::StrCat("open ", path));
  sqlite3_busy_timeout(raw, 10000);
  // No connection checkpoints when it closes: only NoticeStore's checkpoint loop does, and it
  // checks the result (a checkpoint whose I/O failed must not be followed by another, see
  // NoticeStore::StorageFault).
  sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  absl::Status s = db->Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
      // Checkpoints run on NoticeStore's background connection, not in a committing writer.
      // Once checkpointed, the WAL is reused from its start and keeps its size: appends within it
      // need no file-system journal commit at fdatasync. (Cutting it back, by TRUNCATE or
      // journal_size_limit, put the ext4 journal commit behind the checkpoint's writes and a
      // truncate into commits: stalls of 0.1-1.4 s in the latency benchmark.)
      "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-65536;");
  if (!s.ok()) return s;
  return db;
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::OpenReadOnly(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<SqliteDb> db(new SqliteDb(raw));
  if (rc != SQLITE_OK) return SqliteError(raw, absl::StrCat("open ", path));
  sqlite3_busy_timeout(raw, 10000);
  return db;
}

SqliteDb::~SqliteDb() {
  ClearPrepared();
  sqlite3_close_v2(db_);
}

std::unique_ptr<StmtImpl> SqliteDb::Prepare(const char* sql) {
  return std::make_unique<SqliteStmt>(db_, sql);
}

absl::Status SqliteDb::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = SqliteError(db_, err ? err : "exec");
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

}  // namespace caseway::server
