#include "common/log_entry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "common/proto_bytes.h"

namespace caseway::common {

absl::StatusOr<v1::LogEntry> ParseLogEntry(absl::string_view bytes, uint64_t index) {
  v1::LogEntry e;
  auto bad = [index](absl::string_view rule) {
    return absl::InvalidArgumentError(absl::StrCat("entry ", index, ": ", rule));
  };
  if (!e.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return bad("not a caseway.v1.LogEntry");
  }
  if (e.version() != 1) return bad(absl::StrCat("version ", e.version(), ", 1 expected"));
  if (e.index() != index) return bad(absl::StrCat("names index ", e.index()));
  if (e.kind() == v1::LogEntry::KIND_UNSPECIFIED || !v1::LogEntry::Kind_IsValid(e.kind())) {
    return bad("unknown kind");
  }
  if (!e.GetReflection()->GetUnknownFields(e).empty()) return bad("unknown fields");
  if (DeterministicBytes(e) != bytes) return bad("not in canonical (deterministic) encoding");
  return e;
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  static const absl::Time kMin = absl::FromCivil(absl::CivilDay(1900, 1, 1), absl::UTCTimeZone());
  static const absl::Time kMax = absl::FromCivil(absl::CivilDay(2200, 12, 31), absl::UTCTimeZone());
  const absl::Time at = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return std::clamp(at, kMin, kMax);
}

const std::string& DestinationDigest(const caseway::v1::LogEntry& entry, int d) {
  if (d < entry.destination_digests_size() && !entry.destination_digests(d).empty()) {
    return entry.destination_digests(d);
  }
  return entry.digest();
}

std::string DestinationDigestFor(const caseway::v1::LogEntry& entry, absl::string_view destination) {
  for (int d = 0; d < entry.destinations_size(); ++d) {
    if (entry.destinations(d) == destination) return DestinationDigest(entry, d);
  }
  return "";
}

int64_t EntryMicros(const v1::LogEntry& entry) { return absl::ToUnixMicros(TimeOf(entry.time())); }

}  // namespace caseway::common
