// PeerAsker: asks peer nodes about a case (PeerExchange.Query) for Gateway.QueryPeer.
#ifndef CASEWAY_SERVER_EXCHANGE_PEER_ASKER_H_
#define CASEWAY_SERVER_EXCHANGE_PEER_ASKER_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "caseway/v1/config.pb.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/peer_channel.h"
#include "server/exchange/peer_exchange_service.h"
#include "server/store/store_parts.h"

namespace caseway::server {

// PeerAsker sends a configured peer a QueryRequest with a fresh random nonce, verifies the
// signed answer (the peer's directory key, this question's digest, addressed to this node),
// records it (CaseStore::RecordQueryAsked) and returns it. An answer that does not verify is
// DATA_LOSS and nothing is recorded. Thread-safe. Lifetime: `store` outlives it.
class PeerAsker {
 public:
  PeerAsker(const caseway::v1::NodeConfig& config, std::shared_ptr<grpc::ChannelCredentials> creds,
            const StoreParts& store, Signatures signatures);

  // Ask asks `req.peer()` (the request already validated) for the office `who` (its certificate
  // identity), and records the answer's read in the access log before returning it.
  // INVALID_ARGUMENT (NOT_A_PEER) for a jurisdiction that is not a configured peer; the peer's
  // refusal as it gave it.
  absl::StatusOr<caseway::v1::QueryPeerResponse> Ask(const caseway::v1::QueryPeerRequest& req,
                                                     const std::string& who);

 private:
  // How long a peer may take to answer.
  static constexpr absl::Duration kAnswerDeadline = absl::Seconds(10);
  const std::string self_;
  CaseStore* const cases_;       // the answers received, recorded
  ExchangeLogStore* const log_;  // halted?
  const Signatures signatures_;
  std::map<std::string, std::unique_ptr<common::PeerChannel>> channels_;  // the map is immutable
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_EXCHANGE_PEER_ASKER_H_
