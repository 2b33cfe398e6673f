// Fuzz target: one line of `caseway publish` input (protobuf JSON of a caseway.v1.Notice), as
// the CLI reads it, then validated as the node would.
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "caseway/v1/notice.pb.h"
#include "common/validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  caseway::v1::Notice notice;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (!google::protobuf::util::JsonStringToMessage(line, &notice, options).ok()) return 0;
  caseway::common::NoticeRules rules;
  rules.self_jurisdiction = "360102";
  rules.peers = {"440305"};
  (void)caseway::common::ValidateNotice(notice, rules);
  return 0;
}
