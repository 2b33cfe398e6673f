// The movable clock of the node's test build (`caseway-node-faults`, CASEWAY_TEST_FAULTS): with
// CASEWAY_TEST_CLOCK=<file>, the node's common::Now() is the system time plus the offset written
// in that file (signed seconds, e.g. "1296000" for 15 days ahead), re-read whenever the file
// changes. Tests with real node processes move dates this way without sleeping
// (tests/testing/harness.h, NodeProcess::SetClockOffset). Never compiled into `caseway-node`.
#ifndef CASEWAY_COMMON_TEST_CLOCK_H_
#define CASEWAY_COMMON_TEST_CLOCK_H_

namespace caseway::common {

// InstallTestClockFromEnv installs the file-driven clock when CASEWAY_TEST_CLOCK is set.
void InstallTestClockFromEnv();

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_TEST_CLOCK_H_
