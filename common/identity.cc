#include "common/identity.h"

#include <grpcpp/security/auth_context.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/validation.h"

namespace caseway::common {
namespace {

constexpr absl::string_view kScheme = "spiffe://";

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return true;
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kNode:
      return "node";
    case Role::kClient:
      return "client";
    case Role::kAuditor:
      return "auditor";
    case Role::kDepartment:
      return "department";
  }
  return "unknown";
}

std::string Identity::ToString() const {
  switch (role) {
    case Role::kNode:
      return absl::StrCat(kScheme, federation, "/node/", jurisdiction);
    case Role::kClient:
      return absl::StrCat(kScheme, federation, "/client/", jurisdiction, "/", name);
    case Role::kAuditor:
      return absl::StrCat(kScheme, federation, "/auditor/", name);
    case Role::kDepartment:
      return absl::StrCat(kScheme, federation, "/department/", jurisdiction, "/", name);
  }
  return "";
}

std::string Identity::Party() const {
  if (role == Role::kDepartment) return absl::StrCat("department/", jurisdiction, "/", name);
  return jurisdiction;
}

absl::StatusOr<Identity> ParseSpiffeId(absl::string_view uri) {
  if (!absl::StartsWith(uri, kScheme)) {
    return absl::InvalidArgumentError(absl::StrCat("spiffe id: must start with spiffe://: ", uri));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(uri.substr(kScheme.size()), '/');
  Identity id;
  id.federation = std::string(parts[0]);
  if (id.federation.empty()) {
    return absl::InvalidArgumentError("spiffe id: empty trust domain");
  }
  auto check_region = [&](absl::string_view code) -> absl::Status {
    absl::Status s = ValidateRegionCode(code);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("spiffe id: jurisdiction: ", s.message()));
    }
    return absl::OkStatus();
  };
  if (parts.size() == 3 && parts[1] == "node") {
    id.role = Role::kNode;
    id.jurisdiction = std::string(parts[2]);
    if (auto s = check_region(id.jurisdiction); !s.ok()) return s;
    return id;
  }
  // A client and a department are both named within a jurisdiction: <role>/<region>/<name>.
  if (parts.size() == 4 && (parts[1] == "client" || parts[1] == "department")) {
    id.role = parts[1] == "client" ? Role::kClient : Role::kDepartment;
    id.jurisdiction = std::string(parts[2]);
    id.name = std::string(parts[3]);
    if (auto s = check_region(id.jurisdiction); !s.ok()) return s;
    if (!ValidName(id.name)) {
      return absl::InvalidArgumentError(absl::StrCat("spiffe id: invalid ", parts[1], " name"));
    }
    return id;
  }
  if (parts.size() == 3 && parts[1] == "auditor") {
    id.role = Role::kAuditor;
    id.name = std::string(parts[2]);
    if (!ValidName(id.name)) return absl::InvalidArgumentError("spiffe id: invalid auditor name");
    return id;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("spiffe id: path must be /node/<j>, /client/<j>/<name>, /department/<j>/<name> or "
                   "/auditor/<name>: ",
                   uri));
}

absl::StatusOr<Identity> IdentityFromAuthContext(const grpc::AuthContext& context,
                                                 absl::string_view federation) {
  std::vector<grpc::string_ref> uris = context.FindPropertyValues("peer_uri");
  const grpc::string_ref* found = nullptr;
  for (const auto& uri : uris) {
    if (absl::StartsWith(absl::string_view(uri.data(), uri.size()), kScheme)) {
      if (found != nullptr) {
        return absl::UnauthenticatedError("certificate: more than one spiffe:// URI SAN");
      }
      found = &uri;
    }
  }
  if (found == nullptr) {
    return absl::UnauthenticatedError("certificate: no spiffe:// URI SAN");
  }
  auto id = ParseSpiffeId(absl::string_view(found->data(), found->size()));
  if (!id.ok()) return absl::UnauthenticatedError(std::string(id.status().message()));
  if (id->federation != federation) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate: federation ", id->federation, " is not ", federation));
  }
  return id;
}

}  // namespace caseway::common
