// JSON text helpers for the few places that write JSON by hand (logs, CLI result lines, YAML).
#ifndef CASEWAY_COMMON_JSON_H_
#define CASEWAY_COMMON_JSON_H_

#include <string>

#include "absl/status/statusor.h"

#include "absl/strings/string_view.h"

namespace google::protobuf {
class Message;
}

namespace caseway::common {

// AppendJsonString appends `s` to `out` as a quoted JSON string ('"', '\\' and control characters
// escaped; UTF-8 passes through).
void AppendJsonString(absl::string_view s, std::string& out);

// JsonQuote returns `s` as a quoted JSON string.
inline std::string JsonQuote(absl::string_view s) {
  std::string out;
  AppendJsonString(s, out);
  return out;
}

// CheckedProtoJson renders `m` in protobuf's JSON mapping on one line, with the proto field
// names; INVALID_ARGUMENT when a value has no JSON form (e.g. a timestamp beyond year 9999).
absl::StatusOr<std::string> CheckedProtoJson(const google::protobuf::Message& m,
                                             bool with_zeros = false);
// ProtoJson is CheckedProtoJson for messages this program made itself; "{}" on failure.
// `with_zeros` prints fields at their default value too (0, "", false, []), so that a reader
// sees every field of the message.
std::string ProtoJson(const google::protobuf::Message& m, bool with_zeros = false);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_JSON_H_
