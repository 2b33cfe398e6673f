#include "server/authz.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace caseway::server {

using common::Identity;
using common::Role;

absl::string_view RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kPublish: return "Gateway.Publish";
    case Rpc::kPublishBatch: return "Gateway.PublishBatch";
    case Rpc::kInbox: return "Gateway.Inbox";
    case Rpc::kStatus: return "Gateway.Status";
    case Rpc::kSubscribe: return "PeerExchange.Subscribe";
    case Rpc::kLogCheckpoint: return "ExchangeLog.GetCheckpoint/GetConsistencyProof";
    case Rpc::kLogAudit: return "ExchangeLog.GetEntries/GetInclusionProof/GetEvidence";
    case Rpc::kLogCosign: return "ExchangeLog.AddCosignature";
  }
  return "unknown";
}

bool Authorizer::Allowed(const Identity& id, Rpc rpc) const {
  const bool own_client = id.role == Role::kClient && id.jurisdiction == jurisdiction_;
  switch (rpc) {
    case Rpc::kPublish:
    case Rpc::kPublishBatch:
    case Rpc::kInbox:
      return own_client;
    case Rpc::kStatus:
      return own_client || id.role == Role::kAuditor;
    case Rpc::kSubscribe:
    case Rpc::kLogCosign:
      return id.role == Role::kNode;
    case Rpc::kLogCheckpoint:
      return id.role == Role::kNode || id.role == Role::kAuditor;
    case Rpc::kLogAudit:
      return id.role == Role::kAuditor;
  }
  return false;
}

absl::StatusOr<Identity> Authorizer::Check(const grpc::ServerContextBase& ctx, Rpc rpc) const {
  auto auth = ctx.auth_context();
  if (auth == nullptr) return absl::UnauthenticatedError("no authentication context");
  auto id = common::IdentityFromAuthContext(*auth, federation_);
  if (!id.ok()) {
    common::Log(common::LogLevel::kWarn, "refused caller",
                {{"rpc", std::string(RpcName(rpc))}, {"reason", std::string(id.status().message())}});
    return id.status();
  }
  if (!Allowed(*id, rpc)) {
    common::Log(common::LogLevel::kWarn, "permission denied",
                {{"rpc", std::string(RpcName(rpc))}, {"caller", id->ToString()}});
    return absl::PermissionDeniedError(
        absl::StrCat(id->ToString(), " may not call ", RpcName(rpc), " on node ", jurisdiction_));
  }
  return id;
}

}  // namespace caseway::server
