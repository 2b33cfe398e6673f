#include "server/authz.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/refusal.h"

namespace caseway::server {

using common::Identity;
using common::Role;

absl::string_view RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kPublish: return "Gateway.Publish";
    case Rpc::kPublishBatch: return "Gateway.PublishBatch";
    case Rpc::kInbox: return "Gateway.Inbox";
    case Rpc::kStatus: return "Gateway.Status";
    case Rpc::kTodo: return "Gateway.Todo";
    case Rpc::kQueryPeer: return "Gateway.QueryPeer";
    case Rpc::kCase: return "Gateway.Case";
    case Rpc::kAccessLog: return "Gateway.AccessLog";
    case Rpc::kSubscribe: return "PeerExchange.Subscribe";
    case Rpc::kQuery: return "PeerExchange.Query";
    case Rpc::kPeerView: return "PeerExchange.GetPeerView";
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
    case Rpc::kTodo:
    case Rpc::kQueryPeer:
    case Rpc::kCase:
    case Rpc::kAccessLog:
      return own_client;
    case Rpc::kStatus:
      return own_client || id.role == Role::kAuditor;
    case Rpc::kQuery:
      // A department only under a grant of the sharing policy (checked by Query itself).
      return id.role == Role::kNode || id.role == Role::kDepartment;
    case Rpc::kSubscribe:
    case Rpc::kPeerView:
    case Rpc::kLogCosign:
      return id.role == Role::kNode;
    case Rpc::kLogCheckpoint:
      return id.role == Role::kNode || id.role == Role::kAuditor;
    case Rpc::kLogAudit:
      return id.role == Role::kAuditor;
  }
  return false;
}

absl::Status Authorizer::CheckCertificate(const std::vector<std::string>& uri_sans,
                                          absl::string_view leaf_pem) const {
  const std::string* spiffe = nullptr;
  for (const auto& uri : uri_sans) {
    if (uri.rfind("spiffe://", 0) != 0) continue;
    if (spiffe != nullptr) return absl::UnauthenticatedError("more than one SPIFFE id");
    spiffe = &uri;
  }
  if (spiffe == nullptr) return absl::UnauthenticatedError("no SPIFFE id in the certificate");
  auto id = common::ParseSpiffeId(*spiffe);
  if (!id.ok()) return absl::UnauthenticatedError(id.status().message());
  if (id->federation != federation_) {
    return absl::PermissionDeniedError(absl::StrCat("federation ", id->federation, " is not ",
                                                    federation_));
  }
  // A client of another jurisdiction connects, and each call is refused PERMISSION_DENIED by
  // the table: a status that says why, where a refused handshake only says UNAVAILABLE.
  if (revocations_ != nullptr) {
    auto serial = common::CertificateSerial(leaf_pem);
    if (serial.ok() && revocations_->Revoked(*serial)) {
      return absl::UnauthenticatedError(
          absl::StrCat("certificate ", *serial, " of ", id->ToString(), " is revoked"));
    }
  }
  return absl::OkStatus();
}

std::string Authorizer::CallerSerial(const grpc::ServerContextBase& ctx) const {
  auto auth = ctx.auth_context();
  if (auth == nullptr) return "";
  auto pems = auth->FindPropertyValues("x509_pem_cert");
  if (pems.empty()) return "";
  std::string pem(pems[0].data(), pems[0].size());
  absl::MutexLock lock(&serials_mu_);
  auto it = serials_.find(pem);
  if (it != serials_.end()) return it->second;
  auto serial = common::CertificateSerial(pem);
  if (serials_.size() > 100000) serials_.clear();  // bounded: certificates seen recently
  return serials_[pem] = serial.ok() ? *serial : "";
}

bool Authorizer::Revoked(const std::string& serial) const {
  return revocations_ != nullptr && !serial.empty() && revocations_->Revoked(serial);
}

uint64_t Authorizer::RevocationGeneration() const {
  return revocations_ == nullptr ? 0 : revocations_->Generation();
}

absl::StatusOr<Identity> Authorizer::Check(const grpc::ServerContextBase& ctx, Rpc rpc) const {
  auto auth = ctx.auth_context();
  if (auth == nullptr) return absl::UnauthenticatedError("no authentication context");
  // A connection made before the CRL listed its certificate is refused from the next call on.
  if (revocations_ != nullptr && revocations_->size() > 0) {
    const std::string serial = CallerSerial(ctx);
    if (Revoked(serial)) {
      common::LogLimited(common::LogLevel::kWarn, "refused caller: certificate revoked",
                  {{"rpc", std::string(RpcName(rpc))}, {"serial", serial}});
      return common::Refusal(absl::StatusCode::kUnauthenticated, "CERTIFICATE_REVOKED",
                             absl::StrCat("certificate ", serial, " is revoked"));
    }
  }
  auto id = common::IdentityFromAuthContext(*auth, federation_);
  if (!id.ok()) {
    common::LogLimited(common::LogLevel::kWarn, "refused caller",
                {{"rpc", std::string(RpcName(rpc))}, {"reason", std::string(id.status().message())}});
    return common::Refusal(id.status().code(), "NO_IDENTITY", id.status().message());
  }
  if (!Allowed(*id, rpc)) {
    common::LogLimited(common::LogLevel::kWarn, "permission denied",
                {{"rpc", std::string(RpcName(rpc))}, {"caller", id->ToString()}});
    return common::Refusal(
        absl::StatusCode::kPermissionDenied, "NOT_PERMITTED",
        absl::StrCat(id->ToString(), " may not call ", RpcName(rpc), " on node ", jurisdiction_),
        {}, {{"caller", id->ToString()}, {"rpc", std::string(RpcName(rpc))}});
  }
  return id;
}

}  // namespace caseway::server
