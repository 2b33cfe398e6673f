// Status assertions for tests (Debian's Abseil 20220623 ships no status matchers).
#ifndef CASEWAY_TESTS_TESTING_STATUS_MATCHERS_H_
#define CASEWAY_TESTS_TESTING_STATUS_MATCHERS_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace caseway::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// IsOk() matches an OK Status or StatusOr.
MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

// StatusIs(code, message_matcher) matches the code and the message.
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

}  // namespace caseway::testing

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::caseway::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::caseway::testing::IsOk())

#endif  // CASEWAY_TESTS_TESTING_STATUS_MATCHERS_H_
