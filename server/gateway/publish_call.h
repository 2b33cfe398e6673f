// PublishCall: one Publish or PublishBatch call, read only when the ReadGate admits it.
#ifndef CASEWAY_SERVER_GATEWAY_PUBLISH_CALL_H_
#define CASEWAY_SERVER_GATEWAY_PUBLISH_CALL_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <functional>
#include <string>

#include "server/gateway/read_gate.h"

namespace caseway::server {

// PublishCall serves a unary Publish or PublishBatch as gRPC's raw bidi stream (the wire is the
// same), so that its request is read from the network only when `gate` admits it: until then the
// sender's HTTP/2 stream gets no more flow-control credit (server/gateway/read_gate.h). The
// handler parses the request and answers with Reply or ReplyWith, exactly once, from any thread.
// Lifetime: deletes itself when gRPC is done with it (after the reply).
class PublishCall final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                          public ReadGate::Waiter {
 public:
  // A handler answers the call (now or later) and returns false when it refused the request
  // (it did not parse or validate), so that the gate pauses its caller (read_gate.h).
  using Handler = std::function<bool(PublishCall*, const grpc::ByteBuffer&)>;

  // The caller has been authorized; `handler` outlives every call.
  PublishCall(grpc::CallbackServerContext* ctx, ReadGate* gate, std::string caller,
              const Handler* handler);

  // Reply finishes the call with `status` (and the response set by ReplyWith when OK).
  void Reply(const grpc::Status& status);
  // ReplyWith finishes the call with OK and `response`.
  void ReplyWith(const google::protobuf::Message& response);

  void Admit() override { StartRead(&request_); }
  void OnReadDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override { delete this; }

 private:
  grpc::CallbackServerContext* const ctx_;
  ReadGate* const gate_;
  const std::string caller_;
  const Handler* const handler_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::atomic<bool> replied_{false};
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_GATEWAY_PUBLISH_CALL_H_
