// The node's one source of wall-clock time. Every time that is recorded, signed, compared with a
// deadline or shown to an office comes from common::Now(), so that tests can move it: unit tests
// install a FakeClock (tests/testing/fake_clock.h); the test build of the node
// (`caseway-node-faults`) follows a clock file that tests set and advance (common/test_clock.h).
// The `caseway-node` that offices run always reads the system clock.
//
// Elapsed-time measurements (timeouts, pacing, backoff) use absl::Now() or steady clocks: they
// measure how long the process waited, not what time it is, and must not jump when a test moves
// the date by a month.
#ifndef CASEWAY_COMMON_CLOCK_H_
#define CASEWAY_COMMON_CLOCK_H_

#include "absl/time/time.h"

namespace caseway::common {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The system's real-time clock.
const Clock& SystemClock();

// Now returns the time of the installed clock (the system clock unless SetClock replaced it).
absl::Time Now();

// SetClock installs `clock` for the whole process (nullptr: the system clock again). Call it
// before any thread reads the time; `clock` must outlive its use.
void SetClock(const Clock* clock);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_CLOCK_H_
