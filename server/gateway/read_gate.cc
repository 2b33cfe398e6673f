#include "server/gateway/read_gate.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/refusal.h"
#include "common/thread_name.h"

namespace caseway::server {

namespace {

// ReturnFreedMemory gives freed memory back to the system: jemalloc's purge of every arena when
// the node runs on jemalloc (server/CMakeLists.txt; malloc_trim does nothing there), glibc's
// malloc_trim otherwise. `mallctl` is weak: it is null without jemalloc (tests, sanitizers).
extern "C" int mallctl(const char*, void*, size_t*, void*, size_t) __attribute__((weak));
void ReturnFreedMemory() {
  if (mallctl != nullptr) {
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096: MALLCTL_ARENAS_ALL
    return;
  }
  malloc_trim(0);
}

}  // namespace

ReadGate::ReadGate() { worker_ = std::thread([this] { Loop(); }); }

ReadGate::~ReadGate() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

bool ReadGate::CanRead(const Caller& c, absl::Time now) const {
  const int max_reads = now < c.cautious_until ? 1 : kMaxReads;
  return c.large == 0 && now >= c.paced_until && c.reading < max_reads;
}

void ReadGate::Admissible(Caller& c, absl::Time now, std::vector<Waiter*>* out) {
  while (!c.waiting.empty() && CanRead(c, now)) {
    out->push_back(c.waiting.front());
    c.waiting.pop_front();
    ++c.reading;
  }
}

absl::Status ReadGate::Enter(const std::string& caller, Waiter* w) {
  bool now_ok = false;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    Caller& c = callers_[caller];
    if (c.waiting.empty() && CanRead(c, now)) {
      ++c.reading;
      now_ok = true;
    } else if (c.waiting.size() >= kMaxWaiting) {
      return common::Refusal(absl::StatusCode::kResourceExhausted, "TOO_MANY_WAITING", absl::StrCat(
          caller, " already has ", c.waiting.size(),
          " publish requests waiting to be read (at most ", kMaxWaiting,
          "): it sends large requests faster than the node handles them"));
    } else {
      c.waiting.push_back(w);
      rescan_ = true;  // the worker's next wake-up may now be sooner
    }
  }
  if (now_ok) w->Admit();
  return absl::OkStatus();
}

bool ReadGate::Withdraw(const std::string& caller, Waiter* w) {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(caller);
  if (it == callers_.end()) return false;
  auto& waiting = it->second.waiting;
  auto pos = std::find(waiting.begin(), waiting.end(), w);
  if (pos == waiting.end()) return false;
  waiting.erase(pos);
  return true;
}

absl::StatusOr<ReadGate::Next> ReadGate::ReadDone(const std::string& caller, int64_t bytes,
                                                  std::function<bool()> handle) {
  std::vector<Waiter*> admit;
  absl::StatusOr<Next> next = Next::kInline;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    Caller& c = callers_[caller];
    --c.reading;
    if (bytes > kLargeRequest) {
      c.cautious_until = now + kCautious;
      // One request alone is always queued (max_message_bytes may exceed the budget).
      if (queued_bytes_ > 0 && queued_bytes_ + bytes > kQueueBudget) {
        next = common::Refusal(absl::StatusCode::kResourceExhausted, "LARGE_REQUESTS_BUSY", absl::StrCat(
            "request: ", bytes, " bytes; the node is handling other large requests (",
            kQueueBudget >> 20, " MiB at once): retry shortly"));
      } else {
        ++c.large;
        queued_bytes_ += bytes;
        queue_.push_back(Task{caller, bytes, std::move(handle)});
        next = Next::kQueued;
      }
    }
    Admissible(c, now, &admit);
  }
  for (Waiter* w : admit) w->Admit();
  return next;
}

absl::Time ReadGate::NextWake(absl::Time now) const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [name, c] : callers_) {
    if (!c.waiting.empty() && c.large == 0 && c.paced_until > now) {
      next = std::min(next, c.paced_until);
    }
  }
  return next;
}

void ReadGate::Prune(absl::Time now) {
  if (callers_.size() < 1000) return;
  for (auto it = callers_.begin(); it != callers_.end();) {
    const Caller& c = it->second;
    const bool idle = c.reading == 0 && c.large == 0 && c.waiting.empty() &&
                      now >= c.paced_until && now >= c.cautious_until;
    if (idle) {
      callers_.erase(it++);
    } else {
      ++it;
    }
  }
}

void ReadGate::Loop() {
  common::NameThisThread("cw-read-gate");
  // Large requests are handled at a lower priority than everything else the node does: under a
  // flood of them, the node's other callers come first.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), kWorkerNice);
  mu_.Lock();
  // The time of the last look at the callers. The next wake-up is computed at that same time: a
  // pause that was still running when the look found a caller unable to read is counted even if
  // it has ended since (it then wakes the worker at once). Taken anew, the clock could have
  // passed the pause's end, which NextWake skips, and a waiting call slept until the next event.
  absl::Time now = absl::Now();
  for (;;) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || rescan_ || !queue_.empty();
    };
    // Wake for a task, a newly waiting call, or when a paused caller's pause ends.
    mu_.AwaitWithDeadline(absl::Condition(&ready), NextWake(now));
    rescan_ = false;
    now = absl::Now();
    std::vector<Waiter*> admit;
    for (auto& [name, c] : callers_) Admissible(c, now, &admit);
    Prune(now);
    if (!admit.empty()) {
      mu_.Unlock();
      for (Waiter* w : admit) w->Admit();
      mu_.Lock();
      continue;
    }
    if (queue_.empty()) {
      if (stop_) break;
      continue;
    }
    Task task = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    const absl::Time started = absl::Now();
    const bool refused = !task.handle();
    task.handle = nullptr;  // releases the request here, off gRPC's threads
    const absl::Duration took = absl::Now() - started;
    mu_.Lock();
    queued_bytes_ -= task.bytes;
    Caller& c = callers_[task.caller];
    --c.large;
    c.paced_until = absl::Now() + std::max(kPace * took, refused ? kRefusedPause : absl::ZeroDuration());
    // Look again before waiting: the pause may be over already (a cancelled call took nothing),
    // and NextWake only counts pauses still running.
    rescan_ = true;
    if (queued_bytes_ == 0) {
      // The allocator keeps freed memory for reuse; after a burst of large requests give it back.
      mu_.Unlock();
      ReturnFreedMemory();
      mu_.Lock();
    }
  }
  mu_.Unlock();
}

}  // namespace caseway::server
