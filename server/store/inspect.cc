#include "server/store/inspect.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace caseway::server {

namespace {

// The one integer a query returns.
absl::StatusOr<uint64_t> Scalar(Db* db, const char* sql, const char* what) {
  Stmt s(db, sql);
  ASSIGN_OR_RETURN(int64_t value, Returned(s, what));
  return static_cast<uint64_t>(value);
}

// Rows of (text, integer) into `out`.
absl::Status Counts(Db* db, const char* sql, const char* what, std::map<std::string, uint64_t>* out) {
  Stmt s(db, sql);
  while (s.Step()) (*out)[s.Text(0)] = static_cast<uint64_t>(s.Int(1));
  return s.status(what);
}

}  // namespace

absl::StatusOr<StoreSummary> InspectStore(Db* db) {
  {
    // Every table below is a Caseway store's: look for its meta table first, so that another
    // database is named as such rather than by a missing table; any other failure (the file
    // unreadable, the server gone) is passed on as it is.
    absl::StatusOr<bool> found = HasTable(db, "meta");
    if (!found.ok()) {
      if (absl::StrContains(found.status().message(), "not a database")) {
        return absl::FailedPreconditionError("not a Caseway store (not a SQLite database at all)");
      }
      return found.status();
    }
    if (!*found) {
      return absl::FailedPreconditionError(
          "not a Caseway store (it has no meta table): is storage.path or storage.postgres.dsn "
          "the node's?");
    }
  }
  // One snapshot, so that the counts agree with each other while a node writes.
  RETURN_IF_ERROR(db->Exec(db->backend() == Db::Backend::kPostgres
                               ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                               : "BEGIN"));
  StoreSummary summary;
  absl::Status read = [&]() -> absl::Status {
    {
      Stmt s(db, "SELECT value FROM meta WHERE key = 'backup_taken_at'");
      if (s.Step()) {
        int64_t micros = 0;
        if (absl::SimpleAtoi(s.Text(0), &micros)) summary.backup_taken_at = absl::FromUnixMicros(micros);
      }
      RETURN_IF_ERROR(s.status("read the backup mark"));
    }
    {
      Stmt s(db, "SELECT value FROM meta WHERE key = 'schema_version'");
      if (s.Step()) (void)absl::SimpleAtoi(s.Text(0), &summary.schema_version);
      RETURN_IF_ERROR(s.status("read the schema version"));
    }
    RETURN_IF_ERROR(Counts(db, "SELECT what, count(*) FROM access GROUP BY what",
                           "count the access log", &summary.reads));
    ASSIGN_OR_RETURN(summary.notices_published,
                     Scalar(db, "SELECT count(*) FROM notice", "count the notices"));
    ASSIGN_OR_RETURN(summary.log_entries,
                     Scalar(db, "SELECT count(*) FROM log_leaf", "count the log's entries"));
    ASSIGN_OR_RETURN(summary.checkpoint_size,
                     Scalar(db, "SELECT coalesce(max(size), 0) FROM checkpoint",
                            "read the latest checkpoint"));
    {
      Stmt s(db, "SELECT destination, head, acked FROM channel");
      while (s.Step()) {
        summary.channels[s.Text(0)] = {static_cast<uint64_t>(s.Int(1)),
                                       static_cast<uint64_t>(s.Int(2))};
      }
      RETURN_IF_ERROR(s.status("read the channels"));
    }
    RETURN_IF_ERROR(
        Counts(db, "SELECT origin, seq FROM cursor", "read the cursors", &summary.cursors));
    ASSIGN_OR_RETURN(summary.inbox_total,
                     Scalar(db, "SELECT count(*) FROM inbox", "count the inbox"));
    ASSIGN_OR_RETURN(summary.inbox_unacked,
                     Scalar(db, "SELECT count(*) FROM inbox WHERE acked_at IS NULL",
                            "count the inbox's unacknowledged notices"));
    return absl::OkStatus();
  }();
  absl::Status ended = db->Exec("ROLLBACK");
  RETURN_IF_ERROR(read);
  RETURN_IF_ERROR(ended);
  return summary;
}

std::string StoreSummaryJson(const StoreSummary& summary) {
  using google::protobuf::Struct;
  using google::protobuf::Value;
  auto number = [](uint64_t n) {
    Value v;
    v.set_number_value(static_cast<double>(n));
    return v;
  };
  Struct out;
  auto& fields = *out.mutable_fields();
  if (summary.backup_taken_at) {
    fields["backup_taken_at"].set_string_value(
        absl::FormatTime(absl::RFC3339_full, *summary.backup_taken_at, absl::UTCTimeZone()));
  }
  fields["schema_version"] = number(static_cast<uint64_t>(summary.schema_version));
  fields["notices_published"] = number(summary.notices_published);
  fields["log_entries"] = number(summary.log_entries);
  fields["checkpoint_size"] = number(summary.checkpoint_size);
  auto& channels = *fields["channels"].mutable_struct_value()->mutable_fields();
  for (const auto& [destination, c] : summary.channels) {
    auto& channel = *channels[destination].mutable_struct_value()->mutable_fields();
    channel["head"] = number(c.head);
    channel["acked"] = number(c.acked);
  }
  auto& cursors = *fields["cursors"].mutable_struct_value()->mutable_fields();
  for (const auto& [origin, seq] : summary.cursors) cursors[origin] = number(seq);
  fields["inbox_total"] = number(summary.inbox_total);
  fields["inbox_unacked"] = number(summary.inbox_unacked);
  auto& reads = *fields["reads"].mutable_struct_value()->mutable_fields();
  for (const auto& [what, n] : summary.reads) reads[what] = number(n);
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(out, &json);
  return json;
}

}  // namespace caseway::server
