#include "common/test_clock.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"

namespace caseway::common {
namespace {

// FileOffsetClock: system time + the offset in `path_`, re-read at most every 10 ms and only
// when the file's modification time or size changed. A missing or unreadable file is offset 0.
class FileOffsetClock final : public Clock {
 public:
  explicit FileOffsetClock(std::string path) : path_(std::move(path)) {}

  absl::Time Now() const override {
    const absl::Time real = absl::Now();
    absl::MutexLock lock(&mu_);
    if (real - checked_ > absl::Milliseconds(10)) {
      checked_ = real;
      struct stat st {};
      if (stat(path_.c_str(), &st) == 0) {
        const int64_t stamp = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec + st.st_size;
        if (stamp != stamp_) {
          stamp_ = stamp;
          std::ifstream in(path_);
          long long seconds = 0;
          if (in >> seconds) offset_ = absl::Seconds(seconds);
        }
      }
    }
    // Never backwards within one process (a test only moves the clock forward).
    const absl::Time now = real + offset_;
    if (now > last_) last_ = now;
    return last_;
  }

 private:
  const std::string path_;
  mutable absl::Mutex mu_;
  mutable absl::Time checked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  mutable int64_t stamp_ ABSL_GUARDED_BY(mu_) = -1;
  mutable absl::Duration offset_ ABSL_GUARDED_BY(mu_);
  mutable absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace

void InstallTestClockFromEnv() {
  const char* path = getenv("CASEWAY_TEST_CLOCK");
  if (path == nullptr || *path == '\0') return;
  static FileOffsetClock* const kClock = new FileOffsetClock(path);
  SetClock(kClock);
}

}  // namespace caseway::common
