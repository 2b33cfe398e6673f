#include "server/exchange/dispatcher.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace caseway::server {
namespace {

// Counter records how often it was stepped and whether two steps ever overlapped.
class Counter : public Steppable {
 public:
  void Step() override {
    if (inside_.exchange(true)) overlapped_ = true;
    ++steps_;
    if (hold_ != nullptr) hold_->WaitForNotification();
    absl::SleepFor(absl::Microseconds(50));
    inside_ = false;
  }
  std::atomic<int> steps_{0};
  std::atomic<bool> inside_{false}, overlapped_{false};
  absl::Notification* hold_ = nullptr;
};

bool WaitUntil(const std::function<bool()>& done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return done();
}

TEST(DispatcherTest, NeverStepsAMachineTwiceAtOnceAndLosesNoSchedule) {
  Dispatcher d(4, "cw-test");
  auto m = std::make_shared<Counter>();
  std::vector<std::thread> schedulers;
  for (int t = 0; t < 4; ++t) {
    schedulers.emplace_back([&] {
      for (int i = 0; i < 500; ++i) d.Schedule(m);
    });
  }
  for (auto& t : schedulers) t.join();
  // Every Schedule is followed by at least one step that starts after it: the last one too.
  const int before = m->steps_;
  d.Schedule(m);
  ASSERT_TRUE(WaitUntil([&] { return m->steps_ > before && !m->inside_; }));
  EXPECT_FALSE(m->overlapped_);
  EXPECT_LE(m->steps_, 2001);  // schedules while queued are merged
}

TEST(DispatcherTest, ScheduledWhileRunningRunsAgainAfterwards) {
  Dispatcher d(2, "cw-test");
  absl::Notification release;
  auto m = std::make_shared<Counter>();
  m->hold_ = &release;
  d.Schedule(m);
  ASSERT_TRUE(WaitUntil([&] { return m->inside_.load(); }));
  d.Schedule(m);  // while it runs
  d.Schedule(m);  // merged with the previous one
  release.Notify();
  ASSERT_TRUE(WaitUntil([&] { return m->steps_ == 2 && !m->inside_; }));
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(m->steps_, 2);
  EXPECT_FALSE(m->overlapped_);
}

TEST(DispatcherTest, OneBusyMachineDoesNotStarveTheOthers) {
  Dispatcher d(1, "cw-test");
  std::vector<std::shared_ptr<Counter>> machines;
  for (int i = 0; i < 50; ++i) machines.push_back(std::make_shared<Counter>());
  // Machine 0 is rescheduled on every step of anyone; the others once each.
  for (int round = 0; round < 20; ++round) d.Schedule(machines[0]);
  for (auto& m : machines) d.Schedule(m);
  ASSERT_TRUE(WaitUntil([&] {
    for (auto& m : machines) {
      if (m->steps_ == 0) return false;
    }
    return true;
  }));
  EXPECT_LE(machines[0]->steps_, 2) << "FIFO: a machine queued once runs once per turn";
}

// The workers carry the dispatcher's name, which top -H and bench/run.sh show (docs/operator.md).
class NameReader : public Steppable {
 public:
  void Step() override {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    seen_ = name;
    done_.Notify();
  }
  std::string seen_;
  absl::Notification done_;
};

TEST(DispatcherTest, WorkersCarryTheDispatchersName) {
  Dispatcher d(1, "cw-exchange-and-more");
  auto m = std::make_shared<NameReader>();
  d.Schedule(m);
  ASSERT_TRUE(m->done_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(m->seen_, "cw-exchange-and");  // cut to the kernel's 15 bytes, not refused
}

TEST(DispatcherTest, ScheduleAfterStopDoesNothing) {
  auto m = std::make_shared<Counter>();
  {
    Dispatcher d(2, "cw-test");
    d.Stop();
    d.Schedule(m);
  }
  EXPECT_EQ(m->steps_, 0);
}

}  // namespace
}  // namespace caseway::server
