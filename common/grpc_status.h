// The one pair of conversions between absl::Status (used inside) and grpc::Status (at the edge).
#ifndef CASEWAY_COMMON_GRPC_STATUS_H_
#define CASEWAY_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace caseway::common {

// ToGrpcStatus maps code and message one to one (absl and gRPC codes share their numbering).
grpc::Status ToGrpcStatus(const absl::Status& status);

// FromGrpcStatus is the inverse of ToGrpcStatus.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_GRPC_STATUS_H_
