// The federation policy (caseway.v1.FederationPolicy, docs/policy.md): what reply each notice
// owes and by when, receipt and notification limits, targets, reporting periods, the working-day
// calendar and the scope of each pair of jurisdictions. Nodes and auditors load the same file;
// its digest is what they compare.
//
// Days are China Standard Time (UTC+8) calendar days, like every Date in caseway.v1. A limit of
// N days counted from day D ends at the end of day D+N (calendar) or of the N-th working day after
// D (working days): the deadline instant is 23:59:59 CST of that day.
#ifndef CASEWAY_COMMON_POLICY_H_
#define CASEWAY_COMMON_POLICY_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "caseway/v1/notice.pb.h"
#include "caseway/v1/policy.pb.h"

namespace caseway::common {

// NoticeKind returns the notice body's field name ("verification_request", ...), or "" without
// a body.
std::string NoticeKind(const caseway::v1::Notice& notice);

// The time zone of every calendar day in caseway.v1.
absl::TimeZone ChinaStandardTime();

// DayOf returns the CST calendar day of `t`; EndOfDay the last second of `day` in CST.
absl::CivilDay DayOf(absl::Time t);
absl::Time EndOfDay(absl::CivilDay day);

// ReportingPeriod is one period of the policy: its label ("2026-10", "2026-Q4") and its first and
// last day.
struct ReportingPeriod {
  std::string label;
  absl::CivilDay first;
  absl::CivilDay last;
  absl::Time begin() const;  // 00:00 CST of `first`
  absl::Time end() const;    // 00:00 CST of the day after `last`
};

class Policy {
 public:
  // The built-in policy (the defaults of docs/policy.md) used when a node names no policy file.
  static const Policy& Default();
  // Parse maps YAML onto a FederationPolicy, fills defaults, normalizes and validates it.
  // INVALID_ARGUMENT `<source>: <field>: <rule>`.
  static absl::StatusOr<Policy> Parse(absl::string_view yaml, absl::string_view source);
  static absl::StatusOr<Policy> Load(const std::string& path);
  // FromProto validates an already built message (filling defaults and normalizing).
  static absl::StatusOr<Policy> FromProto(caseway::v1::FederationPolicy proto,
                                          absl::string_view source);

  const caseway::v1::FederationPolicy& proto() const { return proto_; }
  // SHA-256 of the normalized policy's deterministic serialization (32 bytes), and its hex.
  const std::string& digest() const { return digest_; }
  std::string DigestHex() const;

  // The terms for a notice of `kind` and `priority`.
  struct Terms {
    std::optional<caseway::v1::FederationPolicy::Limit> reply;  // set when a reply is owed
    uint32_t receipt_days = 0;
    uint32_t notify_days = 0;
  };
  Terms TermsFor(absl::string_view kind, caseway::v1::Priority priority) const;
  Terms TermsFor(const caseway::v1::Notice& notice) const {
    return TermsFor(NoticeKind(notice), notice.priority());
  }

  // ReplyDue: the reply deadline of a notice received (or, for the sender's estimate, published)
  // at `opened`, or nullopt when no reply is owed.
  std::optional<absl::Time> ReplyDue(const caseway::v1::Notice& notice, absl::Time opened) const;

  bool IsWorkingDay(absl::CivilDay day) const;
  // DueDay: the last day of a limit counted from `start` (start itself not counted).
  absl::CivilDay DueDay(absl::CivilDay start, const caseway::v1::FederationPolicy::Limit& limit) const;
  // WorkingDaysLeft: working days after `today` up to and including `due` (0 when due is today
  // or the next working day is after it); negative: working days `due` is past, counting today.
  int WorkingDaysLeft(absl::CivilDay today, absl::CivilDay due) const;

  // Scope of the pair (either order): an override, else the first two digits of the codes.
  caseway::v1::Scope ScopeOf(absl::string_view a, absl::string_view b) const;
  // Target rate in percent for `scope` in `year` (the latest target whose year <= year; the
  // earliest target before it).
  double Target(int year, caseway::v1::Scope scope) const;

  // The reporting period that contains `day`, and the period named `label` ("2026-10" for months,
  // "2026-Q4" for quarters; INVALID_ARGUMENT naming the expected form otherwise).
  ReportingPeriod PeriodOf(absl::CivilDay day) const;
  absl::StatusOr<ReportingPeriod> PeriodNamed(absl::string_view label) const;

 private:
  Policy() = default;
  caseway::v1::FederationPolicy proto_;
  std::string digest_;
  std::map<std::pair<std::string, int>, caseway::v1::FederationPolicy::Rule> rules_;
  std::set<absl::CivilDay> holidays_;
  std::set<absl::CivilDay> workdays_;
  std::set<absl::Weekday> weekend_;
  std::map<std::pair<std::string, std::string>, caseway::v1::Scope> overrides_;

  void Index();
};

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_POLICY_H_
