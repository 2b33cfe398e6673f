// Fuzz target: a node configuration file (YAML) and a federation directory (YAML), as
// caseway-node --check and the auditor load them. Errors, never exceptions or crashes.
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "caseway/v1/exchange_log.pb.h"
#include "common/config.h"
#include "common/directory.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  (void)caseway::common::ParseNodeConfig(yaml, "node.yaml");
  auto json = caseway::common::YamlToJson(yaml, caseway::v1::FederationDirectory::descriptor());
  if (json.ok()) {
    caseway::v1::FederationDirectory dir;
    if (google::protobuf::util::JsonStringToMessage(*json, &dir).ok()) {
      (void)caseway::common::Directory::FromProto(dir, "directory.yaml");
    }
  }
  return 0;
}
