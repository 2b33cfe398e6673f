#include "server/authorized_first.h"

#include "common/log.h"
#include "common/refusal.h"

namespace caseway::server {

absl::StatusOr<CallSlots::Slot> CallSlots::Take(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  uint32_t& held = held_[caller];
  if (held >= max_) {
    common::LogLimited(common::LogLevel::kWarn, "call refused: caller holds too many",
                       {{"caller", caller}, {"what", what_}, {"held", absl::StrCat(held)}});
    return common::Refusal(absl::StatusCode::kResourceExhausted, "TOO_MANY_CALLS",
                           absl::StrCat(caller, " already holds ", held, " ", what_,
                                        " on this node (at most ", max_, ")"));
  }
  ++held;
  return Slot(this, caller);
}

void CallSlots::Release(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(caller);
  if (it != held_.end() && --it->second == 0) held_.erase(it);
}

grpc::Status AuthorizedFirst::Serve(grpc::ServerContext* ctx, Rpc rpc, const grpc::ByteBuffer& in,
                                    grpc::ByteBuffer* out, const Typed& typed) {
  auto id = authz_->Check(*ctx, rpc);
  if (!id.ok()) return common::ToGrpcStatus(id.status());
  auto slot = slots_.Take(id->ToString());
  if (!slot.ok()) return common::ToGrpcStatus(slot.status());
  return typed(ctx, in, out);
}

RawStreams::Reactor* RawStreams::CreateReactor(grpc::GenericCallbackServerContext* ctx) {
  if (auto it = factories_.find(ctx->method()); it != factories_.end()) return it->second(ctx);
  class Refused final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Refused(const std::string& method) {
      Finish(common::ToGrpcStatus(absl::UnimplementedError(
          absl::StrCat("method ", method.substr(0, 200), " is not served by this node"))));
    }
    void OnDone() override { delete this; }
  };
  return new Refused(ctx->method());
}

}  // namespace caseway::server
