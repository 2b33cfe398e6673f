// AccessLog: the store's record of every read of personal data (docs/privacy.md), as the read
// paths of every module use it.
#ifndef CASEWAY_SERVER_STORE_ACCESS_LOG_H_
#define CASEWAY_SERVER_STORE_ACCESS_LOG_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "caseway/v1/gateway.pb.h"

namespace caseway::server {

// AccessEntry is one read of personal data, for the access log (docs/privacy.md).
struct AccessEntry {
  AccessEntry(std::string who, std::string what, std::string purpose, std::string peer)
      : who(std::move(who)), what(std::move(what)), purpose(std::move(purpose)),
        peer(std::move(peer)) {}

  std::string who;      // the reader's certificate identity
  std::string what;     // "inbox", "case", "query-answered", "feed-read", "query-received",
                        // "evidence", "access-log" (caseway.v1.AccessRecord.what)
  std::string purpose;  // as the reader gave it
  std::string peer;     // for a query: the peer asked or asking
  uint32_t notices = 0;
  std::set<std::string> id_numbers;  // whose data it held: stored only as keyed digests
  // Add counts a notice the read held and notes its subject.
  void Add(const caseway::v1::Notice& notice);
  // AddBytes does the same for a stored body as it is sent (a serialized Notice): an empty one
  // (purged) was not read; one that does not parse is counted, whoever it is about.
  void AddBytes(absl::string_view bytes);
};

// AccessLog appends and reads access records. Implemented by NoticeStore (its
// notice_store_access.cc), on SQLite and PostgreSQL. Thread-safe.
class AccessLog {
 public:
  using WriteDone = std::function<void(const absl::Status&)>;
  virtual ~AccessLog() = default;

  // RecordAccess appends one read of personal data and returns once it is durable; a read path
  // records before it hands the data out. RecordAccessAsync is its non-blocking form (`done` on
  // the writer thread).
  virtual absl::Status RecordAccess(const AccessEntry& entry) = 0;
  virtual void RecordAccessAsync(AccessEntry entry, WriteDone done) = 0;
  // ReadAccess returns the reads that held data about `id_number`, oldest first, after id
  // `after`, at most `limit`.
  virtual absl::StatusOr<std::vector<caseway::v1::AccessRecord>> ReadAccess(
      const std::string& id_number, uint64_t after, uint32_t limit) = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_ACCESS_LOG_H_
