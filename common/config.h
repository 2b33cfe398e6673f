// Loading of the node configuration: YAML mapped onto caseway.v1.NodeConfig through protobuf's
// JSON mapping, defaults filled in, then validated once.
#ifndef CASEWAY_COMMON_CONFIG_H_
#define CASEWAY_COMMON_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "caseway/v1/config.pb.h"

namespace caseway::common {

// YamlToJson converts a YAML document to JSON text for protobuf's JSON parser. With `schema`, a
// scalar takes the type of the field it maps onto: string fields stay strings even when they look
// like numbers (region codes need no quotes), Duration fields also accept "250ms", "5s", "2m" and
// "1h", caseway.v1.Date fields also accept "2026-10-01". Otherwise plain scalars that read as integers, floats, booleans or null become JSON
// numbers, booleans and null. INVALID_ARGUMENT with line and column on a YAML syntax error.
absl::StatusOr<std::string> YamlToJson(absl::string_view yaml,
                                       const google::protobuf::Descriptor* schema = nullptr);

// ParseYamlInto maps `yaml` onto `out` through its schema (YamlToJson, then protobuf JSON, no
// unknown fields). INVALID_ARGUMENT `<source>: <what is wrong>`.
absl::Status ParseYamlInto(absl::string_view yaml, absl::string_view source,
                           google::protobuf::Message* out);

// ParseNodeConfig maps `yaml` onto a NodeConfig, fills defaults and validates it.
// Errors are INVALID_ARGUMENT: `<source>: <field>: <rule>`.
absl::StatusOr<caseway::v1::NodeConfig> ParseNodeConfig(absl::string_view yaml,
                                                        absl::string_view source);

// LoadNodeConfig reads `path` and calls ParseNodeConfig; relative file names in the configuration
// (tls.*, storage.path, port_file) are resolved against the directory of `path`.
// NOT_FOUND when the file is unreadable.
absl::StatusOr<caseway::v1::NodeConfig> LoadNodeConfig(const std::string& path);

// ReadFile returns the whole file. NOT_FOUND naming the path when it cannot be read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_CONFIG_H_
