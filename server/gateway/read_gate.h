// ReadGate: when each caller's next publish request may be read from the network.
#ifndef CASEWAY_SERVER_GATEWAY_READ_GATE_H_
#define CASEWAY_SERVER_GATEWAY_READ_GATE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace caseway::server {

// ReadGate admits the reads of Publish and PublishBatch requests, per caller, so that a caller
// flooding the node with large requests pays for them itself:
//
// - A request that is not admitted is not read: gRPC then stops granting its HTTP/2 stream
//   flow-control credit, and the sender stalls. Nothing is refused that a caller could simply send
//   again; only a caller with kMaxWaiting requests waiting is refused (RESOURCE_EXHAUSTED).
// - A caller has at most kMaxReads reads under way, one only for kCautious after it last sent a
//   large request (over kLargeRequest bytes), and none while its large request is being handled
//   or during the pause after it: kPace times as long as the request took, and at least
//   kRefusedPause when the request was refused (did not parse or validate). Its large requests
//   thus take at most 1 / (1 + kPace) of the one large-request worker, refused ones far less, and
//   their bytes arrive at the rate the node handles them, not at the rate the caller sends.
// - Large requests are handled on the worker, one at a time, off gRPC's threads and at a lower
//   priority (kWorkerNice); at most kQueueBudget bytes of them wait at once (RESOURCE_EXHAUSTED
//   beyond: many callers at once).
// Small requests from callers that never send large ones are admitted at once.
//
// Thread-safe. Admit() is never called while the gate's lock is held.
class ReadGate {
 public:
  // Waiter is a call waiting for its read; Admit() starts the read.
  class Waiter {
   public:
    virtual ~Waiter() = default;
    virtual void Admit() = 0;
  };

  static constexpr int64_t kLargeRequest = 1 << 20;  // a batch of ~1,000 ordinary notices
  static constexpr int64_t kQueueBudget = 8 << 20;
  static constexpr int kPace = 3;
  static constexpr int kMaxReads = 8;
  static constexpr size_t kMaxWaiting = 256;
  static constexpr absl::Duration kCautious = absl::Seconds(10);
  static constexpr absl::Duration kRefusedPause = absl::Seconds(1);
  static constexpr int kWorkerNice = 10;  // the worker thread's priority (nice value)

  ReadGate();
  // Handles the large requests still queued, then stops the worker.
  ~ReadGate();

  // Enter: `w` (a new call of `caller`) is admitted now or later, or RESOURCE_EXHAUSTED when the
  // caller already has kMaxWaiting calls waiting (then `w` is never admitted).
  absl::Status Enter(const std::string& caller, Waiter* w);
  // Withdraw removes a waiting call (cancelled): true when it was waiting and will not be
  // admitted; false when it was admitted already (its read then completes or fails).
  bool Withdraw(const std::string& caller, Waiter* w);

  enum class Next { kInline, kQueued };
  // ReadDone: an admitted read ended with `bytes` read (0 when it failed). A small or failed read
  // is handled by the caller at once (kInline); a large one is queued for the worker, which runs
  // `handle` (kQueued), or refused (RESOURCE_EXHAUSTED) when kQueueBudget is taken. `handle`
  // returns false when it refused the request (it did not parse or validate).
  absl::StatusOr<Next> ReadDone(const std::string& caller, int64_t bytes,
                                std::function<bool()> handle);

 private:
  struct Caller {
    int reading = 0;         // admitted reads not yet done
    int large = 0;           // large requests queued or being handled
    absl::Time paced_until;  // no read before this
    absl::Time cautious_until;
    std::deque<Waiter*> waiting;
  };
  struct Task {
    std::string caller;
    int64_t bytes;
    std::function<bool()> handle;
  };
  bool CanRead(const Caller& c, absl::Time now) const;
  // Admissible pops what `c` may read now into `out`.
  void Admissible(Caller& c, absl::Time now, std::vector<Waiter*>* out);
  // The next time after `now` that a paused caller with waiting calls may read (InfiniteFuture
  // when none).
  absl::Time NextWake(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Prune(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Loop();

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Caller> callers_ ABSL_GUARDED_BY(mu_);
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool rescan_ ABSL_GUARDED_BY(mu_) = false;  // a call began waiting: compute the next wake-up
  std::thread worker_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_GATEWAY_READ_GATE_H_
