// GatewayService: the local API (Publish, PublishBatch, Inbox, Status) of a node.
#ifndef CASEWAY_SERVER_GATEWAY_GATEWAY_SERVICE_H_
#define CASEWAY_SERVER_GATEWAY_GATEWAY_SERVICE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "caseway/v1/config.pb.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "server/authorized_first.h"
#include "server/authz.h"
#include "server/exchange/peer_asker.h"
#include "server/gateway/inbox_stream.h"
#include "server/gateway/publish_call.h"
#include "server/gateway/read_gate.h"
#include "server/store/store_parts.h"

namespace caseway::server {

// SubscriptionStatusFn reports this node's inbound subscriptions for Status.
using SubscriptionStatusFn =
    std::function<std::vector<caseway::v1::StatusResponse::Subscription>()>;
// OpenStreamsFn reports how many Subscribe streams are open for a destination.
using OpenStreamsFn = std::function<uint32_t(const std::string& destination)>;

// GatewayService validates, stores and serves notices for local clients.
// Concurrency: thread-safe. Publish and PublishBatch use gRPC's callback API: the handler
// validates, hands the notices to the store's commit queue and returns; the commit's completion
// finishes the call, so no thread waits for an fsync. Their requests are read when the read gate
// admits them, and large ones handled on its worker (server/gateway/read_gate.h). Inbox streams are state machines stepped by
// a small dispatcher (server/gateway/inbox_stream.h). Status runs on a sync-server thread.
// Lifetime: `store` must outlive the service. Call Shutdown() before the server's Shutdown so
// that following Inbox streams end.
//
// Publish and PublishBatch take their requests as bytes: the caller is authorized before the
// request is read (an unauthorized caller costs no reading and no parsing), and a request that
// does not parse is INVALID_ARGUMENT (docs/errors.md).
//
// Status, Todo, QueryPeer and Case are served through AuthorizedFirst (server/authorized_first.h),
// which authorizes the caller before it parses the request; here they are generic.
class GatewayService final
    : public caseway::v1::Gateway::WithGenericMethod_Publish<
          caseway::v1::Gateway::WithGenericMethod_PublishBatch<
              caseway::v1::Gateway::WithCallbackMethod_Inbox<
                  caseway::v1::Gateway::WithGenericMethod_Status<
                      caseway::v1::Gateway::WithGenericMethod_Todo<
                          caseway::v1::Gateway::WithGenericMethod_QueryPeer<
                              caseway::v1::Gateway::WithGenericMethod_Case<
                                  caseway::v1::Gateway::WithGenericMethod_AccessLog<
                                      caseway::v1::Gateway::Service>>>>>>>> {
 public:
  // `asker` (may be null: QueryPeer is then UNIMPLEMENTED) must outlive the service.
  // `signatures` (disabled without the exchange log) give Status its signing key's end.
  GatewayService(const caseway::v1::NodeConfig& config, const StoreParts& store,
                 const Authorizer* authz, SubscriptionStatusFn subscriptions,
                 OpenStreamsFn open_streams, PeerAsker* asker, common::Signatures signatures);

  grpc::ServerBidiReactor<caseway::v1::InboxRequest, caseway::v1::InboxResponse>* Inbox(
      grpc::CallbackServerContext* ctx) override;
  grpc::Status Status(grpc::ServerContext* ctx, const caseway::v1::StatusRequest* req,
                      caseway::v1::StatusResponse* resp) override;
  grpc::Status Todo(grpc::ServerContext* ctx, const caseway::v1::TodoRequest* req,
                    caseway::v1::TodoResponse* resp) override;
  grpc::Status QueryPeer(grpc::ServerContext* ctx, const caseway::v1::QueryPeerRequest* req,
                         caseway::v1::QueryPeerResponse* resp) override;
  grpc::Status Case(grpc::ServerContext* ctx, const caseway::v1::CaseRequest* req,
                    caseway::v1::CaseResponse* resp) override;
  grpc::Status AccessLog(grpc::ServerContext* ctx, const caseway::v1::AccessLogRequest* req,
                         caseway::v1::AccessLogResponse* resp) override;

  ~GatewayService() override;
  void Shutdown();
  // AddUnaryMethods serves Status, Todo, QueryPeer and Case through `unary`.
  void AddUnaryMethods(AuthorizedFirst* unary);
  // AddStreamMethods serves Publish and PublishBatch through `streams`: the caller is authorized
  // first, and its request read when the read gate admits it (server/gateway/read_gate.h).
  void AddStreamMethods(RawStreams* streams);

  // Snapshot is what Status answers: channels, subscriptions, the inbox, the certificate, on the
  // node's clock. Also read by the metrics endpoint at each scrape.
  absl::StatusOr<caseway::v1::StatusResponse> Snapshot() const;

 private:
  // Prepare validates `notices` and serializes each with the origin set, the reply it names
  // resolved (in_reply_to_origin) and reply_due set from the policy when the publisher left it
  // empty. The notices are completed in place (no copy per notice): the caller's request is not
  // used after.
  absl::StatusOr<std::vector<PreparedNotice>> Prepare(
      google::protobuf::RepeatedPtrField<caseway::v1::Notice>* notices, bool batch) const;
  // ValidateOnly answers a validate_only publish: the results a publish would give, without
  // deliveries, storing nothing; ALREADY_EXISTS for a notice_id taken by other content.
  absl::StatusOr<std::vector<caseway::v1::PublishResult>> ValidateOnly(
      const std::vector<PreparedNotice>& prepared, bool batch) const;
  // ResolveReply checks that `n.in_reply_to` names a notice this node knows (docs/protocol.md,
  // "Replies") and fills in_reply_to_origin. `earlier` holds the ids published before it in the
  // same batch. FAILED_PRECONDITION when it names nothing known, INVALID_ARGUMENT when ambiguous.
  absl::Status ResolveReply(caseway::v1::Notice& n, const std::string& path,
                            const std::set<std::string>& earlier) const;

  // Parse, validate and publish a request; false when it was refused (did not parse or
  // validate), true when it was handed to the store or answered (validate_only).
  bool PublishParsed(PublishCall* call, const grpc::ByteBuffer& request);
  bool PublishBatchParsed(PublishCall* call, const grpc::ByteBuffer& request);

  const std::string jurisdiction_;
  const std::string cert_file_;  // read at each Snapshot: a renewed certificate shows at once
  const std::string key_file_;
  const uint32_t max_batch_notices_;
  const uint32_t max_notice_bytes_;
  // Gateway.Case: the most notice bytes in one response.
  const uint64_t max_case_bytes_;
  std::set<std::string> peers_;
  ChannelStore* const channels_;       // publishing, the channels' state
  InboxStore* const inbox_store_;      // the inbox's summary (and, through inbox_, its stream)
  CaseStore* const cases_;             // Case, Todo
  ExchangeLogStore* const log_;        // halted?
  ::caseway::server::AccessLog* const access_;  // every read of personal data
  const common::Policy& policy_;       // reply deadlines, Status
  const common::SharingPolicy* const sharing_;  // the copies a destination gets; null: none
  PeerAsker* const asker_;
  const common::Signatures signatures_;
  const Authorizer* const authz_;
  SubscriptionStatusFn subscriptions_;
  OpenStreamsFn open_streams_;
  InboxHub inbox_;
  // Watches the revocation lists: a change makes every Inbox stream check its caller again.
  absl::Mutex ticker_mu_;
  bool stop_ticker_ ABSL_GUARDED_BY(ticker_mu_) = false;
  std::thread ticker_;
  const PublishCall::Handler publish_ = [this](PublishCall* c, const grpc::ByteBuffer& r) {
    return PublishParsed(c, r);
  };
  const PublishCall::Handler publish_batch_ = [this](PublishCall* c, const grpc::ByteBuffer& r) {
    return PublishBatchParsed(c, r);
  };
  // Last: destroyed first, it handles the large requests still queued while the rest is here.
  ReadGate read_gate_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_GATEWAY_GATEWAY_SERVICE_H_
