// NoticeFacts: the non-personal facts of a notice that deadlines, the to-do list and the
// assessment need (kind, priority, what it replies to, its times), read once from the notice.
// Never carries the subject's data; only `subject_digest`, from which the store keys its
// lookup by identity number (never logged, never in a log entry).
#ifndef CASEWAY_COMMON_NOTICE_FACTS_H_
#define CASEWAY_COMMON_NOTICE_FACTS_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/notice.pb.h"

namespace caseway::common {

struct NoticeFacts {
  std::string notice_id;
  std::string case_id;
  std::string origin;
  std::string kind;  // the body's field name
  std::string subkind;  // arrival/departure, fee stage, certificate action (LogEntry.notice_subkind)
  caseway::v1::Priority priority = caseway::v1::PRIORITY_UNSPECIFIED;
  std::string in_reply_to_origin;
  std::string in_reply_to;
  int32_t revision = 0;
  std::optional<absl::Time> occurred_at;
  std::optional<absl::Time> reply_due;
  // SubjectDigest(subject.id_number): the store salts it again before it keeps it.
  std::string subject_digest;

  bool is_feedback() const { return kind == "feedback"; }
  bool is_void() const { return kind == "void"; }
  bool is_correction() const { return revision > 0; }
};

NoticeFacts FactsOf(const caseway::v1::Notice& notice);

// SubjectDigest is SHA-256 of "caseway/v1 subject", 0x00 and the identity number in upper case:
// what a notice and a remote query by identity number are matched by (each store keys it with
// its own salt).
std::string SubjectDigest(absl::string_view id_number);

// CopyFacts writes the facts into a KIND_PUBLISHED log entry (notice_kind ... reply_due).
void CopyFacts(const NoticeFacts& facts, caseway::v1::LogEntry* entry);

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_NOTICE_FACTS_H_
