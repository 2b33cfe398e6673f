// LoopbackProxy: a TCP relay on 127.0.0.1 between a node and the peers that dial it, which a
// test can cut, take down or stall (the network faults of the chaos test).
#ifndef CASEWAY_TESTS_TESTING_PROXY_H_
#define CASEWAY_TESTS_TESTING_PROXY_H_

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace caseway::testing {

// LoopbackProxy listens on an ephemeral port of 127.0.0.1 and relays each connection to
// 127.0.0.1:`target_port`. One thread polls every socket; bounded by its connections.
class LoopbackProxy {
 public:
  explicit LoopbackProxy(int target_port);
  ~LoopbackProxy();

  std::string address() const;
  // Cut closes every open connection (new ones are relayed).
  void Cut();
  // SetDown(true) closes every connection and refuses new ones until SetDown(false).
  void SetDown(bool down);
  // Stall stops relaying bytes, both ways, for `d` (connections stay open).
  void Stall(absl::Duration d);

 private:
  void Run();
  void CloseAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  absl::Mutex mu_;
  std::vector<std::pair<int, int>> pairs_ ABSL_GUARDED_BY(mu_);  // client fd, target fd
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time stalled_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace caseway::testing

#endif  // CASEWAY_TESTS_TESTING_PROXY_H_
