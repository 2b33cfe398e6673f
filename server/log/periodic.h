// Periodic: a thread that runs a task every interval until stopped.
#ifndef CASEWAY_SERVER_LOG_PERIODIC_H_
#define CASEWAY_SERVER_LOG_PERIODIC_H_

#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace caseway::server {

// Periodic runs `task` every `interval` on its own thread (first run after one interval).
// Stop() wakes the thread at once and joins it; a running task finishes first.
// Thread-safe; Start() once.
class Periodic {
 public:
  Periodic(absl::Duration interval, std::function<void()> task)
      : interval_(interval), task_(std::move(task)) {}
  ~Periodic() { Stop(); }

  void Start() {
    thread_ = std::thread([this] {
      absl::MutexLock lock(&mu_);
      while (!stopping_) {
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
        if (stopping_) break;
        mu_.Unlock();
        task_();
        mu_.Lock();
      }
    });
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  const absl::Duration interval_;
  const std::function<void()> task_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_LOG_PERIODIC_H_
