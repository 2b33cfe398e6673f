// Validation of notices and of the codes they carry. Every error is INVALID_ARGUMENT with the
// message `<field path>: <rule>`; nothing is stored unless validation passes.
#ifndef CASEWAY_COMMON_VALIDATION_H_
#define CASEWAY_COMMON_VALIDATION_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "caseway/v1/notice.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/notice_facts.h"
#include "common/refusal.h"

namespace caseway::common {

// ValidateRegionCode accepts a 6-digit county-level or 12-digit statistical code whose first two
// digits are a province-level code of GB/T 2260. INVALID_ARGUMENT otherwise (message without a
// field path; callers prefix it).
absl::Status ValidateRegionCode(absl::string_view code);

// IdNumberCheckCharacter returns the ISO 7064 MOD 11-2 check character of the 17-digit prefix.
// REQUIRES: the first 17 characters of `id` are digits.
char IdNumberCheckCharacter(absl::string_view id);

// How far in the future, by the accepting node's clock, a notice's occurred_at may be.
inline constexpr absl::Duration kMaxFutureSkew = absl::Minutes(5);

// NoticeRules is what validation needs to know about the node that accepts a notice.
struct NoticeRules {
  std::string self_jurisdiction;         // the origin; destinations may not name it
  std::set<std::string> peers;           // allowed destinations
  absl::Time now = absl::InfinitePast();  // for "not in the future" checks
};

// ValidateNotice checks every field of `notice` against its documented rule. On success returns
// the warnings (e.g. a wrong ID-number check character). `path` prefixes field names, e.g.
// "notices[3]." for batch members. `origin` must be empty or equal rules.self_jurisdiction.
absl::StatusOr<std::vector<std::string>> ValidateNotice(const caseway::v1::Notice& notice,
                                                        const NoticeRules& rules,
                                                        absl::string_view path = "");

// ValidateCaseKey checks what a case lookup names (a remote query, Gateway.QueryPeer and
// Gateway.Case): `case_id` by the rules of Notice.case_id and `id_number` as an identity number
// (18 characters: 17 digits and 0-9 or X; the check character is not checked; the placeholder
// of 18 zeros is refused, as it names no one). With
// `either_key`, exactly one of them must be given; otherwise only the case id. INVALID_ARGUMENT
// (reason INVALID_REQUEST) naming each bad field, prefixed with `path`.
absl::Status ValidateCaseKey(absl::string_view path, absl::string_view case_id,
                             absl::string_view id_number, bool either_key);

// ValidatePurpose checks why personal data is read (kept in the access log, docs/privacy.md):
// 1..200 characters of text without control characters. When it fails, a violation of `field`
// is added to `bad`.
void ValidatePurpose(absl::string_view field, absl::string_view purpose,
                     std::vector<Violation>* bad);

// CheckBatchManifest checks a delivered batch against its manifest before anything of it is
// stored: the manifest's signature by `origin_key`, that it names this channel (origin ->
// self) and exactly this batch's range, and each entry's digest.
absl::Status CheckBatchManifest(const caseway::v1::Batch& batch, absl::string_view origin,
                                absl::string_view self, absl::string_view origin_key);

// CheckReceivedEntries checks a delivered batch's entries: contiguous sequence numbers from
// first_seq, each a parsable notice of `origin` addressed to `self`. Returns their facts (ids,
// kinds, what they reply to) in order.
absl::StatusOr<std::vector<NoticeFacts>> CheckReceivedEntries(const caseway::v1::Batch& batch,
                                                              absl::string_view origin,
                                                              absl::string_view self);

// CheckedBatch is a delivered batch that CheckReceivedEntries accepted from `origin` for this
// node, with its entries' facts: the only form in which the store takes a received batch, so
// that the check (the exchange layer's) cannot be skipped. It refers to the batch, which must
// outlive it.
class CheckedBatch {
 public:
  static absl::StatusOr<CheckedBatch> Check(const caseway::v1::Batch& batch, std::string origin,
                                            absl::string_view self);
  static absl::StatusOr<CheckedBatch> Check(caseway::v1::Batch&& batch, std::string origin,
                                            absl::string_view self) = delete;
  const caseway::v1::Batch& batch() const { return *batch_; }
  const std::string& origin() const { return origin_; }
  const std::string& self() const { return self_; }  // the node it was checked for
  const std::vector<NoticeFacts>& facts() const { return facts_; }

 private:
  CheckedBatch(const caseway::v1::Batch* batch, std::string origin, std::string self,
               std::vector<NoticeFacts> facts)
      : batch_(batch), origin_(std::move(origin)), self_(std::move(self)),
        facts_(std::move(facts)) {}
  const caseway::v1::Batch* batch_;
  std::string origin_;
  std::string self_;
  std::vector<NoticeFacts> facts_;
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_VALIDATION_H_
