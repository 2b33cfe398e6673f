// Fault injection for tests only. In a test build of the node (`caseway-node-faults`, compiled
// with CASEWAY_TEST_FAULTS), the environment variable CASEWAY_FAULTS="name=value,..." makes it
// misbehave on purpose at named points (crash, omit or forge log entries), so that tests can prove
// that crashes lose nothing and that auditors detect misbehaviour. In every other build,
// including the `caseway-node` that offices run, FaultHits is a constant false: the fault points
// compile to nothing and the variable is never read. Every point is listed in docs/testing.md.
#ifndef CASEWAY_COMMON_FAULT_H_
#define CASEWAY_COMMON_FAULT_H_

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace caseway::common {

#ifdef CASEWAY_TEST_FAULTS

// FaultValue returns the value of fault `name`, or nullopt when it is not set.
std::optional<uint64_t> FaultValue(absl::string_view name);

// FaultHits reports whether fault `name` is set to a value within [first, last].
inline bool FaultHits(absl::string_view name, uint64_t first, uint64_t last) {
  std::optional<uint64_t> v = FaultValue(name);
  return v.has_value() && *v >= first && *v <= last;
}

#else

constexpr bool FaultHits(absl::string_view, uint64_t, uint64_t) { return false; }

#endif

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_FAULT_H_
