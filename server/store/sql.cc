#include "server/store/sql.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace caseway::server {

Stmt::Stmt(Db* db, const char* sql) : db_(db), impl_(db->Prepare(sql)) {}

Stmt& Db::Prepared(const char* sql) {
  std::unique_ptr<Stmt>& s = prepared_[sql];
  if (s == nullptr) s = std::make_unique<Stmt>(this, sql);
  return *s;
}

absl::Status Done(Stmt& s, absl::string_view what) {
  while (s.Step()) {
  }
  absl::Status st = s.status(what);
  s.Reset();
  return st;
}

absl::StatusOr<bool> HasTable(Db* db, const char* name) {
  Stmt s(db, db->backend() == Db::Backend::kPostgres
                 ? "SELECT count(*) FROM information_schema.tables WHERE "
                   "table_schema = current_schema() AND table_name = ?"
                 : "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?");
  s.Bind(1, absl::string_view(name));
  ASSIGN_OR_RETURN(int64_t found, Returned(s, absl::StrCat("look for the ", name, " table")));
  return found > 0;
}

absl::StatusOr<int64_t> Returned(Stmt& s, absl::string_view what) {
  std::optional<int64_t> value;
  while (s.Step()) {
    if (!value.has_value()) value = s.Int(0);
  }
  absl::Status st = s.status(what);
  s.Reset();
  if (!st.ok()) return st;
  if (!value.has_value()) return absl::InternalError(absl::StrCat(what, ": no row returned"));
  return *value;
}

}  // namespace caseway::server
