#include "common/refusal.h"

#include "absl/strings/match.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"

namespace caseway::common {

absl::Status Refusal(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                     const std::vector<Violation>& violations,
                     const std::map<std::string, std::string>& metadata) {
  absl::Status s(code, message);
  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(std::string(message));
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(kErrorDomain);
  for (const auto& [k, v] : metadata) (*info.mutable_metadata())[k] = v;
  details.add_details()->PackFrom(info);
  if (!violations.empty()) {
    google::rpc::BadRequest bad;
    for (const auto& v : violations) {
      auto* f = bad.add_field_violations();
      f->set_field(v.field);
      f->set_description(v.description);
    }
    details.add_details()->PackFrom(bad);
  }
  s.SetPayload(kDetailsPayload, absl::Cord(details.SerializeAsString()));
  return s;
}

absl::Status BadInput(absl::string_view reason, const std::vector<Violation>& violations) {
  std::string message = violations.empty()
                            ? std::string("invalid request")
                            : absl::StrCat(violations[0].field, ": ", violations[0].description);
  if (violations.size() > 1) {
    absl::StrAppend(&message, " (and ", violations.size() - 1,
                    " more: see the BadRequest details)");
  }
  // The details travel in a trailer, which clients accept up to 8 KiB by default: the first
  // violations up to kMaxDetailBytes, and the count of all.
  std::vector<Violation> listed;
  size_t bytes = 0;
  for (const auto& v : violations) {
    bytes += v.field.size() + v.description.size() + 8;
    if (bytes > kMaxDetailBytes) break;
    listed.push_back(v);
  }
  return Refusal(absl::StatusCode::kInvalidArgument, reason, message, listed,
                 {{"violations", absl::StrCat(violations.size())},
                  {"listed", absl::StrCat(listed.size())}});
}

std::string DefaultReason(absl::StatusCode code, absl::string_view message) {
  if (code == absl::StatusCode::kFailedPrecondition &&
      absl::StrContains(message, "exchange halted")) {
    return "NODE_HALTED";
  }
  if (code == absl::StatusCode::kUnavailable && absl::StrContains(message, "shutting down")) {
    return "SHUTTING_DOWN";
  }
  return absl::StatusCodeToString(code);
}

std::optional<google::rpc::Status> Details(const absl::Status& status) {
  auto payload = status.GetPayload(kDetailsPayload);
  if (!payload) return std::nullopt;
  google::rpc::Status details;
  if (!details.ParseFromString(std::string(*payload))) return std::nullopt;
  return details;
}

std::string ReasonOf(const absl::Status& status) {
  auto details = Details(status);
  if (!details) return "";
  for (const auto& any : details->details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) return info.reason();
  }
  return "";
}

std::vector<Violation> ViolationsOf(const absl::Status& status) {
  std::vector<Violation> out;
  auto details = Details(status);
  if (!details) return out;
  for (const auto& any : details->details()) {
    google::rpc::BadRequest bad;
    if (!any.Is<google::rpc::BadRequest>() || !any.UnpackTo(&bad)) continue;
    for (const auto& f : bad.field_violations()) out.push_back({f.field(), f.description()});
  }
  return out;
}

}  // namespace caseway::common
