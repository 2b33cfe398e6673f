// The order of a case's events, shared by Gateway.Case and `caseway case --peers`.
#ifndef CASEWAY_COMMON_CASE_EVENTS_H_
#define CASEWAY_COMMON_CASE_EVENTS_H_

#include <algorithm>
#include <tuple>

#include "caseway/v1/gateway.pb.h"

namespace caseway::common {

// SortCaseEvents orders events oldest first: by the notice's occurred_at, then by when its holder
// stored it, then by holder and notice id (so equal times still give one order).
inline void SortCaseEvents(google::protobuf::RepeatedPtrField<caseway::v1::CaseEvent>* events) {
  auto key = [](const caseway::v1::CaseEvent& e) {
    return std::make_tuple(e.notice().occurred_at().seconds(), e.notice().occurred_at().nanos(),
                           e.stored_at().seconds(), e.stored_at().nanos(), e.holder(),
                           e.notice().notice_id());
  };
  std::sort(events->pointer_begin(), events->pointer_end(),
            [&](const caseway::v1::CaseEvent* a, const caseway::v1::CaseEvent* b) {
              return key(*a) < key(*b);
            });
}

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_CASE_EVENTS_H_
