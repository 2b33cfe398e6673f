// Witnesses: the cosignatures one node (the witness) logged of another node's checkpoints, as
// (tree size, time of the witness's entry, on the witness's clock), and the bounds they put on
// the time of the witnessed node's entry at a given index: the witness saw the log without it
// at one time and with it at another. Used by the assessment (whose times count) and by
// reconcile (how old a sending is).
#ifndef CASEWAY_CLIENT_AUDIT_WITNESSES_H_
#define CASEWAY_CLIENT_AUDIT_WITNESSES_H_

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace caseway::client::audit {

class Witnesses {
 public:
  void Add(uint64_t size, absl::Time at) { points_.push_back({size, at}); }
  // Seal must be called after the last Add and before Bound.
  void Seal() {
    std::sort(points_.begin(), points_.end());
    prefix_max_.resize(points_.size());
    suffix_min_.resize(points_.size());
    for (size_t i = 0; i < points_.size(); ++i) {
      prefix_max_[i] = i == 0 ? points_[i].second : std::max(prefix_max_[i - 1], points_[i].second);
    }
    for (size_t i = points_.size(); i-- > 0;) {
      suffix_min_[i] = i + 1 == points_.size() ? points_[i].second
                                               : std::min(suffix_min_[i + 1], points_[i].second);
    }
  }
  // Bound returns (lo, hi): the witness saw the log without entry `index` at lo (InfinitePast
  // when never), with it at hi (InfiniteFuture when never).
  std::pair<absl::Time, absl::Time> Bound(uint64_t index) const {
    std::pair<absl::Time, absl::Time> out{absl::InfinitePast(), absl::InfiniteFuture()};
    // First point whose size > index: its checkpoint holds the entry.
    auto it = std::upper_bound(points_.begin(), points_.end(),
                               std::make_pair(index, absl::InfiniteFuture()));
    const size_t k = static_cast<size_t>(it - points_.begin());
    if (k > 0) out.first = prefix_max_[k - 1];
    if (k < points_.size()) out.second = suffix_min_[k];
    return out;
  }

 private:
  std::vector<std::pair<uint64_t, absl::Time>> points_;
  std::vector<absl::Time> prefix_max_, suffix_min_;
};

}  // namespace caseway::client::audit

#endif  // CASEWAY_CLIENT_AUDIT_WITNESSES_H_
