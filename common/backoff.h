// Backoff: capped exponential reconnect delays with full jitter.
#ifndef CASEWAY_COMMON_BACKOFF_H_
#define CASEWAY_COMMON_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace caseway::common {

// Backoff yields delays uniformly drawn from [initial/2, ceiling], where the ceiling starts at
// `initial` and doubles after every failure up to `max`. Thread-compatible.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max, uint64_t seed);

  // Next returns the delay before the next attempt and raises the ceiling.
  absl::Duration Next();
  // Reset returns to the initial ceiling (call after a successful connection).
  void Reset() { ceiling_ = initial_; }

 private:
  absl::Duration initial_;
  absl::Duration max_;
  absl::Duration ceiling_;
  std::mt19937_64 rng_;
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_BACKOFF_H_
