// Inspect: what a node's store holds, read without the node (`caseway-node inspect`): for an
// operator checking a restored copy before its first start, or a node that will not start.
#ifndef CASEWAY_SERVER_STORE_INSPECT_H_
#define CASEWAY_SERVER_STORE_INSPECT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/sql.h"

namespace caseway::server {

// StoreSummary counts what a store holds; it names no person and holds no notice content.
struct StoreSummary {
  // Set in a copy made by `caseway-node backup` that no node has started on yet.
  std::optional<absl::Time> backup_taken_at;
  int schema_version = 0;  // of the store's tables (meta.schema_version)
  uint64_t notices_published = 0;
  uint64_t log_entries = 0;
  uint64_t checkpoint_size = 0;  // the latest signed checkpoint's tree size; 0 before the first
  struct Channel {
    uint64_t head = 0;   // highest sequence assigned
    uint64_t acked = 0;  // highest sequence the destination acknowledged
  };
  std::map<std::string, Channel> channels;  // by destination
  std::map<std::string, uint64_t> cursors;  // origin -> highest sequence stored here
  uint64_t inbox_total = 0;
  uint64_t inbox_unacked = 0;  // not yet acknowledged by the local consumer
  // The access log's records by what was read ("inbox", "case", "feed-read", ...): how many reads
  // of personal data the node recorded, never whose.
  std::map<std::string, uint64_t> reads;
};

// InspectStore reads the summary in one read transaction of `db`, which may be in use by a
// running node (it only reads). FAILED_PRECONDITION when `db` is not a Caseway store; the
// database's own error when it cannot be read.
absl::StatusOr<StoreSummary> InspectStore(Db* db);

// StoreSummaryJson renders `summary` as one JSON object (docs/operator.md, "Inspecting a store").
std::string StoreSummaryJson(const StoreSummary& summary);

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_INSPECT_H_
