// Metrics: the node's Prometheus endpoint (docs/metrics.md).
#ifndef CASEWAY_SERVER_METRICS_H_
#define CASEWAY_SERVER_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/v1/gateway.pb.h"

namespace prometheus {
class Collectable;
class Counter;
class Exposer;
class Histogram;
template <typename T>
class Family;
class Registry;
}  // namespace prometheus

namespace caseway::server {

class NoticeStore;

// Metrics serves GET /metrics over plain HTTP (prometheus-cpp's civetweb server). Two kinds of
// series:
//  - counted as things happen: RPC results by method and code (MetricsInterceptorFactory), and
//    the group commit's duration and size (ObserveCommit);
//  - read at each scrape from the same snapshot Gateway.Status answers with (channels,
//    subscriptions, inbox, certificate, witness), and from the store (log and checkpoint sizes,
//    overdue to-do items per peer), so that a scrape and `caseway status` never disagree.
// Labels hold region codes, method names, status codes and enumerated reasons only: never
// personal data, and a number of series bounded by the number of peers (docs/metrics.md).
// Concurrency: thread-safe. The sources must outlive the Metrics object.
class Metrics {
 public:
  using SnapshotFn = std::function<absl::StatusOr<caseway::v1::StatusResponse>()>;

  // Start listens on `listen_address` (an IP address and port; port 0 picks one). UNAVAILABLE
  // naming the address when it cannot listen.
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& listen_address,
                                                        SnapshotFn snapshot, NoticeStore* store);
  ~Metrics();

  int port() const { return port_; }

  // StopServing closes the endpoint (and waits for a scrape in progress), so that the snapshot's
  // sources may go; the counters keep counting until the object is destroyed.
  void StopServing();

  // ObserveCommit records one group transaction (NoticeStore::CommitObserver).
  void ObserveCommit(absl::Duration took, size_t operations, bool committed);

  // InterceptorFactory counts every caseway.v1 call by method and final status code. Install it
  // after the error policy's, so that it counts the status the caller receives.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // CountRpc is what the interceptor calls: `method` as "/caseway.v1.Service/Method".
  void CountRpc(const std::string& method, grpc::StatusCode code);

 private:
  Metrics() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> scraped_;
  prometheus::Family<prometheus::Counter>* rpcs_ = nullptr;
  prometheus::Histogram* commit_seconds_ = nullptr;
  prometheus::Histogram* commit_operations_ = nullptr;
  prometheus::Counter* commits_failed_ = nullptr;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_METRICS_H_
