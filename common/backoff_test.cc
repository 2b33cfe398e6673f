#include "common/backoff.h"

#include <gtest/gtest.h>

namespace caseway::common {
namespace {

TEST(BackoffTest, DelaysGrowToTheCapWithJitterAndReset) {
  Backoff b(absl::Milliseconds(100), absl::Seconds(1), 42);
  absl::Duration ceiling = absl::Milliseconds(100);
  for (int i = 0; i < 20; ++i) {
    absl::Duration d = b.Next();
    EXPECT_GE(d, ceiling / 2) << i;
    EXPECT_LE(d, ceiling) << i;
    ceiling = std::min(ceiling * 2, absl::Seconds(1));
  }
  b.Reset();
  EXPECT_LE(b.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, JitterSpreadsDelays) {
  Backoff b(absl::Seconds(1), absl::Seconds(1), 7);
  std::set<int64_t> seen;
  for (int i = 0; i < 50; ++i) seen.insert(absl::ToInt64Milliseconds(b.Next()));
  EXPECT_GT(seen.size(), 10u);
}

}  // namespace
}  // namespace caseway::common
