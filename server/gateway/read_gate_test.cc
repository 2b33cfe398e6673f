#include "server/gateway/read_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace caseway::server {
namespace {

// A call whose read is started when the gate admits it.
class FakeCall final : public ReadGate::Waiter {
 public:
  void Admit() override {
    admitted_at = absl::Now();
    admitted = true;
  }
  std::atomic<bool> admitted{false};
  absl::Time admitted_at;
};

bool WaitAdmitted(FakeCall& c, absl::Duration within) {
  const absl::Time end = absl::Now() + within;
  while (!c.admitted && absl::Now() < end) absl::SleepFor(absl::Milliseconds(2));
  return c.admitted;
}

TEST(ReadGateTest, SmallReadsAreAdmittedAtOnceUpToTheBoundPerCaller) {
  ReadGate gate;
  std::vector<FakeCall> calls(ReadGate::kMaxReads + 1);
  for (auto& c : calls) ASSERT_TRUE(gate.Enter("client-a", &c).ok());
  for (int i = 0; i < ReadGate::kMaxReads; ++i) EXPECT_TRUE(calls[i].admitted) << i;
  EXPECT_FALSE(calls.back().admitted);
  // Another caller is not held back by this one.
  FakeCall other;
  ASSERT_TRUE(gate.Enter("client-b", &other).ok());
  EXPECT_TRUE(other.admitted);
  // A read that ends admits the next waiting call.
  auto next = gate.ReadDone("client-a", 100, [] { return true; });
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadGate::Next::kInline);
  EXPECT_TRUE(calls.back().admitted);
}

TEST(ReadGateTest, AfterALargeRequestTheCallersNextReadWaitsForItAndItsPause) {
  ReadGate gate;
  FakeCall big, after;
  ASSERT_TRUE(gate.Enter("client-a", &big).ok());
  ASSERT_TRUE(big.admitted);
  absl::Notification release;
  absl::Time handled_at;
  auto next = gate.ReadDone("client-a", ReadGate::kLargeRequest + 1, [&] {
    release.WaitForNotification();
    absl::SleepFor(absl::Milliseconds(50));  // the request "took" 50 ms
    handled_at = absl::Now();
    return true;
  });
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, ReadGate::Next::kQueued);
  ASSERT_TRUE(gate.Enter("client-a", &after).ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(after.admitted) << "read while the large request was still being handled";
  release.Notify();
  ASSERT_TRUE(WaitAdmitted(after, absl::Seconds(5)));
  // Paused kPace times as long as the request took.
  EXPECT_GE(after.admitted_at - handled_at, ReadGate::kPace * absl::Milliseconds(50) -
                                                absl::Milliseconds(5));
  // Cautious now: one read at a time.
  FakeCall second;
  ASSERT_TRUE(gate.Enter("client-a", &second).ok());
  EXPECT_FALSE(second.admitted);
  ASSERT_TRUE(gate.ReadDone("client-a", 10, [] { return true; }).ok());
  EXPECT_TRUE(second.admitted);
}

TEST(ReadGateTest, ARefusedLargeRequestPausesTheCallerForASecond) {
  ReadGate gate;
  FakeCall big, after;
  ASSERT_TRUE(gate.Enter("client-a", &big).ok());
  absl::Time handled_at;
  ASSERT_TRUE(gate.ReadDone("client-a", ReadGate::kLargeRequest + 1, [&] {
                    handled_at = absl::Now();
                    return false;  // did not parse
                  }).ok());
  // The next call arrives during the pause, after the refusal: the worker wakes for it.
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_TRUE(gate.Enter("client-a", &after).ok());
  ASSERT_TRUE(WaitAdmitted(after, absl::Seconds(5)));
  EXPECT_GE(after.admitted_at - handled_at, ReadGate::kRefusedPause - absl::Milliseconds(5));
}

TEST(ReadGateTest, ACallWaitingBehindALargeRequestThatTookNothingIsAdmitted) {
  ReadGate gate;
  // The worker is busy with another caller's request ...
  absl::Notification release;
  FakeCall other;
  ASSERT_TRUE(gate.Enter("client-b", &other).ok());
  ASSERT_TRUE(gate.ReadDone("client-b", ReadGate::kLargeRequest + 1, [&] {
                    release.WaitForNotification();
                    return true;
                  }).ok());
  // ... while client-a's large request (one that will take no time: its caller cancelled it)
  // is queued behind it, and another call of client-a waits for it.
  FakeCall big, after;
  ASSERT_TRUE(gate.Enter("client-a", &big).ok());
  ASSERT_TRUE(gate.ReadDone("client-a", ReadGate::kLargeRequest + 1, [] { return true; }).ok());
  ASSERT_TRUE(gate.Enter("client-a", &after).ok());
  EXPECT_FALSE(after.admitted);
  release.Notify();
  // Its pause (three times nothing) is over at once: the worker must not sleep through it.
  EXPECT_TRUE(WaitAdmitted(after, absl::Seconds(3)));
}

TEST(ReadGateTest, WaitingCallsAreBoundedAndACancelledOneIsNeverAdmitted) {
  ReadGate gate;
  std::vector<FakeCall> reading(ReadGate::kMaxReads);
  for (auto& c : reading) ASSERT_TRUE(gate.Enter("client-a", &c).ok());
  std::vector<FakeCall> waiting(ReadGate::kMaxWaiting);
  for (auto& c : waiting) ASSERT_TRUE(gate.Enter("client-a", &c).ok());
  FakeCall one_more;
  absl::Status s = gate.Enter("client-a", &one_more);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("client-a"), std::string::npos) << s;
  // The first waiting call is withdrawn (its caller cancelled): the next read admits the second.
  EXPECT_TRUE(gate.Withdraw("client-a", &waiting[0]));
  EXPECT_FALSE(gate.Withdraw("client-a", &reading[0]));  // already admitted
  ASSERT_TRUE(gate.ReadDone("client-a", 10, [] { return true; }).ok());
  EXPECT_FALSE(waiting[0].admitted);
  EXPECT_TRUE(waiting[1].admitted);
}

TEST(ReadGateTest, LargeRequestsOfManyCallersShareABudget) {
  ReadGate gate;
  absl::Notification release;
  int64_t queued = 0;
  int refused = 0;
  for (int i = 0; i < 20; ++i) {
    FakeCall c;
    const std::string caller = "client-" + std::to_string(i);
    ASSERT_TRUE(gate.Enter(caller, &c).ok());
    auto next = gate.ReadDone(caller, 2 << 20, [&] {
      release.WaitForNotification();
      return true;
    });
    if (next.ok()) {
      queued += 2 << 20;
    } else {
      EXPECT_EQ(next.status().code(), absl::StatusCode::kResourceExhausted);
      ++refused;
    }
  }
  EXPECT_LE(queued, ReadGate::kQueueBudget);
  EXPECT_GT(refused, 0);
  release.Notify();
}

}  // namespace
}  // namespace caseway::server
