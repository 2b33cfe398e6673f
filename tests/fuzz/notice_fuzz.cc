// Fuzz target: a notice as it arrives from a publisher or a peer (protobuf bytes), through
// validation, the unknown-field check's input, the JSON rendering of the inbox, and the error
// message bound. Nothing may crash, hang or read out of bounds; every error stays bounded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "caseway/v1/gateway.pb.h"
#include "common/grpc_status.h"
#include "common/json.h"
#include "common/validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  caseway::v1::Notice notice;
  if (!notice.ParseFromArray(data, static_cast<int>(size))) return 0;
  caseway::common::NoticeRules rules;
  rules.self_jurisdiction = "360102";
  rules.peers = {"440305", "110101"};
  rules.now = absl::FromUnixSeconds(1800000000);
  auto result = caseway::common::ValidateNotice(notice, rules, "notice.");
  if (!result.ok()) {
    grpc::Status s = caseway::common::ToGrpcStatus(result.status());
    if (s.error_message().size() > caseway::common::kMaxStatusMessageBytes) __builtin_trap();
  }
  caseway::v1::InboxItem item;
  *item.mutable_notice() = notice;
  (void)caseway::common::CheckedProtoJson(item);
  return 0;
}
