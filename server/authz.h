// Authorization: the explicit role x RPC table of a node.
#ifndef CASEWAY_SERVER_AUTHZ_H_
#define CASEWAY_SERVER_AUTHZ_H_

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/identity.h"

namespace caseway::server {

// Rpc names every RPC that a node authorizes itself (health and reflection are open to any
// certificate of the federation CA).
enum class Rpc {
  kPublish,
  kPublishBatch,
  kInbox,
  kStatus,
  kSubscribe,
  kLogCheckpoint,   // ExchangeLog.GetCheckpoint, GetConsistencyProof
  kLogAudit,        // ExchangeLog.GetEntries, GetInclusionProof, GetEvidence, GetNoticeEvidence
  kLogCosign,       // ExchangeLog.AddCosignature
};

absl::string_view RpcName(Rpc rpc);

// Authorizer checks a caller against the table:
//
//   RPC                          node   client (own jurisdiction)   auditor
//   Gateway.Publish               -       yes                        -
//   Gateway.PublishBatch          -       yes                        -
//   Gateway.Inbox                 -       yes                        -
//   Gateway.Status                -       yes                        yes
//   PeerExchange.Subscribe       yes      -                          -
//   ExchangeLog.GetCheckpoint,
//     GetConsistencyProof        yes      -                          yes
//   ExchangeLog.GetEntries,
//     GetInclusionProof,
//     GetEvidence                -        -                          yes
//   ExchangeLog.AddCosignature   yes      -                          -
//
// A client certificate of another jurisdiction is refused. Thread-safe (immutable).
class Authorizer {
 public:
  Authorizer(std::string federation, std::string jurisdiction)
      : federation_(std::move(federation)), jurisdiction_(std::move(jurisdiction)) {}

  // Allowed reports whether `id` may call `rpc` (the table above).
  bool Allowed(const common::Identity& id, Rpc rpc) const;

  // Check returns the caller's identity, UNAUTHENTICATED without a usable SPIFFE id,
  // PERMISSION_DENIED when the table refuses.
  absl::StatusOr<common::Identity> Check(const grpc::ServerContextBase& ctx, Rpc rpc) const;

 private:
  const std::string federation_;
  const std::string jurisdiction_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_AUTHZ_H_
