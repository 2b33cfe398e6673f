#include "server/store/sqlite.h"

#include "absl/strings/str_cat.h"

namespace caseway::server {

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string msg = absl::StrCat("sqlite: ", what, ": ", db ? sqlite3_errmsg(db) : "no connection");
  if ((code & 0xff) == SQLITE_FULL) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  std::unique_ptr<Db> db(new Db(raw));
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

Db::~Db() {
  prepared_.clear();
  sqlite3_close_v2(db_);
}

Stmt& Db::Prepared(const char* sql) {
  std::unique_ptr<Stmt>& s = prepared_[sql];
  if (s == nullptr) s = std::make_unique<Stmt>(db_, sql);
  return *s;
}

absl::Status Db::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status s = SqliteError(db_, err ? err : "exec");
    sqlite3_free(err);
    return s;
  }
  return absl::OkStatus();
}

Stmt::Stmt(sqlite3* db, const char* sql) : db_(db) {
  rc_ = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

// Binding parameter 1 starts a new use: the statement is reset first, so a use that ended early
// (an error path without Reset) can never leak its cursor or bindings into the next one.
void Stmt::BeginUse(int i) {
  if (i == 1) Reset();
}

void Stmt::Check(int rc) {
  if (rc != SQLITE_OK && (rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE)) rc_ = rc;
}

Stmt& Stmt::Bind(int i, int64_t v) {
  BeginUse(i);
  Check(sqlite3_bind_int64(stmt_, i, v));
  return *this;
}
Stmt& Stmt::Bind(int i, absl::string_view text) {
  BeginUse(i);
  Check(sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
  return *this;
}
Stmt& Stmt::BindBlob(int i, absl::string_view blob) {
  BeginUse(i);
  Check(sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT));
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  BeginUse(i);
  Check(sqlite3_bind_null(stmt_, i));
  return *this;
}

bool Stmt::Step() {
  if (rc_ != SQLITE_OK && rc_ != SQLITE_ROW && rc_ != SQLITE_DONE) return false;  // a bind failed
  rc_ = sqlite3_step(stmt_);
  return rc_ == SQLITE_ROW;
}

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  rc_ = SQLITE_OK;
}

absl::Status Stmt::status(absl::string_view what) const {
  if (stmt_ == nullptr) return SqliteError(db_, absl::StrCat("prepare ", what));
  if (rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE) return absl::OkStatus();
  return SqliteError(db_, what);
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col)) : "";
}

absl::string_view Stmt::Blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  return p ? absl::string_view(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col))
           : absl::string_view();
}

}  // namespace caseway::server
