#include "server/store/postgres.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace caseway::server {
namespace {

// Type OIDs (PostgreSQL's catalog/pg_type.h; fixed since 7.x).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;

std::string FirstLine(const char* text) {
  if (text == nullptr) return "unknown error";
  absl::string_view s(text);
  size_t end = s.find('\n');
  return std::string(s.substr(0, end));
}

// PgError makes the status of a failed command: `what`, the primary message and the SQLSTATE.
absl::Status PgError(PGconn* conn, const PGresult* res, absl::string_view what) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = res != nullptr ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string msg = absl::StrCat("postgres: ", what, ": ",
                                 primary != nullptr ? std::string(primary)
                                                    : FirstLine(PQerrorMessage(conn)));
  absl::string_view code = state != nullptr ? state : "";
  if (!code.empty()) absl::StrAppend(&msg, " (SQLSTATE ", code, ")");
  if (PQstatus(conn) == CONNECTION_BAD || absl::StartsWith(code, "08") || code == "57P01" ||
      code == "57P02" || code == "57P03") {
    return absl::UnavailableError(msg);
  }
  if (absl::StartsWith(code, "53")) return absl::ResourceExhaustedError(msg);
  if (absl::StartsWith(code, "40") || code == "55P03") return absl::AbortedError(msg);
  return absl::InternalError(msg);
}

class PgStmt final : public StmtImpl {
 public:
  PgStmt(PgDb* db, std::shared_ptr<PgConn> handle, std::string name, const char* sql)
      : db_(db), conn_(std::move(handle)), name_(std::move(name)) {
    const std::string text = NumberParameters(sql, &params_);
    PGresult* r = PQprepare(conn(), name_.c_str(), text.c_str(), 0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      error_ = PgError(conn(), r, "prepare");
    } else {
      prepared_ = true;
    }
    PQclear(r);
    // The types the server gave the parameters: bytes go to a bytea parameter in binary form
    // whether bound as text or blob (SQLite stores either in any column).
    bytea_.assign(params_, false);
    if (prepared_) {
      PGresult* d = PQdescribePrepared(conn(), name_.c_str());
      if (PQresultStatus(d) == PGRES_COMMAND_OK) {
        for (int i = 0; i < params_ && i < PQnparams(d); ++i) {
          bytea_[i] = PQparamtype(d, i) == kByteaOid;
        }
      } else {
        error_ = PgError(conn(), d, "prepare");
        prepared_ = false;
      }
      PQclear(d);
    }
    values_.resize(params_);
    null_.assign(params_, true);
    formats_.assign(params_, 0);
  }

  ~PgStmt() override {
    Reset();
    // Once the PgDb is gone the session ends with the last statement: nothing to deallocate.
    if (prepared_ && conn_->open && PQstatus(conn()) == CONNECTION_OK) {
      PGresult* r = PQexec(conn(), absl::StrCat("DEALLOCATE ", name_).c_str());
      PQclear(r);
    }
  }

  bool ok() const override { return prepared_; }

  void Bind(int i, int64_t v) override { Set(i, absl::StrCat(v)); }
  void Bind(int i, absl::string_view text) override { Set(i, text); }
  void BindBlob(int i, absl::string_view blob) override { Set(i, blob); }
  void BindNull(int i) override {
    if (!Use(i)) return;
    null_[i - 1] = true;
  }

  bool Step() override {
    if (!prepared_ || !error_.ok()) return false;
    if (result_ == nullptr) {
      std::vector<const char*> values(params_);
      std::vector<int> lengths(params_);
      for (int i = 0; i < params_; ++i) {
        values[i] = null_[i] ? nullptr : values_[i].data();
        lengths[i] = static_cast<int>(values_[i].size());
      }
      result_ = PQexecPrepared(conn(), name_.c_str(), params_, values.data(), lengths.data(),
                               formats_.data(), 0);
      const ExecStatusType st = PQresultStatus(result_);
      if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        error_ = PgError(conn(), result_, "step");
        return false;
      }
      int64_t changed = 0;
      if (!absl::SimpleAtoi(PQcmdTuples(result_), &changed)) changed = 0;
      db_->set_changes(changed);
      row_ = -1;
    }
    decoded_.clear();
    ++row_;
    return row_ < PQntuples(result_);
  }

  void Reset() override {
    PQclear(result_);
    result_ = nullptr;
    row_ = -1;
    decoded_.clear();
    null_.assign(params_, true);
    formats_.assign(params_, 0);
    if (prepared_) error_ = absl::OkStatus();
  }

  absl::Status status(absl::string_view what) const override {
    if (error_.ok()) return absl::OkStatus();
    // The failing step names the statement's purpose: "postgres: <what>: <message>".
    std::string msg(error_.message());
    absl::string_view rest(msg);
    if (absl::ConsumePrefix(&rest, "postgres: step: ")) {
      msg = absl::StrCat("postgres: ", what, ": ", rest);
    } else if (absl::ConsumePrefix(&rest, "postgres: prepare: ")) {
      msg = absl::StrCat("postgres: prepare ", what, ": ", rest);
    }
    return absl::Status(error_.code(), msg);
  }

  int64_t Int(int col) const override {
    if (!HasRow() || PQgetisnull(result_, row_, col)) return 0;
    const char* v = PQgetvalue(result_, row_, col);
    if (PQftype(result_, col) == kBoolOid) return v[0] == 't' ? 1 : 0;
    return std::strtoll(v, nullptr, 10);
  }
  bool IsNull(int col) const override { return !HasRow() || PQgetisnull(result_, row_, col); }
  bool IsInteger(int col) const override {
    if (!HasRow() || PQgetisnull(result_, row_, col)) return false;
    const Oid t = PQftype(result_, col);
    return t == kInt8Oid || t == kInt4Oid || t == kInt2Oid;
  }
  // A bytea column reads as its bytes through Text too (as a SQLite blob does).
  std::string Text(int col) const override { return std::string(Blob(col)); }
  absl::string_view Blob(int col) const override {
    if (!HasRow() || PQgetisnull(result_, row_, col)) return {};
    if (PQftype(result_, col) != kByteaOid) {
      return absl::string_view(PQgetvalue(result_, row_, col), PQgetlength(result_, row_, col));
    }
    if (decoded_.size() <= static_cast<size_t>(col)) decoded_.resize(col + 1);
    std::optional<std::string>& d = decoded_[col];
    if (!d.has_value()) {
      size_t n = 0;
      unsigned char* raw = PQunescapeBytea(
          reinterpret_cast<const unsigned char*>(PQgetvalue(result_, row_, col)), &n);
      d.emplace(reinterpret_cast<const char*>(raw), raw != nullptr ? n : 0);
      PQfreemem(raw);
    }
    return *d;
  }

 private:
  PGconn* conn() const { return conn_->conn; }
  bool HasRow() const { return result_ != nullptr && row_ >= 0 && row_ < PQntuples(result_); }

  // Use starts a new use at parameter 1 and checks the index.
  bool Use(int i) {
    if (i == 1) Reset();
    if (i < 1 || i > params_) {
      if (error_.ok()) {
        error_ = absl::InternalError(absl::StrCat("postgres: step: parameter ", i,
                                                  " is out of range (the statement has ",
                                                  params_, ")"));
      }
      return false;
    }
    return true;
  }
  void Set(int i, absl::string_view value) {
    if (!Use(i)) return;
    values_[i - 1].assign(value.data(), value.size());
    null_[i - 1] = false;
    formats_[i - 1] = bytea_[i - 1] ? 1 : 0;
  }

  PgDb* db_;  // used only while stepping, when the PgDb is alive
  const std::shared_ptr<PgConn> conn_;
  const std::string name_;
  bool prepared_ = false;
  int params_ = 0;
  std::vector<std::string> values_;
  std::vector<bool> null_;
  std::vector<int> formats_;  // 0 text, 1 binary (bytea)
  std::vector<bool> bytea_;   // per parameter: the server typed it bytea
  PGresult* result_ = nullptr;
  int row_ = -1;
  absl::Status error_;
  mutable std::vector<std::optional<std::string>> decoded_;  // bytea columns of this row
};

}  // namespace

std::string NumberParameters(absl::string_view sql, int* count) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {  // a quoted string or identifier; a doubled quote stays inside
      size_t end = i + 1;
      while (end < sql.size()) {
        if (sql[end] == c) {
          if (end + 1 < sql.size() && sql[end + 1] == c) {
            end += 2;
            continue;
          }
          break;
        }
        ++end;
      }
      absl::StrAppend(&out, sql.substr(i, end + 1 - i));
      i = end;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      size_t end = sql.find('\n', i);
      if (end == absl::string_view::npos) end = sql.size() - 1;
      absl::StrAppend(&out, sql.substr(i, end + 1 - i));
      i = end;
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      size_t end = sql.find("*/", i + 2);
      end = end == absl::string_view::npos ? sql.size() - 1 : end + 1;
      absl::StrAppend(&out, sql.substr(i, end + 1 - i));
      i = end;
    } else if (c == '?') {
      // ?NNN (SQLite's numbered parameter) keeps its number; a bare ? takes the next one.
      size_t end = i + 1;
      while (end < sql.size() && absl::ascii_isdigit(static_cast<unsigned char>(sql[end]))) ++end;
      int number = 0;
      if (end > i + 1 && absl::SimpleAtoi(sql.substr(i + 1, end - i - 1), &number)) {
        absl::StrAppend(&out, "$", number);
        n = std::max(n, number);
        i = end - 1;
      } else {
        absl::StrAppend(&out, "$", ++n);
      }
    } else {
      out.push_back(c);
    }
  }
  if (count != nullptr) *count = n;
  return out;
}

absl::StatusOr<std::unique_ptr<PgDb>> PgDb::Connect(const std::string& dsn,
                                                    const PgSession& session) {
  // Defaults a connection string may override (it is expanded after them): a peer that vanishes
  // without closing the connection is noticed in seconds, not at the kernel's two hours.
  const char* const keys[] = {"keepalives", "keepalives_idle", "keepalives_interval",
                              "keepalives_count", "tcp_user_timeout", "connect_timeout",
                              "dbname", nullptr};
  const char* const values[] = {"1", "5", "2", "3", "10000", "10", dsn.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return absl::ResourceExhaustedError("postgres: connect: out of memory");
  std::unique_ptr<PgDb> db(new PgDb(conn));
  if (PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("postgres: connect: ", FirstLine(PQerrorMessage(conn))));
  }
  // The server's notices (e.g. "relation already exists, skipping") would go to stderr by
  // default: the store reports through statuses only.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  // SET, not the connection string's `options`: a DSN that sets its own options keeps them.
  std::string set;
  if (session.idle_in_transaction > absl::ZeroDuration()) {
    absl::StrAppend(&set, "SET idle_in_transaction_session_timeout = ",
                    std::max<int64_t>(1, absl::ToInt64Milliseconds(session.idle_in_transaction)),
                    ";");
  }
  if (session.lock_timeout > absl::ZeroDuration()) {
    absl::StrAppend(&set, "SET lock_timeout = ",
                    std::max<int64_t>(1, absl::ToInt64Milliseconds(session.lock_timeout)), ";");
  }
  if (!set.empty()) RETURN_IF_ERROR(db->Exec(set.c_str()));
  return db;
}

PgConn::~PgConn() { PQfinish(conn); }

PgDb::~PgDb() {
  ClearPrepared();
  conn_->open = false;  // statements still held elsewhere keep the connection until they go
}

bool PgDb::Connected() const { return PQstatus(get()) == CONNECTION_OK; }

bool PgDb::InTransaction() {
  const PGTransactionStatusType t = PQtransactionStatus(get());
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

absl::Status PgDb::Exec(const char* sql) {
  PGresult* r = PQexec(get(), sql);
  const ExecStatusType st = PQresultStatus(r);
  absl::Status s;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    int64_t changed = 0;
    if (absl::SimpleAtoi(PQcmdTuples(r), &changed)) changes_ = changed;
    // A COMMIT of a transaction in which a statement failed succeeds as a ROLLBACK: it must not
    // read as stored (CommitQueue runs groups without savepoints, where nothing else would).
    if (absl::StartsWithIgnoreCase(sql, "COMMIT") &&
        absl::string_view(PQcmdStatus(r)) == "ROLLBACK") {
      s = absl::AbortedError(
          "postgres: COMMIT rolled the transaction back: a statement in it had failed");
    }
  } else {
    s = PgError(get(), r, "exec");
  }
  PQclear(r);
  return s;
}

std::unique_ptr<StmtImpl> PgDb::Prepare(const char* sql) {
  return std::make_unique<PgStmt>(this, conn_, absl::StrCat("s", ++next_statement_), sql);
}

}  // namespace caseway::server
