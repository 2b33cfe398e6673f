#include "common/fault.h"

#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace caseway::common {

std::optional<uint64_t> FaultValue(absl::string_view name) {
  static const std::map<std::string, uint64_t>* const kFaults = [] {
    auto* faults = new std::map<std::string, uint64_t>();
    const char* env = getenv("CASEWAY_FAULTS");
    if (env == nullptr) return faults;
    for (absl::string_view item : absl::StrSplit(env, ',', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(item, '=');
      uint64_t value = 0;
      if (!absl::SimpleAtoi(kv.second, &value)) value = 1;
      (*faults)[std::string(kv.first)] = value;
    }
    return faults;
  }();
  auto it = kFaults->find(std::string(name));
  if (it == kFaults->end()) return std::nullopt;
  return it->second;
}

}  // namespace caseway::common
