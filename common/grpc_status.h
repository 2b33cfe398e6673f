// The one pair of conversions between absl::Status (used inside) and grpc::Status (at the edge).
#ifndef CASEWAY_COMMON_GRPC_STATUS_H_
#define CASEWAY_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace caseway::common {

// kMaxStatusMessageBytes bounds every status message a node sends (docs/errors.md): a message
// longer than this is cut at a UTF-8 boundary and ends in "...".
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// ToGrpcStatus maps the code one to one (absl and gRPC codes share their numbering), the
// message cut to kMaxStatusMessageBytes, and typed details (refusal.h) to the
// grpc-status-details-bin trailer.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Echo quotes untrusted input for an error message: at most `max_bytes` of it (cut at a UTF-8
// boundary), control characters and quotes escaped, and the full length named when cut, e.g.
// "abc..." (65536 bytes).
std::string Echo(absl::string_view input, size_t max_bytes = 32);

// FromGrpcStatus is the inverse of ToGrpcStatus (typed details included).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_GRPC_STATUS_H_
