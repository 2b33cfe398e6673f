// PeerExchangeService: serves this node's outbound channels to subscribing peer nodes.
#ifndef CASEWAY_SERVER_EXCHANGE_PEER_EXCHANGE_SERVICE_H_
#define CASEWAY_SERVER_EXCHANGE_PEER_EXCHANGE_SERVICE_H_

#include <atomic>
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "caseway/v1/config.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/directory.h"
#include "common/signing.h"
#include "server/authz.h"
#include "server/store/notice_store.h"

namespace caseway::server {

// Signatures is what a node needs to sign its batches and check its peers' signatures.
// Both pointers are null when the exchange log is disabled.
struct Signatures {
  std::shared_ptr<const common::SigningKey> key;
  std::shared_ptr<const common::Directory> directory;
  bool enabled() const { return key != nullptr; }
};

// PeerExchangeService streams channel entries to the destination node that subscribes.
//
// Operation: after `open`, the handler thread sends batches of up to batch_max_entries from
// cursor+1 while fewer than `window` batches are unacknowledged, and a heartbeat with the head
// every heartbeat interval; a second thread reads acks and records them durably. With the
// exchange log on, each batch carries a manifest signed by this node, logged (SENT) and committed
// before it is sent, and each ack must carry the destination's signed receipt for that manifest,
// which is verified and logged (RECEIPT_RECEIVED) before the position counts as acknowledged.
// Concurrency: thread-safe. Each open stream holds one gRPC sync-server thread plus one reader
// thread (see docs/adr/0001-sync-grpc-api-first.md).
// Lifetime: `store` must outlive the service; call Shutdown() before the server's Shutdown.
// Limitations: a destination may hold several streams at once (e.g. after a silent reconnect);
// each streams independently from its own cursor and the subscriber's cursor check refuses
// overlaps.
class PeerExchangeService final : public caseway::v1::PeerExchange::Service {
 public:
  PeerExchangeService(const caseway::v1::NodeConfig& config, NoticeStore* store,
                      const Authorizer* authz, Signatures signatures);

  grpc::Status Subscribe(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<caseway::v1::SubscribeResponse, caseway::v1::SubscribeRequest>*
          stream) override;

  // OpenStreams is the number of streams open now for `destination`.
  uint32_t OpenStreams(const std::string& destination);

  void Shutdown() { shutting_down_ = true; }

 private:
  // SignBatch builds, signs and durably logs the manifest of `batch` (RecordSent).
  absl::Status SignBatch(const std::string& destination, caseway::v1::Batch& batch);
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
  NoticeStore* const store_;
  const Authorizer* const authz_;
  std::atomic<bool> shutting_down_{false};
  absl::Mutex mu_;
  std::map<std::string, uint32_t> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_EXCHANGE_PEER_EXCHANGE_SERVICE_H_
