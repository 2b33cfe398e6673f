// GatewayService: the local API (Publish, PublishBatch, Inbox, Status) of a node.
#ifndef CASEWAY_SERVER_GATEWAY_GATEWAY_SERVICE_H_
#define CASEWAY_SERVER_GATEWAY_GATEWAY_SERVICE_H_

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <thread>

#include "caseway/v1/config.pb.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "server/authz.h"
#include "server/gateway/inbox_stream.h"
#include "server/store/notice_store.h"

namespace caseway::server {

// SubscriptionStatusFn reports this node's inbound subscriptions for Status.
using SubscriptionStatusFn =
    std::function<std::vector<caseway::v1::StatusResponse::Subscription>()>;
// OpenStreamsFn reports how many Subscribe streams are open for a destination.
using OpenStreamsFn = std::function<uint32_t(const std::string& destination)>;

// GatewayService validates, stores and serves notices for local clients.
// Concurrency: thread-safe. Publish and PublishBatch use gRPC's callback API: the handler
// validates, hands the notices to the store's commit queue and returns; the commit's completion
// finishes the call, so no thread waits for an fsync. Inbox streams are state machines stepped by
// a small dispatcher (server/gateway/inbox_stream.h). Status runs on a sync-server thread.
// Lifetime: `store` must outlive the service. Call Shutdown() before the server's Shutdown so
// that following Inbox streams end.
//
// Publish and PublishBatch take their requests as bytes: the caller is authorized before the
// request is parsed (an unauthorized caller costs no parsing), and a request that does not parse
// is INVALID_ARGUMENT (docs/errors.md).
class GatewayService final
    : public caseway::v1::Gateway::WithRawCallbackMethod_Publish<
          caseway::v1::Gateway::WithRawCallbackMethod_PublishBatch<
              caseway::v1::Gateway::WithCallbackMethod_Inbox<caseway::v1::Gateway::Service>>> {
 public:
  GatewayService(const caseway::v1::NodeConfig& config, NoticeStore* store,
                 const Authorizer* authz, SubscriptionStatusFn subscriptions,
                 OpenStreamsFn open_streams);

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* PublishBatch(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<caseway::v1::InboxRequest, caseway::v1::InboxResponse>* Inbox(
      grpc::CallbackServerContext* ctx) override;
  grpc::Status Status(grpc::ServerContext* ctx, const caseway::v1::StatusRequest* req,
                      caseway::v1::StatusResponse* resp) override;

  ~GatewayService() override;
  void Shutdown();

 private:
  // Prepare validates `notices` and serializes each with the origin set.
  absl::StatusOr<std::vector<PreparedNotice>> Prepare(
      const google::protobuf::RepeatedPtrField<caseway::v1::Notice>& notices, bool batch) const;

  const std::string jurisdiction_;
  const uint32_t max_batch_notices_;
  const uint32_t max_notice_bytes_;
  std::set<std::string> peers_;
  NoticeStore* const store_;
  const Authorizer* const authz_;
  SubscriptionStatusFn subscriptions_;
  OpenStreamsFn open_streams_;
  std::atomic<bool> shutting_down_{false};
  InboxHub inbox_;
  // Watches the revocation lists: a change makes every Inbox stream check its caller again.
  absl::Mutex ticker_mu_;
  bool stop_ticker_ ABSL_GUARDED_BY(ticker_mu_) = false;
  std::thread ticker_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_GATEWAY_GATEWAY_SERVICE_H_
