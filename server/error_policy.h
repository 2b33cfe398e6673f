// The error policy at the edge of the node (docs/errors.md), for what the handlers never see.
#ifndef CASEWAY_SERVER_ERROR_POLICY_H_
#define CASEWAY_SERVER_ERROR_POLICY_H_

#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/status/status.h"
#include "common/grpc_status.h"

namespace caseway::server {

// ErrorPolicyInterceptorFactory makes the interceptor that gives every caseway.v1 call the
// documented status when gRPC itself ends it: a request that does not parse is INVALID_ARGUMENT
// (gRPC answers INTERNAL for a sync method and UNIMPLEMENTED for a callback one, both with an
// empty message), and no status message is longer than common::kMaxStatusMessageBytes.
class ErrorPolicyInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

// RefusedStream ends a bidi stream at once with `status`, before anything is read from it or
// held for it (an unauthorized caller, too many streams, a node shutting down).
template <typename Request, typename Response>
class RefusedStream final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusedStream(const absl::Status& status) {
    this->Finish(common::ToGrpcStatus(status));
  }
  void OnDone() override { delete this; }
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_ERROR_POLICY_H_
