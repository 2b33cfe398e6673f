// ExchangeLogService: serves the exchange log to auditors and witnessing peers.
#ifndef CASEWAY_SERVER_LOG_EXCHANGE_LOG_SERVICE_H_
#define CASEWAY_SERVER_LOG_EXCHANGE_LOG_SERVICE_H_

#include <set>
#include <string>

#include "caseway/v1/exchange_log.grpc.pb.h"
#include "server/authz.h"
#include "server/authorized_first.h"
#include "common/signatures.h"
#include "server/store/access_log.h"
#include "server/store/exchange_log_store.h"

namespace caseway::server {

using ExchangeLogGeneric = caseway::v1::ExchangeLog::WithGenericMethod_GetCheckpoint<caseway::v1::ExchangeLog::WithGenericMethod_GetEntries<caseway::v1::ExchangeLog::WithGenericMethod_GetInclusionProof<caseway::v1::ExchangeLog::WithGenericMethod_GetConsistencyProof<caseway::v1::ExchangeLog::WithGenericMethod_GetEvidence<caseway::v1::ExchangeLog::WithGenericMethod_GetNoticeEvidence<caseway::v1::ExchangeLog::WithGenericMethod_GetNotices<caseway::v1::ExchangeLog::WithGenericMethod_AddCosignature<caseway::v1::ExchangeLog::Service>>>>>>>>;

// ExchangeLogService answers from committed state only: entries, proofs and checkpoints never
// show anything that a crash could take back. Thread-safe. `store` outlives it.
//
// Every method is served through AuthorizedFirst (server/authorized_first.h), which authorizes
// the caller before it parses the request; here they are generic.
class ExchangeLogService final : public ExchangeLogGeneric {
 public:
  // Only `cosigners` (this node's configured peers) may add cosignatures. A coordinator's read
  // of notice bodies (evidence) is recorded in `access`.
  ExchangeLogService(ExchangeLogStore* store, AccessLog* access, const Authorizer* authz,
                     common::Signatures signatures, std::set<std::string> cosigners);
  // AddUnaryMethods serves every method through `unary`.
  void AddUnaryMethods(AuthorizedFirst* unary);

  grpc::Status GetCheckpoint(grpc::ServerContext* ctx, const caseway::v1::GetCheckpointRequest* req,
                             caseway::v1::CheckpointResponse* resp) override;
  grpc::Status GetEntries(grpc::ServerContext* ctx, const caseway::v1::GetEntriesRequest* req,
                          caseway::v1::GetEntriesResponse* resp) override;
  grpc::Status GetInclusionProof(grpc::ServerContext* ctx,
                                 const caseway::v1::GetInclusionProofRequest* req,
                                 caseway::v1::ProofResponse* resp) override;
  grpc::Status GetConsistencyProof(grpc::ServerContext* ctx,
                                   const caseway::v1::GetConsistencyProofRequest* req,
                                   caseway::v1::ProofResponse* resp) override;
  grpc::Status GetEvidence(grpc::ServerContext* ctx, const caseway::v1::GetEvidenceRequest* req,
                           caseway::v1::GetEvidenceResponse* resp) override;
  grpc::Status GetNoticeEvidence(grpc::ServerContext* ctx,
                                 const caseway::v1::GetNoticeEvidenceRequest* req,
                                 caseway::v1::NoticeEvidence* resp) override;
  grpc::Status GetNotices(grpc::ServerContext* ctx, const caseway::v1::GetNoticesRequest* req,
                          caseway::v1::GetNoticesResponse* resp) override;
  grpc::Status AddCosignature(grpc::ServerContext* ctx,
                              const caseway::v1::AddCosignatureRequest* req,
                              caseway::v1::AddCosignatureResponse* resp) override;

 private:
  // BadPurpose checks a coordinator's purpose for reading personal data (INVALID_ARGUMENT).
  static grpc::Status BadPurpose(const std::string& purpose);
  // OtherNode checks that `peer` names another node of the federation (INVALID_ARGUMENT).
  grpc::Status OtherNode(const std::string& peer) const;

  ExchangeLogStore* const store_;
  AccessLog* const access_;
  const Authorizer* const authz_;
  const common::Signatures signatures_;
  const std::set<std::string> cosigners_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_EXCHANGE_LOG_SERVICE_H_
