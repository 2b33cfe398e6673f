#include "common/notice_facts.h"

#include <google/protobuf/util/time_util.h>

#include "common/policy.h"

namespace caseway::common {

using google::protobuf::util::TimeUtil;

NoticeFacts FactsOf(const v1::Notice& n) {
  NoticeFacts f;
  f.notice_id = n.notice_id();
  f.case_id = n.case_id();
  f.origin = n.origin();
  f.kind = NoticeKind(n);
  f.priority = n.priority();
  f.in_reply_to_origin = n.in_reply_to_origin();
  f.in_reply_to = n.in_reply_to();
  f.revision = n.revision();
  if (n.has_occurred_at()) f.occurred_at = absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(n.occurred_at()));
  if (n.has_reply_due()) f.reply_due = absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(n.reply_due()));
  return f;
}

void CopyFacts(const NoticeFacts& f, v1::LogEntry* e) {
  e->set_notice_kind(f.kind);
  e->set_priority(f.priority);
  e->set_in_reply_to_origin(f.in_reply_to_origin);
  e->set_in_reply_to(f.in_reply_to);
  e->set_revision(f.revision);
  if (f.occurred_at) {
    *e->mutable_occurred_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(*f.occurred_at));
  }
  if (f.reply_due) {
    *e->mutable_reply_due() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(*f.reply_due));
  }
}

}  // namespace caseway::common
