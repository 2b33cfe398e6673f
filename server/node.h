// Node: one running caseway-node: store, gRPC server and subscribers, wired together.
#ifndef CASEWAY_SERVER_NODE_H_
#define CASEWAY_SERVER_NODE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "caseway/v1/config.pb.h"
#include "server/authz.h"
#include "server/exchange/peer_asker.h"
#include "server/exchange/peer_exchange_service.h"
#include "server/exchange/subscriber.h"
#include "server/gateway/gateway_service.h"
#include "server/log/checkpointer.h"
#include "server/log/exchange_log_service.h"
#include "server/log/scrubber.h"
#include "server/log/witness.h"
#include "server/metrics.h"
#include "common/policy.h"
#include "server/store/notice_store.h"
#include "server/store/writer_lease.h"

namespace caseway::server {

// Node owns everything a node runs. Start() returns once the server listens and the subscribers
// run; Shutdown() stops taking calls, ends streams, stops subscribers and drains the store.
// Concurrency: Shutdown() may be called from any thread, once.
class Node {
 public:
  // Start checks the node certificate against the configured federation and jurisdiction
  // (FAILED_PRECONDITION when they differ), opens the store and starts serving.
  // With storage.postgres, `lease` is the writer lease this process holds (main.cc waits for it
  // as a standby): the node keeps it renewed, its writes check it, and the process exits with
  // kLeaseLostExitCode once it is lost.
  static absl::StatusOr<std::unique_ptr<Node>> Start(const caseway::v1::NodeConfig& config,
                                                     std::unique_ptr<WriterLease> lease = nullptr);
  // Check opens, as this process's user, every file Start would read (CA, certificate, key and
  // that they match, signing key, directory, CRLs) and checks that the storage is writable, without
  // starting anything. FAILED_PRECONDITION or NOT_FOUND naming the field and the path.
  static absl::Status Check(const caseway::v1::NodeConfig& config);
  ~Node();

  int port() const { return port_; }
  // The metrics endpoint's port (0 when metrics.listen_address is empty).
  int metrics_port() const;
  void Shutdown();

 private:
  explicit Node(caseway::v1::NodeConfig config) : config_(std::move(config)) {}

  caseway::v1::NodeConfig config_;
  std::unique_ptr<WriterLease> lease_;  // ended after the store has closed
  std::unique_ptr<common::Policy> policy_;  // outlives everything that uses it
  std::unique_ptr<common::SharingPolicy> sharing_;  // the same; null without a sharing policy
  std::unique_ptr<Metrics> metrics_;        // outlives the store (its commit observer) and server
  std::unique_ptr<NoticeStore> store_;
  std::unique_ptr<common::Revocations> revocations_;
  std::unique_ptr<Authorizer> authz_;
  std::unique_ptr<PeerExchangeService> peer_exchange_;
  std::unique_ptr<PeerAsker> asker_;  // outlives gateway_
  std::unique_ptr<GatewayService> gateway_;
  std::unique_ptr<ExchangeLogService> exchange_log_;
  std::unique_ptr<AuthorizedFirst> unary_;  // the unary methods of the three services above
  std::unique_ptr<RawStreams> raw_streams_;  // Publish, PublishBatch; unknown methods
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<Witness> witness_;
  std::unique_ptr<Scrubber> scrubber_;
  std::unique_ptr<Periodic> retention_;  // storage.retention: removes settled personal data
  // Takes up a rotated signing key or a new federation directory (every tls.reload_interval).
  std::unique_ptr<Periodic> key_reload_;
  std::string key_stamps_;  // the files' versions taken up (key_reload_'s thread only)
  std::string key_warned_;  // the versions last warned about
  std::vector<std::unique_ptr<Subscriber>> subscribers_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_NODE_H_
