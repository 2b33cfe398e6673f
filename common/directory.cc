#include "common/directory.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "common/validation.h"

namespace caseway::common {

using google::protobuf::util::TimeUtil;

namespace {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

}  // namespace

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
    if (!n.signing_key().empty() && n.keys_size() > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": signing_key and keys: give one (keys, once the node rotated)"));
    }
    std::vector<ListedKey> keys;
    if (n.keys_size() == 0) {
      if (n.signing_key().size() != 32) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".signing_key: a 32-byte Ed25519 public key (base64) expected"));
      }
      keys.push_back({n.signing_key()});
    }
    for (int k = 0; k < n.keys_size(); ++k) {
      const auto& key = n.keys(k);
      const std::string kf = absl::StrCat(field, ".keys[", k, "]");
      if (key.public_key().size() != 32) {
        return absl::InvalidArgumentError(
            absl::StrCat(kf, ".public_key: a 32-byte Ed25519 public key (base64) expected"));
      }
      ListedKey parsed{key.public_key()};
      if (key.has_valid_from()) {
        parsed.from = absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(key.valid_from()));
      }
      if (key.has_valid_until()) {
        parsed.until = absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(key.valid_until()));
      }
      if (parsed.until <= parsed.from) {
        return absl::InvalidArgumentError(
            absl::StrCat(kf, ".valid_until: must be after valid_from"));
      }
      for (const ListedKey& other : keys) {
        if (other.public_key == parsed.public_key) {
          return absl::InvalidArgumentError(absl::StrCat(kf, ".public_key: listed twice"));
        }
      }
      keys.push_back(parsed);
    }
    std::stable_sort(keys.begin(), keys.end(),
                     [](const ListedKey& a, const ListedKey& b) { return a.from < b.from; });
    if (!d.keys_.emplace(n.jurisdiction(), std::move(keys)).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".jurisdiction: listed twice"));
    }
  }
  return d;
}

absl::Status Directory::Listed(const std::string& jurisdiction) const {
  if (keys_.count(jurisdiction) == 0) {
    return absl::NotFoundError(
        absl::StrCat(jurisdiction, " is not listed in the federation directory"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Directory::ListedKey>> Directory::Keys(const std::string& jurisdiction) const {
  RETURN_IF_ERROR(Listed(jurisdiction));
  return keys_.at(jurisdiction);
}

absl::StatusOr<std::string> Directory::Key(const std::string& jurisdiction) const {
  RETURN_IF_ERROR(Listed(jurisdiction));
  const absl::Time now = Now();
  const auto& keys = keys_.at(jurisdiction);
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) {
    if (it->ValidAt(now)) return it->public_key;
  }
  return absl::NotFoundError(absl::StrCat(jurisdiction, " has no signing key valid now (",
                                          Rfc3339(now), ") in the federation directory"));
}

absl::Status Directory::Verify(const std::string& signer, absl::Time at, absl::string_view context,
                               absl::string_view message, absl::string_view signature) const {
  RETURN_IF_ERROR(Listed(signer));
  bool any = false;
  for (const ListedKey& k : keys_.at(signer)) {
    if (!k.ValidAt(at)) continue;
    any = true;
    if (VerifySignature(k.public_key, context, message, signature).ok()) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      any ? absl::StrCat("the signature is not ", signer, "'s (by its keys valid at ", Rfc3339(at), ")")
          : absl::StrCat(signer, " has no signing key valid at ", Rfc3339(at),
                         ", the time the signed object states"));
}

absl::Status Directory::VerifyCheckpoint(const Note& note, const std::string& jurisdiction) const {
  RETURN_IF_ERROR(Listed(jurisdiction));
  ASSIGN_OR_RETURN(Checkpoint body, ParseCheckpointBody(note.body));
  absl::Status last = absl::NotFoundError(absl::StrCat(
      "no signature of ", jurisdiction, " by a key valid at the checkpoint's time"));
  for (const ListedKey& k : keys_.at(jurisdiction)) {
    const bool valid = body.time > 0 ? k.ValidAt(absl::FromUnixSeconds(body.time))
                                     : k.from == absl::InfinitePast();
    if (!valid) continue;
    absl::Status s = VerifyNote(note, NoteName(jurisdiction), k.public_key);
    if (s.ok()) return s;
    if (s.code() != absl::StatusCode::kNotFound) last = s;
  }
  return last;
}

absl::StatusOr<Directory::Cosigned> Directory::VerifyCosignatureOf(
    const Note& note, const std::string& jurisdiction) const {
  RETURN_IF_ERROR(Listed(jurisdiction));
  absl::Status last = absl::NotFoundError(absl::StrCat("no cosignature of ", jurisdiction));
  for (const ListedKey& k : keys_.at(jurisdiction)) {
    auto time = VerifyCosignature(note, NoteName(jurisdiction), k.public_key);
    if (!time.ok()) {
      if (time.status().code() != absl::StatusCode::kNotFound) last = time.status();
      continue;
    }
    if (k.ValidAt(absl::FromUnixSeconds(*time))) return Cosigned{*time, k.public_key};
    last = absl::PermissionDeniedError(absl::StrCat(
        "the cosignature of ", jurisdiction, " is dated ", Rfc3339(absl::FromUnixSeconds(*time)),
        ", outside its key's validity period"));
  }
  return last;
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
