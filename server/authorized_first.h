// AuthorizedFirst: the node's unary (sync) methods, served so that nothing of a request is parsed
// before its caller is authorized and held to its share of the request threads.
#ifndef CASEWAY_SERVER_AUTHORIZED_FIRST_H_
#define CASEWAY_SERVER_AUTHORIZED_FIRST_H_

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/impl/service_type.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/method_handler.h>

#include <functional>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "server/authz.h"

namespace caseway::server {

// ParseRequest parses a request received as bytes; INVALID_ARGUMENT, naming the message type,
// when it does not parse (docs/errors.md).
template <typename Request>
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, Request* request) {
  grpc::ByteBuffer copy(bytes);  // shares the slices; Deserialize consumes its buffer
  if (!grpc::SerializationTraits<Request>::Deserialize(&copy, request).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request: not a valid ", Request::descriptor()->full_name(),
        " (malformed protobuf, or a string field that is not UTF-8)"));
  }
  return absl::OkStatus();
}

// CallSlots counts what each caller holds at once (calls, streams) and refuses beyond a bound.
// Thread-safe.
class CallSlots {
 public:
  // Slot holds one of a caller's places until destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(CallSlots* owner, std::string caller) : owner_(owner), caller_(std::move(caller)) {}
    Slot(Slot&& o) noexcept : owner_(o.owner_), caller_(std::move(o.caller_)) { o.owner_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (owner_ != nullptr) owner_->Release(caller_);
    }

   private:
    CallSlots* owner_ = nullptr;
    std::string caller_;
  };

  CallSlots(std::string what, uint32_t per_caller) : what_(std::move(what)), max_(per_caller) {}
  // Take gives `caller` a place, or RESOURCE_EXHAUSTED naming the bound when it holds them all.
  absl::StatusOr<Slot> Take(const std::string& caller);

 private:
  void Release(const std::string& caller);
  const std::string what_;
  const uint32_t max_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, uint32_t> held_ ABSL_GUARDED_BY(mu_);
};

// AuthorizedFirst is a gRPC service of raw methods that stand in for the unary methods of the
// generated services (which mark them generic: WithGenericMethod_X). Each call: the caller is
// authorized for its Rpc, takes one of its kMaxCallsPerCaller places (RESOURCE_EXHAUSTED beyond,
// so that no caller holds every request thread), and only then is the request parsed
// (INVALID_ARGUMENT when it does not) and handed to the typed method. Thread-safe.
class AuthorizedFirst final : public grpc::Service {
 public:
  static constexpr uint32_t kMaxCallsPerCaller = 16;

  explicit AuthorizedFirst(const Authorizer* authz)
      : authz_(authz), slots_("unary calls", kMaxCallsPerCaller) {}

  // Add serves `path` (e.g. "/caseway.v1.Gateway/Status") with `method` of `service`, which must
  // outlive this. `path` must be a string literal (gRPC keeps the pointer).
  template <typename Service, typename Request, typename Response>
  void Add(const char* path, Rpc rpc, Service* service,
           grpc::Status (Service::*method)(grpc::ServerContext*, const Request*, Response*)) {
    auto typed = [service, method](grpc::ServerContext* ctx, const grpc::ByteBuffer& in,
                                   grpc::ByteBuffer* out) -> grpc::Status {
      Request request;
      if (absl::Status s = ParseRequest(in, &request); !s.ok()) return common::ToGrpcStatus(s);
      Response response;
      grpc::Status s = (service->*method)(ctx, &request, &response);
      if (!s.ok()) return s;
      bool own = false;
      return grpc::SerializationTraits<Response>::Serialize(response, out, &own);
    };
    AddMethod(new grpc::internal::RpcServiceMethod(
        path, grpc::internal::RpcMethod::NORMAL_RPC,
        new grpc::internal::RpcMethodHandler<AuthorizedFirst, grpc::ByteBuffer, grpc::ByteBuffer>(
            [rpc, typed](AuthorizedFirst* self, grpc::ServerContext* ctx,
                         const grpc::ByteBuffer* in, grpc::ByteBuffer* out) {
              return self->Serve(ctx, rpc, *in, out, typed);
            },
            this)));
  }

 private:
  using Typed =
      std::function<grpc::Status(grpc::ServerContext*, const grpc::ByteBuffer&, grpc::ByteBuffer*)>;
  grpc::Status Serve(grpc::ServerContext* ctx, Rpc rpc, const grpc::ByteBuffer& in,
                     grpc::ByteBuffer* out, const Typed& typed);

  const Authorizer* const authz_;
  CallSlots slots_;
};

// RawStreams serves methods as raw bidi streams: nothing of a call is read until its reactor
// asks (Publish and PublishBatch: server/gateway/read_gate.h). Every other method that no service
// serves is UNIMPLEMENTED, by name. (gRPC also needs a generic service once methods are marked
// generic; the methods AuthorizedFirst serves are found before this one.)
class RawStreams final : public grpc::CallbackGenericService {
 public:
  using Reactor = grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>;
  using Factory = std::function<Reactor*(grpc::GenericCallbackServerContext*)>;
  // Add serves `method` (a full path) with the reactors `factory` makes. Before the server starts.
  void Add(std::string method, Factory factory) {
    factories_[std::move(method)] = std::move(factory);
  }
  Reactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override;

 private:
  std::map<std::string, Factory> factories_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_AUTHORIZED_FIRST_H_
