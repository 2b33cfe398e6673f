// The exchange log's entry format as readers must check it (docs/exchange-log.md, "Entries").
#ifndef CASEWAY_COMMON_LOG_ENTRY_H_
#define CASEWAY_COMMON_LOG_ENTRY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "caseway/v1/exchange_log.pb.h"

namespace caseway::common {

// ParseLogEntry reads the exact bytes of the entry at leaf `index` and accepts them only in their
// one canonical form: a caseway.v1.LogEntry of version 1 whose `index` is `index`, whose kind is
// known, with no unknown fields, and whose deterministic serialization is exactly `bytes` (so one
// entry has one encoding, and one leaf hash). INVALID_ARGUMENT naming the rule it breaks.
absl::StatusOr<caseway::v1::LogEntry> ParseLogEntry(absl::string_view bytes, uint64_t index);

// TimeOf converts a time another node chose (a log entry's, a receipt's, a clock reading):
// saturating, so that a hostile value near the int64 limit cannot overflow, and held to the years
// 1900..2200 that the calendar code handles.
absl::Time TimeOf(const google::protobuf::Timestamp& t);

// EntryMicros is an entry's time in POSIX microseconds (through TimeOf).
int64_t EntryMicros(const caseway::v1::LogEntry& entry);

// DestinationDigest is the digest of what a PUBLISHED entry's destinations[d] receives: its copy
// under the sharing policy (destination_digests[d]) where it has one, else the notice's digest.
const std::string& DestinationDigest(const caseway::v1::LogEntry& entry, int d);
// DestinationDigestFor is the same for the destination named `destination` ("" when the entry
// does not name it).
std::string DestinationDigestFor(const caseway::v1::LogEntry& entry, absl::string_view destination);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_LOG_ENTRY_H_
