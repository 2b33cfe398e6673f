// Identity: who a peer is, taken only from the verified certificate's SPIFFE URI SAN.
#ifndef CASEWAY_COMMON_IDENTITY_H_
#define CASEWAY_COMMON_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace grpc {
class AuthContext;
}

namespace caseway::common {

// Role is the kind of principal a certificate names.
enum class Role { kNode, kClient, kAuditor, kDepartment };

absl::string_view RoleName(Role role);

// Identity is a parsed SPIFFE id:
//   spiffe://<federation>/node/<jurisdiction>
//   spiffe://<federation>/client/<jurisdiction>/<name>
//   spiffe://<federation>/auditor/<name>
//   spiffe://<federation>/department/<jurisdiction>/<name>   (a department of that region, e.g.
//     the county's public security bureau: reads what a sharing policy grants it, never publishes)
struct Identity {
  Role role = Role::kNode;
  std::string federation;
  std::string jurisdiction;  // empty for auditors
  std::string name;          // empty for nodes
  std::string ToString() const;  // the SPIFFE URI
  // Party is how sharing policies and exchange-log entries name a reader of this node's notices:
  // the jurisdiction for a node ("440305"), "department/<jurisdiction>/<name>" for a department.
  std::string Party() const;
};

// ParseSpiffeId parses `uri`. INVALID_ARGUMENT names the rule broken (scheme, path shape, region
// code). Does not check the federation; see IdentityFromAuthContext.
absl::StatusOr<Identity> ParseSpiffeId(absl::string_view uri);

// IdentityFromAuthContext finds the single spiffe:// URI SAN of the verified peer certificate.
// UNAUTHENTICATED when there is none or more than one; PERMISSION_DENIED when it belongs to
// another federation than `federation`.
absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& context,
                                                 absl::string_view federation);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_IDENTITY_H_
