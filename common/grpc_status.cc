#include "common/grpc_status.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/refusal.h"

namespace caseway::common {

namespace {

// CutUtf8 returns the longest prefix of `s` of at most `max` bytes that ends on a character
// boundary.
absl::string_view CutUtf8(absl::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  absl::string_view message = status.message();
  std::string text(CutUtf8(message, kMaxStatusMessageBytes - 3));
  if (text.size() < message.size()) text += "...";
  const auto code = static_cast<grpc::StatusCode>(status.code());
  auto details = Details(status);
  if (!details && status.code() == absl::StatusCode::kInvalidArgument) {
    // A refusal made without typed details still gets them: "<field>: <rule>" is one violation.
    const size_t colon = message.find(": ");
    const absl::string_view field = message.substr(0, colon == absl::string_view::npos ? 0 : colon);
    if (!field.empty() && field.find(' ') == absl::string_view::npos) {
      details = Details(BadInput("INVALID_REQUEST", {{std::string(field),
                                                      std::string(message.substr(colon + 2))}}));
    }
  }
  if (details) {
    // Sent as grpc-status-details-bin; its code and message are the status's own.
    details->set_code(static_cast<int>(code));
    details->set_message(text);
    return grpc::Status(code, text, details->SerializeAsString());
  }
  return grpc::Status(code, std::move(text));
}

std::string Echo(absl::string_view input, size_t max_bytes) {
  absl::string_view cut = CutUtf8(input, max_bytes);
  std::string out = "\"";
  for (unsigned char c : cut) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out += "\"";
  if (cut.size() < input.size()) absl::StrAppend(&out, "... (", input.size(), " bytes)");
  return out;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status s(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  if (!status.error_details().empty()) {
    s.SetPayload(kDetailsPayload, absl::Cord(status.error_details()));
  }
  return s;
}

}  // namespace caseway::common
