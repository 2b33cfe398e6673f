// Witness: cosigns peers' checkpoints after checking that their logs only grew.
#ifndef CASEWAY_SERVER_LOG_WITNESS_H_
#define CASEWAY_SERVER_LOG_WITNESS_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "caseway/v1/config.pb.h"
#include "caseway/v1/exchange_log.grpc.pb.h"
#include "server/exchange/peer_exchange_service.h"
#include "server/log/periodic.h"
#include "server/store/notice_store.h"

namespace caseway::server {

// Witness fetches each peer's latest checkpoint every interval, verifies the peer's signature,
// proves consistency with the last checkpoint of that peer it cosigned, then records the
// checkpoint in its own log (PEER_CHECKPOINT_COSIGNED) and gives the peer its cosignature. A
// checkpoint that shrinks or does not extend the last one is a fork: it is logged as an error
// and never cosigned.
// Concurrency: own thread. Lifetime: `store` outlives it.
class Witness {
 public:
  Witness(const caseway::v1::NodeConfig& config,
          std::shared_ptr<grpc::ChannelCredentials> creds, NoticeStore* store,
          Signatures signatures);
  ~Witness();
  void Start();
  void Stop();
  // WitnessPeer runs one round for `peer`. FAILED_PRECONDITION names a fork.
  absl::Status WitnessPeer(const std::string& peer);

 private:
  void Round();
  absl::Status SendCosignature(caseway::v1::ExchangeLog::Stub& stub, const std::string& body);
  // A checkpoint note is a few lines: anything larger is refused, never recorded.
  static constexpr size_t kMaxNoteBytes = 8192;

  const std::string self_;
  NoticeStore* const store_;
  const Signatures signatures_;
  std::map<std::string, std::unique_ptr<caseway::v1::ExchangeLog::Stub>> stubs_;
  Periodic periodic_;  // last: its thread uses the members above
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_WITNESS_H_
