#include "common/backoff.h"

#include <algorithm>

namespace caseway::common {

Backoff::Backoff(absl::Duration initial, absl::Duration max, uint64_t seed)
    : initial_(initial), max_(std::max(max, initial)), ceiling_(initial), rng_(seed) {}

absl::Duration Backoff::Next() {
  int64_t hi = absl::ToInt64Microseconds(ceiling_);
  int64_t lo = hi / 2;
  std::uniform_int_distribution<int64_t> dist(lo, std::max(lo, hi));
  absl::Duration delay = absl::Microseconds(dist(rng_));
  ceiling_ = std::min(ceiling_ * 2, max_);
  return delay;
}

}  // namespace caseway::common
