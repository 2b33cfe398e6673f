#include "server/store/sqlite.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace caseway::server {
namespace {

bool IsIdentifier(absl::string_view s) {
  if (s.empty() || !(absl::ascii_isalpha(s[0]) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_')) return false;
  }
  return true;
}

// OneRowOfValues: `values` starts at "VALUES" and holds one parenthesised row and nothing after
// it (not several rows, not an upsert clause). Quotes are skipped; parentheses nest.
bool OneRowOfValues(absl::string_view values) {
  size_t i = values.find('(');
  if (i == absl::string_view::npos) return false;
  int depth = 0;
  for (; i < values.size(); ++i) {
    const char c = values[i];
    if (c == '\'') {
      const size_t close = values.find('\'', i + 1);
      if (close == absl::string_view::npos) return false;
      i = close;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && --depth == 0) {
      break;
    }
  }
  if (i >= values.size()) return false;
  for (++i; i < values.size(); ++i) {
    if (!absl::ascii_isspace(values[i])) return false;
  }
  return true;
}

// Int64 runs a query that returns one integer; -1 when it fails.
int64_t Int64(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    v = sqlite3_column_int64(s, 0);
  }
  sqlite3_finalize(s);
  return v;
}

// RowidInsert recognises `INSERT INTO t(...) VALUES(...) RETURNING c`, one row and no upsert
// clause, where c is an alias of t's rowid, and returns the statement without the RETURNING
// clause; empty otherwise. SQLite runs RETURNING like a trigger, with a statement journal and a
// table for the returned rows: measured, the destination spent 60% more CPU per received notice
// with it (bench/results/PROFILE.md, "A regression found by counting CPU per notice"). The rowid
// of the row just inserted is sqlite3_last_insert_rowid, the same value. Any statement this does
// not recognise is prepared as written.
std::string RowidInsert(sqlite3* db, absl::string_view sql) {
  constexpr absl::string_view kInsert = "INSERT INTO ", kReturning = " RETURNING ";
  if (!absl::StartsWith(sql, kInsert)) return "";
  const size_t r = sql.rfind(kReturning);
  if (r == absl::string_view::npos) return "";
  const std::string column(sql.substr(r + kReturning.size()));
  absl::string_view body = sql.substr(0, r);
  // One row of VALUES: not INSERT ... SELECT, not several rows, no ON CONFLICT (an upsert's
  // DO UPDATE changes a row without setting last_insert_rowid).
  const size_t values = body.find(" VALUES");
  if (values == absl::string_view::npos || absl::StrContains(body, "SELECT") ||
      !OneRowOfValues(body.substr(values + 1))) {
    return "";
  }
  absl::string_view rest = body.substr(kInsert.size());
  const size_t end = rest.find_first_of("( ");
  if (end == absl::string_view::npos) return "";
  const std::string table(rest.substr(0, end));
  if (!IsIdentifier(table) || !IsIdentifier(column)) return "";
  // c is an alias of the rowid: a primary-key column declared INTEGER, of a table whose primary
  // key has no index of its own (a rowid alias has none; INTEGER PRIMARY KEY DESC, a composite
  // key and a WITHOUT ROWID table each have one). The table is looked up as the statement will
  // find it.
  const char* type = nullptr;
  int not_null = 0, primary = 0, autoinc = 0;
  if (sqlite3_table_column_metadata(db, nullptr, table.c_str(), column.c_str(), &type, nullptr,
                                    &not_null, &primary, &autoinc) != SQLITE_OK ||
      !primary || type == nullptr || !absl::EqualsIgnoreCase(type, "INTEGER")) {
    return "";
  }
  if (Int64(db, absl::StrCat("SELECT count(*) FROM pragma_index_list('", table,
                             "') WHERE origin = 'pk'")) != 0) {
    return "";
  }
  return std::string(body);
}

class SqliteStmt final : public StmtImpl {
 public:
  SqliteStmt(sqlite3* db, const char* sql) : db_(db) {
    const std::string without_returning = RowidInsert(db, sql);
    returns_rowid_ = !without_returning.empty();
    rc_ = sqlite3_prepare_v3(db, returns_rowid_ ? without_returning.c_str() : sql, -1,
                             SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
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
    if (returns_rowid_) {
      // The insert's one returned row, as RETURNING would give it: the new rowid, or no row
      // when nothing was inserted.
      if (stepped_) return false;
      stepped_ = true;
      rc_ = sqlite3_step(stmt_);
      if (rc_ != SQLITE_DONE || sqlite3_changes(db_) == 0) return false;
      rowid_ = sqlite3_last_insert_rowid(db_);
      return true;
    }
    rc_ = sqlite3_step(stmt_);
    return rc_ == SQLITE_ROW;
  }
  void Reset() override {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    rc_ = SQLITE_OK;
    stepped_ = false;
  }
  absl::Status status(absl::string_view what) const override {
    if (stmt_ == nullptr) return SqliteError(db_, absl::StrCat("prepare ", what));
    if (rc_ == SQLITE_OK || rc_ == SQLITE_ROW || rc_ == SQLITE_DONE) return absl::OkStatus();
    return SqliteError(db_, what);
  }
  int64_t Int(int col) const override {
    return returns_rowid_ ? rowid_ : sqlite3_column_int64(stmt_, col);
  }
  bool IsNull(int col) const override {
    return returns_rowid_ ? false : sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }
  bool IsInteger(int col) const override {
    return returns_rowid_ || sqlite3_column_type(stmt_, col) == SQLITE_INTEGER;
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
  // An INSERT ... RETURNING of the rowid, run without the clause (RowidInsert).
  bool returns_rowid_ = false, stepped_ = false;
  int64_t rowid_ = 0;
};

}  // namespace

bool ConfigureSqlite() {
  static const bool configured = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  return configured;
}

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string msg = absl::StrCat("sqlite: ", what, ": ", db ? sqlite3_errmsg(db) : "no connection");
  if ((code & 0xff) == SQLITE_FULL) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path) {
  ConfigureSqlite();
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
  ConfigureSqlite();
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
