#include "common/notice_facts.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/policy.h"

namespace caseway::common {

using google::protobuf::util::TimeUtil;

NoticeFacts FactsOf(const v1::Notice& n) {
  NoticeFacts f;
  f.notice_id = n.notice_id();
  f.case_id = n.case_id();
  f.origin = n.origin();
  f.kind = NoticeKind(n);
  if (n.has_residence_change()) {
    f.subkind = n.residence_change().direction() == v1::ResidenceChange::DIRECTION_ARRIVAL ? "arrival"
                : n.residence_change().direction() == v1::ResidenceChange::DIRECTION_DEPARTURE
                    ? "departure"
                    : "";
  } else if (n.has_fee()) {
    f.subkind = n.fee().stage() == v1::Fee::STAGE_DECISION     ? "decision"
                : n.fee().stage() == v1::Fee::STAGE_COLLECTION ? "collection"
                                                               : "";
  } else if (n.has_certificate() && n.certificate().action() != v1::Certificate::ACTION_UNSPECIFIED) {
    f.subkind = absl::AsciiStrToLower(v1::Certificate::Action_Name(n.certificate().action()).substr(7));
  }
  f.priority = n.priority();
  f.in_reply_to_origin = n.in_reply_to_origin();
  f.in_reply_to = n.in_reply_to();
  f.revision = n.revision();
  if (n.has_occurred_at()) f.occurred_at = absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(n.occurred_at()));
  if (n.has_reply_due()) f.reply_due = absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(n.reply_due()));
  f.subject_digest = SubjectDigest(n.subject().id_number());
  return f;
}

std::string SubjectDigest(absl::string_view id_number) {
  return Sha256(absl::StrCat("caseway/v1 subject", absl::string_view("\0", 1),
                             absl::AsciiStrToUpper(id_number)));
}

void CopyFacts(const NoticeFacts& f, v1::LogEntry* e) {
  e->set_notice_kind(f.kind);
  e->set_notice_subkind(f.subkind);
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
