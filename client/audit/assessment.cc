#include "client/audit/assessment.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/validation.h"

namespace caseway::client::audit {
namespace {

using common::DayOf;
using common::EndOfDay;

// Retraction: a void or a correction the origin published of one of its notices.
struct Retraction {
  const PublishedNotice* by = nullptr;
};

using NoticeKey = std::pair<std::string, std::string>;  // (origin, notice_id)

struct RowKey {
  int indicator;
  std::string origin, destination;
  int priority;
  bool operator<(const RowKey& o) const {
    return std::tie(indicator, origin, destination, priority) <
           std::tie(o.indicator, o.origin, o.destination, o.priority);
  }
};

int IndicatorIndex(absl::string_view name) {
  for (int i = 0; i < 4; ++i) {
    if (name == kIndicators[i]) return i;
  }
  return 4;
}

class Counter {
 public:
  Counter(const common::Policy& policy, int year) : policy_(policy), year_(year) {}

  void Count(const char* indicator, const std::string& origin, const std::string& destination,
             v1::Priority priority, bool ok, bool clock) {
    const int i = IndicatorIndex(indicator);
    for (int p : {static_cast<int>(priority), 0}) {
      IndicatorRow& r = rows_[{i, origin, destination, p}];
      if (r.indicator.empty()) {
        r.indicator = indicator;
        r.scored = i == 3 ? "origin" : "destination";
        r.origin = origin;
        r.destination = destination;
        r.scope = policy_.ScopeOf(origin, destination);
        r.priority = static_cast<v1::Priority>(p);
        r.target = policy_.Target(year_, r.scope);
      }
      r.denominator++;
      r.numerator += ok ? 1 : 0;
      r.clock_marked += clock ? 1 : 0;
    }
    const v1::Scope scope = policy_.ScopeOf(origin, destination);
    IndicatorRow& t = totals_[{i, "", "", static_cast<int>(scope)}];
    if (t.indicator.empty()) {
      t.indicator = indicator;
      t.scored = i == 3 ? "origin" : "destination";
      t.scope = scope;
      t.target = policy_.Target(year_, scope);
    }
    t.denominator++;
    t.numerator += ok ? 1 : 0;
    t.clock_marked += clock ? 1 : 0;
  }

  void Into(Assessment& a) {
    for (auto& [k, r] : rows_) a.rows.push_back(r);
    for (auto& [k, r] : totals_) a.totals.push_back(r);
  }

 private:
  const common::Policy& policy_;
  const int year_;
  std::map<RowKey, IndicatorRow> rows_;
  std::map<RowKey, IndicatorRow> totals_;
};

}  // namespace

bool TimeBounds::Moved() const {
  return claim < lo - kClockTolerance || claim > hi + kClockTolerance;
}

TimeBounds History::SeenBy(const PublishedNotice& n, const std::string& witness) const {
  TimeBounds t{n.published};
  for (const auto& w : n.witnessed) {
    if (w.witness == witness) {
      t.lo = w.lo;
      t.hi = w.hi;
      return t;
    }
  }
  if (auto by = witnesses.find(n.origin); by != witnesses.end()) {
    if (auto w = by->second.find(witness); w != by->second.end()) {
      std::tie(t.lo, t.hi) = w->second.Bound(n.log_index);
    }
  }
  return t;
}

Assessment Assess(const History& history, const common::Policy& policy,
                  const common::ReportingPeriod& period, absl::Time now, bool details) {
  Assessment a;
  a.period = period;
  a.cutoff = std::min(period.end(), now);
  a.policy_version = policy.proto().version();
  a.policy_digest = policy.DigestHex();
  const absl::Time begin = period.begin();
  auto in_period = [&](absl::Time t) { return t >= begin && t < a.cutoff; };
  auto add_detail = [&](DetailRow row) {
    if (details) a.details.push_back(std::move(row));
  };

  // Replies by the notice they answer; voids and corrections by the notice they retract; what
  // each correction corrects.
  std::map<NoticeKey, std::vector<const PublishedNotice*>> replies;
  std::map<NoticeKey, const PublishedNotice*> retracted;
  std::map<NoticeKey, std::string> corrects;
  for (const PublishedNotice& n : history.notices) {
    if (n.in_reply_to.empty()) continue;
    const bool retraction = n.kind == "void" || n.revision > 0;
    const std::string target = !n.in_reply_to_origin.empty() ? n.in_reply_to_origin
                               : retraction                 ? n.origin
                                                            : "";
    if (target.empty()) continue;
    if (retraction) {
      if (target != n.origin) continue;  // only one's own notices can be retracted
      const NoticeKey key{n.origin, n.in_reply_to};
      auto it = retracted.find(key);
      if (it == retracted.end() || n.published < it->second->published) {
        retracted[key] = &n;
      }
      if (n.revision > 0) corrects[{n.origin, n.notice_id}] = n.in_reply_to;
    } else {
      replies[{target, n.in_reply_to}].push_back(&n);
    }
  }

  Counter counter(policy, period.last.year());
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> flows;
  for (const PublishedNotice& n : history.notices) {
    if (!in_period(n.published)) continue;
    const std::string kind =
        n.kind == "residence_change" && !n.subkind.empty() ? absl::StrCat(n.kind, ".", n.subkind) : n.kind;
    for (const Delivery& d : n.deliveries) ++flows[{n.origin, d.destination, kind}];
  }
  for (const auto& [k, count] : flows) {
    a.flows.push_back({std::get<0>(k), std::get<1>(k), std::get<2>(k), count});
  }
  for (const PublishedNotice& n : history.notices) {
    const std::string& x = n.origin;
    const auto terms = policy.TermsFor(n.kind, n.priority);
    for (const Delivery& d : n.deliveries) {
      const std::string& y = d.destination;
      const std::string at_origin = absl::StrCat(x, " log entry ", n.log_index);
      const TimeBounds seen = history.SeenBy(n, y);
      // Notification timeliness (the sender): published within the limit after it happened, not
      // before the receiver saw the sender's log without it.
      const absl::Time notified = seen.NotBefore();
      if (in_period(notified)) {
        const absl::Time limit = EndOfDay(DayOf(n.occurred_at) + terms.notify_days);
        // An event dated after the receiver saw it published is not on time but unprovable: a
        // sender cannot earn timeliness by dating its events forward.
        const bool after = n.occurred_at > seen.NotAfter() + common::kMaxFutureSkew;
        const bool ok = notified <= limit && !after;
        const bool clock = seen.Moved() || after;
        counter.Count("notification_timeliness", x, y, n.priority, ok, clock);
        if (!ok) {
          add_detail({"notification_timeliness",
                               after ? "OCCURRED_AFTER_PUBLICATION" : "LATE_NOTIFICATION", x, y,
                               n.notice_id, d.seq, limit, notified, at_origin, clock});
        }
      }
      // Receipt rate (the receiver): receipted within the limit after publication (the sender's
      // time: the receiver's own witness must not move its deadline), not before it was sent.
      std::optional<absl::Time> received;
      bool receipt_moved = false;
      if (d.receipt) {
        received = d.receipt->NotBefore();
        receipt_moved = d.receipt->Moved();
      }
      const absl::Time receipt_due = EndOfDay(DayOf(n.published) + terms.receipt_days);
      if (in_period(receipt_due)) {
        const bool ok = received && *received <= receipt_due;
        const bool clock = receipt_moved || seen.Moved();
        counter.Count("receipt_rate", x, y, n.priority, ok, clock);
        if (!ok) {
          add_detail(
              {"receipt_rate", received ? "LATE_RECEIPT" : "NOT_RECEIPTED", x, y, n.notice_id,
               d.seq, receipt_due, received,
               received ? absl::StrCat(at_origin, "; receipt in ", x, " log entry ",
                                       d.receipt_log_index)
                        : at_origin,
               clock});
        }
      }
      // Feedback (the receiver): a reply owed by the policy, or asked for with reply_due.
      if (history.nodes.count(y) == 0) continue;  // the replier's log is not in the audit
      if (!terms.reply && !n.reply_due) continue;
      // The deadline counts from the receipt, not later than the sender logged it.
      const absl::Time anchor = d.receipt ? d.receipt->NotAfter() : n.published;
      const absl::Time due =
          terms.reply ? EndOfDay(policy.DueDay(DayOf(anchor), *terms.reply)) : *n.reply_due;
      if (!in_period(due)) continue;
      if (auto r = retracted.find({x, n.notice_id});
          r != retracted.end() && r->second->published <= due) {
        continue;  // voided or corrected in time: the correction carries the obligation
      }
      // Replies to this notice or to what it corrects.
      std::optional<absl::Time> replied;
      const PublishedNotice* reply = nullptr;
      std::string id = n.notice_id;
      for (int hop = 0; hop <= 1000 && !id.empty(); ++hop) {
        if (auto it = replies.find({x, id}); it != replies.end()) {
          for (const PublishedNotice* r : it->second) {
            if (r->origin != y) continue;
            // Not before the sender saw the replier's log without the reply.
            const absl::Time t = history.SeenBy(*r, x).NotBefore();
            if (t < a.cutoff && (!replied || t < *replied)) {
              replied = t;
              reply = r;
            }
          }
        }
        auto c = corrects.find({x, id});
        id = c == corrects.end() ? "" : c->second;
      }
      const bool clock = (reply != nullptr && history.SeenBy(*reply, x).Moved()) || receipt_moved;
      counter.Count("feedback_rate", x, y, n.priority, replied.has_value(), clock);
      counter.Count("timely_feedback_rate", x, y, n.priority, replied && *replied <= due, clock);
      if (!replied || *replied > due) {
        std::string evidence = at_origin;
        if (reply != nullptr) absl::StrAppend(&evidence, "; reply ", reply->notice_id, " in ", y,
                                              " log entry ", reply->log_index);
        add_detail({replied ? "timely_feedback_rate" : "feedback_rate",
                             replied ? "LATE_REPLY" : "NO_REPLY", x, y, n.notice_id, d.seq, due,
                             replied, evidence, clock});
      }
    }
  }
  counter.Into(a);
  std::sort(a.details.begin(), a.details.end(), [](const DetailRow& l, const DetailRow& r) {
    return std::tie(l.origin, l.destination, l.seq, l.indicator) <
           std::tie(r.origin, r.destination, r.seq, r.indicator);
  });
  if (history.without_facts > 0) {
    a.notes.push_back(absl::StrCat(history.without_facts,
                                   " published notices were logged before Caseway 0.3 (without "
                                   "kind and priority) and are not counted"));
  }
  if (a.cutoff < period.end()) {
    a.notes.push_back(absl::StrCat("the period is not over: deadlines after ",
                                   absl::FormatTime("%Y-%m-%d %H:%M CST", a.cutoff,
                                                    common::ChinaStandardTime()),
                                   " are not judged yet"));
  }
  return a;
}

}  // namespace caseway::client::audit
