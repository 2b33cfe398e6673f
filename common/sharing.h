// Field-level sharing policies (caseway.v1.SharingPolicy, docs/privacy.md "Sharing policies"):
// what each receiving party (a peer node, a department) may receive of each notice kind. The node
// removes every other field before a notice leaves it for that party; the auditor checks with the
// same code that nothing beyond the policy left.
#ifndef CASEWAY_COMMON_SHARING_H_
#define CASEWAY_COMMON_SHARING_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "caseway/v1/notice.pb.h"
#include "caseway/v1/policy.pb.h"

namespace caseway::common {

// The context a node signs its sharing policies under (Evidence.KIND_SHARING_POLICY).
inline constexpr absl::string_view kSharingPolicyContext = "caseway/v1 sharing policy";

class SharingPolicy {
 public:
  // Parse maps YAML onto a caseway.v1.SharingPolicy and validates it: INVALID_ARGUMENT
  // `<source>: <field>: <rule>` (a party that is neither a region code nor
  // department/<region>/<name>, a kind or field that caseway.v1.Notice does not have, a party or
  // kind listed twice, no version).
  static absl::StatusOr<SharingPolicy> Parse(absl::string_view yaml, absl::string_view source);
  static absl::StatusOr<SharingPolicy> Load(const std::string& path);
  static absl::StatusOr<SharingPolicy> FromProto(caseway::v1::SharingPolicy proto,
                                                 absl::string_view source);
  // FromBytes reads a policy as a node signed it (its evidence).
  static absl::StatusOr<SharingPolicy> FromBytes(absl::string_view bytes);

  const caseway::v1::SharingPolicy& proto() const { return proto_; }
  const std::string& version() const { return proto_.version(); }
  // The policy's deterministic serialization (what the node signs) and its SHA-256.
  const std::string& bytes() const { return bytes_; }
  const std::string& digest() const { return digest_; }

  // Names reports whether the policy has a grant for `party`: a peer it names receives filtered
  // notices; one it does not name receives them whole.
  bool Names(absl::string_view party) const { return grants_.count(std::string(party)) > 0; }
  // GrantedKinds is the kinds `party` may receive (empty when it is not named).
  std::set<std::string> GrantedKinds(absl::string_view party) const;

  // Apply returns the copy of `notice` that `party` may receive: the envelope, the kind, and the
  // granted fields. nullopt when a department may not receive this kind at all. For a party the
  // policy does not name: the notice unchanged for a peer, nullopt for a department.
  std::optional<caseway::v1::Notice> Apply(absl::string_view party,
                                           const caseway::v1::Notice& notice) const;

  // Beyond lists the fields of `notice` (as "subject.name", "birth.place") that the policy does
  // not grant `party`: what must not have left the node. Empty when the notice is within it.
  std::vector<std::string> Beyond(absl::string_view party, const caseway::v1::Notice& notice) const;

  // IsDepartment: the party names a department ("department/<region>/<name>").
  static bool IsDepartment(absl::string_view party);

 private:
  struct KindGrant {
    bool all_subject = false;
    bool all_body = false;
    std::set<std::string> subject;  // Subject field names
    std::set<std::string> body;     // the body message's field names
  };
  using Grant = std::map<std::string, KindGrant>;  // by kind

  caseway::v1::SharingPolicy proto_;
  std::string bytes_;
  std::string digest_;
  std::map<std::string, Grant> grants_;  // by party
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_SHARING_H_
