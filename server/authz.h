// Authorization: the explicit role x RPC table of a node.
#ifndef CASEWAY_SERVER_AUTHZ_H_
#define CASEWAY_SERVER_AUTHZ_H_

#include <grpcpp/server_context.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/identity.h"
#include "common/revocation.h"

namespace caseway::server {

// Rpc names every RPC that a node authorizes itself (health and reflection are open to any
// certificate of the federation CA).
enum class Rpc {
  kPublish,
  kPublishBatch,
  kInbox,
  kStatus,
  kTodo,
  kQueryPeer,       // Gateway.QueryPeer
  kCase,            // Gateway.Case
  kAccessLog,       // Gateway.AccessLog
  kSubscribe,
  kQuery,           // PeerExchange.Query
  kPeerView,        // PeerExchange.GetPeerView
  kLogCheckpoint,   // ExchangeLog.GetCheckpoint, GetConsistencyProof
  kLogAudit,        // ExchangeLog.GetEntries, GetInclusionProof, GetEvidence, GetNoticeEvidence
  kLogCosign,       // ExchangeLog.AddCosignature
};

absl::string_view RpcName(Rpc rpc);

// Authorizer checks a caller against the table:
//
//   RPC                          node   client (own jurisdiction)   auditor   department
//   Gateway.Publish               -       yes                        -          -
//   Gateway.PublishBatch          -       yes                        -          -
//   Gateway.Inbox                 -       yes                        -          -
//   Gateway.Status                -       yes                        yes        -
//   Gateway.Todo                  -       yes                        -          -
//   Gateway.QueryPeer, Case,
//     AccessLog                   -       yes                        -          -
//   PeerExchange.Subscribe       yes      -                          -          -
//   PeerExchange.Query           yes      -                          -          granted (*)
//   ExchangeLog.GetCheckpoint,
//     GetConsistencyProof        yes      -                          yes        -
//   ExchangeLog.GetEntries,
//     GetInclusionProof,
//     GetEvidence                -        -                          yes        -
//   ExchangeLog.AddCosignature   yes      -                          -          -
//
// (*) the table lets a department call Query; Query answers it only when the node's sharing
// policy grants it a kind (NOT_GRANTED otherwise), and only with the granted kinds and fields.
//
// A client certificate of another jurisdiction is refused. Thread-safe (immutable).
//
// Revocation: with `revocations`, a certificate whose serial is revoked is refused at the TLS
// handshake (CheckCertificate) and on every call (Check) of connections made before the CRL
// listed it; long-lived streams re-check their caller with Revoked() when the list changes.
class Authorizer {
 public:
  Authorizer(std::string federation, std::string jurisdiction,
             const common::Revocations* revocations = nullptr)
      : federation_(std::move(federation)),
        jurisdiction_(std::move(jurisdiction)),
        revocations_(revocations) {}

  // CheckCertificate decides at the TLS handshake whether a client certificate (already
  // verified against the federation CA) may connect at all: it must name exactly one valid
  // SPIFFE id of this federation and not be revoked. Callers refused here cost the node no
  // request parsing.
  absl::Status CheckCertificate(const std::vector<std::string>& uri_sans,
                                absl::string_view leaf_pem) const;

  // CallerSerial is the serial number (hex) of the caller's certificate ("" when unknown).
  std::string CallerSerial(const grpc::ServerContextBase& ctx) const;
  // Revoked reports whether the certificate with `serial` is revoked now.
  bool Revoked(const std::string& serial) const;
  // RevocationGeneration changes whenever the revoked set does (0 without revocation lists).
  uint64_t RevocationGeneration() const;

  // Allowed reports whether `id` may call `rpc` (the table above).
  bool Allowed(const common::Identity& id, Rpc rpc) const;

  // Check returns the caller's identity, UNAUTHENTICATED without a usable SPIFFE id,
  // PERMISSION_DENIED when the table refuses.
  absl::StatusOr<common::Identity> Check(const grpc::ServerContextBase& ctx, Rpc rpc) const;

 private:
  const std::string federation_;
  const std::string jurisdiction_;
  const common::Revocations* const revocations_;
  // Serial numbers of the certificates seen, by PEM (parsed once per certificate).
  mutable absl::Mutex serials_mu_;
  mutable absl::flat_hash_map<std::string, std::string> serials_ ABSL_GUARDED_BY(serials_mu_);
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_AUTHZ_H_
