// RateLimiter: a token bucket per caller.
#ifndef CASEWAY_SERVER_EXCHANGE_RATE_LIMITER_H_
#define CASEWAY_SERVER_EXCHANGE_RATE_LIMITER_H_

#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"

namespace caseway::server {

// RateLimiter lets each caller make `per_minute` calls a minute on average, in bursts of up to
// `burst`. It measures elapsed time on the monotonic clock (not common::Now(), nor the wall
// clock: a clock stepped back must not empty every bucket, nor one moved ahead refill them).
// Thread-safe.
class RateLimiter {
 public:
  RateLimiter(double per_minute, double burst) : per_second_(per_minute / 60.0), burst_(burst) {}

  // Take spends one call of `caller`; false when its bucket is empty.
  bool Take(const std::string& caller) {
    const auto now = std::chrono::steady_clock::now();
    absl::MutexLock lock(&mu_);
    auto [it, fresh] = buckets_.try_emplace(caller, Bucket{burst_, now});
    Bucket& b = it->second;
    if (!fresh) {
      b.tokens = std::min(
          burst_, b.tokens + std::chrono::duration<double>(now - b.last).count() * per_second_);
      b.last = now;
    }
    if (b.tokens < 1.0) return false;
    b.tokens -= 1.0;
    return true;
  }

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point last;
  };
  const double per_second_;
  const double burst_;
  absl::Mutex mu_;
  // One bucket per jurisdiction of the federation that ever asked: bounded by the directory.
  std::map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_EXCHANGE_RATE_LIMITER_H_
