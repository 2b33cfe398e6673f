// The two-way assessment (docs/policy.md, "Indicators"): receipt rate, feedback rate, timely
// feedback rate and notification timeliness per pair of jurisdictions and reporting period,
// computed from verified exchange logs and the signed receipts they hold, never from personal
// data.
//
// No side improves its own score by back-dating: each time that counts against a side is bounded
// by what the other side of the pair signed or witnessed.
//  - notification timeliness (scores the sender): publication not before the receiver last
//    cosigned the sender's log without the PUBLISHED entry;
//  - receipt rate (scores the receiver): the receiver's signed received_at, not before the
//    sender's SENT entry for the batch; the deadline counts from the sender's publication time;
//  - feedback (scores the receiver): the deadline counts from the received_at, not after the
//    sender logged the receipt; the reply's publication not before the sender last cosigned the
//    receiver's log without it.
// A claimed time that disagrees with the other side's witness by more than a minute marks the
// item (`clock`): a skewed clock or a back-dated record could have moved the figure.
#ifndef CASEWAY_CLIENT_AUDIT_ASSESSMENT_H_
#define CASEWAY_CLIENT_AUDIT_ASSESSMENT_H_

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "caseway/v1/policy.pb.h"
#include "client/audit/witnesses.h"
#include "common/policy.h"

namespace caseway::client::audit {

// TimeBounds: a time one party claims, and the bounds another party witnessed.
struct TimeBounds {
  absl::Time claim;
  absl::Time lo = absl::InfinitePast();
  absl::Time hi = absl::InfiniteFuture();
  absl::Time NotBefore() const { return std::max(claim, lo); }
  absl::Time NotAfter() const { return std::min(claim, hi); }
  // The claim lies outside the witnessed bounds by more than kClockTolerance.
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
  std::string subkind;  // arrival/departure, fee stage, certificate action
  caseway::v1::Priority priority = caseway::v1::PRIORITY_UNSPECIFIED;
  absl::Time occurred_at;
  std::optional<absl::Time> reply_due;
  std::string in_reply_to_origin, in_reply_to;
  int32_t revision = 0;
  absl::Time published;  // the publisher's claim (its log entry's time)
  uint64_t log_index = 0;
  std::vector<Delivery> deliveries;
  // Bounds on the publication given explicitly (hand-built histories); collected histories
  // take them from History::witnesses instead.
  struct Witnessed {
    std::string witness;
    absl::Time lo, hi;  // the witness saw the log without the entry at lo, with it at hi
  };
  std::vector<Witnessed> witnessed;
};

// History: what the audited nodes' logs say they published, the receipts they hold, and the
// cosignatures each logged of the others' checkpoints.
struct History {
  std::set<std::string> nodes;  // the audited jurisdictions
  // A deque: references stay valid as it grows, and growing never copies a million notices.
  std::deque<PublishedNotice> notices;
  uint64_t without_facts = 0;  // PUBLISHED entries written before Caseway 0.3 (skipped)
  // By witnessed node, then by witness (sealed once every log is in).
  std::map<std::string, std::map<std::string, Witnesses>> witnesses;

  // The publication of `n` as `witness` bounds it (unbounded when it did not cosign).
  TimeBounds SeenBy(const PublishedNotice& n, const std::string& witness) const;
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
  std::string problem;  // NOT_RECEIPTED, LATE_RECEIPT, NO_REPLY, LATE_REPLY, LATE_NOTIFICATION,
                        // OCCURRED_AFTER_PUBLICATION
  std::string origin, destination;
  std::string notice_id;
  uint64_t seq = 0;
  absl::Time due;
  std::optional<absl::Time> at;  // when it happened (witnessed), if it did
  std::string evidence;          // log entries and receipts to check with `caseway audit evidence`
  bool clock = false;
};

// FlowRow: how many notices of one kind went from origin to destination in the period (by
// witnessed publication time): the flow statistics (统计监测). `kind` is the body's field name,
// with ".arrival" / ".departure" for residence changes.
struct FlowRow {
  std::string origin, destination, kind;
  uint64_t count = 0;
};

struct Assessment {
  common::ReportingPeriod period;
  absl::Time cutoff;  // deadlines after this are not yet judged (the period's end, or now)
  std::string policy_version, policy_digest;
  std::vector<IndicatorRow> rows;    // per pair, direction and priority, then per pair
  std::vector<IndicatorRow> totals;  // per indicator and scope
  std::vector<DetailRow> details;
  std::vector<FlowRow> flows;
  std::vector<std::string> notes;
};

inline constexpr const char* kIndicators[] = {"receipt_rate", "feedback_rate",
                                              "timely_feedback_rate", "notification_timeliness"};

// Assess computes the indicators of `period` at `now`; with `details`, lists every item counted
// against a side (without, only the counts: a period where every notice is late has as many
// items as notices).
Assessment Assess(const History& history, const common::Policy& policy,
                  const common::ReportingPeriod& period, absl::Time now, bool details = true);

}  // namespace caseway::client::audit

#endif  // CASEWAY_CLIENT_AUDIT_ASSESSMENT_H_
