#include "common/log.h"

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"

namespace caseway::common {
namespace {

TEST(LogTest, LimitedMessagesAreCutToTenPerSecond) {
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 50; ++i) LogLimited(LogLevel::kWarn, "refused for the test", {{"i", "x"}});
  Log(LogLevel::kWarn, "not limited");
  Log(LogLevel::kWarn, "not limited");
  const std::string out = ::testing::internal::GetCapturedStderr();
  int limited = 0, plain = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    limited += line.find("refused for the test") != absl::string_view::npos;
    plain += line.find("not limited") != absl::string_view::npos;
  }
  // 50 in well under a second: the first ten are written (two windows at most if the test
  // straddled a second boundary).
  EXPECT_GE(limited, 10);
  EXPECT_LE(limited, 20);
  EXPECT_EQ(plain, 2);
}

}  // namespace
}  // namespace caseway::common
