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
#include "common/peer_channel.h"
#include "common/signatures.h"
#include "server/log/periodic.h"
#include "server/store/exchange_log_store.h"

namespace caseway::server {

// Witness fetches each peer's latest checkpoint every interval, verifies the peer's signature,
// proves consistency with the last checkpoint of that peer it cosigned, then records the
// checkpoint in its own log (PEER_CHECKPOINT_COSIGNED) and gives the peer its cosignature
// (C2SP cosignature/v1, timestamped). A checkpoint that shrinks or does not extend the last one is
// a fork: it is logged as an error and never cosigned. It also reports, per peer (State(), logs):
// a peer that halted on an integrity failure; a checkpoint that is stale while the peer exchanges
// (older than stale_checkpoint_after while the peer's log is larger, or older than a manifest the
// peer signed since); and it repairs its own cosignature when the peer's note lacks a valid one.
// Concurrency: own thread; State() from any thread. Lifetime: `store` outlives it.
class Witness {
 public:
  Witness(const caseway::v1::NodeConfig& config,
          std::shared_ptr<grpc::ChannelCredentials> creds, ExchangeLogStore* store,
          common::Signatures signatures);
  ~Witness();
  void Start();
  void Stop();
  // WitnessPeer runs one round for `peer`. FAILED_PRECONDITION names a fork, a halted peer or a
  // stale checkpoint.
  absl::Status WitnessPeer(const std::string& peer);
  // State is "ok", "unreachable: ...", or the last finding about `peer` ("" before the first round).
  std::string State(const std::string& peer);

 private:
  void Round();
  // Stale explains why `peer`'s checkpoint `c` is stale, or returns "".
  std::string Stale(const std::string& peer, const common::Checkpoint& c, uint64_t log_size);
  absl::Status SendCosignature(caseway::v1::ExchangeLog::Stub& stub, const std::string& body);
  // A checkpoint note is a few lines: anything larger is refused, never recorded.
  static constexpr size_t kMaxNoteBytes = 8192;

  const std::string self_;
  v1::GetCheckpointRequest own_cosignature_only_;
  const absl::Duration stale_after_;
  absl::Mutex mu_;
  std::map<std::string, std::string> state_ ABSL_GUARDED_BY(mu_);
  ExchangeLogStore* const store_;
  const common::Signatures signatures_;
  std::map<std::string, std::unique_ptr<common::PeerChannel>> channels_;  // Round's thread
  Periodic periodic_;  // last: its thread uses the members above
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_WITNESS_H_
