// Dispatcher: runs the steps of many stream state machines on a few worker threads.
#ifndef CASEWAY_SERVER_EXCHANGE_DISPATCHER_H_
#define CASEWAY_SERVER_EXCHANGE_DISPATCHER_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace caseway::server {

// Steppable is a state machine that a Dispatcher advances by calling Step().
class Steppable {
 public:
  virtual ~Steppable() = default;
  // Step does whatever the machine can do now (it may block briefly, e.g. on a SQLite read, but
  // must not wait for other steppables). Never run concurrently with itself.
  virtual void Step() = 0;

 private:
  friend class Dispatcher;
  // Guarded by the dispatcher's mutex.
  bool queued_ = false;   // in the run queue
  bool running_ = false;  // a worker is in Step()
  bool again_ = false;    // scheduled while running: queue again afterwards
};

// Dispatcher keeps a FIFO run queue of steppables and `threads` workers that step them.
//
// Operation: Schedule() queues a steppable unless it is queued already; a steppable scheduled
// while a worker runs it is queued again (at the back) when that step ends, so no signal is lost
// and no machine runs twice at once. FIFO order means every scheduled machine is stepped after
// at most one step of each machine ahead of it: none starves.
// Concurrency: thread-safe.
// Lifetime: Stop() (or the destructor) lets running steps end and drops the queue; Schedule()
// after Stop() does nothing.
class Dispatcher {
 public:
  // `name` names the worker threads (common/thread_name.h).
  Dispatcher(int threads, std::string name);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Schedule(std::shared_ptr<Steppable> machine);
  void Stop();

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Steppable>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_EXCHANGE_DISPATCHER_H_
