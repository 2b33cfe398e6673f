// FakeClock: a clock that in-process tests set and advance (common/clock.h). Install it with
// ScopedClock for the length of a test.
#ifndef CASEWAY_TESTS_TESTING_FAKE_CLOCK_H_
#define CASEWAY_TESTS_TESTING_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace caseway::testing {

class FakeClock final : public common::Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

// ScopedClock installs a clock as the process clock and restores the system clock when it ends.
class ScopedClock {
 public:
  explicit ScopedClock(const common::Clock* clock) { common::SetClock(clock); }
  ~ScopedClock() { common::SetClock(nullptr); }
  ScopedClock(const ScopedClock&) = delete;
  ScopedClock& operator=(const ScopedClock&) = delete;
};

}  // namespace caseway::testing

#endif  // CASEWAY_TESTS_TESTING_FAKE_CLOCK_H_
