#include "common/directory.h"

#include "absl/strings/match.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace caseway::common {

absl::StatusOr<Directory> Directory::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto json = YamlToJson(text, v1::FederationDirectory::descriptor());
  if (!json.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", json.status().message()));
  v1::FederationDirectory proto;
  auto st = google::protobuf::util::JsonStringToMessage(*json, &proto);
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", std::string(st.message())));
  return FromProto(proto, path);
}

absl::StatusOr<Directory> Directory::FromProto(const v1::FederationDirectory& proto,
                                               const std::string& source) {
  Directory d;
  d.federation_ = proto.federation();
  if (d.federation_.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": federation: required"));
  for (int i = 0; i < proto.nodes_size(); ++i) {
    const auto& n = proto.nodes(i);
    std::string field = absl::StrCat(source, ": nodes[", i, "]");
    if (auto s = ValidateRegionCode(n.jurisdiction()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".jurisdiction: ", s.message()));
    }
    if (n.signing_key().size() != 32) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".signing_key: a 32-byte Ed25519 public key (base64) expected"));
    }
    if (!d.keys_.emplace(n.jurisdiction(), n.signing_key()).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".jurisdiction: listed twice"));
    }
  }
  return d;
}

absl::StatusOr<std::string> Directory::Key(const std::string& jurisdiction) const {
  auto it = keys_.find(jurisdiction);
  if (it == keys_.end()) {
    return absl::NotFoundError(
        absl::StrCat(jurisdiction, " is not listed in the federation directory"));
  }
  return it->second;
}

std::string Directory::NoteName(const std::string& jurisdiction) const {
  return absl::StrCat(federation_, "/node/", jurisdiction);
}

absl::StatusOr<std::string> Directory::JurisdictionOf(absl::string_view note_name) const {
  const std::string prefix = absl::StrCat(federation_, "/node/");
  if (!absl::StartsWith(note_name, prefix) ||
      keys_.count(std::string(note_name.substr(prefix.size()))) == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("checkpoint origin ", note_name, " is not a node of ", federation_));
  }
  return std::string(note_name.substr(prefix.size()));
}

}  // namespace caseway::common
