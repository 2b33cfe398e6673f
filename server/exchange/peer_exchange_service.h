// PeerExchangeService: serves this node's outbound channels to subscribing peer nodes.
#ifndef CASEWAY_SERVER_EXCHANGE_PEER_EXCHANGE_SERVICE_H_
#define CASEWAY_SERVER_EXCHANGE_PEER_EXCHANGE_SERVICE_H_

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "caseway/v1/config.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/directory.h"
#include "common/signatures.h"
#include "common/signing.h"
#include "server/authorized_first.h"
#include "server/authz.h"
#include "server/exchange/dispatcher.h"
#include "server/exchange/rate_limiter.h"
#include "server/store/store_parts.h"

namespace caseway::server {

// Signatures is what a node needs to sign its batches and check its peers' signatures.
// Both pointers are null when the exchange log is disabled.
using Signatures = common::Signatures;

class Subscription;

// PeerExchangeService streams channel entries to the destination nodes that subscribe.
//
// Operation: each Subscribe stream is a Subscription state machine on gRPC's callback API; no
// thread is held per stream. A few dispatcher workers step the machines whenever something
// happens to them: a read or write completed, a commit moved their channel (the store's channel
// listener), an asynchronous write of theirs became durable, or a heartbeat fell due (a ticker).
// After `open`, a subscription sends batches of up to batch_max_entries from cursor+1 while fewer
// than `window` batches are unacknowledged, and a heartbeat with the head every heartbeat
// interval. With the exchange log on, each batch carries a manifest signed by this node, logged
// (SENT) and committed before it is sent, and each ack must carry the destination's signed
// receipt for that manifest, which is verified and logged (RECEIPT_RECEIVED) before the position
// counts as acknowledged. Store writes are submitted to the group commit without waiting, so a
// thousand streams share each fsync.
// Memory: each stream holds at most one batch being written and one prepared. Every prepared
// batch counts against a shared `kBufferBudget`; a stream holding nothing may always prepare one
// (so none starves), a second only while the budget is not spent.
// Concurrency: thread-safe.
// Lifetime: `store` must outlive the service; call Shutdown() before the server's Shutdown and
// destroy the service after it.
// Limits (docs/limits.md): the caller is authorized before its stream is held; a peer holds at
// most kMaxStreamsPerCaller streams at once (RESOURCE_EXHAUSTED beyond); a stream that sends no
// `open` within 10 s ends with DEADLINE_EXCEEDED. Batches already signed and logged are sent
// again as they were after a reconnect, so reconnecting adds no entry to the log.
// Limitations: a destination may hold several streams at once (e.g. after a silent reconnect);
// each streams independently from its own cursor and the subscriber's cursor check refuses
// overlaps.
//
// Query (peer_query.cc) is a plain synchronous handler: it reads the case index, then waits for
// the group commit of its log entry. Each caller is held to limits.peer_queries_per_minute.
//
// Query and GetPeerView are served through AuthorizedFirst (server/authorized_first.h), which
// authorizes the caller before it parses the request; here they are generic.
class PeerExchangeService final
    : public caseway::v1::PeerExchange::WithCallbackMethod_Subscribe<
          caseway::v1::PeerExchange::WithGenericMethod_Query<
              caseway::v1::PeerExchange::WithGenericMethod_GetPeerView<
                  caseway::v1::PeerExchange::Service>>> {
 public:
  PeerExchangeService(const caseway::v1::NodeConfig& config, const StoreParts& store,
                      const Authorizer* authz, Signatures signatures);
  ~PeerExchangeService() override;
  // AddUnaryMethods serves Query and GetPeerView through `unary`.
  void AddUnaryMethods(AuthorizedFirst* unary);

  grpc::ServerBidiReactor<caseway::v1::SubscribeRequest, caseway::v1::SubscribeResponse>*
  Subscribe(grpc::CallbackServerContext* ctx) override;

  grpc::Status Query(grpc::ServerContext* ctx, const caseway::v1::QueryRequest* req,
                     caseway::v1::QueryResponse* resp) override;

  // GetPeerView answers the calling node with what this node holds of it (its channel's cursor
  // here, the latest checkpoint of it cosigned here).
  grpc::Status GetPeerView(grpc::ServerContext* ctx, const caseway::v1::GetPeerViewRequest* req,
                           caseway::v1::PeerView* resp) override;

  // OpenStreams is the number of open (past `open`) streams now for `destination`.
  uint32_t OpenStreams(const std::string& destination);

  // Shutdown ends every stream with UNAVAILABLE and refuses new ones.
  void Shutdown();

 private:
  friend class Subscription;
  friend class SubscribeReactor;
  // Bytes of prepared, not yet written batches that all streams may hold beyond one each.
  static constexpr int64_t kBufferBudget = 64 << 20;
  // Most Subscribe streams one peer may hold at once (a subscriber needs one; a reconnect may
  // briefly overlap the stream it replaces).
  static constexpr uint32_t kMaxStreamsPerCaller = 4;

  void Register(const std::shared_ptr<Subscription>& sub);
  void Opened(const std::shared_ptr<Subscription>& sub, const std::string& destination);
  void Unregister(const std::shared_ptr<Subscription>& sub);
  void ChannelsMoved(const std::map<std::string, ChannelState>& changes);
  void Tick();
  // Buffer accounting. MayBuffer is true while the budget is not spent; otherwise it queues `sub`
  // to be stepped when bytes are given back. Buffered and GiveBack count the bytes.
  bool MayBuffer(const std::shared_ptr<Subscription>& sub);
  void Buffered(int64_t bytes);
  void GiveBack(int64_t bytes);

  // SignBatch builds and signs the manifest of `batch`; returns it for logging.
  caseway::v1::BatchManifest SignBatch(const std::string& destination, caseway::v1::Batch& batch);
  // CheckReceipt verifies an ack's receipt against what was sent; returns the parsed receipt.
  absl::StatusOr<caseway::v1::Receipt> CheckReceipt(const std::string& destination,
                                                    const caseway::v1::SubscribeRequest::Ack& ack,
                                                    const std::string& expected_manifest_digest);

  const std::string self_;
  const Signatures signatures_;
  const uint32_t batch_max_entries_;
  const uint32_t default_window_;
  const uint64_t max_batch_bytes_;
  const absl::Duration heartbeat_interval_;
  // Remote queries: the largest answer (notice bytes: a quarter of the message limit, so that
  // the asker's QueryPeerResponse, which carries them three times, fits in one message; a
  // department's answer always holds one notice), each caller's rate, and how many are being
  // answered now.
  const uint64_t max_answer_bytes_;
  RateLimiter query_rate_;
  std::atomic<int> queries_in_flight_{0};
  ChannelStore* const channels_;  // the channels served, the batches sent, receipts
  InboxStore* const inbox_;       // a query's cursor (what this node holds of the asker)
  CaseStore* const cases_;        // queries answered, the feed
  ExchangeLogStore* const log_;   // halted?, the asker's checkpoint witnessed
  const common::Policy& policy_;  // its digest in every heartbeat
  const common::SharingPolicy* const sharing_;  // null: none
  const Authorizer* const authz_;
  std::atomic<bool> shutting_down_{false};
  Dispatcher dispatcher_;

  absl::Mutex mu_;
  std::set<std::shared_ptr<Subscription>> all_ ABSL_GUARDED_BY(mu_);
  std::multimap<std::string, std::shared_ptr<Subscription>> by_destination_ ABSL_GUARDED_BY(mu_);
  int64_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint32_t> streams_by_caller_ ABSL_GUARDED_BY(mu_);
  uint64_t revocation_generation_ = 0;  // seen by Tick (the ticker thread only)
  std::set<std::shared_ptr<Subscription>> buffer_waiters_ ABSL_GUARDED_BY(mu_);
  bool stop_ticker_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_EXCHANGE_PEER_EXCHANGE_SERVICE_H_
