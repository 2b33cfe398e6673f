#include "server/log/scrubber.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace caseway::server {

using common::Log;
using common::LogLevel;

Scrubber::Scrubber(ExchangeLogStore* store, uint32_t rate)
    : store_(store), rate_(rate), periodic_(absl::Seconds(1), [this] {
        absl::Status s = Step(rate_);
        if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) {
          Log(LogLevel::kWarn, "log scrub step failed", {{"status", s.ToString()}});
        }
      }) {}

absl::Status Scrubber::Step(uint64_t max_entries) {
  if (absl::Status halted = store_->Halted(); !halted.ok()) return halted;
  const uint64_t head = store_->LogHead().first;
  if (frontier_.size() >= head) {
    if (frontier_.size() > 0) {
      Log(LogLevel::kDebug, "log scrub pass complete", {{"entries", absl::StrCat(head)}});
    }
    frontier_ = common::MerkleFrontier();
  }
  const uint64_t end = std::min(head, frontier_.size() + max_entries);
  if (end == frontier_.size()) return absl::OkStatus();
  common::MerkleFrontier next = frontier_;
  absl::Status s = store_->VerifyStored(next, end);
  if (s.code() == absl::StatusCode::kDataLoss) {
    store_->Halt(std::string(s.message()));
    return store_->Halted();
  }
  if (!s.ok()) return s;
  frontier_ = std::move(next);
  return absl::OkStatus();
}

}  // namespace caseway::server
