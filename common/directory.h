// Directory: the federation directory of node signing keys, loaded by nodes and auditors.
#ifndef CASEWAY_COMMON_DIRECTORY_H_
#define CASEWAY_COMMON_DIRECTORY_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "caseway/v1/exchange_log.pb.h"

namespace caseway::common {

// Directory maps jurisdictions to their Ed25519 signing keys. Thread-safe (immutable).
class Directory {
 public:
  // Load reads a YAML or JSON caseway.v1.FederationDirectory. Errors name the file, the field and
  // the rule (INVALID_ARGUMENT) or the unreadable path (NOT_FOUND).
  static absl::StatusOr<Directory> Load(const std::string& path);
  static absl::StatusOr<Directory> FromProto(const caseway::v1::FederationDirectory& proto,
                                             const std::string& source);

  const std::string& federation() const { return federation_; }
  // Key returns the 32-byte public key of `jurisdiction`, NOT_FOUND when it is not listed.
  absl::StatusOr<std::string> Key(const std::string& jurisdiction) const;
  // NoteName is the signed-note name and checkpoint origin of a node: "<federation>/node/<j>".
  std::string NoteName(const std::string& jurisdiction) const;
  // JurisdictionOf is NoteName's inverse: the jurisdiction of "<federation>/node/<j>".
  // PERMISSION_DENIED when `note_name` is not a node of this federation.
  absl::StatusOr<std::string> JurisdictionOf(absl::string_view note_name) const;
  const std::map<std::string, std::string>& keys() const { return keys_; }

 private:
  std::string federation_;
  std::map<std::string, std::string> keys_;
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_DIRECTORY_H_
