#include "server/gateway/publish_call.h"

#include <grpcpp/impl/codegen/proto_utils.h>

#include "common/grpc_status.h"

namespace caseway::server {

PublishCall::PublishCall(grpc::CallbackServerContext* ctx, ReadGate* gate, std::string caller,
                         const Handler* handler)
    : ctx_(ctx), gate_(gate), caller_(std::move(caller)), handler_(handler) {
  // Operations started before gRPC has the reactor are held until it does.
  if (absl::Status s = gate_->Enter(caller_, this); !s.ok()) Reply(common::ToGrpcStatus(s));
}

void PublishCall::Reply(const grpc::Status& status) {
  if (replied_.exchange(true)) return;
  if (status.ok()) {
    StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
  } else {
    Finish(status);
  }
}

void PublishCall::ReplyWith(const google::protobuf::Message& response) {
  if (replied_.load()) return;  // never touch a response gRPC may be sending
  bool own = false;
  grpc::Status s =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(response, &response_, &own);
  Reply(s);
}

void PublishCall::OnReadDone(bool ok) {
  const int64_t bytes = ok ? static_cast<int64_t>(request_.Length()) : 0;
  auto next = gate_->ReadDone(caller_, bytes, [this] {
    if (ctx_->IsCancelled()) {
      Reply(grpc::Status(grpc::StatusCode::CANCELLED, "the caller cancelled the call"));
      return true;
    }
    // (Once the handler has answered, this call may be gone: only its result is used.)
    return (*handler_)(this, request_);
  });
  if (!ok) {
    // The call ended (cancelled, past its deadline, or a message over max_message_bytes, which
    // gRPC has answered), or the caller half-closed without a request.
    Reply(ctx_->IsCancelled()
              ? grpc::Status(grpc::StatusCode::CANCELLED, "the call ended before its request was read")
              : common::ToGrpcStatus(absl::InvalidArgumentError("request: none was sent")));
  } else if (!next.ok()) {
    Reply(common::ToGrpcStatus(next.status()));
  } else if (*next == ReadGate::Next::kInline) {
    (*handler_)(this, request_);
  }
}

void PublishCall::OnCancel() {
  // A call still waiting for its read is ended here; any other ends through its read or handler.
  if (gate_->Withdraw(caller_, this)) {
    Reply(grpc::Status(grpc::StatusCode::CANCELLED, "the caller cancelled the call"));
  }
}

}  // namespace caseway::server
