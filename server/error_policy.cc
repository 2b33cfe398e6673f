#include "server/error_policy.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/refusal.h"

namespace caseway::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class ErrorPolicyInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ErrorPolicyInterceptor(std::string method) : method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      const bool undecodable =
          status.error_message().empty() &&
          (status.error_code() == grpc::StatusCode::INTERNAL ||
           status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
      if (undecodable) {
        methods->ModifySendStatus(common::ToGrpcStatus(absl::InvalidArgumentError(
            absl::StrCat("request: not a valid request message for ", method_,
                         " (malformed protobuf, or a string field that is not UTF-8)"))));
      } else if (!status.ok() && status.error_details().empty()) {
        // Every refusal carries a google.rpc.ErrorInfo: one made without details gets the
        // default reason (docs/errors.md); ToGrpcStatus also cuts an overlong message.
        const auto code = static_cast<absl::StatusCode>(status.error_code());
        grpc::Status typed = common::ToGrpcStatus(absl::Status(code, status.error_message()));
        if (typed.error_details().empty()) {
          typed = common::ToGrpcStatus(common::Refusal(
              code,
              code == absl::StatusCode::kInvalidArgument
                  ? "INVALID_REQUEST"
                  : common::DefaultReason(code, status.error_message()),
              status.error_message()));
        }
        methods->ModifySendStatus(typed);
      } else if (status.error_message().size() > common::kMaxStatusMessageBytes) {
        methods->ModifySendStatus(common::ToGrpcStatus(
            absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                         status.error_message())));
      }
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
};

}  // namespace

grpc::experimental::Interceptor* ErrorPolicyInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // Only the node's own services: health and reflection keep gRPC's behaviour.
  if (info->method() == nullptr || !absl::StartsWith(info->method(), "/caseway.v1.")) {
    return nullptr;
  }
  return new ErrorPolicyInterceptor(info->method());
}

}  // namespace caseway::server
