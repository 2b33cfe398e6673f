#include "common/clock.h"

#include <atomic>

#include "absl/time/clock.h"

namespace caseway::common {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

std::atomic<const Clock*> installed{nullptr};

}  // namespace

const Clock& SystemClock() {
  static const RealClock* const kClock = new RealClock();
  return *kClock;
}

absl::Time Now() {
  const Clock* c = installed.load(std::memory_order_acquire);
  return c == nullptr ? absl::Now() : c->Now();
}

void SetClock(const Clock* clock) { installed.store(clock, std::memory_order_release); }

}  // namespace caseway::common
