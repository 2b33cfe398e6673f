#include "common/json.h"

#include "absl/strings/str_cat.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

namespace caseway::common {

void AppendJsonString(absl::string_view s, std::string& out) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

absl::StatusOr<std::string> CheckedProtoJson(const google::protobuf::Message& m,
                                             bool with_zeros) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = with_zeros;
  auto s = google::protobuf::util::MessageToJsonString(m, &out, options);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot be printed as protobuf JSON: ",
                                                   std::string(s.message())));
  }
  return out;
}

std::string ProtoJson(const google::protobuf::Message& m, bool with_zeros) {
  auto json = CheckedProtoJson(m, with_zeros);
  return json.ok() ? *json : "{}";
}

}  // namespace caseway::common
