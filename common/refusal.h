// Typed refusals: an error status that carries the standard gRPC rich error details
// (google.rpc.Status in the grpc-status-details-bin trailer) with a google.rpc.ErrorInfo
// (a stable reason in the domain "caseway.v1") and, for bad input, a google.rpc.BadRequest naming
// every bad field. Inside the node the details ride on the absl::Status as a payload;
// ToGrpcStatus/FromGrpcStatus (grpc_status.h) carry them across the wire. docs/errors.md lists the
// reasons.
#ifndef CASEWAY_COMMON_REFUSAL_H_
#define CASEWAY_COMMON_REFUSAL_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/rpc/status.pb.h"

namespace caseway::common {

inline constexpr char kErrorDomain[] = "caseway.v1";
// The payload URL under which an absl::Status carries its google.rpc.Status details.
inline constexpr char kDetailsPayload[] = "type.googleapis.com/google.rpc.Status";

// Violation: one bad field of a request and the rule it breaks.
struct Violation {
  std::string field;
  std::string description;
};

// Refusal returns a `code` status whose message is `message` and whose details name `reason`
// (UPPER_SNAKE_CASE), `metadata` and `violations`.
absl::Status Refusal(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                     const std::vector<Violation>& violations = {},
                     const std::map<std::string, std::string>& metadata = {});

// BadInput is Refusal(INVALID_ARGUMENT) for `violations` (at least one): the message is the first
// as "<field>: <rule>", followed by "(and N more: see the BadRequest details)" when there are more.
// The BadRequest lists them up to kMaxDetailBytes; ErrorInfo.metadata has "violations" (all) and
// "listed".
inline constexpr size_t kMaxDetailBytes = 4096;
absl::Status BadInput(absl::string_view reason, const std::vector<Violation>& violations);

// DefaultReason is the ErrorInfo reason of a refusal made without one (the node's error policy
// adds it to every caseway.v1 refusal, docs/errors.md): NODE_HALTED and SHUTTING_DOWN by their
// message, otherwise the status code's name (e.g. "NOT_FOUND", "RESOURCE_EXHAUSTED").
std::string DefaultReason(absl::StatusCode code, absl::string_view message);

// Details returns the google.rpc.Status a status carries (nullopt when none).
std::optional<google::rpc::Status> Details(const absl::Status& status);
// ReasonOf returns the ErrorInfo reason ("" when none); ViolationsOf every BadRequest violation.
std::string ReasonOf(const absl::Status& status);
std::vector<Violation> ViolationsOf(const absl::Status& status);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_REFUSAL_H_
