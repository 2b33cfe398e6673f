// The two-way assessment (docs/policy.md, "Indicators"): receipt rate, feedback rate, timely
// feedback rate and notification timeliness per pair of jurisdictions and reporting period,
// computed from verified exchange logs and the signed receipts they hold, never from personal
// data.
//
// Every time that counts is bounded by what the other side signed or witnessed, so that no side
// improves its own score by back-dating:
//  - publication: not before the other nodes last cosigned the publisher's log without the
//    PUBLISHED entry, not after they first cosigned it with it;
//  - receipt: the receiver's signed received_at, not before the origin's SENT entry for the batch
//    and not after the origin logged the receipt;
//  - reply: like publication, bounded by the cosignatures of the replier's log.
// A claimed time moved by more than a minute to fit its bounds marks the item (`clock`): a skewed
// clock or a back-dated record.
#ifndef CASEWAY_CLIENT_AUDIT_ASSESSMENT_H_
#define CASEWAY_CLIENT_AUDIT_ASSESSMENT_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "caseway/v1/policy.pb.h"
#include "common/policy.h"

namespace caseway::client::audit {

// TimeBounds: a time one party claims, and the bounds the other parties witnessed.
struct TimeBounds {
  absl::Time claim;
  absl::Time lo = absl::InfinitePast();
  absl::Time hi = absl::InfiniteFuture();
  // The time that counts: the claim, moved into [lo, hi].
  absl::Time Witnessed() const;
  // The claim was moved by more than kClockTolerance.
  bool Moved() const;
};
inline constexpr absl::Duration kClockTolerance = absl::Minutes(1);

// Delivery: one destination of a published notice, and its receipt when there is one.
struct Delivery {
  std::string destination;
  uint64_t seq = 0;
  std::optional<TimeBounds> receipt;
  uint64_t receipt_log_index = 0;  // the origin's RECEIPT_RECEIVED entry
};

// PublishedNotice: the facts of a KIND_PUBLISHED entry of a verified log.
struct PublishedNotice {
  std::string origin;
  std::string notice_id;
  std::string kind;
  caseway::v1::Priority priority = caseway::v1::PRIORITY_UNSPECIFIED;
  absl::Time occurred_at;
  std::optional<absl::Time> reply_due;
  std::string in_reply_to_origin, in_reply_to;
  int32_t revision = 0;
  TimeBounds published;
  uint64_t log_index = 0;
  std::vector<Delivery> deliveries;
};

// History: what the audited nodes' logs say they published, and the receipts they hold.
struct History {
  std::set<std::string> nodes;  // the audited jurisdictions
  std::vector<PublishedNotice> notices;
  uint64_t without_facts = 0;  // PUBLISHED entries written before Caseway 0.3 (skipped)
};

// IndicatorRow: one indicator for one pair, direction and priority (PRIORITY_UNSPECIFIED: the
// total of the pair), or for a whole scope (origin and destination empty).
struct IndicatorRow {
  std::string indicator;  // receipt_rate, feedback_rate, timely_feedback_rate, notification_timeliness
  std::string scored;     // "destination" (receiver) or "origin" (sender)
  std::string origin, destination;
  caseway::v1::Scope scope = caseway::v1::SCOPE_UNSPECIFIED;
  caseway::v1::Priority priority = caseway::v1::PRIORITY_UNSPECIFIED;
  uint64_t numerator = 0, denominator = 0;
  uint64_t clock_marked = 0;  // items whose times were moved to fit what the other side witnessed
  double target = 0;
  double rate() const { return denominator == 0 ? 0 : 100.0 * numerator / denominator; }
  bool below() const { return denominator > 0 && rate() < target; }
};

// DetailRow: one item counted against a side, with where its evidence is.
struct DetailRow {
  std::string indicator;
  std::string problem;  // NOT_RECEIPTED, LATE_RECEIPT, NO_REPLY, LATE_REPLY, LATE_NOTIFICATION
  std::string origin, destination;
  std::string notice_id;
  uint64_t seq = 0;
  absl::Time due;
  std::optional<absl::Time> at;  // when it happened (witnessed), if it did
  std::string evidence;          // log entries and receipts to check with `caseway audit evidence`
  bool clock = false;
};

struct Assessment {
  common::ReportingPeriod period;
  absl::Time cutoff;  // deadlines after this are not yet judged (the period's end, or now)
  std::string policy_version, policy_digest;
  std::vector<IndicatorRow> rows;    // per pair, direction and priority, then per pair
  std::vector<IndicatorRow> totals;  // per indicator and scope
  std::vector<DetailRow> details;
  std::vector<std::string> notes;
};

inline constexpr const char* kIndicators[] = {"receipt_rate", "feedback_rate",
                                              "timely_feedback_rate", "notification_timeliness"};

// Assess computes the indicators of `period` at `now`.
Assessment Assess(const History& history, const common::Policy& policy,
                  const common::ReportingPeriod& period, absl::Time now);

}  // namespace caseway::client::audit

#endif  // CASEWAY_CLIENT_AUDIT_ASSESSMENT_H_
